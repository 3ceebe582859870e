//! `cozyboot export bootbox`: the machines of the site's journal as the values of Cozystack's
//! BootBox package (see [`crate::journey::bootbox`]), or how a values file differs from them.

use super::{managed, resolve, Output};
use crate::cli::{BootboxArgs, SettingsArgs};
use crate::error::{ConfigError, Error, Result};
use crate::journey::bootbox::{self, Lan};
use crate::journey::journal::{self, Journal};
use crate::journey::model;
use crate::settings::Purpose;
use std::path::Path;

pub fn run(args: &BootboxArgs) -> Result<Output> {
    let Some(dir) = managed::scope(&args.site)? else {
        return Err(Error::config(ConfigError::new(
            "data-dir",
            "no boot site is recorded on this host, so there is no journal of machines to export",
            "run `cozyboot up` and boot the machines first, or name the site with --data-dir DIR",
        )));
    };
    if !journal::file(&dir).is_file() {
        return Err(Error::config(
            ConfigError::new(
                "data-dir",
                format!("no journal of machines at {}", journal::file(&dir).display()),
                "boot the machines, then run `cozyboot nodes` once (it writes the journal), and export again",
            )
            .value(dir.display().to_string()),
        ));
    }
    let journal = Journal::load(&dir).map_err(|e| {
        let (problem, fix) = e
            .split_once("\n  fix: ")
            .unwrap_or((&e, "move it away and run `cozyboot nodes`"));
        Error::config(ConfigError::new("data-dir", problem, fix).value(dir.display().to_string()))
    })?;
    let settings = resolve(
        &SettingsArgs {
            data_dir: Some(dir.clone()),
            ..SettingsArgs::default()
        },
        None,
        Purpose::Serve,
    )?
    .settings;
    let lan = Lan::of(&settings, args.gateway, args.lease_time).map_err(|u| {
        Error::config(ConfigError::new(
            u.missing.join(" and "),
            "the site runs proxy DHCP: the LAN's DHCP server, not cozyboot, chose the gateway and lease time BootBox must hand out",
            format!("give {} (what the LAN's DHCP server hands out)", u.missing.join(" and ")),
        ))
    })?;
    let out = bootbox::export(&model::fold(journal.events()), &lan, args.force);
    let json_left_out = serde_json::to_value(&out.left_out).expect("serializes");
    match &args.check {
        Some(file) => check(file, &out.machines, json_left_out),
        None => {
            let yaml = bootbox::values_yaml(&out.machines);
            for l in &out.left_out {
                eprintln!("left out {}: {}", l.mac, l.reason);
            }
            eprintln!("{}", next_steps(out.machines.len(), &dir));
            Ok(Output::new(
                yaml,
                serde_json::json!({
                    "schema": "cozyboot.bootbox/v1",
                    "values": { "machines": out.machines },
                    "left_out": json_left_out,
                }),
            ))
        }
    }
}

fn check(file: &Path, wanted: &[bootbox::Machine], left_out: serde_json::Value) -> Result<Output> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        Error::config(
            ConfigError::new(
                "check",
                format!("cannot read the values file: {e}"),
                "give the path of BootBox's values file",
            )
            .value(file.display().to_string()),
        )
    })?;
    let diff = bootbox::check(&text, wanted).map_err(|why| {
        Error::config(
            ConfigError::new(
                "check",
                format!("not a BootBox values file: {why}"),
                "give the values file BootBox was installed with (YAML with a `machines:` list)",
            )
            .value(file.display().to_string()),
        )
    })?;
    let json = serde_json::json!({
        "schema": "cozyboot.bootbox-check/v1",
        "equal": diff.is_empty(),
        "added": diff.added,
        "removed": diff.removed,
        "changed": diff.changed.iter().map(|(m, k)| serde_json::json!({"mac": m, "keys": k})).collect::<Vec<_>>(),
        "left_out": left_out,
    });
    let output = Output::new(diff.to_human(), json);
    Ok(if diff.is_empty() {
        output
    } else {
        output.failing(format!("{} differs from what the journal would export", file.display()))
    })
}

/// What to do with the values: the cluster's DHCP takes over only once this site stops answering.
fn next_steps(count: usize, dir: &Path) -> String {
    format!(
        "{count} machine(s) exported. Next:\n  1. install or update Cozystack's BootBox with these values (machines: is its only key set here)\n  2. watch a machine boot through it (power it on; `kubectl -n cozy-bootbox get hardware` lists them)\n  3. stop this site so that one DHCP server answers the LAN: cozyboot down --data-dir {}",
        dir.display()
    )
}
