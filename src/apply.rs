//! `up`: observe, plan, then carry the plan out — new before old, old back on failure.

use crate::arch::{Arch, Bootloader};
use crate::engine::docker::{ContainerInfo, Engine, EngineError};
use crate::engine::extract::Limits;
use crate::engine::spec::{ContainerSpec, NetworkMode};
use crate::error::Error;
use crate::pe::{self, PeMachine};
use crate::plan::{self, Action, Desired, Observed, ObservedContainer};
use crate::ports::{self, Proto};
use crate::progress::{ProgressMode, PullProgress};
use crate::render::{self, containers, containers::Role, talos};
use crate::settings::{DhcpMode, Network, Settings};
use crate::state::{self, AssetRecord, CopiedFrom, FileRecord, State};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The x86 iPXE files the dnsmasq image ships in its TFTP root.
const IMAGE_TFTP_ROOT: &str = "/var/lib/tftpboot";
const DNSMASQ_STARTED: &str = "started, version";

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Unreachable { .. } => Error::DockerUnreachable(e.to_string()),
            other => Error::Failed(other.to_string()),
        }
    }
}

/// What `up` did (or, with `--dry-run`, would do).
#[derive(Debug, Serialize)]
pub struct UpReport {
    pub dry_run: bool,
    pub engine: EngineFacts,
    /// The plan: pulls first, then the rest as planned after pulling.
    pub actions: Vec<Action>,
    /// One line per thing done, for people.
    pub done: Vec<String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct EngineFacts {
    pub host: String,
    pub api_version: String,
    pub arch: String,
}

/// Everything `up` needs to know before it plans.
struct Context<'a> {
    s: &'a Settings,
    engine: &'a Engine,
    dnsmasq_image: String,
    files: Vec<render::File>,
    specs: [ContainerSpec; 2],
}

pub async fn up(s: &Settings, engine: &Engine, dry_run: bool, progress: ProgressMode) -> Result<UpReport, Error> {
    let arch = engine.arch().await?;
    let dnsmasq_image = s.dnsmasq_image_for(arch);
    let rendered = render::render(s);
    let specs = containers::specs(s, &rendered, &dnsmasq_image);
    let cx = Context {
        s,
        engine,
        dnsmasq_image,
        files: rendered.files(),
        specs,
    };
    let mut report = UpReport {
        dry_run,
        engine: EngineFacts {
            host: engine.host().to_string(),
            api_version: engine.api_version(),
            arch: arch.to_string(),
        },
        actions: Vec::new(),
        done: Vec::new(),
        warnings: Vec::new(),
    };

    check_arm64_bootloader(s)?;
    let desired = desired(&cx);
    let observed = observe(&cx).await?;
    let pulls = plan::pulls(&desired, &observed).map_err(|e| Error::Failed(e.0))?;
    if dry_run {
        report.actions = pulls;
        report.actions.extend(plan::plan(&desired, &observed));
        return Ok(report);
    }

    fs::create_dir_all(state::dir(&s.data_dir)).map_err(|e| {
        Error::Failed(format!(
            "cannot create the data dir {}: {e}\n  fix: run as root or choose a writable --data-dir",
            s.data_dir.display()
        ))
    })?;
    let _lock = lock(&s.data_dir)?;

    let mut pull_progress = PullProgress::new(progress);
    for action in &pulls {
        let Action::Pull { image, reason } = action else { continue };
        let result = engine
            .pull(image, &mut |event| pull_progress.on_event(image, event))
            .await;
        match result {
            Ok(()) => {
                let before = observed.images.get(image).cloned().flatten();
                let after = engine.image(image).await?.map(|i| i.id);
                report.done.push(if before.is_some() && before == after {
                    format!("checked {image}: up to date")
                } else {
                    format!("pulled {image}")
                });
            }
            // A moving tag that cannot be re-checked still has a usable local copy.
            Err(e) if observed.images.get(image).is_some_and(Option::is_some) => report
                .warnings
                .push(format!("could not re-check {image} ({reason}); using the local image: {e}")),
            Err(e) => {
                pull_progress.finish();
                return Err(Error::Failed(format!(
                    "{e}\n  nothing was changed: running containers and assets are as they were\n  fix: check the image name and tag (--registry, --tag) and that the registry is reachable"
                )));
            }
        }
    }
    pull_progress.finish();
    report.actions = pulls;

    // Pulling may have brought new image content: plan the rest against what is there now.
    let observed = observe(&cx).await?;
    let actions = plan::plan(&desired, &observed);
    preflight_ports(&cx, &actions)?;
    let mut st = observed.state.clone();
    for action in &actions {
        if progress != ProgressMode::Quiet && !matches!(action, Action::Keep { .. }) {
            eprintln!("{}", action.describe());
        }
        let line = execute(&cx, action, &observed, &mut st).await?;
        report.done.extend(line);
    }
    report.actions.extend(actions);
    Ok(report)
}

fn desired(cx: &Context<'_>) -> Desired {
    let s = cx.s;
    let files_to_write = cx
        .files
        .iter()
        .filter(|f| fs::read(s.data_dir.join(&f.path)).map_or(true, |old| old != f.content))
        .map(|f| f.path.clone())
        .collect();
    Desired {
        pull: s.pull,
        images: vec![s.talos_image(), s.matchbox_image(), cx.dnsmasq_image.clone()],
        talos_image: s.talos_image(),
        dnsmasq_image: cx.dnsmasq_image.clone(),
        arches: s.arches.clone(),
        x86_bootloaders: s.serves(Arch::Amd64),
        arm64_source: s.ipxe_arm64.clone().filter(|_| s.serves(Arch::Arm64)),
        certificates: s.rpc_port.is_some(),
        containers: vec![
            (Role::Matchbox, cx.specs[0].clone()),
            (Role::Dnsmasq, cx.specs[1].clone()),
        ],
        dnsmasq_follows_matchbox: matches!(cx.specs[1].network, NetworkMode::Container(_)),
        files_to_write,
    }
}

async fn observe(cx: &Context<'_>) -> Result<Observed, Error> {
    let s = cx.s;
    let mut images = BTreeMap::new();
    for image in [s.talos_image(), s.matchbox_image(), cx.dnsmasq_image.clone()] {
        let id = cx.engine.image(&image).await?.map(|i| i.id);
        images.insert(image, id);
    }
    let st = state::load(&s.data_dir);
    let assets = s.assets_dir();
    let assets_present = st
        .assets
        .iter()
        .map(|(arch, rec)| {
            let dir = assets.join("talos").join(arch);
            (arch.clone(), rec.files.iter().all(|f| f.present_in(&dir)))
        })
        .collect();
    let x86_bootloaders_present = st
        .x86_bootloaders
        .as_ref()
        .is_some_and(|r| r.files.iter().all(|f| f.present_in(&assets)));
    let arm64_bootloader_present = st
        .arm64_bootloader
        .as_ref()
        .is_some_and(|f| f.present_in(&assets));
    let mut containers = BTreeMap::new();
    for spec in &cx.specs {
        if let Some(c) = cx.engine.container(&spec.name).await? {
            containers.insert(spec.name.clone(), observed_container(c));
        }
    }
    Ok(Observed {
        images,
        state: st,
        assets_present,
        x86_bootloaders_present,
        arm64_bootloader_present,
        certificates_present: crate::tls::present(&containers::tls_dir(s)),
        containers,
    })
}

fn observed_container(c: ContainerInfo) -> ObservedContainer {
    ObservedContainer {
        id: c.id,
        image_id: c.image_id,
        running: c.running,
        labels: c.labels,
        cmd: c.cmd,
        image: c.image,
    }
}

/// With arm64 served, a bootloader must come from somewhere, and must really be arm64.
fn check_arm64_bootloader(s: &Settings) -> Result<(), Error> {
    if !s.serves(Arch::Arm64) {
        return Ok(());
    }
    let installed = s.assets_dir().join(&s.bootloaders.arm64);
    if s.ipxe_arm64.is_none() && !installed.exists() {
        return Err(Error::Failed(format!(
            "no arm64 iPXE binary: ARM64 UEFI clients (DHCP arch 11) would be offered {} and find nothing\n  \
             fix: pass --ipxe-arm64 PATH|URL with an arm64 iPXE EFI build, e.g. /usr/lib/ipxe/ipxe-arm64.efi from Debian trixie's `ipxe` package, \
             or an upstream bin-arm64-efi/ipxe.efi build; or place it at {}",
            s.bootloaders.arm64,
            installed.display()
        )));
    }
    if let Some(source) = s.ipxe_arm64.as_deref().filter(|src| !is_url(src)) {
        check_pe(Path::new(source), Bootloader::Arm64Efi)?;
    } else if s.ipxe_arm64.is_none() {
        check_pe(&installed, Bootloader::Arm64Efi)?;
    }
    Ok(())
}

fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// Refuses a bootloader built for another architecture: the guide's classic silent failure.
fn check_pe(path: &Path, bootloader: Bootloader) -> Result<(), Error> {
    let machine = pe::machine_of_file(path).map_err(|e| {
        Error::Failed(format!(
            "{} is not a usable {} iPXE EFI binary: {e}\n  fix: give an iPXE EFI build for {}",
            path.display(),
            bootloader.arch(),
            bootloader.arch()
        ))
    })?;
    let wanted = match bootloader.arch() {
        Arch::Arm64 => PeMachine::Arm64,
        Arch::Amd64 => PeMachine::X86_64,
    };
    if machine != wanted {
        return Err(Error::Failed(format!(
            "{} is built for {machine:?}, but it would be served to {} clients, whose firmware cannot run it\n  fix: give an iPXE EFI build for {}",
            path.display(),
            bootloader.arch(),
            bootloader.arch()
        )));
    }
    Ok(())
}

/// One `up` at a time per data dir.
fn lock(data_dir: &Path) -> Result<fs::File, Error> {
    let path = state::dir(data_dir).join("lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Failed(format!("cannot open the lock file {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Failed(format!(
            "another `cozyboot up` is working on {} (lock {} is held)\n  fix: wait for it to finish, then run again",
            data_dir.display(),
            path.display()
        ))),
        Err(fs::TryLockError::Error(e)) => Err(Error::Failed(format!("cannot lock {}: {e}", path.display()))),
    }
}

/// On the host network, a port held by something else makes the new container crash-loop;
/// say who holds it before touching anything. Ports held by the container being replaced
/// are fine: it is stopped first.
fn preflight_ports(cx: &Context<'_>, actions: &[Action]) -> Result<(), Error> {
    if cx.s.network != Network::Host {
        return Ok(());
    }
    let mut clashes = Vec::new();
    for action in actions {
        let Action::CreateContainer { role, .. } = action else { continue };
        let wanted: Vec<(Proto, u16)> = match role {
            Role::Matchbox => std::iter::once((Proto::Tcp, cx.s.http_port))
                .chain(cx.s.rpc_port.map(|p| (Proto::Tcp, p)))
                .collect(),
            Role::Dnsmasq => {
                let mut p = vec![(Proto::Udp, 67), (Proto::Udp, 69)];
                if cx.s.dhcp == DhcpMode::Proxy {
                    p.push((Proto::Udp, 4011));
                }
                p
            }
        };
        for (proto, port) in wanted {
            if let Some(message) = ports::in_use(proto, port) {
                clashes.push(format!("{} needs {message}", role.name()));
            }
        }
    }
    if clashes.is_empty() {
        return Ok(());
    }
    Err(Error::Failed(format!(
        "{}\n  nothing was started\n  fix: stop what holds the port, or choose another --http-port",
        clashes.join("\n")
    )))
}

async fn execute(cx: &Context<'_>, action: &Action, observed: &Observed, st: &mut State) -> Result<Option<String>, Error> {
    let s = cx.s;
    Ok(match action {
        Action::Pull { .. } => None,
        Action::ExtractAssets { arch, image, .. } => {
            let id = observed.images.get(image).cloned().flatten().unwrap_or_default();
            let record = extract_assets(cx, *arch, image, &id).await?;
            let bytes: u64 = record.files.iter().map(|f| f.size).sum();
            let line = format!(
                "extracted {} files {} ({arch}, from {})",
                record.files.len(),
                human_bytes(bytes),
                record.source
            );
            st.assets.insert(arch.name().to_string(), record);
            save(s, st)?;
            Some(line)
        }
        Action::CopyX86Bootloaders { image, .. } => {
            let id = observed.images.get(image).cloned().flatten().unwrap_or_default();
            let record = copy_x86_bootloaders(cx, image, &id).await?;
            let line = format!("copied {} out of {image}", names(&record.files));
            st.x86_bootloaders = Some(record);
            save(s, st)?;
            Some(line)
        }
        Action::InstallArm64Bootloader { source, .. } => {
            let record = install_arm64_bootloader(s, source).await?;
            let line = format!("installed the arm64 iPXE binary as {} from {source}", record.name);
            st.arm64_bootloader = Some(record);
            save(s, st)?;
            Some(line)
        }
        Action::GenerateCertificates => {
            crate::tls::generate(&containers::tls_dir(s), s.server_ip).map_err(Error::Failed)?;
            Some(format!("generated gRPC TLS certificates in {}", containers::tls_dir(s).display()))
        }
        Action::WriteConfig { .. } => {
            let (written, removed) = render::write_tree(&s.data_dir, &cx.files).map_err(|e| {
                Error::Failed(format!("writing the matchbox config to {}: {e}", s.data_dir.display()))
            })?;
            let changed = written.iter().filter(|w| w.changed).count();
            Some(format!("wrote {changed} matchbox file(s), removed {}", removed.len()))
        }
        Action::CreateContainer { role, .. } => {
            let spec = spec_for(cx, *role);
            cx.engine.create(spec).await?;
            if let Err(e) = start_and_wait(cx, *role, &spec.name).await {
                let _ = cx.engine.remove(&spec.name, true).await;
                return Err(e);
            }
            Some(format!("started {}", spec.name))
        }
        Action::ReplaceContainer { role, reason, .. } => {
            replace(cx, *role, observed).await?;
            Some(format!("replaced {} ({reason})", spec_for(cx, *role).name))
        }
        Action::Keep { name, .. } => Some(format!("unchanged: {name}")),
    })
}

fn save(s: &Settings, st: &State) -> Result<(), Error> {
    state::save(&s.data_dir, st).map_err(|e| Error::Failed(format!("recording state in {}: {e}", s.data_dir.display())))
}

fn spec_for<'a>(cx: &'a Context<'_>, role: Role) -> &'a ContainerSpec {
    match role {
        Role::Matchbox => &cx.specs[0],
        Role::Dnsmasq => &cx.specs[1],
    }
}

/// Extracts into a staging dir beside the target, checks it, then swaps it in; the previous
/// assets stay in place until the new ones are complete.
async fn extract_assets(cx: &Context<'_>, arch: Arch, image: &str, image_id: &str) -> Result<AssetRecord, Error> {
    let talos_dir = cx.s.assets_dir().join("talos");
    fs::create_dir_all(&talos_dir)?;
    let staging = staging_dir(cx.s, &format!("assets-{arch}"))?;
    let candidates = [format!("/assets/talos/{arch}"), format!("/usr/install/{arch}")];
    let candidates: Vec<&str> = candidates.iter().map(String::as_str).collect();
    let report = match cx.engine.export_dir(image, &candidates, &staging, &Limits::default()).await {
        Ok(r) => r,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(Error::Failed(format!(
                "{e}\n  nothing was changed: the previous assets are in place\n  fix: use a variant image that holds /assets/talos/{arch}/ or /usr/install/{arch}/ with {} and {}",
                talos::KERNEL,
                talos::INITRAMFS
            )));
        }
    };
    for wanted in [talos::KERNEL, talos::INITRAMFS] {
        let ok = report.file(wanted).is_some_and(|f| f.size > 0);
        if !ok {
            let _ = fs::remove_dir_all(&staging);
            return Err(Error::Failed(format!(
                "{image} has no non-empty {wanted} in {}\n  nothing was changed: the previous assets are in place",
                report.source_path.as_deref().unwrap_or("?")
            )));
        }
    }
    swap_in(&staging, &talos_dir.join(arch.asset_dir()))?;
    Ok(AssetRecord {
        image: image.to_string(),
        image_id: image_id.to_string(),
        source: report.source_path.clone().unwrap_or_default(),
        files: report
            .files
            .iter()
            .map(|f| FileRecord {
                name: f.path.display().to_string(),
                size: f.size,
                sha256: f.sha256.clone(),
                source: None,
            })
            .collect(),
        extracted_at: state::now(),
    })
}

/// A fresh, empty staging path under cozyboot's own folder in the data dir (same filesystem
/// as the target, so the swap is a rename). Leftovers of a killed run are removed first.
fn staging_dir(s: &Settings, name: &str) -> Result<PathBuf, Error> {
    let dir = state::dir(&s.data_dir).join(format!("staging-{name}"));
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    Ok(dir)
}

/// Exchanges `new` and `target` in one step (renameat2 RENAME_EXCHANGE), so readers see the
/// old tree or the new one, never a missing one; then removes the old tree.
fn swap_in(new: &Path, target: &Path) -> Result<(), Error> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    if !target.exists() {
        fs::rename(new, target)?;
        return Ok(());
    }
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|e| Error::Failed(e.to_string()));
    let (a, b) = (c(new)?, c(target)?);
    // SAFETY: both are valid NUL-terminated paths; AT_FDCWD resolves them like rename(2).
    let rc = unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) };
    if rc != 0 {
        return Err(Error::Failed(format!(
            "swapping {} into place: {}",
            target.display(),
            std::io::Error::last_os_error()
        )));
    }
    // `new` now holds the previous tree.
    fs::remove_dir_all(new)?;
    Ok(())
}

async fn copy_x86_bootloaders(cx: &Context<'_>, image: &str, image_id: &str) -> Result<CopiedFrom, Error> {
    let s = cx.s;
    let staging = staging_dir(s, "tftpboot")?;
    let result = cx
        .engine
        .export_dir(image, &[IMAGE_TFTP_ROOT], &staging, &Limits::default())
        .await;
    let outcome = (|| {
        let report = result?;
        let mut files = Vec::new();
        // (file in the image, name in our TFTP root, must be a PE of this arch)
        let wanted = [
            ("ipxe.efi", s.bootloaders.x86_64.clone(), Some(Bootloader::X86_64Efi)),
            ("undionly.kpxe", s.bootloaders.bios.clone(), None),
            // Some dnsmasq versions append `.0` to PXE basenames; keep that name working too.
            ("undionly.kpxe", format!("{}.0", s.bootloaders.bios), None),
        ];
        for (from, to, pe_arch) in wanted {
            let found = report.file(from).ok_or_else(|| {
                Error::Failed(format!("{image} has no {IMAGE_TFTP_ROOT}/{from}\n  fix: use the poseidon dnsmasq image or one that ships iPXE in {IMAGE_TFTP_ROOT}"))
            })?;
            let src = staging.join(&found.path);
            if let Some(b) = pe_arch {
                check_pe(&src, b)?;
            }
            let dest = s.assets_dir().join(&to);
            let tmp = s.assets_dir().join(format!(".{to}.cozyboot-new"));
            fs::copy(&src, &tmp)?;
            fs::rename(&tmp, &dest)?;
            files.push(FileRecord {
                name: to,
                size: found.size,
                sha256: found.sha256.clone(),
                source: Some(format!("{image}:{IMAGE_TFTP_ROOT}/{from}")),
            });
        }
        Ok::<_, Error>(files)
    })();
    let _ = fs::remove_dir_all(&staging);
    Ok(CopiedFrom {
        image: image.to_string(),
        image_id: image_id.to_string(),
        files: outcome?,
    })
}

async fn install_arm64_bootloader(s: &Settings, source: &str) -> Result<FileRecord, Error> {
    fs::create_dir_all(s.assets_dir())?;
    let tmp = s.assets_dir().join(format!(".{}.cozyboot-new", s.bootloaders.arm64));
    let result = async {
        if is_url(source) {
            download(source, &tmp).await?;
        } else {
            fs::copy(source, &tmp).map_err(|e| {
                Error::Failed(format!("cannot read the arm64 iPXE binary {source}: {e}\n  fix: check the path given to --ipxe-arm64"))
            })?;
        }
        fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        check_pe(&tmp, Bootloader::Arm64Efi)?;
        let bytes = fs::read(&tmp)?;
        fs::rename(&tmp, s.assets_dir().join(&s.bootloaders.arm64))?;
        Ok::<_, Error>(FileRecord {
            name: s.bootloaders.arm64.clone(),
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
            source: Some(source.to_string()),
        })
    }
    .await;
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

async fn download(url: &str, dest: &Path) -> Result<(), Error> {
    use futures_util::StreamExt;
    use std::io::Write;
    let fail = |e: String| Error::Failed(format!("downloading {url}: {e}\n  fix: check the URL, or download it yourself and pass the path"));
    let response = reqwest::get(url).await.map_err(|e| fail(e.to_string()))?;
    if !response.status().is_success() {
        return Err(fail(format!("HTTP {}", response.status())));
    }
    let bar = indicatif::ProgressBar::with_draw_target(response.content_length(), indicatif::ProgressDrawTarget::stderr());
    let mut file = fs::File::create(dest)?;
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| fail(e.to_string()))?;
        file.write_all(&chunk)?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(())
}

async fn start_and_wait(cx: &Context<'_>, role: Role, name: &str) -> Result<(), Error> {
    cx.engine.start(name).await?;
    cx.engine.wait_running(name, START_TIMEOUT).await?;
    match role {
        Role::Matchbox => wait_matchbox(cx, name).await,
        Role::Dnsmasq => wait_dnsmasq(cx, name).await,
    }
}

/// matchbox's only health signal: `GET /` answers `matchbox`.
async fn wait_matchbox(cx: &Context<'_>, name: &str) -> Result<(), Error> {
    let url = format!("{}/", cx.s.http_base());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()
        .map_err(|e| Error::Failed(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        match client.get(&url).send().await {
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                if status.is_success() && body.trim() == "matchbox" {
                    return Ok(());
                }
                last = format!("HTTP {status}: {:?}", body.chars().take(80).collect::<String>());
            }
            Err(e) => last = e.to_string(),
        }
        if !cx.engine.container(name).await?.is_some_and(|c| c.running) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(with_logs(cx, name, format!("matchbox did not answer GET {url} with `matchbox` ({last})")).await)
}

async fn wait_dnsmasq(cx: &Context<'_>, name: &str) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        let logs = cx.engine.logs(name, Some(200)).await?;
        if logs.contains(DNSMASQ_STARTED) {
            return Ok(());
        }
        if !cx.engine.container(name).await?.is_some_and(|c| c.running) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(with_logs(cx, name, format!("dnsmasq did not log `{DNSMASQ_STARTED}`")).await)
}

async fn with_logs(cx: &Context<'_>, name: &str, problem: String) -> Error {
    let logs = cx.engine.logs(name, Some(20)).await.unwrap_or_default();
    Error::Failed(format!("{problem}; last log lines of {name}:\n{}", indent(&logs)))
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  | {l}")).collect::<Vec<_>>().join("\n")
}

/// Creates the new container beside the old, stops the old, starts the new; if the new one
/// does not come up, it is removed and the old one is put back and started again.
async fn replace(cx: &Context<'_>, role: Role, observed: &Observed) -> Result<(), Error> {
    let spec = spec_for(cx, role);
    let engine = cx.engine;
    let name = spec.name.as_str();
    let new_name = format!("{name}-cozyboot-new");
    let old_name = format!("{name}-cozyboot-old");
    for leftover in [&new_name, &old_name] {
        if engine.container(leftover).await?.is_some() {
            engine.remove(leftover, true).await?;
        }
    }
    let was_running = observed.containers.get(name).is_some_and(|c| c.running);
    let mut staged = spec.clone();
    staged.name = new_name.clone();
    engine.create(&staged).await?;

    engine.stop(name, STOP_TIMEOUT).await?;
    engine.rename(name, &old_name).await?;
    engine.rename(&new_name, name).await?;
    match start_and_wait(cx, role, name).await {
        Ok(()) => {
            engine.remove(&old_name, true).await?;
            Ok(())
        }
        Err(e) => {
            let _ = engine.remove(name, true).await;
            engine.rename(&old_name, name).await?;
            let restored = if was_running {
                match engine.start(name).await {
                    Ok(()) => {
                        rejoin_dnsmasq(cx, role).await;
                        "the previous container was started again".to_string()
                    }
                    Err(e2) => format!("starting the previous container again failed too: {e2}"),
                }
            } else {
                "the previous container was put back (it was not running)".to_string()
            };
            Err(Error::Failed(format!("the new {name} failed to start: {e}\n  {restored}")))
        }
    }
}

/// A dnsmasq sharing matchbox's network namespace lost its network when matchbox stopped;
/// restarting it joins the namespace of the matchbox that runs now.
async fn rejoin_dnsmasq(cx: &Context<'_>, role: Role) {
    let dnsmasq = &cx.specs[1];
    if role == Role::Matchbox && matches!(dnsmasq.network, NetworkMode::Container(_)) {
        let _ = cx.engine.stop(&dnsmasq.name, STOP_TIMEOUT).await;
        let _ = cx.engine.start(&dnsmasq.name).await;
    }
}

fn names(files: &[FileRecord]) -> String {
    files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
}

pub fn human_bytes(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}
