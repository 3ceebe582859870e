//! `cozyboot validate`: will machines boot from this server, and if not, why.
//!
//! Each family of checks lives in its own file and returns [`Check`]s: plain data with an id,
//! a status, a one-line finding and the evidence behind it. The table people read and the JSON
//! document CI parses are both rendered from that data and nothing else, so they cannot
//! disagree. docs/validate.md describes every check.

pub mod assets;
pub mod config;
pub mod containers;
pub mod dnsmasq_rules;
mod exposure;
mod foreign;
mod listen;
pub mod logs;
pub mod matchbox;
pub mod nodes;
pub mod probe;
pub mod site;

use crate::engine::docker::Engine;
use crate::error::Error;
use crate::settings::{Settings, Source};
use crate::store::state;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Bumped only when a key is renamed or removed; CI jobs parse this document.
pub const SCHEMA: &str = "cozyboot.validate/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    /// Not applicable here, or not checkable because something it depends on failed.
    Skip,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::Pass, Status::Warn, Status::Fail, Status::Skip];

    pub fn name(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

/// One check's outcome: what was looked at, what was found, and the proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// `<family>.<subject>`, stable across releases (scripts match on it).
    pub id: String,
    pub status: Status,
    pub finding: String,
    /// URLs with status codes, files with sizes, log lines: what the finding rests on.
    pub evidence: Vec<String>,
    pub fix: Option<String>,
}

impl Check {
    pub fn new(id: impl Into<String>, status: Status, finding: impl Into<String>) -> Check {
        Check {
            id: id.into(),
            status,
            finding: finding.into(),
            evidence: Vec::new(),
            fix: None,
        }
    }

    pub fn pass(id: impl Into<String>, finding: impl Into<String>) -> Check {
        Check::new(id, Status::Pass, finding)
    }

    pub fn warn(id: impl Into<String>, finding: impl Into<String>) -> Check {
        Check::new(id, Status::Warn, finding)
    }

    pub fn fail(id: impl Into<String>, finding: impl Into<String>) -> Check {
        Check::new(id, Status::Fail, finding)
    }

    pub fn skip(id: impl Into<String>, finding: impl Into<String>) -> Check {
        Check::new(id, Status::Skip, finding)
    }

    pub fn evidence(mut self, line: impl Into<String>) -> Check {
        self.evidence.push(line.into());
        self
    }

    pub fn evidence_all(mut self, lines: impl IntoIterator<Item = String>) -> Check {
        self.evidence.extend(lines);
        self
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }

    /// The part of the id before the first dot.
    pub fn family(&self) -> &str {
        self.id.split('.').next().unwrap_or_default()
    }
}

/// Problems found while looking at one subject, each with its severity; the check takes
/// the worst. Keeps multi-condition checks from growing nested ifs.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    problems: Vec<(Status, String)>,
    pub evidence: Vec<String>,
}

impl Findings {
    pub fn fail(&mut self, problem: impl Into<String>) {
        self.problems.push((Status::Fail, problem.into()));
    }

    pub fn warn(&mut self, problem: impl Into<String>) {
        self.problems.push((Status::Warn, problem.into()));
    }

    pub fn note(&mut self, line: impl Into<String>) {
        self.evidence.push(line.into());
    }

    /// Fails (or warns) with the problems joined, else passes with `ok`.
    pub fn into_check(self, id: &str, ok: impl Into<String>) -> Check {
        let worst = self.problems.iter().map(|(s, _)| *s).max_by_key(|s| severity(*s));
        let check = match worst {
            None => Check::pass(id, ok),
            Some(status) => {
                let text: Vec<&str> = self
                    .problems
                    .iter()
                    .filter(|(s, _)| *s == status)
                    .map(|(_, p)| p.as_str())
                    .collect();
                Check::new(id, status, text.join("; "))
            }
        };
        let lesser = self.problems.into_iter().filter(|(s, _)| Some(*s) != worst);
        check.evidence_all(
            lesser
                .map(|(s, p)| format!("also ({}): {p}", s.name()))
                .chain(self.evidence),
        )
    }
}

fn severity(s: Status) -> u8 {
    match s {
        Status::Skip | Status::Pass => 0,
        Status::Warn => 1,
        Status::Fail => 2,
    }
}

/// What the run was asked to do.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Warnings fail the run too.
    pub strict: bool,
    /// Act as a PXE client on this interface (`--probe-dhcp`).
    pub probe: Option<probe::ProbeOptions>,
    /// Where each setting came from, to name it when it differs from the site's record.
    pub origins: BTreeMap<String, Source>,
}

/// Runs every family against the server `s` describes.
pub async fn run(s: &Settings, engine: &Engine, options: &Options) -> Result<Report, Error> {
    let rendered = crate::store::withdrawal::render_site(s)?;
    let engine_arch = engine.arch().await?;
    let first = containers::first_look(s, engine).await?;
    let talos_image_id = engine.image(&s.talos_image()).await?.map(|i| i.id);
    // These run inside the containers' watch window instead of after it.
    let matchbox_checks = matchbox::checks(s, engine).await;
    let st = state::load(&s.data_dir);
    let asset_checks = assets::checks(s, &st, talos_image_id.as_deref());
    let (mut checks, seen) = containers::checks(s, engine, engine_arch, first).await?;
    let version_check = matchbox::version(engine, &st, seen.matchbox.as_ref()).await;
    // A container removed since it was inspected has no log: its checks skip, the run goes on.
    let dnsmasq_log = match &seen.dnsmasq {
        Some(c) => engine.logs(&c.name, Some(logs::TAIL)).await.ok(),
        None => None,
    };
    checks.push(version_check);
    checks.extend(matchbox_checks);
    checks.extend(asset_checks);
    checks.extend(config::checks(s, &rendered, &seen));
    checks.push(listen::check(s, &seen));
    checks.push(exposure::check(s));
    checks.push(foreign::check(s, &rendered));
    checks.push(site::check(s, &options.origins));
    checks.extend(logs::checks(dnsmasq_log.as_deref()));
    checks.push(nodes_check(s, engine, &seen).await);
    checks.extend(probe::checks(s, options.probe.as_ref()).await);
    Ok(Report {
        checks,
        strict: options.strict,
        probe_dhcp: options.probe.is_some(),
    })
}

/// Reads both containers' logs with docker's times, as `cozyboot nodes` does (without its
/// journal: validate judges the running site) and before the DHCP probe adds its own lines.
async fn nodes_check(s: &Settings, engine: &Engine, seen: &containers::Seen) -> Check {
    use crate::journey::{clock, diagnosis::Site, dnsmasq_log, matchbox_log, model};
    let mut events = Vec::new();
    if let Some(c) = &seen.dnsmasq {
        if let Ok(text) = engine.logs_with_times(&c.name, None).await {
            events.extend(dnsmasq_log::events(&text));
        }
    }
    if let Some(c) = &seen.matchbox {
        if let Ok(text) = engine.logs_with_times(&c.name, None).await {
            events.extend(matchbox_log::events(&text));
        }
    }
    let record = crate::store::withdrawal::Record::load(&s.data_dir).unwrap_or_default();
    let (shared, macs) = crate::store::withdrawal::withdrawn_of(s, &record);
    nodes::check(&Site::of(s).without(shared, &macs), &model::fold(events), clock::now())
}

/// Every check of one run, and how to show them.
#[derive(Debug, Clone)]
pub struct Report {
    pub checks: Vec<Check>,
    pub strict: bool,
    pub probe_dhcp: bool,
}

impl Report {
    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// Whether the run fails: a failing check, or with `--strict` a warning too.
    pub fn failed(&self) -> bool {
        self.count(Status::Fail) > 0 || (self.strict && self.count(Status::Warn) > 0)
    }

    pub fn exit_code(&self) -> i32 {
        if self.failed() {
            crate::error::exit::FAILED
        } else {
            0
        }
    }

    /// The document `--json` prints; its keys are part of the interface (see [`SCHEMA`]).
    pub fn to_json(&self) -> Value {
        let summary: serde_json::Map<String, Value> = Status::ALL
            .iter()
            .map(|s| (s.name().to_string(), json!(self.count(*s))))
            .collect();
        let checks: Vec<Value> = self
            .checks
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "family": c.family(),
                    "status": c.status,
                    "finding": c.finding,
                    "evidence": c.evidence,
                    "fix": c.fix,
                })
            })
            .collect();
        json!({
            "schema": SCHEMA,
            "ok": !self.failed(),
            "exit_code": self.exit_code(),
            "strict": self.strict,
            "probe_dhcp": self.probe_dhcp,
            "summary": summary,
            "checks": checks,
        })
    }

    /// A table: one line per check; evidence and fix under the ones that need attention.
    pub fn to_human(&self) -> String {
        let width = self.checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
        let mut out = String::new();
        for c in &self.checks {
            out.push_str(&format!(
                "{:<4}  {:<width$}  {}\n",
                c.status.name().to_uppercase(),
                c.id,
                c.finding
            ));
            if matches!(c.status, Status::Warn | Status::Fail) {
                for line in &c.evidence {
                    out.push_str(&format!("{:6}| {line}\n", ""));
                }
                if let Some(fix) = &c.fix {
                    out.push_str(&format!("{:6}fix: {fix}\n", ""));
                }
            }
        }
        out.push_str(&self.summary_line());
        out
    }

    fn summary_line(&self) -> String {
        let counts: Vec<String> = Status::ALL
            .iter()
            .map(|s| format!("{} {}", self.count(*s), s.name()))
            .collect();
        let verdict = if !self.failed() {
            "machines should boot"
        } else if self.count(Status::Fail) > 0 {
            "machines will not boot as configured"
        } else {
            "warnings fail the run (--strict)"
        };
        format!("{} checks: {} — {verdict}\n", self.checks.len(), counts.join(", "))
    }
}

/// At most `max` evidence lines, and a last one saying how many were left out.
pub(crate) fn capped(lines: impl IntoIterator<Item = String>, max: usize) -> Vec<String> {
    let all: Vec<String> = lines.into_iter().collect();
    let mut kept: Vec<String> = all.iter().take(max).cloned().collect();
    if all.len() > max {
        kept.push(format!("... and {} more", all.len() - max));
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(statuses: &[Status], strict: bool) -> Report {
        Report {
            checks: statuses
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    Check::new(format!("family.c{i}"), *s, "found")
                        .evidence("proof")
                        .fix("do it")
                })
                .collect(),
            strict,
            probe_dhcp: false,
        }
    }

    #[test]
    fn failing_checks_fail_the_run_and_warnings_only_when_strict() {
        assert!(!report(&[Status::Pass, Status::Skip], false).failed());
        assert!(report(&[Status::Pass, Status::Fail], false).failed());
        assert!(!report(&[Status::Warn], false).failed());
        assert!(report(&[Status::Warn], true).failed());
        assert_eq!(report(&[Status::Warn], true).exit_code(), 1);
    }

    #[test]
    fn json_has_stable_keys_and_counts() {
        let doc = report(&[Status::Pass, Status::Warn, Status::Fail], false).to_json();
        assert_eq!(doc["schema"], SCHEMA);
        assert_eq!(doc["ok"], false);
        assert_eq!(doc["summary"]["warn"], 1);
        assert_eq!(doc["checks"][1]["status"], "warn");
        assert_eq!(doc["checks"][1]["family"], "family");
        assert_eq!(doc["checks"][0]["fix"], "do it");
    }

    #[test]
    fn table_shows_evidence_only_where_attention_is_needed() {
        let text = report(&[Status::Pass, Status::Fail], false).to_human();
        assert_eq!(text.matches("| proof").count(), 1, "{text}");
        assert!(text.contains("FAIL  family.c1  found"), "{text}");
        assert!(text.ends_with("2 checks: 1 pass, 0 warn, 1 fail, 0 skip — machines will not boot as configured\n"));
    }

    #[test]
    fn findings_take_the_worst_status_and_keep_the_rest_as_evidence() {
        let mut f = Findings::default();
        f.warn("slightly off");
        f.fail("broken");
        f.note("looked here");
        let c = f.into_check("x.y", "fine");
        assert_eq!(c.status, Status::Fail);
        assert_eq!(c.finding, "broken");
        assert_eq!(c.evidence, vec!["also (warn): slightly off", "looked here"]);
        assert_eq!(Findings::default().into_check("x.y", "fine").status, Status::Pass);
    }

    #[test]
    fn capped_says_what_it_left_out() {
        let lines = (0..5).map(|i| i.to_string());
        assert_eq!(capped(lines, 2), vec!["0", "1", "... and 3 more"]);
    }
}
