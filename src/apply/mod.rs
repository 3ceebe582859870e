//! `up`: observe, plan, then carry the plan out — new before old, old back on failure.

use crate::apply::progress::{Printer, PullProgress};
use crate::artifacts::arch::Arch;
use crate::artifacts::matchbox_version::{self, Verdict};
use crate::engine::docker::{ContainerInfo, EngineError, TEMPORARY_LABEL};
use crate::engine::ContainerEngine;
use crate::error::Error;
use crate::host::ports::{self, Proto};
use crate::host::reach::AskMatchbox;
use crate::plan::{self, Action, Arm64Source, Desired, Observed, ObservedContainer};
use crate::render::container_spec::{ContainerSpec, NetworkMode};
use crate::render::{self, containers, containers::Role};
use crate::settings::{DhcpMode, Network, Settings};
use crate::store::hand_made;
use crate::store::state::{self, FileRecord, State};
use serde::Serialize;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

mod assets;
mod bootloaders;
mod lifecycle;
pub mod progress;
#[cfg(test)]
mod tests;
mod undo;

use lifecycle::{Swaps, Timing};
use undo::Undo;

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
struct Context<'a, E> {
    s: &'a Settings,
    engine: &'a E,
    dnsmasq_image: String,
    files: Vec<render::File>,
    specs: [ContainerSpec; 2],
    /// Where the arm64 iPXE binary comes from, when arm64 is served.
    arm64: Option<Arm64Source>,
    timing: Timing,
    printer: Printer,
}

/// What `up` was asked to do beyond reaching the settings' state.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub dry_run: bool,
    /// Move files in the matchbox tree that cozyboot did not write out of matchbox's way.
    pub move_foreign: bool,
    pub printer: Printer,
}

pub async fn up<E: AskMatchbox>(s: &Settings, engine: &E, options: UpOptions) -> Result<UpReport, Error> {
    up_timed(s, engine, options, Timing::default()).await
}

/// [`up`] with the health-check timing given (unit tests shorten it).
async fn up_timed<E: AskMatchbox>(
    s: &Settings,
    engine: &E,
    options: UpOptions,
    timing: Timing,
) -> Result<UpReport, Error> {
    let UpOptions {
        dry_run,
        move_foreign,
        printer,
    } = options;
    // Temporary extraction containers carry the data dir, so a killed run's leftovers can be
    // told from another site's work in progress.
    let site = BTreeMap::from([(containers::LABEL_DATA_DIR.to_string(), s.data_dir.display().to_string())]);
    let engine = &engine.with_temporary_labels(site);
    let arch = engine.arch().await?;
    let dnsmasq_image = s.dnsmasq_image_for(arch);
    let rendered = render::render(s);
    let specs = containers::specs(s, &rendered, &dnsmasq_image);
    // Decided (and a local file checked) before anything is touched; nothing is fetched yet.
    let arm64 = bootloaders::arm64_source(s, state::load(&s.data_dir).arm64_bootloader.as_ref())?;
    let cx = Context {
        s,
        engine,
        dnsmasq_image,
        files: rendered.files(),
        specs,
        arm64,
        timing,
        printer,
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

    let move_aside = foreign_files(s, &rendered, move_foreign, &mut report.warnings)?;
    let desired = desired(&cx);
    let observed = observe(&cx).await?;
    let pulls = plan::pulls(&desired, &observed).map_err(|e| Error::Failed(e.0))?;
    if dry_run {
        report.actions.extend(move_aside);
        report.actions.extend(pulls);
        report.actions.extend(plan::plan(&desired, &observed));
        return Ok(report);
    }

    // A binary to download is fetched and checked before anything is changed: offline, a
    // bad mirror or an x86 build at the URL leaves the site exactly as it was.
    let mut fetched = match (&cx.arm64, plan::plan(&desired, &observed).iter().any(is_arm64_install)) {
        (Some(source), true) if source.cached.is_none() && bootloaders::is_url(&source.source) => {
            Some(bootloaders::prefetch(s, source, &cx.printer).await?)
        }
        _ => None,
    };

    fs::create_dir_all(state::dir(&s.data_dir)).map_err(|e| {
        Error::Failed(format!(
            "cannot create the data dir {}: {e}\n  fix: run as root or choose a writable --data-dir",
            s.data_dir.display()
        ))
    })?;
    let _lock = lock(&s.data_dir)?;
    remove_leftovers(engine, s).await?;
    let recovered = lifecycle::recover(&cx).await?;

    // On a site without containers, the containers start as soon as their (small) images
    // are pulled, while the Talos image is still being pulled and then extracted: no
    // previous container is waiting for these files, so the swap rule does not order them.
    let fresh = !recovered
        && cx
            .specs
            .iter()
            .all(|spec| !observed.containers.contains_key(&spec.name));
    let early: Vec<Action> = if fresh {
        cx.specs
            .iter()
            .zip([Role::Matchbox, Role::Dnsmasq])
            .map(|(spec, role)| Action::CreateContainer {
                role,
                name: spec.name.clone(),
            })
            .collect()
    } else {
        Vec::new()
    };
    report.warnings.extend(preflight_ports(&cx, &early)?);
    if fresh {
        // Mount sources must exist before a container is created.
        let tls = s.rpc_port.map(|_| containers::tls_dir(s));
        for dir in std::iter::once(s.assets_dir()).chain(tls) {
            fs::create_dir_all(&dir).map_err(|e| Error::Failed(format!("creating {}: {e}", dir.display())))?;
        }
    }

    // Everything changed from here on is put back if a later step fails (see `undo`).
    let mut undo = Undo::new(state::dir(&s.data_dir).join("rollback"))?;
    undo.save_file(&state::file(&s.data_dir))?;
    let mut swaps = Swaps::default();

    // The pulls do not depend on each other: all at once, drawn in one display. (Joined on
    // this task, so the progress display needs no lock.)
    let pull_progress = RefCell::new(cx.printer.pulls());
    let (talos_pulls, other_pulls): (Vec<&Action>, Vec<&Action>) = pulls
        .iter()
        .partition(|a| matches!(a, Action::Pull { image, .. } if *image == s.talos_image()));
    let others = futures_util::FutureExt::shared(pull_set(&cx, &other_pulls, &observed, &pull_progress));
    let (mut files_report, mut containers_report) = (Lines::default(), Lines::default());
    let mut st = observed.state.clone();
    let mut version_state = st.clone();
    let mut planned = Vec::new();
    let files_phase = async {
        let (talos, others) =
            futures_util::join!(pull_set(&cx, &talos_pulls, &observed, &pull_progress), others.clone());
        pull_progress.borrow_mut().finish();
        for pulled in [talos, others] {
            let pulled = pulled.map_err(Error::Failed)?;
            files_report.done.extend(pulled.done);
            files_report.warnings.extend(pulled.warnings);
        }
        // Pulling may have brought new image content, and `recover` may have put a container
        // back: plan the rest against what is there now.
        let observed = if pulls.is_empty() && !recovered {
            observed.clone()
        } else {
            observe(&cx).await?
        };
        planned = move_aside
            .into_iter()
            .chain(plan::plan(&desired, &observed))
            .filter(|a| !fresh || !is_container(a))
            .collect();
        files_report.warnings.extend(preflight_ports(&cx, &planned)?);
        let mut unused = Swaps::default();
        for action in planned.iter().filter(|a| !is_container(a)) {
            announce(&cx.printer, action);
            let step = Step {
                observed: &observed,
                st: &mut st,
                fetched: &mut fetched,
                warnings: &mut files_report.warnings,
                undo: &mut undo,
                swaps: &mut unused,
            };
            files_report.done.extend(execute(&cx, action, step).await?);
        }
        if !fresh {
            // Refuses a too old matchbox before anything is replaced; files are put back.
            let starts = planned.iter().any(starts_matchbox);
            let before = st.matchbox_version.clone();
            let checked = check_matchbox_version(&cx, starts, &observed, &mut st).await?;
            files_report.warnings.extend(checked);
            if st.matchbox_version != before {
                save(s, &st)?;
            }
        }
        Ok::<_, Error>(observed)
    };
    let early_phase = async {
        if !fresh {
            return Ok(());
        }
        others.clone().await.map_err(Error::Failed)?;
        let images = observe(&cx).await?;
        let checked = check_matchbox_version(&cx, true, &images, &mut version_state).await?;
        containers_report.warnings.extend(checked);
        for action in &early {
            announce(&cx.printer, action);
            if let Action::CreateContainer { role, .. } = action {
                let (how, warning) = lifecycle::create(&cx, *role, &mut swaps).await?.report();
                containers_report.warnings.extend(warning);
                containers_report
                    .done
                    .push(format!("started {}{how}", spec_for(&cx, *role).name));
            }
        }
        Ok::<_, Error>(())
    };
    let (files_result, early_result) = futures_util::join!(files_phase, early_phase);
    drop(others);
    for lines in [files_report, containers_report] {
        report.done.extend(lines.done);
        report.warnings.extend(lines.warnings);
    }
    let outcome = async {
        let observed = early_result.and(files_result)?;
        let checked = version_state.matchbox_version.take();
        if checked.is_some() && checked != st.matchbox_version {
            st.matchbox_version = checked;
            save(s, &st)?;
        }
        if !fresh {
            for action in planned.iter().filter(|a| is_container(a)) {
                announce(&cx.printer, action);
                let step = Step {
                    observed: &observed,
                    st: &mut st,
                    fetched: &mut fetched,
                    warnings: &mut report.warnings,
                    undo: &mut undo,
                    swaps: &mut swaps,
                };
                report.done.extend(execute(&cx, action, step).await?);
            }
        }
        lifecycle::settle(&cx, &swaps).await
    }
    .await;
    match outcome {
        Ok(()) => {
            report.warnings.extend(lifecycle::finish(&cx, swaps).await);
            undo.commit();
        }
        Err(e) => return Err(roll_back(&cx, e, swaps, undo).await),
    }
    report.actions = pulls;
    let actions: Vec<Action> = planned.into_iter().chain(early).collect();
    report.actions.extend(actions);
    Ok(report)
}

fn desired<E>(cx: &Context<'_, E>) -> Desired {
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
        arm64_source: cx.arm64.clone(),
        certificates: s
            .rpc_port
            .map(|_| crate::artifacts::tls::ServerNames::for_server(s.server_ip)),
        containers: vec![
            (Role::Matchbox, cx.specs[0].clone()),
            (Role::Dnsmasq, cx.specs[1].clone()),
        ],
        dnsmasq_follows_matchbox: matches!(cx.specs[1].network, NetworkMode::Container(_)),
        files_to_write,
    }
}

async fn observe<E: ContainerEngine>(cx: &Context<'_, E>) -> Result<Observed, Error> {
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
    let arm64_bootloader_present = st.arm64_bootloader.as_ref().is_some_and(|r| r.file.present_in(&assets));
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
        certificates: crate::artifacts::tls::covered(&containers::tls_dir(s)),
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

/// A run killed while extracting leaves its temporary container; holding the lock, every
/// temporary container of this data dir is such a leftover.
async fn remove_leftovers<E: ContainerEngine>(engine: &E, s: &Settings) -> Result<(), Error> {
    let label = format!("{}={}", containers::LABEL_DATA_DIR, s.data_dir.display());
    for c in engine.list_labelled(&label).await? {
        if c.labels.contains_key(TEMPORARY_LABEL) {
            engine.remove(&c.id, true).await?;
        }
    }
    Ok(())
}

/// A matchbox tree laid out by hand (the manual guide's `/opt/matchbox`) can hold groups that
/// compete with cozyboot's: refuse until the user chooses, or move every foreign file aside
/// when asked (`--move-foreign`). Files that compete with nothing are only reported.
fn foreign_files(
    s: &Settings,
    rendered: &render::Rendered,
    move_foreign: bool,
    warnings: &mut Vec<String>,
) -> Result<Option<Action>, Error> {
    let ours: Vec<String> = rendered.files().into_iter().map(|f| f.path).collect();
    let found = hand_made::scan(&s.data_dir, &ours, &rendered.tree.groups);
    if found.files.is_empty() {
        return Ok(None);
    }
    let to = state::dir(&s.data_dir).join(format!("moved-{}", hand_made::stamp(state::now())));
    if move_foreign {
        return Ok(Some(Action::MoveForeign {
            files: found.files,
            to: to.display().to_string(),
        }));
    }
    let listing = found.files.join(", ");
    if found.competitors.is_empty() && found.unreadable.is_empty() {
        warnings.push(format!(
            "{} holds {} file(s) cozyboot did not write ({listing}); none of their groups competes with cozyboot's",
            s.data_dir.display(),
            found.files.len()
        ));
        return Ok(None);
    }
    let mut why: Vec<String> = found
        .competitors
        .iter()
        .map(|c| format!("  - {}", c.describe()))
        .collect();
    why.extend(
        found
            .unreadable
            .iter()
            .map(|p| format!("  - {p} is not valid group JSON: matchbox refuses to start with it")),
    );
    Err(Error::Failed(format!(
        "{} holds matchbox files cozyboot did not write (a tree laid out by hand?), and some would take machines from cozyboot's groups:\n{}\n  nothing was changed\n  fix: run `cozyboot up --move-foreign` to move the {} file(s) cozyboot did not write ({listing}) into {}, or remove those groups yourself",
        s.data_dir.display(),
        why.join("\n"),
        found.files.len(),
        to.display()
    )))
}

/// On the host network, a port held by something else makes the new container crash-loop,
/// and a second DHCP server on the same interface answers the same machines: say who holds
/// what, with the fix that fits the port, before touching anything. Ports held by the
/// container being replaced are fine: it is stopped first. A port shared the way two dnsmasq
/// on two interfaces share 67/69 is reported, not refused: that is several sites per host.
fn preflight_ports<E>(cx: &Context<'_, E>, actions: &[Action]) -> Result<Vec<String>, Error> {
    if cx.s.network != Network::Host {
        return Ok(Vec::new());
    }
    let s = cx.s;
    let (mut clashes, mut notes) = (Vec::new(), Vec::new());
    for action in actions {
        let Action::CreateContainer { role, .. } = action else {
            continue;
        };
        // (proto, port, how the server binds it, the fix when it cannot)
        let tcp_fix = |flag: &str| format!("stop what holds it, or give this site another {flag}");
        let dhcp_fix = format!(
            "stop the other DHCP server, or bind it to its own interface (dnsmasq: --interface=<its interface> --bind-interfaces), so that only this site answers on {}",
            s.iface
        );
        let wanted: Vec<(Proto, u16, ports::Binding<'_>, String)> = match role {
            Role::Matchbox => std::iter::once((
                Proto::Tcp,
                s.http_port,
                ports::Binding::TcpWildcard,
                tcp_fix("--http-port"),
            ))
            .chain(
                s.rpc_port
                    .map(|p| (Proto::Tcp, p, ports::Binding::TcpWildcard, tcp_fix("--rpc-port"))),
            )
            .collect(),
            Role::Dnsmasq => {
                let shared = ports::Binding::UdpShared { iface: &s.iface };
                let mut p = vec![
                    (Proto::Udp, 67, shared, dhcp_fix.clone()),
                    (
                        Proto::Udp,
                        69,
                        ports::Binding::UdpOn(s.server_ip),
                        format!("stop the TFTP server that holds {}:69 (or all addresses)", s.server_ip),
                    ),
                ];
                if s.dhcp == DhcpMode::Proxy {
                    p.push((Proto::Udp, 4011, shared, dhcp_fix.clone()));
                }
                p
            }
        };
        for (proto, port, binding, fix) in wanted {
            match ports::check(proto, port, binding) {
                ports::Verdict::Free => {}
                ports::Verdict::Shared(m) | ports::Verdict::Unchecked(m) => notes.push(format!("{}: {m}", role.name())),
                ports::Verdict::Clash(m) => clashes.push(format!("{} needs {m}\n  fix: {fix}", role.name())),
            }
        }
    }
    if clashes.is_empty() {
        return Ok(notes);
    }
    Err(Error::Failed(format!("{}\n  nothing was started", clashes.join("\n"))))
}

/// Refuses a matchbox image older than v0.11.0 before anything is replaced (its groups
/// could never match); asked once per image id, and only when matchbox is (re)created.
async fn check_matchbox_version<E: ContainerEngine>(
    cx: &Context<'_, E>,
    starts_matchbox: bool,
    observed: &Observed,
    st: &mut State,
) -> Result<Option<String>, Error> {
    let image = cx.s.matchbox_image();
    let Some(image_id) = observed.images.get(&image).cloned().flatten() else {
        return Ok(None);
    };
    if !starts_matchbox || st.matchbox_version.as_ref().is_some_and(|v| v.image_id == image_id) {
        return Ok(None);
    }
    let (code, output) = cx
        .engine
        .run_once(&image, matchbox_version::VERSION_ARGS, Duration::from_secs(30))
        .await?;
    match matchbox_version::judge(code, &output) {
        Verdict::Supported(v) => {
            // Saved by the caller, with the rest of the state.
            st.matchbox_version = Some(state::ImageVersion {
                image,
                image_id,
                version: v.to_string(),
            });
            Ok(None)
        }
        Verdict::TooOld(v) => Err(Error::Failed(format!(
            "{}\n  nothing was changed: running containers and assets are as they were",
            matchbox_version::too_old(&image, v)
        ))),
        Verdict::Unknown(why) => Ok(Some(format!(
            "could not tell which matchbox {image} is ({why}); cozyboot needs {} or newer",
            matchbox_version::MINIMUM
        ))),
    }
}

/// What one action may read and change besides the disk.
struct Step<'r> {
    observed: &'r Observed,
    st: &'r mut State,
    fetched: &'r mut Option<Vec<u8>>,
    warnings: &'r mut Vec<String>,
    undo: &'r mut Undo,
    swaps: &'r mut Swaps,
}

/// A failed run: containers first (the previous ones back under their names and running),
/// then the files they serve; whatever could not be put back is added to the error, never
/// put in its place.
async fn roll_back<E: ContainerEngine>(cx: &Context<'_, E>, error: Error, swaps: Swaps, undo: Undo) -> Error {
    let unreachable = matches!(error, Error::DockerUnreachable(_));
    let (done, mut failures) = lifecycle::roll_back(cx, swaps).await;
    failures.extend(undo.restore());
    let mut message = error.to_string();
    for line in done {
        message.push_str(&format!("\n  {line}"));
    }
    if !failures.is_empty() {
        message.push_str(&format!(
            "\n  putting the previous site back failed too:\n{}",
            failures
                .iter()
                .map(|f| format!("    - {f}"))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    if unreachable {
        Error::DockerUnreachable(message)
    } else {
        Error::Failed(message)
    }
}

async fn execute<E: AskMatchbox>(
    cx: &Context<'_, E>,
    action: &Action,
    step: Step<'_>,
) -> Result<Option<String>, Error> {
    let s = cx.s;
    let Step {
        observed,
        st,
        fetched,
        warnings,
        undo,
        swaps,
    } = step;
    Ok(match action {
        Action::Pull { .. } => None,
        Action::MoveForeign { files, to } => {
            // The folder is new (its name is the time of the run): a rollback removes it
            // once every file is back.
            let to = Path::new(to);
            if !to.exists() {
                undo.created_tree(to);
            }
            for file in files {
                let moved = hand_made::move_one(&s.data_dir, file, to).map_err(|e| {
                    Error::Failed(format!(
                        "moving files cozyboot did not write into {}: {e}",
                        to.display()
                    ))
                })?;
                undo.moved(&s.data_dir.join(file), &moved);
            }
            Some(format!(
                "moved {} file(s) cozyboot did not write into {}",
                files.len(),
                to.display()
            ))
        }
        Action::ExtractAssets { arch, image, .. } => {
            let id = observed.images.get(image).cloned().flatten().unwrap_or_default();
            let record = assets::extract_assets(cx, *arch, image, &id, undo).await?;
            let bytes: u64 = record.files.iter().map(|f| f.size).sum();
            let line = format!(
                "extracted {} files {} ({arch}; {})",
                record.files.len(),
                human_bytes(bytes),
                record.origin()
            );
            st.assets.insert(arch.name().to_string(), record);
            save(s, st)?;
            Some(line)
        }
        Action::CopyX86Bootloaders { image, .. } => {
            let id = observed.images.get(image).cloned().flatten().unwrap_or_default();
            let record = bootloaders::copy_x86_bootloaders(cx, image, &id, undo).await?;
            let line = format!("copied {} out of {image}", names(&record.files));
            st.x86_bootloaders = Some(record);
            save(s, st)?;
            Some(line)
        }
        Action::InstallArm64Bootloader {
            kind, source, cached, ..
        } => {
            let from = Arm64Source {
                kind: *kind,
                source: source.clone(),
                cached: cached.clone(),
            };
            let record = bootloaders::install_arm64_bootloader(s, &from, fetched.take(), undo, &cx.printer).await?;
            let how = match cached {
                Some(copy) => format!("{kind}, from the copy cached in {}", copy.display()),
                None => kind.to_string(),
            };
            let line = format!(
                "installed the arm64 iPXE binary as {} from {source} ({how}, sha256 {})",
                record.file.name,
                &record.file.sha256[..12]
            );
            st.arm64_bootloader = Some(record);
            save(s, st)?;
            Some(line)
        }
        Action::GenerateCertificates { .. } => {
            let names = crate::artifacts::tls::ServerNames::for_server(s.server_ip);
            let tls = containers::tls_dir(s);
            undo.save_files_in(
                &tls,
                &crate::artifacts::tls::FILES
                    .iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>(),
            )?;
            crate::artifacts::tls::generate(&containers::tls_dir(s), &names).map_err(Error::Failed)?;
            Some(format!(
                "generated gRPC TLS certificates in {}",
                containers::tls_dir(s).display()
            ))
        }
        Action::WriteConfig { .. } => {
            // Every file the new tree writes or removes, and the record of what was written.
            for path in cx
                .files
                .iter()
                .map(|f| f.path.clone())
                .chain(render::rendered_paths(&s.data_dir))
                .chain([render::MANIFEST.to_string()])
            {
                undo.save_file(&s.data_dir.join(path))?;
            }
            let (written, removed) = render::write_tree(&s.data_dir, &cx.files)
                .map_err(|e| Error::Failed(format!("writing the matchbox config to {}: {e}", s.data_dir.display())))?;
            let changed = written.iter().filter(|w| w.changed).count();
            Some(format!("wrote {changed} matchbox file(s), removed {}", removed.len()))
        }
        Action::CreateContainer { role, .. } => {
            let (how, warning) = lifecycle::create(cx, *role, swaps).await?.report();
            warnings.extend(warning);
            Some(format!("started {}{how}", spec_for(cx, *role).name))
        }
        Action::ReplaceContainer { role, reason, .. } => {
            let (how, warning) = lifecycle::replace(cx, *role, observed, swaps).await?.report();
            warnings.extend(warning);
            Some(format!("replaced {} ({reason}){how}", spec_for(cx, *role).name))
        }
        Action::Keep { name, .. } => Some(format!("unchanged: {name}")),
    })
}

/// What one part of the run did, merged into the report when the parts are done.
#[derive(Default)]
struct Lines {
    done: Vec<String>,
    warnings: Vec<String>,
}

/// Pulls `pulls` together; a pull that fails leaves a warning when a local copy of the image
/// can stand in, else fails the set (nothing has been changed yet). Cloneable (`String`
/// errors) so that two parts of the run can wait for one set.
async fn pull_set<E: ContainerEngine>(
    cx: &Context<'_, E>,
    pulls: &[&Action],
    observed: &Observed,
    progress: &RefCell<PullProgress>,
) -> Result<PulledSet, String> {
    let engine = cx.engine;
    let pulled = futures_util::future::join_all(
        pulls
            .iter()
            .filter_map(|action| match action {
                Action::Pull { image, reason } => Some((image, reason)),
                _ => None,
            })
            .map(|(image, reason)| async move {
                let result = engine
                    .pull(image, &mut |event| progress.borrow_mut().on_event(image, event))
                    .await;
                (image, reason, result)
            }),
    )
    .await;
    let mut set = PulledSet::default();
    let mut failed = Vec::new();
    for (image, reason, result) in pulled {
        match result {
            Ok(()) => {
                let before = observed.images.get(image).cloned().flatten();
                let after = engine.image(image).await.map_err(|e| e.to_string())?.map(|i| i.id);
                set.done.push(if before.is_some() && before == after {
                    format!("checked {image}: up to date")
                } else {
                    format!("pulled {image}")
                });
            }
            // A moving tag that cannot be re-checked still has a usable local copy.
            Err(e) if observed.images.get(image).is_some_and(Option::is_some) => set.warnings.push(format!(
                "could not re-check {image} ({reason}); using the local image: {e}"
            )),
            Err(e) => failed.push(e.to_string()),
        }
    }
    if failed.is_empty() {
        return Ok(set);
    }
    Err(format!(
        "{}\n  nothing was changed: running containers and assets are as they were\n  fix: check the image name and tag (--registry, --tag) and that the registry is reachable",
        failed.join("\n")
    ))
}

#[derive(Debug, Clone, Default)]
struct PulledSet {
    done: Vec<String>,
    warnings: Vec<String>,
}

fn is_container(action: &Action) -> bool {
    matches!(
        action,
        Action::CreateContainer { .. } | Action::ReplaceContainer { .. } | Action::Keep { .. }
    )
}

fn starts_matchbox(action: &Action) -> bool {
    matches!(
        action,
        Action::CreateContainer {
            role: Role::Matchbox,
            ..
        } | Action::ReplaceContainer {
            role: Role::Matchbox,
            ..
        }
    )
}

/// Names each step on stderr as it starts (the bench times the steps by these lines).
fn announce(printer: &Printer, action: &Action) {
    if !matches!(action, Action::Keep { .. }) {
        printer.line(&action.describe());
    }
}

fn is_arm64_install(action: &Action) -> bool {
    matches!(action, Action::InstallArm64Bootloader { .. })
}

fn save(s: &Settings, st: &State) -> Result<(), Error> {
    state::save(&s.data_dir, st).map_err(|e| Error::Failed(format!("recording state in {}: {e}", s.data_dir.display())))
}

fn spec_for<'a, E>(cx: &'a Context<'_, E>, role: Role) -> &'a ContainerSpec {
    match role {
        Role::Matchbox => &cx.specs[0],
        Role::Dnsmasq => &cx.specs[1],
    }
}

fn names(files: &[FileRecord]) -> String {
    files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
}

pub fn human_bytes(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}
