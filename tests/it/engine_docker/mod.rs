//! `engine` against the real Docker Engine at /var/run/docker.sock.
//!
//! Test images are built here (docker-save archives loaded through the image import API, or
//! served by a tiny in-process registry), so no network and no registry are needed. Every
//! object a test creates carries `io.cozyboot.test=1` plus a per-test run label, and is
//! removed at the end of the test, also when it fails. Containers never get a real network:
//! they use `none`, an `--internal` network created here, or another container's netns.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::models::{ContainerCreateBody, Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    ContainerArchiveInfoOptionsBuilder, CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder,
    ImportImageOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use bollard::Docker;
use cozyboot::engine::{
    Bind, ContainerSpec, Engine, EngineError, ExtractError, FileSet, Limits, NetworkMode, PullEvent, Rule,
    TEMPORARY_LABEL,
};
use futures_util::{FutureExt, StreamExt};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

/// Which refusal an error must carry.
type RuleCheck = fn(&Rule) -> bool;

const SOCKET: &str = "/var/run/docker.sock";
const TEST_LABEL: &str = "io.cozyboot.test";
const RUN_LABEL: &str = "io.cozyboot.test-run";
const ASSET_DIR: &str = "/assets/talos/arm64";
const INSTALLER_DIR: &str = "/usr/install/arm64";

// ---- fixture ------------------------------------------------------------------------------

/// One test's engine, raw client and the objects to clean up afterwards.
#[derive(Clone)]
struct Fixture {
    engine: Engine,
    docker: Docker,
    run: String,
    arch: &'static str,
    images: Arc<Mutex<Vec<String>>>,
    networks: Arc<Mutex<Vec<String>>>,
}

impl Fixture {
    /// `None` (after printing why) when there is no engine to test against.
    async fn new(test: &str) -> Option<Fixture> {
        if !Path::new(SOCKET).exists() {
            println!("skipped: {SOCKET} is absent, no Docker Engine to test against");
            return None;
        }
        let run = format!("{test}-{}", std::process::id());
        let labels = BTreeMap::from([
            (TEST_LABEL.to_owned(), "1".to_owned()),
            (RUN_LABEL.to_owned(), run.clone()),
        ]);
        let engine = Engine::connect_to(Some(&format!("unix://{SOCKET}")))
            .await
            .expect("connect")
            .with_extra_labels(labels);
        let docker = Docker::connect_with_unix(SOCKET, 120, bollard::API_DEFAULT_VERSION)
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
            images: Default::default(),
            networks: Default::default(),
        })
    }

    fn name(&self, what: &str) -> String {
        format!("cozyboot-test-{}-{what}", self.run)
    }

    fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (TEST_LABEL.to_owned(), "1".to_owned()),
            (RUN_LABEL.to_owned(), self.run.clone()),
        ])
    }

    fn run_filter(&self) -> String {
        format!("{RUN_LABEL}={}", self.run)
    }

    /// Loads an image whose only layer holds `entries`; returns its tag.
    async fn image(&self, what: &str, entries: &[Entry]) -> String {
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
    async fn internal_network(&self) -> (String, Ipv4Addr) {
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

    async fn leftover_containers(&self) -> Vec<String> {
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
async fn with_fixture<F, Fut>(test: &str, body: F)
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

// ---- building images ------------------------------------------------------------------------

enum Entry {
    Dir(&'static str),
    File(&'static str, Vec<u8>),
    Symlink(&'static str, &'static str),
    Fifo(&'static str),
}

fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = Header::new_gnu();
        header.set_mtime(1_700_000_000);
        let (path, data): (&str, &[u8]) = match entry {
            Entry::Dir(path) => {
                header.set_entry_type(EntryType::Directory);
                header.set_mode(0o755);
                (path, b"")
            }
            Entry::File(path, data) => {
                header.set_entry_type(EntryType::Regular);
                // 0600 in the image: extraction must still produce world-readable files.
                header.set_mode(0o600);
                (path, data)
            }
            Entry::Symlink(path, target) => {
                header.set_entry_type(EntryType::Symlink);
                header.set_mode(0o777);
                header.set_link_name(target).unwrap();
                (path, b"")
            }
            Entry::Fifo(path) => {
                header.set_entry_type(EntryType::Fifo);
                header.set_mode(0o644);
                (path, b"")
            }
        };
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, path, data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn image_config(arch: &str, layer: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": { "Labels": { TEST_LABEL: "1" } },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(layer))] },
        "history": [{ "created": "2024-01-01T00:00:00Z", "created_by": "cozyboot engine_docker test" }],
    }))
    .unwrap()
}

/// A `docker save` archive with one image of one layer, tagged `tag`.
fn docker_save_archive(tag: &str, arch: &str, layer: &[u8]) -> Vec<u8> {
    let layer_dir = sha256_hex(layer);
    let config = image_config(arch, layer);
    let config_name = format!("{}.json", sha256_hex(&config));
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": [tag],
        "Layers": [format!("{layer_dir}/layer.tar")],
    }]))
    .unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut header = Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, path, data).unwrap();
    };
    add(&format!("{layer_dir}/layer.tar"), layer);
    add(&config_name, &config);
    add("manifest.json", &manifest);
    builder.into_inner().unwrap()
}

fn kernel() -> Vec<u8> {
    b"MZ fake arm64 kernel".repeat(1000)
}

fn initramfs() -> Vec<u8> {
    (0..300_000u32).map(|i| (i % 251) as u8).collect()
}

fn talos_assets_image() -> Vec<Entry> {
    vec![
        Entry::Dir("assets/"),
        Entry::Dir("assets/talos/"),
        Entry::Dir("assets/talos/arm64/"),
        Entry::File("assets/talos/arm64/vmlinuz", kernel()),
        Entry::File("assets/talos/arm64/initramfs.xz", initramfs()),
        // Also an installer path with other bytes, to prove the first candidate wins.
        Entry::Dir("usr/"),
        Entry::Dir("usr/install/"),
        Entry::Dir("usr/install/arm64/"),
        Entry::File("usr/install/arm64/vmlinuz", b"installer kernel".to_vec()),
    ]
}

fn installer_only_image() -> Vec<Entry> {
    vec![
        Entry::Dir("usr/"),
        Entry::Dir("usr/install/"),
        Entry::Dir("usr/install/arm64/"),
        Entry::File("usr/install/arm64/vmlinuz", kernel()),
        Entry::File("usr/install/arm64/initramfs.xz", initramfs()),
    ]
}

/// A root filesystem whose programs come from the host's /usr, bind-mounted read-only
/// (merged-/usr hosts: /bin, /lib, /lib64 are links into /usr).
fn host_usr_image() -> Vec<Entry> {
    vec![
        Entry::Dir("usr/"),
        Entry::Dir("data/"),
        Entry::Symlink("bin", "usr/bin"),
        Entry::Symlink("sbin", "usr/sbin"),
        Entry::Symlink("lib", "usr/lib"),
        Entry::Symlink("lib64", "usr/lib64"),
    ]
}

fn host_is_merged_usr() -> bool {
    let is_link = |p: &str| {
        std::fs::symlink_metadata(p)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
    };
    is_link("/bin") && is_link("/lib") && Path::new("/usr/bin/sh").exists()
}

fn every_path_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.symlink_metadata().unwrap().is_dir() {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out.sort();
    out
}

// ---- connecting ------------------------------------------------------------------------------

#[tokio::test]
async fn unreachable_socket_names_the_path_and_what_to_check() {
    let err = Engine::connect_to(Some("unix:///nonexistent.sock")).await.unwrap_err();
    assert!(matches!(err, EngineError::Unreachable { .. }), "{err}");
    let text = err.to_string();
    for needle in ["/nonexistent.sock", "daemon is running", "DOCKER_HOST"] {
        assert!(text.contains(needle), "missing {needle:?} in: {text}");
    }
}

#[tokio::test]
async fn refused_tcp_host_is_unreachable() {
    let err = Engine::connect_to(Some("tcp://127.0.0.1:1")).await.unwrap_err();
    match &err {
        EngineError::Unreachable { host, .. } => assert_eq!(host, "tcp://127.0.0.1:1"),
        other => panic!("expected Unreachable, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_negotiates_the_api_version_and_reads_the_arch() {
    with_fixture("connect", |fx| async move {
        let version = fx.engine.api_version();
        let (major, minor) = version.split_once('.').expect("x.y");
        assert_eq!(major, "1");
        assert!(minor.parse::<u32>().unwrap() >= 41, "negotiated {version}");
        let server = fx.docker.version().await.unwrap().api_version.unwrap();
        assert!(
            version == server || server.split('.').nth(1).unwrap().parse::<u32>().unwrap() > minor.parse().unwrap(),
            "client {version} must not be newer than the server's {server}"
        );
        assert!(["amd64", "arm64"].contains(&fx.arch));
        assert_eq!(fx.engine.host(), "unix:///var/run/docker.sock");
    })
    .await;
}

// ---- images --------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_inspect_finds_loaded_images_only() {
    with_fixture("image", |fx| async move {
        let tag = fx.image("inspect", &installer_only_image()).await;
        let info = fx.engine.image(&tag).await.unwrap().expect("loaded image");
        assert!(info.id.starts_with("sha256:"), "{info:?}");
        assert_eq!(info.architecture.as_deref(), Some(fx.arch));
        assert!(info.created.is_some());
        assert_eq!(fx.engine.image(&format!("{tag}-missing")).await.unwrap(), None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_errors_name_the_image() {
    with_fixture("pull-error", |fx| async move {
        let reference = "127.0.0.1:1/cozyboot/none:v1";
        let err = fx.engine.pull(reference, &mut |_| {}).await.unwrap_err();
        assert!(matches!(err, EngineError::Pull { .. }), "{err}");
        assert!(err.to_string().contains(reference), "{err}");

        let err = fx.engine.pull("not a reference", &mut |_| {}).await.unwrap_err();
        assert!(matches!(err, EngineError::InvalidReference { .. }), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_fetches_exactly_one_tag_from_a_registry_with_a_port() {
    with_fixture("pull", |fx| async move {
        let registry = registry::Registry::start(fx.arch, &["v1", "v2"]).await;
        let reference = format!("127.0.0.1:{}/cozyboot/pulltest:v1", registry.port);
        fx.images.lock().unwrap().push(reference.clone());
        let mut events: Vec<PullEvent> = Vec::new();
        fx.engine.pull(&reference, &mut |e| events.push(e)).await.expect("pull");

        assert!(
            events.iter().any(PullEvent::layer_done),
            "no finished layer in {events:?}"
        );
        let info = fx.engine.image(&reference).await.unwrap().expect("pulled");
        let digest = format!(
            "127.0.0.1:{}/cozyboot/pulltest@{}",
            registry.port, registry.manifest_digest
        );
        assert!(
            info.repo_digests.contains(&digest),
            "{:?} lacks {digest}",
            info.repo_digests
        );

        let requests = registry.requests();
        assert!(requests.iter().any(|r| r.ends_with("/manifests/v1")), "{requests:?}");
        assert!(
            !requests
                .iter()
                .any(|r| r.contains("/manifests/v2") || r.contains("/tags/list")),
            "{requests:?}"
        );
        let other_tag = format!("127.0.0.1:{}/cozyboot/pulltest:v2", registry.port);
        assert_eq!(
            fx.engine.image(&other_tag).await.unwrap(),
            None,
            "pulled more than the one tag"
        );

        let missing = format!("127.0.0.1:{}/cozyboot/pulltest:v9", registry.port);
        let err = fx.engine.pull(&missing, &mut |_| {}).await.unwrap_err();
        assert!(
            matches!(err, EngineError::Pull { .. }) && err.to_string().contains(&missing),
            "{err}"
        );
    })
    .await;
}

// ---- export_dir ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_dir_streams_the_first_existing_path_and_removes_its_container() {
    with_fixture("export", |fx| async move {
        let image = fx.image("assets", &talos_assets_image()).await;
        let staging = tempfile::tempdir().unwrap();
        let dest = staging.path().join("stage");
        let report = fx
            .engine
            .export_dir(&image, &[ASSET_DIR, INSTALLER_DIR], &dest, &Limits::default())
            .await
            .expect("export");

        assert_eq!(report.source_path.as_deref(), Some(ASSET_DIR));
        let mut names: Vec<_> = report.files.iter().map(|f| f.path.display().to_string()).collect();
        names.sort();
        assert_eq!(names, ["initramfs.xz", "vmlinuz"]);
        let vmlinuz = report.file("vmlinuz").unwrap();
        assert_eq!(
            (vmlinuz.size, vmlinuz.sha256.as_str()),
            (kernel().len() as u64, sha256_hex(&kernel()).as_str())
        );
        let initrd = report.file("initramfs.xz").unwrap();
        assert_eq!(
            (initrd.size, initrd.sha256.as_str()),
            (initramfs().len() as u64, sha256_hex(&initramfs()).as_str())
        );
        assert_eq!(std::fs::read(dest.join("vmlinuz")).unwrap(), kernel());
        let mode = std::fs::metadata(dest.join("initramfs.xz"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o644, "TFTP needs world-readable files");

        assert_eq!(
            fx.leftover_containers().await,
            Vec::<String>::new(),
            "temporary container left behind"
        );
        let temporaries = fx.engine.list_labelled(TEMPORARY_LABEL).await.unwrap();
        assert!(
            temporaries.iter().all(|c| c.labels.get(RUN_LABEL) != Some(&fx.run)),
            "{temporaries:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_dir_falls_back_to_the_installer_path() {
    with_fixture("fallback", |fx| async move {
        let image = fx.image("installer", &installer_only_image()).await;
        let staging = tempfile::tempdir().unwrap();
        let report = fx
            .engine
            .export_dir(&image, &[ASSET_DIR, INSTALLER_DIR], staging.path(), &Limits::default())
            .await
            .expect("export");
        assert_eq!(report.source_path.as_deref(), Some(INSTALLER_DIR));
        assert_eq!(report.file("vmlinuz").unwrap().sha256, sha256_hex(&kernel()));
        assert_eq!(report.files.len(), 2);

        let err = fx
            .engine
            .export_dir(
                &image,
                &["/nowhere/a", "/nowhere/b"],
                &staging.path().join("x"),
                &Limits::default(),
            )
            .await
            .unwrap_err();
        match &err {
            EngineError::NoCandidatePath { tried, .. } => assert_eq!(tried, &["/nowhere/a", "/nowhere/b"]),
            other => panic!("expected NoCandidatePath, got {other}"),
        }
        assert!(err.to_string().contains(&image), "{err}");
        assert_eq!(fx.leftover_containers().await, Vec::<String>::new());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_files_picks_the_first_layout_the_image_has() {
    with_fixture("layouts", |fx| async move {
        let mut entries = installer_only_image();
        // Half of an earlier layout (no initramfs beside it) must not be chosen, and a big
        // file beside the chosen pair must not be read.
        entries.extend([
            Entry::Dir("assets/"),
            Entry::Dir("assets/talos/"),
            Entry::Dir("assets/talos/arm64/"),
            Entry::File("assets/talos/arm64/vmlinuz", b"half a layout".to_vec()),
            Entry::File("usr/install/arm64/metal.raw.xz", vec![7u8; 4 * 1024 * 1024]),
        ]);
        let image = fx.image("layouts", &entries).await;
        let set = |dir: &str, optional: &[&str]| FileSet {
            required: vec![format!("{dir}/vmlinuz"), format!("{dir}/initramfs.xz")],
            optional: optional.iter().map(|o| format!("{dir}/{o}")).collect(),
        };
        let sets = [set(ASSET_DIR, &[]), set(INSTALLER_DIR, &["checksums.sha256"])];
        let staging = tempfile::tempdir().unwrap();
        let got = fx
            .engine
            .export_files(&image, &sets, &staging.path().join("s"), &Limits::default())
            .await
            .expect("export");
        assert_eq!(got.set, 1);
        assert_eq!(got.report.source_path.as_deref(), Some("/usr/install/arm64/vmlinuz"));
        // Copied side by side from two containers, reported in the set's order.
        assert_eq!(
            got.paths,
            ["/usr/install/arm64/vmlinuz", "/usr/install/arm64/initramfs.xz"]
        );
        let order: Vec<String> = got.report.files.iter().map(|f| f.path.display().to_string()).collect();
        assert_eq!(order, ["vmlinuz", "initramfs.xz"]);
        assert_eq!(got.report.file("vmlinuz").unwrap().sha256, sha256_hex(&kernel()));
        assert_eq!(
            got.report.file("initramfs.xz").unwrap().sha256,
            sha256_hex(&initramfs())
        );
        let names: Vec<String> = std::fs::read_dir(staging.path().join("s"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "only the pair was written: {names:?}");
        let pair = (kernel().len() + initramfs().len()) as u64;
        assert!(
            got.report.archive_bytes < pair + 16 * 1024,
            "read {} bytes for a {pair}-byte pair",
            got.report.archive_bytes
        );

        let err = fx
            .engine
            .export_files(
                &image,
                &[set("/nowhere", &[])],
                &staging.path().join("x"),
                &Limits::default(),
            )
            .await
            .unwrap_err();
        match &err {
            EngineError::NoCandidatePath { tried, .. } => {
                assert_eq!(tried, &["/nowhere/vmlinuz + /nowhere/initramfs.xz"])
            }
            other => panic!("expected NoCandidatePath, got {other}"),
        }
        assert_eq!(fx.leftover_containers().await, Vec::<String>::new());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_files_stops_the_other_copy_when_one_fails_and_removes_both_containers() {
    with_fixture("sidebyside", |fx| async move {
        // The kernel and a fifo where the initramfs should be: the two are copied side by
        // side from two containers, and the fifo's copy is refused.
        let image = fx
            .image(
                "fifo-pair",
                &[
                    Entry::Dir("assets/"),
                    Entry::Dir("assets/talos/"),
                    Entry::Dir("assets/talos/arm64/"),
                    Entry::File("assets/talos/arm64/vmlinuz", vec![3u8; 8 * 1024 * 1024]),
                    Entry::Fifo("assets/talos/arm64/initramfs.xz"),
                ],
            )
            .await;
        let set = FileSet {
            required: vec![format!("{ASSET_DIR}/vmlinuz"), format!("{ASSET_DIR}/initramfs.xz")],
            optional: vec![],
        };
        let staging = tempfile::tempdir().unwrap();
        let err = fx
            .engine
            .export_files(&image, &[set], &staging.path().join("s"), &Limits::default())
            .await
            .unwrap_err();
        match &err {
            EngineError::Extract {
                source: ExtractError::Refused { rule, .. },
                path,
                ..
            } => {
                assert_eq!(*rule, Rule::Fifo, "{err}");
                assert_eq!(path, &format!("{ASSET_DIR}/initramfs.xz"));
            }
            other => panic!("expected the fifo refused, got {other}"),
        }
        assert_eq!(
            fx.leftover_containers().await,
            Vec::<String>::new(),
            "a temporary container was left after the failed copy"
        );

        // Both containers fail to be created: one error, nothing left.
        let absent = "cozyboot-test/absent:nope";
        let set = FileSet {
            required: vec![format!("{ASSET_DIR}/vmlinuz")],
            optional: vec![],
        };
        let err = fx
            .engine
            .export_files(absent, &[set], &staging.path().join("t"), &Limits::default())
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::NoSuchImage { .. }), "{err}");
        assert_eq!(fx.leftover_containers().await, Vec::<String>::new());
    })
    .await;
}

/// An upstream fact `export_files` is built on (docs/performance.md): dockerd answers one
/// archive request of a container at a time, holding the container's lock until the archive
/// has been read to its end, so copies side by side need a container each. Should an engine
/// stop doing so, this fails and the second container can go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockerd_answers_one_archive_request_of_a_container_at_a_time() {
    with_fixture("archivelock", |fx| async move {
        let path = format!("{ASSET_DIR}/initramfs.xz");
        // Larger than the socket's buffers, so that dockerd is still sending.
        let image = fx
            .image(
                "lock",
                &[
                    Entry::Dir("assets/"),
                    Entry::Dir("assets/talos/"),
                    Entry::Dir("assets/talos/arm64/"),
                    Entry::File("assets/talos/arm64/initramfs.xz", vec![5u8; 16 * 1024 * 1024]),
                ],
            )
            .await;
        let mut ids = Vec::new();
        for what in ["lock-a", "lock-b"] {
            let body = ContainerCreateBody {
                image: Some(image.clone()),
                cmd: Some(vec!["/never-started".to_owned()]),
                labels: Some(fx.labels().into_iter().collect()),
                ..Default::default()
            };
            let options = CreateContainerOptionsBuilder::new().name(&fx.name(what)).build();
            ids.push(
                fx.docker
                    .create_container(Some(options), body)
                    .await
                    .expect("create")
                    .id,
            );
        }
        let stat = |id: &str| {
            let options = ContainerArchiveInfoOptionsBuilder::new().path(&path).build();
            let (docker, id) = (fx.docker.clone(), id.to_owned());
            async move { docker.get_container_archive_info(&id, Some(options)).await }
        };
        let options = DownloadFromContainerOptionsBuilder::new().path(&path).build();
        let mut archive = fx.docker.download_from_container(&ids[0], Some(options));
        archive.next().await.expect("a first piece").expect("the archive");
        assert!(
            tokio::time::timeout(Duration::from_millis(1500), stat(&ids[0]))
                .await
                .is_err(),
            "dockerd answered about a container while its archive was still being read"
        );
        tokio::time::timeout(Duration::from_secs(10), stat(&ids[1]))
            .await
            .expect("the other container is answered at once")
            .expect("stat");
        drop(archive);
        tokio::time::timeout(Duration::from_secs(10), stat(&ids[0]))
            .await
            .expect("answered once the archive is closed")
            .expect("stat");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_dir_refuses_hostile_images_and_writes_nothing_outside_staging() {
    with_fixture("hostile", |fx| async move {
        let symlink = fx
            .image(
                "symlink",
                &[
                    Entry::Dir("assets/"),
                    Entry::Dir("assets/talos/"),
                    Entry::Dir("assets/talos/arm64/"),
                    Entry::File("assets/talos/arm64/initramfs.xz", initramfs()),
                    Entry::Symlink("assets/talos/arm64/vmlinuz", "/etc/passwd"),
                ],
            )
            .await;
        let fifo = fx
            .image(
                "fifo",
                &[
                    Entry::Dir("assets/"),
                    Entry::Dir("assets/talos/"),
                    Entry::Dir("assets/talos/arm64/"),
                    Entry::Fifo("assets/talos/arm64/initramfs.xz"),
                    Entry::File("assets/talos/arm64/vmlinuz", kernel()),
                ],
            )
            .await;
        let cases: [(&str, RuleCheck); 2] = [
            (
                &symlink,
                |r| matches!(r, Rule::Symlink { target } if target == "/etc/passwd"),
            ),
            (&fifo, |r| *r == Rule::Fifo),
        ];
        for (image, expected_rule) in cases {
            let root = tempfile::tempdir().unwrap();
            let staging = root.path().join("staging");
            let err = fx
                .engine
                .export_dir(image, &[ASSET_DIR], &staging, &Limits::default())
                .await
                .unwrap_err();
            match &err {
                EngineError::Extract {
                    source: ExtractError::Refused { entry, rule },
                    path,
                    ..
                } => {
                    assert!(expected_rule(rule), "{err}");
                    assert_eq!(path, ASSET_DIR);
                    assert!(entry.starts_with("arm64/"), "{err}");
                }
                other => panic!("expected a refused entry, got {other}"),
            }
            for path in every_path_under(root.path()) {
                assert!(path.starts_with(&staging), "wrote outside staging: {}", path.display());
                let kind = path.symlink_metadata().unwrap().file_type();
                assert!(
                    kind.is_file() || kind.is_dir(),
                    "materialised {kind:?} at {}",
                    path.display()
                );
            }
            assert_eq!(
                fx.leftover_containers().await,
                Vec::<String>::new(),
                "temporary container left after failure"
            );
        }

        let limits = Limits {
            max_file_bytes: 1000,
            ..Limits::default()
        };
        let image = fx.image("big", &installer_only_image()).await;
        let staging = tempfile::tempdir().unwrap();
        let err = fx
            .engine
            .export_dir(&image, &[INSTALLER_DIR], staging.path(), &limits)
            .await
            .unwrap_err();
        let rule = match &err {
            EngineError::Extract { source, .. } => source.rule(),
            _ => None,
        };
        assert!(matches!(rule, Some(Rule::FileTooLarge { .. })), "{err}");
        assert_eq!(fx.leftover_containers().await, Vec::<String>::new());

        let absent = "cozyboot-test/absent:nope";
        let err = fx
            .engine
            .export_dir(absent, &[ASSET_DIR], Path::new("/nonexistent"), &limits)
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::NoSuchImage { .. }), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_dir_cancelled_midway_leaves_no_container() {
    with_fixture("cancel", |fx| async move {
        let image = fx.image("assets", &talos_assets_image()).await;
        // Cancel at different points: during create, during the download, during removal.
        let limits = Limits::default();
        for delay_ms in [0, 1, 2, 5, 10, 20, 40, 80] {
            let staging = tempfile::tempdir().unwrap();
            let export = fx.engine.export_dir(&image, &[ASSET_DIR], staging.path(), &limits);
            let _ = tokio::time::timeout(Duration::from_millis(delay_ms), export).await;
        }
        let mut left = fx.leftover_containers().await;
        for _ in 0..50 {
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            left = fx.leftover_containers().await;
        }
        assert_eq!(
            left,
            Vec::<String>::new(),
            "cancelled extractions left containers behind"
        );
    })
    .await;
}

// ---- containers ----------------------------------------------------------------------------------

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
    if !host_is_merged_usr() {
        println!("skipped: the container tests borrow the host's merged /usr, which this host lacks");
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
    if !host_is_merged_usr() {
        println!("skipped: the container tests borrow the host's merged /usr, which this host lacks");
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

// ---- a registry in the test process ------------------------------------------------------

/// The smallest Docker registry v2 that `docker pull` accepts: one repository, fixed tags,
/// uncompressed layer (the engine sniffs compression). dockerd runs in the host network
/// namespace and treats 127.0.0.0/8 registries as plain-HTTP, so nothing leaves the host.
mod registry {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    pub struct Registry {
        pub port: u16,
        pub manifest_digest: String,
        requests: Arc<Mutex<Vec<String>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Registry {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    struct Content {
        tags: Vec<String>,
        manifest: Vec<u8>,
        blobs: HashMap<String, Vec<u8>>,
    }

    impl Registry {
        pub async fn start(arch: &str, tags: &[&str]) -> Registry {
            let layer = layer_tar(&[Entry::Dir("etc/"), Entry::File("etc/cozyboot-pulled", b"yes".to_vec())]);
            let config = image_config(arch, &layer);
            let digest = |bytes: &[u8]| format!("sha256:{}", sha256_hex(bytes));
            let manifest = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "size": config.len(), "digest": digest(&config),
                },
                "layers": [{
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": layer.len(), "digest": digest(&layer),
                }],
            }))
            .unwrap();
            let manifest_digest = digest(&manifest);
            let content = Arc::new(Content {
                tags: tags.iter().map(|t| (*t).to_owned()).collect(),
                manifest,
                blobs: HashMap::from([(digest(&config), config), (digest(&layer), layer)]),
            });
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let requests: Arc<Mutex<Vec<String>>> = Default::default();
            let log = requests.clone();
            let task = tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    tokio::spawn(serve(socket, content.clone(), log.clone()));
                }
            });
            Registry {
                port,
                manifest_digest,
                requests,
                task,
            }
        }

        pub fn requests(&self) -> Vec<String> {
            self.requests.lock().unwrap().clone()
        }
    }

    async fn serve(socket: tokio::net::TcpStream, content: Arc<Content>, log: Arc<Mutex<Vec<String>>>) {
        let (read, mut write) = socket.into_split();
        let mut reader = BufReader::new(read);
        loop {
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                return;
            }
            // Skip headers; pulls send no request bodies.
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).await.unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
            }
            let mut parts = request_line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            log.lock().unwrap().push(format!("{method} {path}"));
            let (status, content_type, body, digest) = respond(&content, path);
            let mut head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
                 Docker-Distribution-API-Version: registry/2.0\r\n",
                body.len()
            );
            if let Some(digest) = digest {
                head.push_str(&format!("Docker-Content-Digest: {digest}\r\n"));
            }
            head.push_str("\r\n");
            let mut out = head.into_bytes();
            if method != "HEAD" {
                out.extend_from_slice(&body);
            }
            if write.write_all(&out).await.is_err() {
                return;
            }
        }
    }

    fn respond(content: &Content, path: &str) -> (&'static str, &'static str, Vec<u8>, Option<String>) {
        let not_found = |code: &str| {
            let body = format!(r#"{{"errors":[{{"code":"{code}","message":"not here"}}]}}"#).into_bytes();
            ("404 Not Found", "application/json", body, None)
        };
        let repo = "/v2/cozyboot/pulltest/";
        if path == "/v2/" {
            return ("200 OK", "application/json", b"{}".to_vec(), None);
        }
        let Some(rest) = path.strip_prefix(repo) else {
            return not_found("NAME_UNKNOWN");
        };
        if let Some(reference) = rest.strip_prefix("manifests/") {
            let digest = format!("sha256:{}", sha256_hex(&content.manifest));
            if content.tags.iter().any(|t| t == reference) || reference == digest {
                let media = "application/vnd.docker.distribution.manifest.v2+json";
                return ("200 OK", media, content.manifest.clone(), Some(digest));
            }
            return not_found("MANIFEST_UNKNOWN");
        }
        if let Some(digest) = rest.strip_prefix("blobs/") {
            if let Some(blob) = content.blobs.get(digest) {
                return (
                    "200 OK",
                    "application/octet-stream",
                    blob.clone(),
                    Some(digest.to_owned()),
                );
            }
            return not_found("BLOB_UNKNOWN");
        }
        not_found("UNSUPPORTED")
    }
}
