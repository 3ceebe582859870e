//! `cozyboot export bootbox`: the machines the journal saw, as the `machines:` values of
//! Cozystack's BootBox package, so that the cluster's own DHCP (Tinkerbell smee, which answers
//! only MACs it has a Hardware object for) knows them when it takes over network booting.
//!
//! The keys are exactly BootBox's, read in cozystack/cozystack at commit
//! 026593e7385520984cfcd296d596503f97cb79fc, `packages/extra/bootbox/values.schema.json` and
//! `values.yaml` (required: arch, hostname, ip{address, gateway, netmask}, leaseTime, uefi;
//! optional: mac[], nameServers[], timeServers[]); `templates/matchbox/machines.yaml` (commit
//! 03a836c4e256d1cdfceb0aded2916afac3463420) turns each into a `tinkerbell.org/v1alpha1`
//! Hardware, one interface per MAC.

use super::model::{Journey, Stage};
use crate::settings::{DhcpMode, Settings};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// BootBox's spelling of amd64 (its values example, and Tinkerbell's Hardware `arch`).
pub const AMD64: &str = "x86_64";
/// Tinkerbell's spelling of arm64; BootBox cannot boot it (amd64 assets only).
pub const ARM64: &str = "aarch64";
/// DHCP's "infinite" lease (RFC 2131: 0xffffffff seconds), for `lease-time: infinite`.
const INFINITE_LEASE: u64 = u32::MAX as u64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    pub hostname: String,
    pub arch: String,
    pub ip: Ip,
    /// Seconds (BootBox passes it to Tinkerbell's `lease_time`).
    pub lease_time: u64,
    pub mac: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub name_servers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub time_servers: Vec<String>,
    pub uefi: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ip {
    pub address: String,
    pub gateway: String,
    pub netmask: String,
}

/// What the LAN gives every machine, whoever hands out the addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lan {
    pub netmask: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub lease_seconds: u64,
    pub name_servers: Vec<Ipv4Addr>,
}

/// Why the LAN's facts are not cozyboot's to know: proxy DHCP leaves addresses to the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUnknowns {
    pub missing: Vec<&'static str>,
}

impl Lan {
    /// The LAN as the site's dnsmasq describes it. In full mode dnsmasq sends itself as the
    /// router when no gateway is set (its default for option 3), and no DNS server when none
    /// is set (it runs with `-p0`; rfc2131.c sends itself as DNS only when serving DNS on port
    /// 53). In proxy mode the router's DHCP server hands out addresses, so gateway and lease
    /// time must be given (`--gateway`, `--lease-time`); explicit ones win in full mode too.
    pub fn of(s: &Settings, gateway: Option<Ipv4Addr>, lease_seconds: Option<u64>) -> Result<Lan, ProxyUnknowns> {
        match &s.dhcp {
            DhcpMode::Full {
                gateway: gw,
                dns,
                lease_time,
                ..
            } => Ok(Lan {
                netmask: s.subnet.netmask(),
                gateway: gateway.or(*gw).unwrap_or(s.server_ip),
                lease_seconds: lease_seconds.unwrap_or_else(|| lease_seconds_of(lease_time)),
                name_servers: dns.clone(),
            }),
            DhcpMode::Proxy => match (gateway, lease_seconds) {
                (Some(gateway), Some(lease_seconds)) => Ok(Lan {
                    netmask: s.subnet.netmask(),
                    gateway,
                    lease_seconds,
                    name_servers: Vec::new(),
                }),
                (g, l) => Err(ProxyUnknowns {
                    missing: [("--gateway", g.is_none()), ("--lease-time", l.is_none())]
                        .into_iter()
                        .filter(|(_, m)| *m)
                        .map(|(n, _)| n)
                        .collect(),
                }),
            },
        }
    }
}

/// dnsmasq's lease time (`3600`, `45m`, `12h`, `1d`, `1w`, `infinite`; settings checked it) in seconds.
pub fn lease_seconds_of(l: &str) -> u64 {
    if l == "infinite" {
        return INFINITE_LEASE;
    }
    let digits = l.trim_end_matches(['m', 'h', 'd', 'w']);
    let n: u64 = digits.parse().unwrap_or(0);
    let unit = match &l[digits.len()..] {
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => 1,
    };
    n * unit
}

/// The hostname of a machine nobody named: `node-` and its MAC's hex digits, so that it is the
/// same on every export and unique on the LAN (and a valid DNS label and Kubernetes name).
pub fn hostname_of(mac: &str) -> String {
    format!("node-{}", mac.replace(':', ""))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeftOut {
    pub mac: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Export {
    pub machines: Vec<Machine>,
    pub left_out: Vec<LeftOut>,
}

/// BootBox's arch and UEFI-or-not from the client architecture the firmware sent (option 93),
/// else from iPXE's build arch; `None` when neither is known.
fn firmware_of(j: &Journey) -> Result<(&'static str, bool), String> {
    match (j.client_arch, j.ipxe_arch.as_deref()) {
        (Some(0), _) => Ok((AMD64, false)),
        (Some(7 | 9), _) => Ok((AMD64, true)),
        (Some(11), _) => Ok((ARM64, true)),
        // BootBox's smee has only iPXE to offer, which U-Boot starts through its EFI network
        // boot and which then never sends a DHCP request there (render::uboot).
        (Some(crate::artifacts::arch::UBOOT_NON_EFI_PXE), _) => Err(
            "it boots through U-Boot's own network boot (client-arch 22), and BootBox can serve it only iPXE, which does not run under U-Boot".into(),
        ),
        (Some(code), _) => Err(format!(
            "its firmware's client architecture {code} is not one BootBox knows"
        )),
        (None, _) => {
            Err("its DHCP requests carried no client architecture, so whether it boots UEFI or BIOS is unknown".into())
        }
    }
}

/// One entry per machine that was offered an address (MAC order); machines BootBox cannot boot
/// (arm64) are left out with the reason unless `force`.
pub fn export(journeys: &BTreeMap<String, Journey>, lan: &Lan, force: bool) -> Export {
    let mut out = Export::default();
    for j in journeys.values() {
        let Some(ip) = j.ip.filter(|_| j.reached(Stage::Dhcp) || j.offered) else {
            continue;
        };
        let (arch, uefi) = match firmware_of(j) {
            Ok(f) => f,
            Err(reason) => {
                out.left_out.push(LeftOut {
                    mac: j.mac.clone(),
                    reason,
                });
                continue;
            }
        };
        if arch != AMD64 && !force {
            out.left_out.push(LeftOut {
                mac: j.mac.clone(),
                reason: format!(
                    "{arch}: BootBox serves amd64 only (its matchbox image and profiles carry amd64 assets); --force includes it"
                ),
            });
            continue;
        }
        out.machines.push(Machine {
            hostname: hostname_of(&j.mac),
            arch: arch.into(),
            ip: Ip {
                address: ip.to_string(),
                gateway: lan.gateway.to_string(),
                netmask: lan.netmask.to_string(),
            },
            lease_time: lan.lease_seconds,
            mac: vec![j.mac.clone()],
            name_servers: lan.name_servers.iter().map(|d| d.to_string()).collect(),
            time_servers: Vec::new(),
            uefi,
        });
    }
    out
}

/// The values file BootBox takes: only `machines:`, the rest keeps BootBox's defaults.
pub fn values_yaml(machines: &[Machine]) -> String {
    #[derive(Serialize)]
    struct Values<'a> {
        machines: &'a [Machine],
    }
    let yaml = serde_yaml_ng::to_string(&Values { machines }).expect("values serialize");
    // A MAC of digits only (`52:54:00:00:00:01`) is a base-60 integer to YAML 1.1 readers
    // (PyYAML and others); BootBox's template lower-cases each MAC as a string. Quoted, it
    // stays one everywhere.
    yaml.lines()
        .map(|line| match line.trim_start().strip_prefix("- ") {
            Some(item) if super::event::normalize_mac(item).as_deref() == Some(item) => {
                format!("{}- '{item}'\n", &line[..line.len() - line.trim_start().len()])
            }
            _ => format!("{line}\n"),
        })
        .collect()
}

/// How an existing values file's `machines:` differs from an export, per MAC.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Diff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// MAC and the keys whose values differ.
    pub changed: Vec<(String, Vec<String>)>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    pub fn to_human(&self) -> String {
        if self.is_empty() {
            return "the values file's machines are what the journal would export".into();
        }
        let mut out = String::new();
        for m in &self.added {
            out.push_str(&format!("added    {m}  (seen by cozyboot, not in the file)\n"));
        }
        for m in &self.removed {
            out.push_str(&format!("removed  {m}  (in the file, not exported)\n"));
        }
        for (m, keys) in &self.changed {
            out.push_str(&format!("changed  {m}  {}\n", keys.join(", ")));
        }
        out
    }
}

/// Compares the `machines:` of `existing` (a values file's text) with `wanted`. Entries are
/// matched by MAC (lower case, each MAC of an entry); keys compare as YAML values, so that a
/// file written by hand with other quoting or order is equal when it means the same.
pub fn check(existing: &str, wanted: &[Machine]) -> Result<Diff, String> {
    use serde_yaml_ng::Value;
    let doc: Value = serde_yaml_ng::from_str(existing).map_err(|e| format!("it is not YAML: {e}"))?;
    let theirs: Vec<Value> = match doc.get("machines") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(s)) => s.clone(),
        Some(_) => return Err("its `machines` is not a list".into()),
    };
    let macs_of = |m: &Value| -> Vec<String> {
        match m.get("mac") {
            Some(Value::Sequence(s)) => s.iter().filter_map(|v| v.as_str()).map(str::to_lowercase).collect(),
            _ => Vec::new(),
        }
    };
    let mut by_mac: BTreeMap<String, Value> = BTreeMap::new();
    for m in &theirs {
        for mac in macs_of(m) {
            by_mac.insert(mac, m.clone());
        }
    }
    let mut diff = Diff::default();
    let mut seen = std::collections::BTreeSet::new();
    for w in wanted {
        let mac = w.mac[0].clone();
        seen.insert(mac.clone());
        let ours = serde_yaml_ng::to_value(w).expect("a machine serializes");
        let Some(t) = by_mac.get(&mac) else {
            diff.added.push(mac);
            continue;
        };
        let mut keys: Vec<String> = Vec::new();
        for key in [
            "hostname",
            "arch",
            "ip",
            "leaseTime",
            "mac",
            "nameServers",
            "timeServers",
            "uefi",
        ] {
            let a = ours.get(key).filter(|v| !is_empty_list(v));
            let b = t.get(key).filter(|v| !is_empty_list(v));
            let same = match (a, b) {
                (Some(Value::Sequence(x)), Some(Value::Sequence(y))) if key == "mac" => lower(x) == lower(y),
                (a, b) => a == b,
            };
            if !same {
                keys.push(key.to_string());
            }
        }
        if !keys.is_empty() {
            diff.changed.push((mac, keys));
        }
    }
    diff.removed = by_mac.keys().filter(|m| !seen.contains(*m)).cloned().collect();
    Ok(diff)
}

fn is_empty_list(v: &serde_yaml_ng::Value) -> bool {
    matches!(v, serde_yaml_ng::Value::Sequence(s) if s.is_empty())
}

fn lower(s: &[serde_yaml_ng::Value]) -> Vec<String> {
    s.iter().filter_map(|v| v.as_str()).map(str::to_lowercase).collect()
}

#[cfg(test)]
#[path = "bootbox_tests.rs"]
mod tests;
