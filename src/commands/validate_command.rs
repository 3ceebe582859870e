//! `cozyboot validate`: resolve the settings `up` used, run every check, print the report.

use super::{resolve, runtime, Output};
use crate::cli::ValidateArgs;
use crate::engine::docker::Engine;
use crate::error::{ConfigError, Error, Result};
use crate::settings::{Network, Purpose, Settings};
use crate::validate::{self, probe::ProbeOptions, Options, Report};
use std::path::PathBuf;

pub fn run(args: &ValidateArgs, config: Option<PathBuf>) -> Result<Output> {
    let resolved = resolve(&args.settings, config, Purpose::Serve)?;
    let s = &resolved.settings;
    let options = Options {
        strict: args.strict,
        probe: probe_options(args, s)?,
        origins: resolved.origins.clone(),
    };
    let report = runtime()?.block_on(async {
        let engine = Engine::connect().await?;
        validate::run(s, &engine, &options).await
    })?;
    Ok(finish(report))
}

/// A failing report is still the answer (CI needs the document most when something failed):
/// printed like a passing one, then exit 1.
fn finish(report: Report) -> Output {
    let output = Output::new(report.to_human(), report.to_json());
    if report.failed() {
        output.failing("validate found problems")
    } else {
        output
    }
}

/// On a Docker network `--iface` names an interface inside the container, which on this
/// host may be a real uplink: the probe then needs to be told where to go.
fn probe_options(args: &ValidateArgs, s: &Settings) -> Result<Option<ProbeOptions>> {
    if !args.probe_dhcp {
        return Ok(None);
    }
    let iface = match (&args.probe_iface, &s.network) {
        (Some(iface), _) => iface.clone(),
        (None, Network::Host) => s.iface.clone(),
        (None, Network::Named(net)) => {
            return Err(Error::config(ConfigError::new(
                "probe-iface",
                format!("--probe-dhcp needs an interface on this host, and on the Docker network `{net}` --iface ({}) names one inside the container", s.iface),
                "pass --probe-iface with this host's interface on the boot segment",
            )))
        }
    };
    Ok(Some(ProbeOptions {
        iface,
        wait: validate::probe::WAIT,
    }))
}
