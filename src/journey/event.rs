//! What the two logs tell about a machine, one fact per line read, in a form that can be
//! kept in the journal and folded into journeys again later.

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Which log a fact came from: the journal keeps each source's facts apart, so that reading
/// a container's log again replaces what was read of it before instead of counting it twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Dnsmasq,
    Matchbox,
}

/// One fact; `at` is Unix seconds when the line carried a time (docker's `--timestamps`
/// prefix or matchbox's `time=`), `None` for dnsmasq lines read without one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<i64>,
    #[serde(flatten)]
    pub what: What,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum What {
    /// A DHCP request (DISCOVER/REQUEST, or a proxy `PXE(...)` request) from `mac`.
    DhcpRequest {
        mac: String,
        /// client-arch from the vendor class `PXEClient:Arch:000NN` (dnsmasq does not log option 93 itself).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_arch: Option<u16>,
        /// iPXE asking (user class `iPXE` or the `ipxe` tag), not the firmware.
        ipxe: bool,
        proxy: bool,
    },
    /// An answer (OFFER/ACK, or a proxy reply); `ip` is known in full mode and on port 4011.
    DhcpOffer {
        mac: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip: Option<Ipv4Addr>,
        proxy: bool,
    },
    /// A Raspberry Pi EEPROM (dnsmasq's `rpi-eeprom` tag) was sent option 43, the PXE menu
    /// `Raspberry Pi Boot` it boots from.
    RpiOption43 { mac: String },
    /// The answer named a boot file (option 67, or `bootfile name:` in proxy replies).
    BootFile { mac: String, file: String, ipxe: bool },
    /// `dnsmasq-tftp: sent <path> to <ip>`.
    TftpSent { file: String, ip: Ipv4Addr },
    /// `dnsmasq-tftp: file <path> not found for <ip>`.
    TftpMissing { file: String, ip: Ipv4Addr },
    /// U-Boot running cozyboot's boot script asked for the file that names its MAC
    /// (`render::uboot::ANNOUNCE`): the machine at `ip` is `mac`.
    UbootScript { mac: String, ip: Ipv4Addr },
    /// `HTTP GET /boot.ipxe`: matchbox logs no client, so it names no machine.
    BootScript,
    /// `HTTP GET /ipxe?uuid=..&mac=..&serial=..&arch=..`; `uuid` and `serial` are the
    /// machine's SMBIOS system facts, `None` when iPXE sent none (journals written before
    /// they were kept have neither).
    Profile {
        mac: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        arch: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uuid: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        serial: Option<String>,
    },
    /// `No matching profile` / `No matching group` for these labels: a 404.
    NoProfile {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        arch: Option<String>,
    },
    /// `HTTP GET /assets/...`; `mac` when the URL carries one (cozyboot's profiles add `?mac=`).
    Asset {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<String>,
    },
    /// `HTTP GET /generic?...mac=..`: a Talos machine config.
    Config {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<String>,
    },
}

/// `52-54-00-C0-0B-11` (iPXE's `hexhyp`) or `52:54:00:c0:0b:11` → `52:54:00:c0:0b:11`.
pub fn normalize_mac(s: &str) -> Option<String> {
    let s = s.trim();
    if s.len() != 17 {
        return None;
    }
    let mut out = String::with_capacity(17);
    for (i, c) in s.chars().enumerate() {
        if i % 3 == 2 {
            if c != ':' && c != '-' {
                return None;
            }
            out.push(':');
        } else if c.is_ascii_hexdigit() {
            out.push(c.to_ascii_lowercase());
        } else {
            return None;
        }
    }
    Some(out)
}

/// The part of `line` after a docker `--timestamps` prefix, and that time.
pub fn split_docker_time(line: &str) -> (Option<i64>, &str) {
    if line.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        if let Some((stamp, rest)) = line.split_once(' ') {
            if let Some(t) = super::clock::parse_rfc3339(stamp) {
                return (Some(t), rest);
            }
        }
    }
    (None, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_normalised_from_both_spellings() {
        assert_eq!(normalize_mac("52-54-00-C0-0B-11").as_deref(), Some("52:54:00:c0:0b:11"));
        assert_eq!(normalize_mac("52:54:00:c0:0b:11").as_deref(), Some("52:54:00:c0:0b:11"));
        assert_eq!(normalize_mac("52:54:00:c0:0b"), None);
        assert_eq!(normalize_mac("${mac:hexhyp}xxxxx"), None);
    }

    #[test]
    fn docker_time_prefix_is_split_off() {
        let (t, rest) = split_docker_time("2026-11-29T19:08:35.123456789Z dnsmasq-dhcp: 1 tags: x");
        assert!(t.is_some());
        assert_eq!(rest, "dnsmasq-dhcp: 1 tags: x");
        assert_eq!(split_docker_time("dnsmasq: started"), (None, "dnsmasq: started"));
    }
}
