//! `up`: observe, plan, then carry the plan out — new before old, old back on failure.
//!
//! One [`Run`] goes through three phases, a file each: [`observe`](observe) (what the settings
//! want, what is there, and the plan: all a dry run prints), [`preflight`](preflight) (what
//! must hold before anything is changed: a binary to download, the lock, leftovers, free
//! ports) and [`execute`](execute) (pulls, files and containers, everything put back when a
//! step fails).

use crate::apply::progress::Printer;
use crate::engine::docker::EngineError;
use crate::error::Error;
use crate::host::reach::AskMatchbox;
use crate::plan::{Action, Arm64Source};
use crate::render::container_spec::ContainerSpec;
use crate::render::{self, containers, containers::Role};
use crate::settings::Settings;
use serde::Serialize;
use std::collections::BTreeMap;

mod assets;
mod bootloaders;
mod execute;
mod lifecycle;
mod observe;
mod preflight;
pub mod progress;
mod rpi_firmware;
/// Where `up` finds an arm64 iPXE binary; `render --kubernetes` puts the same one in its manifests.
pub use bootloaders::{cache_path as ipxe_arm64_cache_path, host_ipxe_arm64};
#[cfg(test)]
mod tests;
mod undo;

use lifecycle::Timing;

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
    /// Where the Raspberry Pi UEFI firmware comes from, when the Pi EEPROM's netboot is served.
    rpi: Option<Arm64Source>,
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
    let mut run = Run::start(s, engine, printer, timing, dry_run).await?;
    let seen = run.observe(move_foreign).await?;
    if dry_run {
        return Ok(run.dry_run(seen));
    }
    let ready = run.preflight(&seen).await?;
    run.execute(seen, ready).await
}

/// One `up`: what it works from, and the report it writes as it goes.
struct Run<'a, E> {
    cx: Context<'a, E>,
    rendered: render::Rendered,
    report: UpReport,
}

fn spec_for<'a, E>(cx: &'a Context<'_, E>, role: Role) -> &'a ContainerSpec {
    match role {
        Role::Matchbox => &cx.specs[0],
        Role::Dnsmasq => &cx.specs[1],
    }
}

pub fn human_bytes(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}
