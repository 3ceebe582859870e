//! `cozyboot power on|off|cycle|status NAME|MAC... | --all`: the declared machines' power,
//! through each one's driver (see [`crate::host::power`]). Everything that can be wrong (an
//! unknown machine, no driver, an action the driver cannot do, a `{serial}` never seen, a
//! password variable not set) is found for every machine first, exit 2, before anything is
//! sent. A power-on is recorded per MAC so that `nodes` can time each stage from it.

use super::{managed, resolve, Output};
use crate::cli::{PowerAction, PowerArgs, SettingsArgs};
use crate::error::{ConfigError, Error, Result};
use crate::host::power::{self, Action, Context, Step};
use crate::journey::journal::Journal;
use crate::journey::powered::PowerOns;
use crate::journey::{clock, model};
use crate::settings::machines::{Machine, Power};
use crate::settings::normalise_mac;
use crate::settings::Purpose;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub const SCHEMA: &str = "cozyboot.power/v1";

pub fn run(args: &PowerArgs, config: Option<PathBuf>) -> Result<Output> {
    let action = match args.action {
        PowerAction::On => Action::On,
        PowerAction::Off => Action::Off,
        PowerAction::Cycle => Action::Cycle,
        PowerAction::Status => Action::Status,
    };
    let settings = resolve(
        &SettingsArgs {
            data_dir: managed::given_dir(&args.site),
            ..SettingsArgs::default()
        },
        config,
        Purpose::Serve,
    )?
    .settings;
    let chosen = choose(&settings.machines, &args.machines, args.all)?;

    // The serials iPXE reported, for templates that use {serial}; no journal: none known.
    let journeys = Journal::load(&settings.data_dir)
        .map(|j| model::fold(j.events()))
        .unwrap_or_default();
    let mut plans: Vec<(&Machine, Vec<Step>)> = Vec::new();
    let mut problems: Vec<ConfigError> = Vec::new();
    for m in chosen {
        let cx = Context {
            iface: &settings.iface,
            serial: journeys.get(&m.mac).and_then(|j| j.serial.as_deref()),
        };
        match power::plan(m, action, &cx) {
            Ok(steps) => {
                if let Some(Power::Ipmi { password_env, .. }) = &m.power {
                    if super::env(password_env).is_none() && !args.dry_run {
                        problems.push(
                            ConfigError::new(
                                "machines",
                                format!("{}: the BMC password variable {password_env} is not set", m.hostname),
                                format!(
                                    "export {password_env}=... (the BMC password) in the environment cozyboot runs in"
                                ),
                            )
                            .value(m.hostname.clone()),
                        );
                    }
                }
                plans.push((m, steps));
            }
            Err(e) => {
                let (problem, fix) = e.split_once("\n  fix: ").unwrap_or((&e, "see docs/fleet.md \"Power\""));
                problems.push(ConfigError::new("machines", problem, fix).value(m.hostname.clone()));
            }
        }
    }
    if !problems.is_empty() {
        return Err(Error::Config(problems));
    }

    if args.dry_run {
        let mut human = String::new();
        let mut rows = Vec::new();
        for (m, steps) in &plans {
            for s in steps {
                human.push_str(&format!("{} ({}): would {}\n", m.hostname, m.mac, s.describe()));
            }
            rows.push(json!({
                "hostname": m.hostname, "mac": m.mac, "driver": m.power.as_ref().map(Power::driver),
                "steps": steps.iter().map(Step::describe).collect::<Vec<_>>(), "dry_run": true,
            }));
        }
        return Ok(Output::new(
            human,
            json!({ "schema": SCHEMA, "action": action, "dry_run": true, "machines": rows }),
        ));
    }

    let mut human = String::new();
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    let mut powered = Vec::new();
    for (m, steps) in &plans {
        let result = power::carry_out(steps, &super::env);
        let at = clock::now();
        let (ok, outputs, error) = match result {
            Ok(done) => {
                for d in &done {
                    let said = if d.output.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", d.output)
                    };
                    human.push_str(&format!("{} ({}): {}{said}\n", m.hostname, m.mac, past(&d.step)));
                }
                if action.powers_on() {
                    powered.push((m.mac.clone(), at));
                }
                (true, done, None)
            }
            Err(e) => {
                human.push_str(&format!("{} ({}): FAILED: {e}\n", m.hostname, m.mac));
                failed.push(m.hostname.clone());
                (false, Vec::new(), Some(e))
            }
        };
        rows.push(json!({
            "hostname": m.hostname, "mac": m.mac, "driver": m.power.as_ref().map(Power::driver),
            "ok": ok, "steps": outputs, "error": error,
            "at": clock::format_rfc3339(at),
        }));
    }
    if !powered.is_empty() {
        let mut note = |e: String| human.push_str(&format!("note: {e} (nodes cannot time the boot from power-on)\n"));
        match PowerOns::load(&settings.data_dir) {
            Ok(mut record) => {
                for (mac, at) in &powered {
                    record.record(mac, *at);
                }
                if let Err(e) = record.save(&settings.data_dir) {
                    note(e);
                }
            }
            Err(e) => note(e),
        }
        human.push_str("watch them boot: cozyboot nodes --watch (or --wait N --stage talos)\n");
    }
    let output = Output::new(
        human,
        json!({ "schema": SCHEMA, "action": action, "dry_run": false, "machines": rows }),
    );
    Ok(if failed.is_empty() {
        output
    } else {
        output.failing(format!("power {} failed for {}", action.name(), failed.join(", ")))
    })
}

/// `run x` → `ran x`, `send x` → `sent x`: what was done, for the report.
fn past(step: &str) -> String {
    step.strip_prefix("run ")
        .map(|r| format!("ran {r}"))
        .or_else(|| step.strip_prefix("send ").map(|r| format!("sent {r}")))
        .unwrap_or_else(|| step.to_string())
}

/// The machines named (hostname or MAC), in the order given, or every one with `--all`.
fn choose<'a>(declared: &'a [Machine], names: &[String], all: bool) -> Result<Vec<&'a Machine>> {
    if declared.is_empty() {
        return Err(Error::config(ConfigError::new(
            "machines",
            "no machines are declared, so there is nothing to power",
            "declare them under machines: in cozyboot.yaml (hostname, mac, power:; see docs/fleet.md \"Declaring machines\") and run `cozyboot up` again, or pass --config FILE",
        )));
    }
    if all {
        return Ok(declared.iter().collect());
    }
    let mut chosen: Vec<&Machine> = Vec::new();
    let mut unknown = Vec::new();
    for name in names {
        let mac = normalise_mac(name);
        match declared
            .iter()
            .find(|m| m.hostname == *name || mac.as_deref() == Some(m.mac.as_str()))
        {
            Some(m) if !chosen.iter().any(|c| c.mac == m.mac) => chosen.push(m),
            Some(_) => {}
            None => unknown.push(name.clone()),
        }
    }
    if unknown.is_empty() {
        return Ok(chosen);
    }
    let known: Vec<&str> = declared.iter().map(|m| m.hostname.as_str()).collect();
    Err(Error::Config(
        unknown
            .into_iter()
            .map(|u| {
                ConfigError::new(
                    "machine",
                    "no machine of this hostname or MAC is declared under machines:",
                    format!(
                        "name one of {} (or its MAC), or declare it in cozyboot.yaml",
                        known.join(", ")
                    ),
                )
                .value(u)
            })
            .collect(),
    ))
}

/// Declared machines by MAC, for `nodes`.
pub(super) fn by_mac(machines: &[Machine]) -> BTreeMap<String, String> {
    machines.iter().map(|m| (m.mac.clone(), m.hostname.clone())).collect()
}
