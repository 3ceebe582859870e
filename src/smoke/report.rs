//! What a smoke run says: one line and the stages when it passed; the journey, the diagnosis
//! and the tail of the serial console when it did not; `cozyboot.smoke/v1` for `--json`.

use super::follow::Progress;
use super::vm::Accel;
use super::{DhcpMode, Machine, Until};
use crate::journey::clock;
use crate::journey::diagnosis::{Site, QUIET_SECS};
use crate::journey::model::{Journey, Stage};
use crate::journey::report::Report;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

pub const SCHEMA: &str = "cozyboot.smoke/v1";
/// Lines of the serial console shown when a run fails.
pub const SERIAL_TAIL: usize = 30;

/// The network a run made, as the report names it.
#[derive(Debug, Clone)]
pub struct NetworkFacts {
    pub netns: String,
    pub veth: String,
    pub subnet: String,
    pub server_ip: Ipv4Addr,
}

/// Everything known at the end of a run.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub machine: Machine,
    pub dhcp: DhcpMode,
    pub accel: Accel,
    pub until: Until,
    pub timeout: Duration,
    pub images: Vec<String>,
    pub network: NetworkFacts,
    pub progress: Progress,
    pub journey: Option<Journey>,
    pub site: Site,
    /// Why the run stopped before the goal (timeout, QEMU exited, a hopeless sign).
    pub stopped: Option<String>,
    /// Starting the site (pulls, extraction, containers) and the network.
    pub setup: Duration,
    /// QEMU's start to the goal (or to giving up).
    pub boot: Duration,
    pub serial: String,
    /// Files saved with `--keep`, by name.
    pub kept: BTreeMap<String, PathBuf>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.progress.done()
    }

    /// The furthest `--until` stage reached.
    pub fn reached(&self) -> Option<Until> {
        Until::ALL
            .into_iter()
            .rev()
            .find(|u| self.progress.reached.contains_key(&u.stage(self.machine.firmware)))
    }

    fn ip(&self) -> Option<Ipv4Addr> {
        self.journey.as_ref().and_then(|j| j.ip)
    }

    /// The journey as `nodes` reports it, judged once the machine is quiet: a smoke run is
    /// over, so "still booting" would be no answer.
    fn nodes_report(&self) -> Option<Report> {
        let mut j = self.journey.clone()?;
        if let Some(t) = self.progress.reached.get(&Stage::Talos) {
            j.stages.entry(Stage::Talos).or_insert(crate::journey::model::Mark {
                at: None,
                detail: format!("tcp/50000 open {:.1} s after QEMU started", t.as_secs_f64()),
            });
        }
        let now = j.last_seen.map_or_else(clock::now, |t| t + QUIET_SECS);
        Some(Report::build(BTreeMap::from([(j.mac.clone(), j)]), &self.site, now))
    }

    pub fn serial_tail(&self) -> Vec<String> {
        let clean = strip_escapes(&self.serial);
        let lines: Vec<&str> = clean.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(SERIAL_TAIL)..]
            .iter()
            .map(|l| l.to_string())
            .collect()
    }

    fn head(&self) -> String {
        format!(
            "{}, {} DHCP, {}",
            self.machine.label(),
            self.dhcp.name(),
            self.accel.name()
        )
    }

    fn timeline(&self) -> String {
        let mut parts: Vec<String> = self
            .progress
            .reached
            .iter()
            .map(|(s, t)| format!("{s} {:.1}s", t.as_secs_f64()))
            .collect();
        parts.extend(
            self.progress
                .console
                .iter()
                .map(|(n, t)| format!("console:{n} {:.1}s", t.as_secs_f64())),
        );
        parts.join(" | ")
    }

    pub fn to_human(&self) -> String {
        let mut out = String::new();
        if self.ok() {
            let _ = writeln!(
                out,
                "smoke passed: {} reached `{}` in {:.1} s (setup {:.1} s){}",
                self.head(),
                self.until,
                self.boot.as_secs_f64(),
                self.setup.as_secs_f64(),
                self.ip().map(|ip| format!(", address {ip}")).unwrap_or_default()
            );
            let _ = writeln!(out, "  {}", self.timeline());
        } else {
            let _ = writeln!(
                out,
                "smoke FAILED: {} did not reach `{}`; furthest: {} after {:.1} s",
                self.head(),
                self.until,
                self.reached().map_or("nothing".to_string(), |u| format!("`{u}`")),
                self.boot.as_secs_f64(),
            );
            if let Some(why) = &self.stopped {
                let _ = writeln!(out, "  stopped: {why}");
            }
            if !self.progress.reached.is_empty() || !self.progress.console.is_empty() {
                let _ = writeln!(out, "  seen: {}", self.timeline());
            }
            match self.nodes_report() {
                Some(r) => {
                    out.push_str("\nthe machine's journey (as `cozyboot nodes` shows it):\n");
                    out.push_str(&r.to_human());
                }
                None => {
                    let _ = writeln!(
                        out,
                        "\nthe site's dnsmasq never saw the machine ({}): the firmware sent no DHCP request it logged",
                        self.progress.mac
                    );
                }
            }
            let _ = writeln!(out, "\nserial console (last {SERIAL_TAIL} lines):");
            for l in self.serial_tail() {
                let _ = writeln!(out, "  | {l}");
            }
        }
        for (name, path) in &self.kept {
            let _ = writeln!(out, "kept {name}: {}", path.display());
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let machine = self
            .nodes_report()
            .and_then(|r| r.to_json()["machines"].get(0).cloned());
        let timings: serde_json::Map<String, Value> = self
            .progress
            .reached
            .iter()
            .map(|(s, t)| (s.name().to_string(), json!(secs(*t))))
            .collect();
        let console: serde_json::Map<String, Value> = self
            .progress
            .console
            .iter()
            .map(|(n, t)| (n.to_string(), json!(secs(*t))))
            .collect();
        json!({
            "schema": SCHEMA,
            "ok": self.ok(),
            "until": self.until,
            "reached": self.reached(),
            "machine": {
                "arch": self.machine.arch.name(),
                "firmware": self.machine.firmware,
                "label": self.machine.label(),
                "mac": self.progress.mac,
                "ip": self.ip(),
                "accel": self.accel,
            },
            "dhcp": self.dhcp,
            "images": self.images,
            "network": {
                "netns": self.network.netns,
                "veth": self.network.veth,
                "subnet": self.network.subnet,
                "server_ip": self.network.server_ip,
            },
            "timeout_seconds": self.timeout.as_secs(),
            "setup_seconds": secs(self.setup),
            "boot_seconds": secs(self.boot),
            "stages_seconds": timings,
            "console_seconds": console,
            "stopped": self.stopped,
            "journey": machine,
            "diagnosis": machine.as_ref().map(|m| m["diagnosis"].clone()),
            "serial_tail": if self.ok() { Vec::new() } else { self.serial_tail() },
            "logs": self.kept,
        })
    }
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

/// Firmware consoles paint with ANSI escapes; a report reads better without them.
pub fn strip_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                while let Some(&n) = chars.peek() {
                    chars.next();
                    if n.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        if c != '\r' {
            out.push(c);
        }
    }
    out
}
