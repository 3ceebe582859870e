//! One test's engine and raw client, and the cleanup of everything the test created.

use super::*;

/// One test's engine, raw client and the objects to clean up afterwards.
#[derive(Clone)]
pub(super) struct Fixture {
    pub(super) engine: Engine,
    pub(super) docker: Docker,
    pub(super) run: String,
    pub(super) arch: &'static str,
    /// The engine's socket, as `DOCKER_HOST` or the default names it.
    pub(super) socket: PathBuf,
    pub(super) images: Arc<Mutex<Vec<String>>>,
    pub(super) networks: Arc<Mutex<Vec<String>>>,
}

impl Fixture {
    /// `None` when there is no engine to test against and the test may be skipped here
    /// (`support::guard`); where it must run, that fails the test.
    pub(super) async fn new(test: &str) -> Option<Fixture> {
        let socket = support::docker::engine_socket()?;
        let run = format!("{test}-{}", std::process::id());
        let labels = BTreeMap::from([
            (TEST_LABEL.to_owned(), "1".to_owned()),
            (RUN_LABEL.to_owned(), run.clone()),
        ]);
        let engine = Engine::connect_to(Some(&format!("unix://{}", socket.display())))
            .await
            .expect("connect")
            .with_extra_labels(labels);
        let docker = Docker::connect_with_unix(&socket.to_string_lossy(), 120, bollard::API_DEFAULT_VERSION)
            .expect("raw client")
            .negotiate_version()
            .await
            .expect("negotiate");
        let arch = engine.arch().await.expect("arch");
        Some(Fixture {
            engine,
            docker,
            run,
            arch,
            socket,
            images: Default::default(),
            networks: Default::default(),
        })
    }

    pub(super) fn name(&self, what: &str) -> String {
        format!("cozyboot-test-{}-{what}", self.run)
    }

    pub(super) fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (TEST_LABEL.to_owned(), "1".to_owned()),
            (RUN_LABEL.to_owned(), self.run.clone()),
        ])
    }

    pub(super) fn run_filter(&self) -> String {
        format!("{RUN_LABEL}={}", self.run)
    }

    /// Loads an image whose only layer holds `entries`; returns its tag.
    pub(super) async fn image(&self, what: &str, entries: &[Entry]) -> String {
        let tag = format!("cozyboot-test/{}:{what}", self.run);
        let archive = docker_save_archive(&tag, self.arch, &layer_tar(entries));
        let mut progress = self.docker.import_image(
            ImportImageOptionsBuilder::new().quiet(true).build(),
            bollard::body_full(archive.into()),
            None,
        );
        while let Some(message) = progress.next().await {
            message.expect("loading test image");
        }
        self.images.lock().unwrap().push(tag.clone());
        tag
    }

    /// An `--internal` bridge network (no route out), with a subnet so static IPs work.
    pub(super) async fn internal_network(&self) -> (String, Ipv4Addr) {
        let name = self.name("net");
        let third = 20 + (std::process::id() % 200) as u8;
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            internal: Some(true),
            labels: Some(self.labels().into_iter().collect()),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(format!("10.213.{third}.0/24")),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.docker
            .create_network(request)
            .await
            .expect("create internal network");
        self.networks.lock().unwrap().push(name.clone());
        (name, Ipv4Addr::new(10, 213, third, 10))
    }

    pub(super) async fn leftover_containers(&self) -> Vec<String> {
        let filters = HashMap::from([("label", vec![self.run_filter()])]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let found = self.docker.list_containers(Some(options)).await.expect("list");
        found.into_iter().flat_map(|c| c.names.unwrap_or_default()).collect()
    }

    async fn cleanup(&self) {
        let filters = HashMap::from([("label", vec![self.run_filter()])]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        for container in self.docker.list_containers(Some(options)).await.unwrap_or_default() {
            let id = container.id.unwrap_or_default();
            let force = RemoveContainerOptionsBuilder::new().force(true).build();
            let _ = self.docker.remove_container(&id, Some(force)).await;
        }
        let networks = std::mem::take(&mut *self.networks.lock().unwrap());
        for network in networks {
            let _ = self.docker.remove_network(&network).await;
        }
        let images = std::mem::take(&mut *self.images.lock().unwrap());
        for image in images {
            let force = RemoveImageOptionsBuilder::new().force(true).build();
            let _ = self.docker.remove_image(&image, Some(force), None).await;
        }
    }
}

/// Runs `body` and then the cleanup, whether the body passed, failed or panicked.
pub(super) async fn with_fixture<F, Fut>(test: &str, body: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(fixture) = Fixture::new(test).await else {
        return;
    };
    let outcome = AssertUnwindSafe(body(fixture.clone())).catch_unwind().await;
    fixture.cleanup().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
