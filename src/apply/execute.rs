//! The third phase of `up`: pulls, files and containers. On a fresh site the containers
//! start beside the pulls and extraction; otherwise they are replaced once every file is in
//! place, new before old. Whatever fails, everything changed is put back.

use super::observe::{observe_site, Seen};
use super::preflight::{check_matchbox_version, preflight_ports, Ready};
use super::undo::Undo;
use super::{assets, bootloaders, human_bytes, lifecycle, spec_for, Context, Run, UpReport};
use crate::apply::progress::{Printer, PullProgress};
use crate::engine::ContainerEngine;
use crate::error::Error;
use crate::host::reach::AskMatchbox;
use crate::plan::{self, Action, Arm64Source, Desired, Observed};
use crate::render::{self, containers, containers::Role};
use crate::settings::Settings;
use crate::store::hand_made;
use crate::store::state::{self, FileRecord, State};
use lifecycle::Swaps;
use std::cell::RefCell;
use std::future::Future;
use std::path::Path;

impl<E: AskMatchbox> Run<'_, E> {
    pub(super) async fn execute(self, seen: Seen, ready: Ready) -> Result<UpReport, Error> {
        let Run { cx, mut report, .. } = self;
        let s = cx.s;
        let Ready {
            fetched,
            lock: _lock,
            recovered,
            fresh,
            early,
        } = ready;
        let Seen {
            move_aside,
            desired,
            observed,
            pulls,
        } = seen;

        // Everything changed from here on is put back if a later step fails (see `undo`).
        let mut undo = Undo::new(state::dir(&s.data_dir).join("rollback"))?;
        undo.save_file(&state::file(&s.data_dir))?;

        // The pulls do not depend on each other: all at once, drawn in one display. (Joined on
        // this task, so the progress display needs no lock.)
        let pull_progress = RefCell::new(cx.printer.pulls());
        let (talos_pulls, other_pulls): (Vec<&Action>, Vec<&Action>) = pulls
            .iter()
            .partition(|a| matches!(a, Action::Pull { image, .. } if *image == s.talos_image()));
        let others = futures_util::FutureExt::shared(pull_set(&cx, &other_pulls, &observed, &pull_progress));
        let mut files = FilesSide {
            st: observed.state.clone(),
            fetched,
            undo,
            planned: Vec::new(),
            lines: Lines::default(),
        };
        let mut early_side = EarlySide {
            version_state: files.st.clone(),
            swaps: Swaps::default(),
            lines: Lines::default(),
        };
        let pulled = Pulled {
            talos: &talos_pulls,
            others: others.clone(),
            progress: &pull_progress,
            any: !pulls.is_empty(),
        };
        let plan = Planning {
            desired: &desired,
            observed: &observed,
            move_aside,
            recovered,
            fresh,
        };
        let (files_result, early_result) = futures_util::join!(
            files.run(&cx, plan, pulled),
            early_side.run(&cx, fresh, &early, others.clone())
        );
        drop(others);
        for lines in [files.lines, early_side.lines] {
            report.done.extend(lines.done);
            report.warnings.extend(lines.warnings);
        }
        let mut changes = Changes {
            st: files.st,
            fetched: files.fetched,
            undo: files.undo,
            swaps: early_side.swaps,
        };
        let planned = files.planned;
        let outcome = match early_result.and(files_result) {
            Ok(observed) => {
                changes
                    .replace_containers(&cx, &observed, &planned, early_side.version_state, fresh, &mut report)
                    .await
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => {
                report.warnings.extend(lifecycle::finish(&cx, changes.swaps).await);
                changes.undo.commit();
            }
            Err(e) => return Err(roll_back(&cx, e, changes.swaps, changes.undo).await),
        }
        report.actions = pulls;
        let actions: Vec<Action> = planned.into_iter().chain(early).collect();
        report.actions.extend(actions);
        Ok(report)
    }
}

/// What the files' side plans with.
struct Planning<'p> {
    desired: &'p Desired,
    observed: &'p Observed,
    move_aside: Option<Action>,
    recovered: bool,
    fresh: bool,
}

/// The pulls, as the files' side waits for them.
struct Pulled<'p, F> {
    talos: &'p [&'p Action],
    /// The other images' pulls, which the containers' side waits for too.
    others: F,
    progress: &'p RefCell<PullProgress>,
    /// Whether anything was pulled (else what was observed still holds).
    any: bool,
}

/// The files' side of the run: the pulls, then every action but the containers'; owns what
/// those change.
struct FilesSide {
    st: State,
    fetched: Option<Vec<u8>>,
    undo: Undo,
    /// The plan made again after the pulls: what the run did, for the report.
    planned: Vec<Action>,
    lines: Lines,
}

impl FilesSide {
    /// Returns what is there once the images are pulled, which the containers are replaced
    /// against.
    async fn run<E: AskMatchbox>(
        &mut self,
        cx: &Context<'_, E>,
        plan: Planning<'_>,
        pulled: Pulled<'_, impl Future<Output = Result<PulledSet, String>>>,
    ) -> Result<Observed, Error> {
        let s = cx.s;
        let Planning {
            desired,
            observed,
            move_aside,
            recovered,
            fresh,
        } = plan;
        let (talos, others) = futures_util::join!(pull_set(cx, pulled.talos, observed, pulled.progress), pulled.others);
        pulled.progress.borrow_mut().finish();
        for set in [talos, others] {
            let set = set.map_err(Error::Failed)?;
            self.lines.done.extend(set.done);
            self.lines.warnings.extend(set.warnings);
        }
        // Pulling may have brought new image content, and `recover` may have put a container
        // back: plan the rest against what is there now.
        let observed = if !pulled.any && !recovered {
            observed.clone()
        } else {
            observe_site(cx).await?
        };
        self.planned = move_aside
            .into_iter()
            .chain(plan::plan(desired, &observed))
            .filter(|a| !fresh || !is_container(a))
            .collect();
        self.lines.warnings.extend(preflight_ports(cx, &self.planned)?);
        let mut unused = Swaps::default();
        for action in self.planned.iter().filter(|a| !is_container(a)) {
            announce(&cx.printer, action);
            let step = Step {
                observed: &observed,
                st: &mut self.st,
                fetched: &mut self.fetched,
                warnings: &mut self.lines.warnings,
                undo: &mut self.undo,
                swaps: &mut unused,
            };
            self.lines.done.extend(carry_out(cx, action, step).await?);
        }
        if !fresh {
            // Refuses a too old matchbox before anything is replaced; files are put back.
            let starts = self.planned.iter().any(starts_matchbox);
            let before = self.st.matchbox_version.clone();
            let checked = check_matchbox_version(cx, starts, &observed, &mut self.st).await?;
            self.lines.warnings.extend(checked);
            if self.st.matchbox_version != before {
                save(s, &self.st)?;
            }
        }
        Ok(observed)
    }
}

/// What the run changed, and can put back, once both sides are done.
struct Changes {
    st: State,
    fetched: Option<Vec<u8>>,
    undo: Undo,
    swaps: Swaps,
}

impl Changes {
    /// The matchbox version the containers' side checked recorded; unless the site was
    /// fresh, its containers replaced new before old; then every container's settle time.
    async fn replace_containers<E: AskMatchbox>(
        &mut self,
        cx: &Context<'_, E>,
        observed: &Observed,
        planned: &[Action],
        mut version_state: State,
        fresh: bool,
        report: &mut UpReport,
    ) -> Result<(), Error> {
        let checked = version_state.matchbox_version.take();
        if checked.is_some() && checked != self.st.matchbox_version {
            self.st.matchbox_version = checked;
            save(cx.s, &self.st)?;
        }
        if !fresh {
            for action in planned.iter().filter(|a| is_container(a)) {
                announce(&cx.printer, action);
                let step = Step {
                    observed,
                    st: &mut self.st,
                    fetched: &mut self.fetched,
                    warnings: &mut report.warnings,
                    undo: &mut self.undo,
                    swaps: &mut self.swaps,
                };
                report.done.extend(carry_out(cx, action, step).await?);
            }
        }
        lifecycle::settle(cx, &self.swaps).await
    }
}

/// A fresh site's containers, started as soon as their images are there, beside the Talos
/// image's pull and extraction.
struct EarlySide {
    /// The matchbox version checked here, merged into the state once both sides are done.
    version_state: State,
    swaps: Swaps,
    lines: Lines,
}

impl EarlySide {
    async fn run<E: AskMatchbox>(
        &mut self,
        cx: &Context<'_, E>,
        fresh: bool,
        early: &[Action],
        others: impl Future<Output = Result<PulledSet, String>>,
    ) -> Result<(), Error> {
        if !fresh {
            return Ok(());
        }
        others.await.map_err(Error::Failed)?;
        let images = observe_site(cx).await?;
        let checked = check_matchbox_version(cx, true, &images, &mut self.version_state).await?;
        self.lines.warnings.extend(checked);
        for action in early {
            announce(&cx.printer, action);
            if let Action::CreateContainer { role, .. } = action {
                let (how, warning) = lifecycle::create(cx, *role, &mut self.swaps).await?.report();
                self.lines.warnings.extend(warning);
                self.lines
                    .done
                    .push(format!("started {}{how}", spec_for(cx, *role).name));
            }
        }
        Ok(())
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

async fn carry_out<E: AskMatchbox>(
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
        Action::InstallRpiFirmware {
            kind, source, cached, ..
        } => {
            let from = Arm64Source {
                kind: *kind,
                source: source.clone(),
                cached: cached.clone(),
            };
            let record = super::rpi_firmware::install(s, &from, st.rpi_firmware.as_ref(), undo)?;
            let line = format!(
                "installed the Raspberry Pi UEFI firmware{} into the TFTP root ({} files) from {source} ({kind})",
                record.version.as_deref().map(|v| format!(" {v}")).unwrap_or_default(),
                record.files.len()
            );
            st.rpi_firmware = Some(record);
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

fn save(s: &Settings, st: &State) -> Result<(), Error> {
    state::save(&s.data_dir, st).map_err(|e| Error::Failed(format!("recording state in {}: {e}", s.data_dir.display())))
}

fn names(files: &[FileRecord]) -> String {
    files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
}
