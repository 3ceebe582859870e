//! The journeys with their diagnoses, as a table for people and one JSON document for CI.

use super::clock::format_rfc3339;
use super::diagnosis::{arch_label, diagnose, Diagnosis, Site};
use super::model::{Journey, Stage};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write;

pub const SCHEMA: &str = "cozyboot.nodes/v1";
/// The state of a declared machine no log or journal has seen.
pub const NEVER_SEEN: &str = "never seen";

#[derive(Debug, Clone)]
pub struct Row {
    pub journey: Journey,
    pub arch: String,
    pub diagnosis: Diagnosis,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Newest first: the machine being worked on is usually the one just seen.
    pub rows: Vec<Row>,
    pub now: i64,
    /// What could not be read or probed, said once above the table.
    pub notes: Vec<String>,
    /// Machines declared under `machines:`: MAC → hostname. Shown next to their MAC; those
    /// with no journey are listed as never seen.
    pub declared: BTreeMap<String, String>,
    /// MAC → when `cozyboot power on` (or `cycle`) last powered it: each stage reached since
    /// is shown with the time it took from then.
    pub powered_on: BTreeMap<String, i64>,
}

impl Report {
    pub fn build(journeys: BTreeMap<String, Journey>, site: &Site, now: i64) -> Report {
        let mut rows: Vec<Row> = journeys
            .into_values()
            .map(|j| Row {
                arch: arch_label(&j),
                diagnosis: diagnose(&j, site, now),
                journey: j,
            })
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.journey.last_seen));
        Report {
            rows,
            now,
            ..Report::default()
        }
    }

    /// Declared machines no log or journal has seen, by hostname.
    pub fn never_seen(&self) -> Vec<(&str, &str)> {
        let mut unseen: Vec<(&str, &str)> = self
            .declared
            .iter()
            .filter(|(mac, _)| !self.rows.iter().any(|r| &r.journey.mac == *mac))
            .map(|(mac, host)| (host.as_str(), mac.as_str()))
            .collect();
        unseen.sort();
        unseen
    }

    /// Seconds from the machine's last power-on to `at`, for stages reached since.
    fn since_power_on(&self, mac: &str, at: Option<i64>) -> Option<i64> {
        let on = *self.powered_on.get(mac)?;
        at.filter(|t| *t >= on).map(|t| t - on)
    }

    /// Machines that reached `stage` in their latest attempt.
    pub fn reached(&self, stage: Stage) -> usize {
        self.rows.iter().filter(|r| r.journey.reached(stage)).count()
    }

    pub fn to_human(&self) -> String {
        let mut out = String::new();
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        let unseen = self.never_seen();
        if self.rows.is_empty() && unseen.is_empty() {
            out.push_str("no machine has asked for DHCP in the logs read (nor in the journal)\n");
            return out;
        }
        let time = |t: Option<i64>| t.map_or_else(|| "-".to_string(), format_rfc3339);
        // The HOSTNAME column only where machines are declared: without them it would be empty.
        let named = !self.declared.is_empty();
        let mut header = vec!["MAC", "ARCH", "IP", "FIRST SEEN", "LAST SEEN", "REACHED"];
        if named {
            header.insert(1, "HOSTNAME");
        }
        let mut cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                let j = &r.journey;
                let mut row = vec![
                    j.mac.clone(),
                    r.arch.clone(),
                    j.ip.map_or_else(|| "-".into(), |ip| ip.to_string()) + if j.proxy { " (proxy)" } else { "" },
                    time(j.first_seen),
                    time(j.last_seen),
                    j.furthest().map_or_else(|| "-".into(), |s| s.to_string()),
                ];
                if named {
                    row.insert(1, self.declared.get(&j.mac).cloned().unwrap_or_else(|| "-".into()));
                }
                row
            })
            .collect();
        for (host, mac) in &unseen {
            let mut row = vec![mac.to_string(), host.to_string()];
            row.extend(["-", "-", "-", "-", NEVER_SEEN].map(String::from));
            cells.push(row);
        }
        let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cols: &[&str]| {
            let mut l = String::new();
            for (i, c) in cols.iter().enumerate() {
                if i + 1 == cols.len() {
                    l.push_str(c);
                } else {
                    let _ = write!(l, "{c:<w$}  ", w = widths[i]);
                }
            }
            l.push('\n');
            l
        };
        out.push_str(&line(&header));
        for (row, r) in cells.iter().zip(&self.rows) {
            out.push_str(&line(&row.iter().map(String::as_str).collect::<Vec<_>>()));
            if let Some(hardware) = hardware_line(&r.journey) {
                let _ = writeln!(out, "    {hardware}");
            }
            if let Some(pi) = rpi_line(&r.journey) {
                let _ = writeln!(out, "    {pi}");
            }
            if let Some(on) = self.powered_on.get(&r.journey.mac) {
                let _ = writeln!(out, "    powered on {}", format_rfc3339(*on));
            }
            let stages: Vec<String> = r
                .journey
                .stages
                .iter()
                .map(|(s, m)| {
                    let at = m.at.map(|t| format_rfc3339(t)[11..19].to_string()).unwrap_or_default();
                    let since = self
                        .since_power_on(&r.journey.mac, m.at)
                        .map(|d| format!("(+{d}s)"))
                        .unwrap_or_default();
                    format!("{s} {at} {since} {}", m.detail)
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            if !stages.is_empty() {
                let _ = writeln!(out, "    {}", stages.join(" | "));
            }
            let d = &r.diagnosis;
            let verdict = match (d.stopped_before, d.in_progress) {
                (None, _) => "done".to_string(),
                (Some(s), true) => format!("booting (seen in the last 2 min), not yet at {s}"),
                (Some(s), false) => format!("stopped before {s}"),
            };
            let _ = writeln!(out, "    {verdict}: {}", d.finding);
            let _ = writeln!(
                out,
                "    {}",
                if d.stopped_before.is_none() {
                    d.fix.clone()
                } else {
                    format!("fix: {}", d.fix)
                }
            );
        }
        for (row, (host, mac)) in cells[self.rows.len()..].iter().zip(&unseen) {
            out.push_str(&line(&row.iter().map(String::as_str).collect::<Vec<_>>()));
            let powered = match self.powered_on.get(*mac) {
                Some(on) => format!(", though it was powered on at {}", format_rfc3339(*on)),
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "    declared as {host}, but no DHCP request from {mac} is in the logs read (nor in the journal){powered}"
            );
            let _ = writeln!(
                out,
                "    fix: power it on (`cozyboot power on {host}`), and check that it netboots first from the NIC with this MAC"
            );
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let machines: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let j = &r.journey;
                let stages: Vec<Value> = j
                    .stages
                    .iter()
                    .map(|(s, m)| {
                        json!({
                            "stage": s,
                            "at": m.at.map(format_rfc3339),
                            "since_power_on_s": self.since_power_on(&j.mac, m.at),
                            "detail": m.detail,
                        })
                    })
                    .collect();
                json!({
                    "mac": j.mac,
                    "hostname": self.declared.get(&j.mac),
                    "state": "seen",
                    "powered_on": self.powered_on.get(&j.mac).map(|t| format_rfc3339(*t)),
                    "arch": { "label": r.arch, "client_arch": j.client_arch, "ipxe": j.ipxe_arch },
                    "ip": j.ip,
                    "hardware": { "uuid": j.uuid, "serial": j.serial },
                    "proxy_dhcp": j.proxy,
                    "first_seen": j.first_seen.map(format_rfc3339),
                    "last_seen": j.last_seen.map(format_rfc3339),
                    "attempts": j.attempts,
                    "reached": j.furthest(),
                    "stages": stages,
                    "rpi_eeprom": j.rpi,
                    "diagnosis": r.diagnosis,
                })
            })
            .collect();
        let machines: Vec<Value> = machines
            .into_iter()
            .chain(self.never_seen().into_iter().map(|(host, mac)| {
                json!({
                    "mac": mac,
                    "hostname": host,
                    "state": NEVER_SEEN,
                    "powered_on": self.powered_on.get(mac).map(|t| format_rfc3339(*t)),
                    "stages": [],
                })
            }))
            .collect();
        json!({
            "schema": SCHEMA,
            "generated_at": format_rfc3339(self.now),
            "notes": self.notes,
            "machines": machines,
        })
    }
}

/// A Raspberry Pi's first stage: `pi eeprom: option 43 offered | tftp start4.elf, config.txt, RPI_EFI.fd`.
fn rpi_line(j: &Journey) -> Option<String> {
    let pi = j.rpi.as_ref()?;
    let mut parts = vec![if pi.option43 {
        "option 43 offered".to_string()
    } else {
        "no option 43".to_string()
    }];
    if !pi.files.is_empty() {
        parts.push(format!("tftp {}", pi.files.join(", ")));
    }
    if let Some(missing) = &pi.missing {
        parts.push(format!("{missing} not found"));
    }
    Some(format!("pi eeprom: {}", parts.join(" | ")))
}

/// The serial first: it is what is printed on the machine's label.
fn hardware_line(j: &Journey) -> Option<String> {
    let parts: Vec<String> = [("serial", &j.serial), ("uuid", &j.uuid)]
        .into_iter()
        .filter_map(|(name, v)| v.as_ref().map(|v| format!("{name} {v}")))
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::super::{dnsmasq_log, matchbox_log, model};
    use super::*;
    use crate::artifacts::arch::Arch;

    fn report() -> Report {
        let dir = format!("{}/tests/fixtures/journey", env!("CARGO_MANIFEST_DIR"));
        let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).unwrap();
        let mut events = dnsmasq_log::events(&read("arm64-full.dnsmasq.log"));
        events.extend(matchbox_log::events(&read("arm64-full-mac-urls.matchbox.log").replace(
            "mac=52-54-00-c0-0b-11&domain=&hostname=&serial=&",
            "mac=52-54-00-c0-0b-11&domain=&hostname=&serial=CZB-SN-0042&",
        )));
        events.extend(dnsmasq_log::events(
            &read("arch-12.dnsmasq.log").replace("52:54:00:c0:0b:11", "52:54:00:c0:0b:12"),
        ));
        let site = Site {
            arches: vec![Arch::Arm64],
            config_for_all: false,
            config_macs: vec![],
            http: "10.0.0.1:8080".into(),
        };
        Report::build(model::fold(events), &site, 4_000_000_000)
    }

    #[test]
    fn table_names_each_machine_its_stages_and_the_fix() {
        let text = report().to_human();
        assert!(text.starts_with("MAC "), "{text}");
        assert!(
            text.contains("52:54:00:c0:0b:11  arm64 (client-arch 11), iPXE arm64  10.213.167.130"),
            "{text}"
        );
        assert!(
            text.contains("initramfs 19:22:28 /assets/talos/arm64/initramfs.xz"),
            "{text}"
        );
        assert!(text.contains("\n    serial CZB-SN-0042\n"), "{text}");
        assert!(text.contains("stopped before talos"), "{text}");
        assert!(
            text.contains("stopped before dhcp") && text.contains("client-arch,12"),
            "{text}"
        );
    }

    #[test]
    fn json_document() {
        let r = report();
        assert_eq!(r.reached(Stage::Initramfs), 1);
        let v = r.to_json();
        assert_eq!(v["schema"], SCHEMA);
        let m = v["machines"].as_array().unwrap();
        assert_eq!(m.len(), 2);
        let done = m.iter().find(|m| m["mac"] == "52:54:00:c0:0b:11").unwrap();
        assert_eq!(done["reached"], "initramfs");
        assert_eq!(done["arch"]["client_arch"], 11);
        assert_eq!(done["stages"][4]["stage"], "kernel");
        assert_eq!(done["diagnosis"]["stopped_before"], "talos");
        assert_eq!(done["hardware"]["serial"], "CZB-SN-0042");
        // The fixture's uuid is all zeros: not given.
        assert_eq!(done["hardware"]["uuid"], Value::Null);
        let other = m.iter().find(|m| m["mac"] == "52:54:00:c0:0b:12").unwrap();
        assert_eq!(other["hardware"], json!({ "uuid": null, "serial": null }));
    }

    /// The table as people see it, with machines declared (a HOSTNAME column, a machine never
    /// seen) and power-on times (each stage's time from power-on), and without (no column).
    #[test]
    fn table_snapshots_with_and_without_declared_machines() {
        let plain = report();
        insta::assert_snapshot!("nodes_table_plain", plain.to_human());

        let mut r = report();
        let seen = "52:54:00:c0:0b:11";
        let booted_at = r
            .rows
            .iter()
            .find(|row| row.journey.mac == seen)
            .and_then(|row| row.journey.stages.get(&Stage::BootIpxe)?.at)
            .unwrap();
        r.declared = BTreeMap::from([
            (seen.to_string(), "node1".to_string()),
            ("52:54:00:aa:00:09".to_string(), "spare".to_string()),
        ]);
        r.powered_on = BTreeMap::from([
            (seen.to_string(), booted_at - 30),
            ("52:54:00:aa:00:09".to_string(), booted_at),
        ]);
        let text = r.to_human();
        insta::assert_snapshot!("nodes_table_declared_and_powered", text);
        assert!(
            text.lines().next().unwrap().starts_with("MAC                HOSTNAME"),
            "{text}"
        );

        let v = r.to_json();
        let m = v["machines"].as_array().unwrap();
        let node1 = m.iter().find(|m| m["mac"] == seen).unwrap();
        assert_eq!(node1["hostname"], "node1");
        assert_eq!(node1["state"], "seen");
        assert_eq!(
            node1["stages"][0]["since_power_on_s"],
            Value::Null,
            "dnsmasq's line had no time"
        );
        assert_eq!(node1["stages"][2]["stage"], "boot-ipxe");
        assert_eq!(node1["stages"][2]["since_power_on_s"], 30);
        let other = m.iter().find(|m| m["mac"] == "52:54:00:c0:0b:12").unwrap();
        assert_eq!(other["hostname"], Value::Null);
        let spare = m.iter().find(|m| m["mac"] == "52:54:00:aa:00:09").unwrap();
        assert_eq!(spare["hostname"], "spare");
        assert_eq!(spare["state"], NEVER_SEEN);
        // Never seen is not a stage reached: --wait counts only machines that got there.
        assert_eq!(r.reached(Stage::Dhcp), plain.reached(Stage::Dhcp));
    }
}
