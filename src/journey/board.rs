//! The live view of `cozyboot nodes --watch` on a terminal: one line per machine, newest
//! activity first, cut to the terminal's size, so that fifty machines booting at once stay
//! readable where the full table (four lines a machine) would scroll away.

use super::clock::format_rfc3339;
use super::diagnosis::arch_of_code;
use super::model::{Journey, Stage};
use super::report::{Report, Row};
use std::fmt::Write;

/// Lines above the machines: the summary and the column names.
const HEAD_LINES: usize = 2;
/// What an unknown or absurdly small terminal is taken to be.
const FALLBACK: (usize, usize) = (24, 80);

/// The board for a terminal of `rows` x `cols` (0 when unknown).
pub fn board(report: &Report, rows: usize, cols: usize) -> String {
    let (rows, cols) = if rows < 5 || cols < 40 { FALLBACK } else { (rows, cols) };
    let mut out = String::new();
    let count = |f: &dyn Fn(&Row) -> bool| report.rows.iter().filter(|r| f(r)).count();
    let done = count(&|r| r.diagnosis.stopped_before.is_none());
    let booting = count(&|r| r.diagnosis.stopped_before.is_some() && r.diagnosis.in_progress);
    let stopped = report.rows.len() - done - booting;
    let clock = &format_rfc3339(report.now)[11..19];
    push_line(
        &mut out,
        &format!(
            "cozyboot nodes  {} machine(s): {done} at talos, {booting} booting, {stopped} stopped   {clock}  (Ctrl-C ends)",
            report.rows.len()
        ),
        cols,
    );
    for note in &report.notes {
        push_line(&mut out, &format!("note: {note}"), cols);
    }
    let header = format!("{:<17}  {:<8}  {:<15}  {:<8}  STATE", "MAC", "ARCH", "IP", "STAGES");
    push_line(&mut out, &header, cols);
    // The last row stays free: the newline after the last line would scroll the board.
    let room = rows.saturating_sub(HEAD_LINES + report.notes.len() + 1).max(1);
    let shown = if report.rows.len() > room {
        room - 1
    } else {
        report.rows.len()
    };
    for r in &report.rows[..shown] {
        push_line(&mut out, &line(r, report.declared.get(&r.journey.mac)), cols);
    }
    if shown < report.rows.len() {
        let more = report.rows.len() - shown;
        push_line(
            &mut out,
            &format!("... {more} more, seen earlier (`cozyboot nodes` lists every machine)"),
            cols,
        );
    }
    out
}

/// A declared machine's hostname leads its state: the MAC column keeps its width.
fn line(r: &Row, hostname: Option<&String>) -> String {
    let j = &r.journey;
    let ip = j.ip.map_or_else(|| "-".to_string(), |ip| ip.to_string());
    let d = &r.diagnosis;
    let state = match (d.stopped_before, d.in_progress) {
        (None, _) => d.fix.clone(),
        (Some(next), true) => format!("booting, next {next}"),
        (Some(next), false) => format!("stopped before {next}: {}", d.finding),
    };
    let state = match hostname {
        Some(h) => format!("{h}: {state}"),
        None => state,
    };
    format!(
        "{:<17}  {:<8}  {:<15}  {}  {state}",
        j.mac,
        short_arch(j),
        ip,
        progress(j)
    )
}

/// One mark per stage, in order: `#` reached, `.` not.
fn progress(j: &Journey) -> String {
    Stage::ALL
        .iter()
        .map(|s| if j.reached(*s) { '#' } else { '.' })
        .collect()
}

/// `arm64/11`, `amd64/7`, `bios/0`, or iPXE's arch alone.
fn short_arch(j: &Journey) -> String {
    match (j.client_arch, j.ipxe_arch.as_deref()) {
        (Some(0), _) => "bios/0".into(),
        (Some(crate::artifacts::arch::UBOOT_NON_EFI_PXE), _) => "uboot/22".into(),
        (Some(c), _) => match arch_of_code(c) {
            Some(a) => format!("{a}/{c}"),
            None => format!("?/{c}"),
        },
        (None, Some(i)) => i.to_string(),
        (None, None) => "?".into(),
    }
}

/// Appends `text` cut to `cols` characters (a wrapped line would push the board off screen).
fn push_line(out: &mut String, text: &str, cols: usize) {
    if text.chars().count() > cols {
        let cut: String = text.chars().take(cols.saturating_sub(3)).collect();
        let _ = writeln!(out, "{cut}...");
    } else {
        let _ = writeln!(out, "{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::arch::Arch;
    use crate::journey::diagnosis::Site;
    use crate::journey::model::Mark;
    use std::collections::BTreeMap;

    const NOW: i64 = 4_000_000_000;

    /// `n` machines, machine `i` last seen `i` seconds ago; every third one through the
    /// kernel, the others only offered DHCP long ago.
    fn report(n: usize) -> Report {
        let mut journeys = BTreeMap::new();
        for i in 0..n {
            let mac = format!("52:54:00:00:{:02x}:{:02x}", i / 256, i % 256);
            let mut j = Journey {
                mac: mac.clone(),
                client_arch: Some(11),
                ip: Some(format!("10.0.{}.{}", i / 250, i % 250 + 2).parse().unwrap()),
                last_seen: Some(NOW - i as i64),
                first_seen: Some(NOW - i as i64 - 30),
                attempts: 1,
                ..Journey::default()
            };
            let through = if i % 3 == 0 { 5 } else { 1 };
            for s in &Stage::ALL[..through] {
                j.stages.insert(
                    *s,
                    Mark {
                        at: j.last_seen,
                        detail: "x".into(),
                    },
                );
            }
            journeys.insert(mac, j);
        }
        let site = Site {
            arches: vec![Arch::Arm64],
            config_for_all: false,
            config_macs: vec![],
            http: "10.0.0.1:8080".into(),
        };
        Report::build(journeys, &site, NOW)
    }

    #[test]
    fn many_machines_fit_the_terminal_newest_first() {
        let text = board(&report(60), 20, 100);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 19, "the last row stays free: {text}");
        assert!(lines.iter().all(|l| l.chars().count() <= 100), "{text}");
        assert!(
            lines[0].contains("60 machine(s): 0 at talos, 60 booting, 0 stopped"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("52:54:00:00:00:00  arm64/11"),
            "the newest first: {text}"
        );
        assert!(
            lines[2].ends_with("10.0.0.2         #####...  booting, next initramfs"),
            "{text}"
        );
        assert!(lines[3].starts_with("52:54:00:00:00:01"), "{text}");
        assert_eq!(
            lines[18],
            "... 44 more, seen earlier (`cozyboot nodes` lists every machine)"
        );
    }

    #[test]
    fn a_few_machines_are_all_shown_with_what_stopped_them() {
        let mut r = report(3);
        r.now += 3600;
        r.rows = Report::build(
            r.rows
                .into_iter()
                .map(|row| (row.journey.mac.clone(), row.journey))
                .collect(),
            &Site {
                arches: vec![Arch::Arm64],
                config_for_all: false,
                config_macs: vec![],
                http: "10.0.0.1:8080".into(),
            },
            r.now,
        )
        .rows;
        let text = board(&r, 40, 160);
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(text.contains("0 booting, 3 stopped"), "{text}");
        assert!(
            text.contains("stopped before initramfs: the kernel was fetched"),
            "{text}"
        );
        // A terminal of unknown size is taken as 24 x 80.
        let text = board(&r, 0, 0);
        assert!(text.lines().all(|l| l.chars().count() <= FALLBACK.1), "{text}");
        assert!(text.contains("#####...  stopped before initra..."), "{text}");
    }

    #[test]
    fn a_declared_machine_is_named_before_its_state() {
        let mut r = report(2);
        let mac = r.rows[0].journey.mac.clone();
        r.declared.insert(mac.clone(), "node1".into());
        let text = board(&r, 40, 200);
        let row = text.lines().find(|l| l.starts_with(&mac)).unwrap();
        assert!(row.contains("  node1: "), "{text}");
        let other = text.lines().find(|l| l.starts_with(&r.rows[1].journey.mac)).unwrap();
        assert!(!other.contains("node1"), "{text}");
    }
}
