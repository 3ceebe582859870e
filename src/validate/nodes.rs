//! `logs.nodes.stopped-early`: machines seen in the last day that stopped before their
//! initramfs, from the containers' logs as `cozyboot nodes` reads them (its table has the
//! details; this check only says that someone should look).

use super::Check;
use crate::journey::diagnosis::{arch_label, diagnose, Site};
use crate::journey::model::{Journey, Stage};
use std::collections::BTreeMap;

pub const ID: &str = "logs.nodes.stopped-early";
/// Older stops are history, not a reason to warn today.
pub const RECENT_SECS: i64 = 86_400;

pub fn check(site: &Site, journeys: &BTreeMap<String, Journey>, now: i64) -> Check {
    let recent: Vec<&Journey> = journeys
        .values()
        .filter(|j| j.last_seen.is_none_or(|t| now - t < RECENT_SECS))
        .collect();
    if recent.is_empty() {
        // Nothing stopped: a pass, so that a site no machine has tried yet passes `--strict`.
        return Check::pass(ID, "no machine has asked this site for a boot in the last 24 h");
    }
    let stopped: Vec<String> = recent
        .iter()
        .filter_map(|j| {
            let d = diagnose(j, site, now);
            let early = d.stopped_before.is_some_and(|s| s <= Stage::Initramfs) && !d.in_progress;
            early.then(|| {
                format!(
                    "{} ({}): stopped before {}: {}",
                    j.mac,
                    arch_label(j),
                    d.stopped_before.unwrap_or(Stage::Dhcp),
                    d.finding
                )
            })
        })
        .collect();
    if stopped.is_empty() {
        return Check::pass(
            ID,
            format!(
                "{} machine(s) seen in the last 24 h got their kernel and initramfs",
                recent.len()
            ),
        );
    }
    Check::warn(
        ID,
        format!(
            "{} of {} machine(s) seen in the last 24 h stopped before their initramfs",
            stopped.len(),
            recent.len()
        ),
    )
    .evidence_all(stopped)
    .fix("`cozyboot nodes` shows each machine's stages and what to do where it stopped")
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;
    use crate::artifacts::arch::Arch;
    use crate::journey::{dnsmasq_log, matchbox_log, model};

    fn site() -> Site {
        Site {
            arches: vec![Arch::Arm64],
            config_for_all: false,
            config_macs: vec![],
            http: "10.0.0.1:8080".into(),
        }
    }

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/fixtures/journey/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn warns_about_a_machine_that_stopped_early_and_passes_one_that_got_through() {
        let now = crate::journey::clock::parse_rfc3339("2026-11-29T20:00:00Z").unwrap();
        let mut events = dnsmasq_log::events(&fixture("arm64-full.dnsmasq.log"));
        events.extend(matchbox_log::events(&fixture("arm64-full-mac-urls.matchbox.log")));
        let through = model::fold(events.clone());
        let c = check(&site(), &through, now);
        assert_eq!(c.status, Status::Pass, "{c:?}");
        events.extend(dnsmasq_log::events(
            &fixture("arch-12.dnsmasq.log").replace("c0:0b:11", "c0:0b:12"),
        ));
        let c = check(&site(), &model::fold(events), now);
        assert_eq!(c.status, Status::Warn, "{c:?}");
        assert!(
            c.evidence
                .iter()
                .any(|e| e.contains("52:54:00:c0:0b:12") && e.contains("client-arch,12")),
            "{c:?}"
        );
        let a_week_later = now + 7 * 86_400;
        let c = check(&site(), &through, a_week_later);
        assert!(c.status == Status::Pass && c.finding.contains("no machine"), "{c:?}");
    }
}
