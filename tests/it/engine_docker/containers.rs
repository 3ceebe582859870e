//! Containers: the spec as Docker stores it, lifecycle, logs, a crash reported with its logs.

use super::*;

fn shell_spec(fx: &Fixture, image: &str, what: &str, script: &str, network: NetworkMode) -> ContainerSpec {
    let mut labels = fx.labels();
    labels.insert("io.cozyboot.role".into(), what.into());
    ContainerSpec {
        name: fx.name(what),
        image: image.to_owned(),
        // The image has no ENTRYPOINT, so the command is the whole argv.
        cmd: vec!["/bin/sh".into(), "-c".into(), script.into()],
        labels,
        binds: vec![Bind {
            host: "/usr".into(),
            container: "/usr".into(),
            read_only: true,
        }],
        network,
        cap_add: vec![],
        restart_unless_stopped: false,
    }
}

/// Exits promptly on `docker stop` (PID 1 gets no default SIGTERM handler).
const SERVE: &str = "trap 'exit 0' TERM; while :; do sleep 0.2; done";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_lifecycle_maps_the_spec_exactly() {
    if !require_merged_usr() {
        return;
    }
    with_fixture("lifecycle", |fx| async move {
        let image = fx.image("run", &host_usr_image()).await;
        let (network, ip) = fx.internal_network().await;
        let data = tempfile::tempdir().unwrap();
        std::fs::write(data.path().join("marker"), "marker-from-host\n").unwrap();

        let script = format!("echo hello-out; echo hello-err >&2; cat /data/marker; {SERVE}");
        let mut spec = shell_spec(
            &fx,
            &image,
            "server",
            &script,
            NetworkMode::Named {
                name: network.clone(),
                ipv4: Some(ip),
            },
        );
        spec.binds.push(Bind {
            host: data.path().to_owned(),
            container: "/data".into(),
            read_only: true,
        });
        spec.cap_add = vec!["NET_ADMIN".into()];
        spec.restart_unless_stopped = true;
        spec.labels.insert("io.cozyboot.spec-hash".into(), spec.spec_hash());

        let id = fx.engine.create(&spec).await.expect("create");
        let created = fx.engine.container(&spec.name).await.unwrap().expect("inspect");
        assert_eq!(created.id, id);
        assert_eq!(created.name, spec.name);
        assert_eq!(created.image, image);
        assert!(created.image_id.starts_with("sha256:"));
        assert_eq!(created.labels, spec.labels);
        assert_eq!(
            created.labels["io.cozyboot.spec-hash"],
            spec.spec_hash(),
            "hash survives the round trip"
        );
        assert_eq!(created.cmd, spec.cmd);
        assert_eq!(
            (created.running, created.status.as_str(), created.started_at.as_deref()),
            (false, "created", None)
        );
        assert_eq!(created.network_mode, network);

        // What Docker stored, read back with the raw client.
        let raw = fx
            .docker
            .inspect_container(&spec.name, None::<InspectContainerOptions>)
            .await
            .unwrap();
        let host = raw.host_config.unwrap();
        let mounts = host.mounts.unwrap();
        assert_eq!(mounts.len(), 2);
        assert!(mounts.iter().all(|m| m.read_only == Some(true)));
        assert_eq!(mounts[1].source.as_deref(), data.path().to_str());
        assert_eq!(mounts[1].target.as_deref(), Some("/data"));
        assert_eq!(host.cap_add, Some(vec!["NET_ADMIN".to_owned()]));
        assert_eq!(
            host.restart_policy.unwrap().name.map(|n| n.to_string()).as_deref(),
            Some("unless-stopped")
        );
        let endpoint = &raw.network_settings.unwrap().networks.unwrap()[&network];
        assert_eq!(
            endpoint.ipam_config.as_ref().unwrap().ipv4_address.as_deref(),
            Some(ip.to_string().as_str())
        );

        fx.engine.start(&spec.name).await.expect("start");
        fx.engine
            .start(&spec.name)
            .await
            .expect("starting a running container is fine");
        let running = fx
            .engine
            .wait_running(&spec.name, Duration::from_secs(20))
            .await
            .expect("running");
        assert!(running.running && running.started_at.is_some());
        let raw = fx
            .docker
            .inspect_container(&spec.name, None::<InspectContainerOptions>)
            .await
            .unwrap();
        let networks = raw.network_settings.unwrap().networks.unwrap();
        assert_eq!(networks[&network].ip_address.as_deref(), Some(ip.to_string().as_str()));

        let logs = eventually(|| fx.engine.logs(&spec.name, None), |l| l.contains("marker-from-host")).await;
        for line in ["hello-out", "hello-err", "marker-from-host"] {
            assert!(logs.contains(line), "{line} missing from logs: {logs}");
        }
        // The engine orders stdout and stderr lines by when it read each pipe, so which of
        // them is last is the engine's call: the tail is the last line of the whole log.
        let last = logs.trim_end().lines().last().unwrap_or_default().to_string();
        assert_eq!(fx.engine.logs(&spec.name, Some(1)).await.unwrap().trim(), last);
        // Following stops when the stop future completes: here, once the line has arrived
        // (bounded, should it never come).
        let mut followed = Watched::for_text("hello-out");
        let seen = followed.seen.clone();
        let stop = async move {
            let _ = tokio::time::timeout(Duration::from_secs(20), seen.notified()).await;
        };
        fx.engine
            .follow_logs_until(&spec.name, None, &mut followed, stop)
            .await
            .expect("follow");
        assert!(String::from_utf8_lossy(&followed.bytes).contains("hello-out"));

        // A sidecar in the server's network namespace.
        let sidecar = shell_spec(&fx, &image, "sidecar", SERVE, NetworkMode::Container(spec.name.clone()));
        fx.engine.create(&sidecar).await.expect("create sidecar");
        fx.engine.start(&sidecar.name).await.expect("start sidecar");
        let side = fx
            .engine
            .wait_running(&sidecar.name, Duration::from_secs(20))
            .await
            .expect("sidecar running");
        // Docker stores the netns owner by id, whatever name it was given.
        assert_eq!(side.network_mode, format!("container:{id}"));

        let listed: Vec<String> = fx
            .engine
            .list_labelled(&fx.run_filter())
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        let mut expected = vec![spec.name.clone(), sidecar.name.clone()];
        expected.sort();
        assert_eq!(listed, expected);

        let err = fx.engine.create(&spec).await.unwrap_err();
        assert!(matches!(err, EngineError::Conflict { .. }), "{err}");

        fx.engine
            .stop(&sidecar.name, Duration::from_secs(5))
            .await
            .expect("stop sidecar");
        fx.engine.remove(&sidecar.name, false).await.expect("remove sidecar");
        let renamed = format!("{}-old", spec.name);
        fx.engine.rename(&spec.name, &renamed).await.expect("rename");
        assert_eq!(fx.engine.container(&spec.name).await.unwrap(), None);
        fx.engine.stop(&renamed, Duration::from_secs(5)).await.expect("stop");
        fx.engine
            .stop(&renamed, Duration::from_secs(5))
            .await
            .expect("stopping a stopped container is fine");
        let stopped = fx.engine.container(&renamed).await.unwrap().expect("still there");
        assert_eq!(
            (stopped.running, stopped.status.as_str(), stopped.exit_code),
            (false, "exited", Some(0))
        );
        fx.engine.remove(&renamed, false).await.expect("remove");
        fx.engine
            .remove(&renamed, false)
            .await
            .expect("removing a removed container is fine");
        assert_eq!(fx.engine.container(&renamed).await.unwrap(), None);
        assert!(matches!(
            fx.engine.start(&renamed).await,
            Err(EngineError::NoSuchContainer { .. })
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_running_reports_a_crashing_container_with_its_logs() {
    if !require_merged_usr() {
        return;
    }
    with_fixture("crash", |fx| async move {
        let image = fx.image("run", &host_usr_image()).await;
        let none = NetworkMode::Named {
            name: "none".into(),
            ipv4: None,
        };
        let spec = shell_spec(&fx, &image, "crash", "echo boom-on-stderr >&2; exit 3", none.clone());
        fx.engine.create(&spec).await.expect("create");
        fx.engine.start(&spec.name).await.expect("start");
        let err = fx
            .engine
            .wait_running(&spec.name, Duration::from_secs(20))
            .await
            .unwrap_err();
        match &err {
            EngineError::NotRunning { exit_code, logs, .. } => {
                assert_eq!(*exit_code, Some(3));
                assert!(logs.contains("boom-on-stderr"), "{err}");
            }
            other => panic!("expected NotRunning, got {other}"),
        }

        let mut missing_image = shell_spec(&fx, "cozyboot-test/absent:nope", "absent", SERVE, none.clone());
        missing_image.binds.clear();
        assert!(matches!(
            fx.engine.create(&missing_image).await,
            Err(EngineError::NoSuchImage { .. })
        ));
        let mut missing_bind = shell_spec(&fx, &image, "nobind", SERVE, none);
        missing_bind.binds[0].host = "/nonexistent/cozyboot-test".into();
        let err = fx.engine.create(&missing_bind).await.unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/cozyboot-test"),
            "Docker must not invent bind sources: {err}"
        );
    })
    .await;
}

/// Output that says when `text` has been written to it.
struct Watched {
    bytes: Vec<u8>,
    text: &'static str,
    seen: Arc<tokio::sync::Notify>,
}

impl Watched {
    fn for_text(text: &'static str) -> Self {
        Watched {
            bytes: Vec::new(),
            text,
            seen: Arc::new(tokio::sync::Notify::new()),
        }
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.bytes.extend_from_slice(buf);
        if String::from_utf8_lossy(&self.bytes).contains(self.text) {
            // A permit is kept when nobody waits yet.
            self.seen.notify_one();
        }
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Polls `fetch` until `done` holds (logs reach Docker a moment after the process writes).
async fn eventually<F, Fut>(mut fetch: F, done: impl Fn(&str) -> bool) -> String
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<String, EngineError>>,
{
    let mut last = String::new();
    for _ in 0..50 {
        last = fetch().await.expect("fetch");
        if done(&last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}
