//! matchbox's logrus lines → [`Event`]s.
//!
//! Real matchbox (v0.11.0) logs one line per request, the URL and nothing else: no client
//! address, no status, no size. What names a machine is the query: `/ipxe?...&mac=..&arch=..`
//! always, `/assets/...` and `/generic` only because cozyboot's profiles add `?mac=${mac:hexhyp}`.
//!
//! ```text
//! time="2026-11-29T18:51:46Z" level=info msg="HTTP GET /ipxe?uuid=...&mac=52-54-00-c0-0b-11&domain=&hostname=&serial=&arch=arm64"
//! time="2026-11-29T18:55:12Z" level=info msg="No matching profile" labels="map[arch:i386 domain: hostname: mac:52:54:00:c0:0b:00 serial: uuid:...]"
//! ```
//!
//! Where each part of that line comes from upstream (read from the sources, not copied):
//! - the messages: poseidon/matchbox v0.11.0, `matchbox/http/handlers.go` (`logRequest`:
//!   `s.logger.Infof("HTTP %s %v", req.Method, req.URL)`, every request), `matchbox/http/ipxe.go`
//!   (`No matching profile` with a `labels` field, the map of `labelsFromRequest`),
//!   `matchbox/http/generic.go` (`No matching group`, same field), and `cmd/matchbox/main.go`
//!   (`Starting matchbox HTTP server on ...`, and `logrus.New()`: the default text formatter);
//! - the layout: sirupsen/logrus v1.9.3 (matchbox v0.11.0's `go.mod`), `text_formatter.go`:
//!   without a terminal, `time=` (RFC 3339, `formatter.go`'s `defaultTimestampFormat`), `level=`,
//!   `msg=`, then the fields sorted by key; a value is written bare unless it holds a
//!   character outside `[A-Za-z0-9-._/@^+]` (`needsQuoting`), then Go-quoted (`%q`); a map
//!   field is `fmt.Sprint`'s `map[k:v ...]`.
//!
//! The lines in `tests/fixtures/journey/*.matchbox.log` were written by the project's stand-in
//! (`testkit/matchbox-double`), which prints these lines; no real matchbox ran there.

use super::clock::parse_rfc3339;
use super::event::{normalize_mac, split_docker_time, Event, What};
use super::validate_marks::MARK;

/// [`SAMPLE_MAC`](super::validate_marks::SAMPLE_MAC), as the parsers write MACs.
const VALIDATE_MAC: &str = "02:63:6f:7a:79:01";

/// Reads one line; `None` for lines that tell nothing about a machine.
pub fn parse_line(line: &str) -> Option<Event> {
    let (docker_at, line) = split_docker_time(line);
    // docker's stamp has sub-second precision; matchbox's own only seconds.
    let at = docker_at.or_else(|| field(line, "time").and_then(parse_rfc3339));
    let msg = field(line, "msg")?;
    let what = if let Some(url) = msg.strip_prefix("HTTP GET ") {
        request(url)?
    } else if msg.starts_with("No matching") {
        let labels = field(line, "labels").unwrap_or("");
        What::NoProfile {
            mac: map_value(labels, "mac").and_then(normalize_mac),
            arch: map_value(labels, "arch").filter(|a| !a.is_empty()).map(str::to_string),
        }
    } else {
        return None;
    };
    Some(Event { at, what })
}

fn request(url: &str) -> Option<What> {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let param = |key: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
    };
    // matchbox logs the URL as iPXE sent it: a serial with spaces or `&` arrives escaped.
    let decoded = |key: &str| {
        let pairs = format!("http://matchbox/?{query}");
        reqwest::Url::parse(&pairs)
            .ok()?
            .query_pairs()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim().to_string())
    };
    // validate's requests (a node's check asks as that node) count as validate's own MAC,
    // which the fold drops; so does its `/boot.ipxe` then.
    let mac = if query.split('&').any(|kv| kv == MARK) {
        Some(VALIDATE_MAC.to_string())
    } else {
        param("mac").and_then(normalize_mac)
    };
    Some(match path {
        "/boot.ipxe" => What::BootScript,
        "/ipxe" => What::Profile {
            mac: mac?,
            arch: param("arch").filter(|a| !a.is_empty()).map(str::to_string),
            uuid: decoded("uuid").filter(|u| given_uuid(u)),
            serial: decoded("serial").filter(|s| !s.is_empty()),
        },
        "/generic" => What::Config { mac },
        p if p.starts_with("/assets/") => What::Asset {
            path: p.to_string(),
            mac,
        },
        _ => return None,
    })
}

/// iPXE sends `${uuid}` empty when the firmware has no SMBIOS uuid, and firmware that has
/// the table but no value fills it with zeros (or ones): neither names a machine.
fn given_uuid(uuid: &str) -> bool {
    let hex: Vec<char> = uuid.chars().filter(|c| *c != '-').collect();
    !hex.is_empty() && !hex.iter().all(|c| *c == '0') && !hex.iter().all(|c| c.eq_ignore_ascii_case(&'f'))
}

/// The value of `key=value` or `key="value"` in a logrus text line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(i) = line[from..].find(key) {
        let start = from + i;
        let after = &line[start + key.len()..];
        let at_word_start = start == 0 || line.as_bytes()[start - 1] == b' ';
        if let (true, Some(v)) = (at_word_start, after.strip_prefix('=')) {
            return Some(match v.strip_prefix('"') {
                // matchbox's messages hold no escaped quotes: URLs and fixed phrases.
                Some(q) => q.split('"').next().unwrap_or(q),
                None => v.split(' ').next().unwrap_or(v),
            });
        }
        from = start + key.len();
    }
    None
}

/// `mac` in Go's `map[arch:i386 mac:52:54:00:c0:0b:00 serial:]` (values hold no spaces).
fn map_value<'a>(map: &'a str, key: &str) -> Option<&'a str> {
    let inner = map.strip_prefix("map[")?.strip_suffix(']')?;
    inner.split(' ').find_map(|kv| kv.strip_prefix(key)?.strip_prefix(':'))
}

/// Every fact in `text` (a whole log).
pub fn events(text: &str) -> Vec<Event> {
    text.lines().filter_map(parse_line).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn what(line: &str) -> Option<What> {
        parse_line(line).map(|e| e.what)
    }

    #[test]
    fn real_lines() {
        let e = parse_line(r#"time="2026-11-29T18:51:46Z" level=info msg="HTTP GET /ipxe?uuid=00000000-0000-0000-0000-000000000000&mac=52-54-00-c0-0b-11&domain=&hostname=&serial=&arch=arm64""#).unwrap();
        assert_eq!(e.at, parse_rfc3339("2026-11-29T18:51:46Z"));
        assert_eq!(
            e.what,
            What::Profile {
                mac: "52:54:00:c0:0b:11".into(),
                arch: Some("arm64".into()),
                // QEMU's default: SMBIOS without a uuid, and no serial.
                uuid: None,
                serial: None,
            }
        );
        assert_eq!(
            what(r#"time="2026-11-29T18:51:46Z" level=info msg="HTTP GET /boot.ipxe""#),
            Some(What::BootScript)
        );
        assert_eq!(
            what(r#"time="2026-11-29T18:51:46Z" level=info msg="HTTP GET /assets/talos/arm64/vmlinuz""#),
            Some(What::Asset {
                path: "/assets/talos/arm64/vmlinuz".into(),
                mac: None
            })
        );
        assert_eq!(
            what(
                r#"time="2026-11-29T18:55:12Z" level=info msg="No matching profile" labels="map[arch:i386 domain: hostname: mac:52:54:00:c0:0b:00 serial: uuid:00000000-0000-0000-0000-000000000000]""#
            ),
            Some(What::NoProfile {
                mac: Some("52:54:00:c0:0b:00".into()),
                arch: Some("i386".into())
            })
        );
        assert_eq!(
            what(r#"time="2026-11-29T18:51:23Z" level=info msg="Starting matchbox HTTP server on 0.0.0.0:8080""#),
            None
        );
        assert_eq!(what(r#"time="2026-11-29T19:08:35Z" level=info msg="HTTP GET /""#), None);
    }

    /// iPXE fills matchbox's bootstrap query (matchbox v0.11.0 `http/ipxe.go`,
    /// `ipxeBootstrap`: `uuid=${uuid}&mac=${mac:hexhyp}&domain=${domain}&hostname=${hostname}&serial=${serial}&arch=${buildarch:uristring}`)
    /// from the SMBIOS system table; matchbox logs the URL as sent.
    #[test]
    fn the_hardware_ipxe_sends() {
        let profile = |query: &str| match what(&format!(
            r#"time="2026-12-06T03:45:35Z" level=info msg="HTTP GET /ipxe?{query}""#
        )) {
            Some(What::Profile { uuid, serial, .. }) => (uuid, serial),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            profile("uuid=4c4c4544-0042-3510-8052-b4c04f395a32&mac=52-54-00-c0-0b-11&domain=&hostname=&serial=CZB-SN-0042&arch=arm64"),
            (
                Some("4c4c4544-0042-3510-8052-b4c04f395a32".into()),
                Some("CZB-SN-0042".into())
            )
        );
        // Not given: empty values, the all-zero uuid.
        assert_eq!(
            profile("uuid=&mac=52-54-00-c0-0b-11&domain=&hostname=&serial=&arch=arm64"),
            (None, None)
        );
        assert_eq!(
            profile("uuid=00000000-0000-0000-0000-000000000000&mac=52-54-00-c0-0b-11&serial=%20&arch=arm64"),
            (None, None)
        );
        // A serial with characters a URL escapes.
        assert_eq!(
            profile("uuid=&mac=52-54-00-c0-0b-11&serial=SN%20A%2612&arch=arm64").1,
            Some("SN A&12".into())
        );
    }

    #[test]
    fn urls_that_carry_the_mac() {
        assert_eq!(
            what(
                r#"time="2026-11-29T18:51:46Z" level=info msg="HTTP GET /assets/talos/arm64/initramfs.xz?mac=52-54-00-c0-0b-11""#
            ),
            Some(What::Asset {
                path: "/assets/talos/arm64/initramfs.xz".into(),
                mac: Some("52:54:00:c0:0b:11".into())
            })
        );
        assert_eq!(
            what(r#"time="2026-11-29T18:51:46Z" level=info msg="HTTP GET /generic?arch=arm64&mac=52-54-00-c0-0b-11""#),
            Some(What::Config {
                mac: Some("52:54:00:c0:0b:11".into())
            })
        );
    }

    #[test]
    fn validates_requests_for_a_node_are_validates() {
        assert_eq!(
            VALIDATE_MAC.replace(':', "-"),
            crate::journey::validate_marks::SAMPLE_MAC
        );
        assert_eq!(
            what(
                r#"time="2026-11-29T18:51:46Z" level=info msg="HTTP GET /ipxe?uuid=x&mac=dc-a6-32-01-02-03&domain=&hostname=&serial=&arch=arm64&cozyboot=validate""#
            ),
            Some(What::Profile {
                mac: VALIDATE_MAC.into(),
                arch: Some("arm64".into()),
                uuid: Some("x".into()),
                serial: None,
            })
        );
        assert_eq!(
            what(
                r#"time="2026-11-29T18:51:46Z" level=info msg="HTTP GET /generic?arch=arm64&mac=dc-a6-32-01-02-03&cozyboot=validate""#
            ),
            Some(What::Config {
                mac: Some(VALIDATE_MAC.into())
            })
        );
    }

    #[test]
    fn docker_time_wins_over_matchbox_time() {
        let e =
            parse_line(r#"2026-11-29T18:51:47.5Z time="2026-11-29T18:51:46Z" level=info msg="HTTP GET /boot.ipxe""#)
                .unwrap();
        assert_eq!(e.at, parse_rfc3339("2026-11-29T18:51:47Z"));
    }

    #[test]
    fn every_captured_log_parses() {
        for name in [
            "arm64-full",
            "arm64-proxy",
            "bios-proxy",
            "no-i386-group",
            "up-x64-full",
        ] {
            let path = format!(
                "{}/tests/fixtures/journey/{name}.matchbox.log",
                env!("CARGO_MANIFEST_DIR")
            );
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                events(&text).iter().any(|e| matches!(e.what, What::Profile { .. })),
                "{path}"
            );
        }
    }
}
