//! The Raspberry Pi boards with settings of their own (`rpi-nodes`): each board's serial (the
//! directory its EEPROM asks for), its MAC if given, and its Pi UEFI firmware settings.

use super::nodes::normalise_mac;
use super::Checker;
use crate::artifacts::arch::Arch;
use crate::artifacts::rpi_uefi_vars::BoardSettings;
use crate::settings::raw::{Raw, RpiNodeEntry, Text};
use crate::settings::RpiNode;
use std::collections::BTreeMap;

const FIELD: &str = "rpi-nodes";

/// An entry written `SERIAL[@MAC][;NAME=VALUE...]`, split.
struct Short {
    serial: String,
    mac: Option<String>,
    settings: Vec<(String, String)>,
    /// Parts after the serial that are not `NAME=VALUE`.
    malformed: Vec<String>,
}

/// `1234abcd;ram-above-3gb=true;system-table=devicetree` (or `SERIAL@MAC;...`) → the parts of
/// a map entry.
fn short(text: &str) -> Short {
    let mut parts = text.split(';');
    let head = parts.next().unwrap_or_default().trim();
    let (serial, mac) = match head.split_once('@') {
        Some((s, m)) => (s.to_string(), Some(m.to_string())),
        None => (head.to_string(), None),
    };
    let mut settings = Vec::new();
    let mut malformed = Vec::new();
    for part in parts.map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some((k, v)) => settings.push((k.trim().to_string(), v.trim().to_string())),
            None => malformed.push(part.to_string()),
        }
    }
    Short {
        serial,
        mac,
        settings,
        malformed,
    }
}

/// 8 hex digits, as the EEPROM prints the serial (`%08x`, lower case).
fn serial(text: &str) -> Option<String> {
    let t = text.trim().trim_start_matches("0x");
    (t.len() == 8 && t.chars().all(|c| c.is_ascii_hexdigit())).then(|| t.to_ascii_lowercase())
}

pub(super) fn rpi_nodes(c: &mut Checker<'_>, raw: &Raw, arches: &[Arch]) -> Vec<RpiNode> {
    let mut nodes: Vec<RpiNode> = Vec::new();
    if raw.rpi_nodes.as_ref().is_some_and(|n| !n.is_empty()) && !arches.contains(&Arch::Arm64) {
        c.fail(
            FIELD,
            None,
            "Raspberry Pi boards are listed but arm64 is not served",
            "add arm64 to --arch",
        );
    }
    for entry in raw.rpi_nodes.iter().flatten() {
        let (serial_text, mac, settings, other) = match entry {
            RpiNodeEntry::Long {
                serial,
                mac,
                settings,
                other,
            } => (
                serial.0.clone(),
                mac.as_ref().map(|Text(m)| m.clone()),
                settings.iter().map(|(k, Text(v))| (k.clone(), v.clone())).collect(),
                other.keys().cloned().collect::<Vec<_>>(),
            ),
            RpiNodeEntry::Short(s) => {
                let Short {
                    serial,
                    mac,
                    settings,
                    malformed,
                } = short(s);
                for part in malformed {
                    c.fail(
                        FIELD,
                        Some(&part),
                        format!("board {serial}: not NAME=VALUE"),
                        "write SERIAL;ram-above-3gb=true;system-table=devicetree",
                    );
                }
                (serial, mac, settings, Vec::new())
            }
        };
        let Some(serial) = serial(&serial_text) else {
            c.fail(
                FIELD,
                Some(&serial_text),
                "not a Raspberry Pi serial number (8 hex digits)",
                "write the 8 hex digits the board reports (`vcgencmd otp_dump | grep 28:`, or its EEPROM's TFTP requests: <serial>/start4.elf), e.g. serial: 1a2b3c4d",
            );
            continue;
        };
        for key in other {
            c.fail(
                FIELD,
                Some(&key),
                format!("board {serial}: an rpi-nodes entry has no key '{key}'"),
                "an entry has serial, mac and settings; put firmware settings under settings:",
            );
        }
        let mac = match mac {
            None => None,
            Some(m) => match normalise_mac(&m) {
                Some(norm) => Some(norm),
                None => {
                    c.fail(
                        FIELD,
                        Some(&m),
                        format!("board {serial}: not a MAC address"),
                        "write six hex pairs, e.g. dc:a6:32:01:02:03",
                    );
                    continue;
                }
            },
        };
        let mut board = BoardSettings::default();
        let mut seen = BTreeMap::new();
        for (name, value) in settings {
            if seen.insert(name.clone(), ()).is_some() {
                c.fail(
                    FIELD,
                    Some(&name),
                    format!("board {serial}: the setting is given twice"),
                    "keep one value per setting",
                );
                continue;
            }
            if let Err(p) = board.set(&name, &value) {
                c.fail(
                    FIELD,
                    Some(&format!("{name}: {value}")),
                    format!("board {serial}: {}", p.problem),
                    p.fix,
                );
            }
        }
        if nodes.iter().any(|n| n.serial == serial) {
            c.fail(
                FIELD,
                Some(&serial),
                "the same serial is listed twice",
                "keep one entry per board",
            );
            continue;
        }
        if let Some(m) = &mac {
            if nodes.iter().any(|n| n.mac.as_ref() == Some(m)) {
                c.fail(
                    FIELD,
                    Some(m),
                    "the same MAC address is given to two boards",
                    "keep one entry per board",
                );
                continue;
            }
        }
        nodes.push(RpiNode {
            serial,
            mac,
            settings: board,
        });
    }
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_form_splits_serial_mac_and_settings() {
        let Short {
            serial: s,
            mac: m,
            settings: set,
            malformed: bad,
        } = short("1A2B3C4D@dc:a6:32:01:02:03;ram-above-3gb=true; system-table = devicetree;oops");
        assert_eq!(s, "1A2B3C4D");
        assert_eq!(m.as_deref(), Some("dc:a6:32:01:02:03"));
        assert_eq!(
            set,
            [
                ("ram-above-3gb".into(), "true".into()),
                ("system-table".into(), "devicetree".into())
            ]
        );
        assert_eq!(bad, ["oops"]);
    }

    #[test]
    fn serials_are_eight_hex_digits_in_lower_case() {
        assert_eq!(serial("1A2B3C4D").as_deref(), Some("1a2b3c4d"));
        assert_eq!(serial("0x1a2b3c4d").as_deref(), Some("1a2b3c4d"));
        assert_eq!(serial("1a2b3c4"), None);
        assert_eq!(serial("1a2b3c4g"), None);
    }
}
