//! The first phase of `up`: what the settings want, what is there, and the plan. All a dry
//! run prints; nothing is changed.

use super::{bootloaders, Context, EngineFacts, Run, UpReport};
use crate::apply::progress::Printer;
use crate::artifacts::arch::Arch;
use crate::engine::docker::ContainerInfo;
use crate::engine::ContainerEngine;
use crate::error::Error;
use crate::plan::{self, Action, Desired, Observed, ObservedContainer};
use crate::render::container_spec::NetworkMode;
use crate::render::{self, containers, containers::Role};
use crate::settings::Settings;
use crate::store::hand_made;
use crate::store::state;
use std::collections::BTreeMap;
use std::fs;

use super::lifecycle::Timing;

/// What [`Run::observe`] found.
pub(super) struct Seen {
    /// Hand-made files moved out of matchbox's way, when asked (`--move-foreign`).
    pub move_aside: Option<Action>,
    pub desired: Desired,
    pub observed: Observed,
    /// The pulls come first; the rest is planned again after them.
    pub pulls: Vec<Action>,
}

impl<'a, E: ContainerEngine> Run<'a, E> {
    /// Everything the run works from, read before anything is touched.
    pub(super) async fn start(
        s: &'a Settings,
        engine: &'a E,
        printer: Printer,
        timing: Timing,
        dry_run: bool,
    ) -> Result<Self, Error> {
        let arch = engine.arch().await?;
        let dnsmasq_image = s.dnsmasq_image_for(arch);
        let rendered = crate::store::withdrawal::render_site(s)?;
        let specs = containers::specs(s, &rendered, &dnsmasq_image);
        // Decided (and a local file checked) before anything is touched; nothing is fetched yet.
        let arm64 = bootloaders::arm64_source(s, state::load(&s.data_dir).arm64_bootloader.as_ref())?;
        let rpi = super::rpi_firmware::source(s)?;
        let cx = Context {
            s,
            engine,
            dnsmasq_image,
            files: rendered.files(),
            specs,
            arm64,
            rpi,
            timing,
            printer,
        };
        let report = UpReport {
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
        Ok(Run { cx, rendered, report })
    }

    /// The hand-made files in the way, what the settings want, what is there, and the pulls.
    pub(super) async fn observe(&mut self, move_foreign: bool) -> Result<Seen, Error> {
        let move_aside = foreign_files(self.cx.s, &self.rendered, move_foreign, &mut self.report.warnings)?;
        let desired = desired(&self.cx);
        let observed = observe_site(&self.cx).await?;
        let pulls = plan::pulls(&desired, &observed).map_err(|e| Error::Failed(e.0))?;
        Ok(Seen {
            move_aside,
            desired,
            observed,
            pulls,
        })
    }

    /// The whole plan, as `--dry-run` prints it.
    pub(super) fn dry_run(mut self, seen: Seen) -> UpReport {
        let Seen {
            move_aside,
            desired,
            observed,
            pulls,
        } = seen;
        self.report.actions.extend(move_aside);
        self.report.actions.extend(pulls);
        self.report.actions.extend(plan::plan(&desired, &observed));
        self.report
    }
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
        rpi_source: cx.rpi.clone(),
        rpi_boards: super::rpi_firmware::boards_fingerprint(s),
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

pub(super) async fn observe_site<E: ContainerEngine>(cx: &Context<'_, E>) -> Result<Observed, Error> {
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
    let rpi_firmware_present = super::rpi_firmware::present(st.rpi_firmware.as_ref(), &assets);
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
        rpi_firmware_present,
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
