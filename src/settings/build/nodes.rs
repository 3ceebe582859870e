//! The Talos machine configs: one for every machine (`talos-config`) or one per MAC
//! (`talos-nodes`), each checked before it is served.

use super::Checker;
use crate::artifacts::arch::Arch;
use crate::settings::raw::{NodeEntry, Raw};
use crate::settings::{talos, NodeConfig, TalosConfig};
use std::path::PathBuf;

pub(super) fn talos_configs(
    c: &mut Checker<'_>,
    raw: &Raw,
    arches: &[Arch],
    expected: &str,
) -> (Option<TalosConfig>, Vec<NodeConfig>) {
    let default = raw.talos_config.as_ref().and_then(|path| {
        talos::load("talos-config", path, expected)
            .map_err(|e| c.errors.push(e.from_source(c.origins.get("talos-config"))))
            .ok()
    });
    let mut nodes: Vec<NodeConfig> = Vec::new();
    for entry in raw.talos_nodes.iter().flatten() {
        let (mac, arch, path) = match entry {
            NodeEntry::Long { mac, config, arch } => {
                (mac.0.clone(), arch.as_ref().map(|a| a.0.clone()), config.clone())
            }
            NodeEntry::Short(s) => {
                match s.split_once('=') {
                    Some((lhs, path)) => match lhs.split_once('@') {
                        Some((mac, arch)) => (mac.to_string(), Some(arch.to_string()), PathBuf::from(path)),
                        None => (lhs.to_string(), None, PathBuf::from(path)),
                    },
                    None => {
                        c.fail("talos-nodes", Some(s), "not MAC=PATH", "write aa:bb:cc:dd:ee:ff=./node1.yaml (or MAC@ARCH=PATH when serving several architectures)");
                        continue;
                    }
                }
            }
        };
        let Some(mac_norm) = normalise_mac(&mac) else {
            c.fail(
                "talos-nodes",
                Some(&mac),
                "not a MAC address",
                "write six hex pairs, e.g. dc:a6:32:01:02:03",
            );
            continue;
        };
        let arch = match arch.map(|a| a.parse::<Arch>()) {
            Some(Ok(a)) => a,
            Some(Err(problem)) => {
                c.fail(
                    "talos-nodes",
                    Some(&mac),
                    problem,
                    "use MAC@arm64=PATH or MAC@amd64=PATH",
                );
                continue;
            }
            None if arches.len() == 1 => arches[0],
            None => {
                c.fail(
                    "talos-nodes",
                    Some(&mac),
                    "several architectures are served and this node does not say which it is",
                    "write MAC@arm64=PATH or MAC@amd64=PATH",
                );
                continue;
            }
        };
        if !arches.contains(&arch) {
            c.fail(
                "talos-nodes",
                Some(&mac),
                format!("the node is {arch} but {arch} is not served"),
                format!("add {arch} to --arch"),
            );
            continue;
        }
        if nodes.iter().any(|n| n.mac == mac_norm) {
            c.fail(
                "talos-nodes",
                Some(&mac),
                "the same MAC address is listed twice",
                "keep one entry per node",
            );
            continue;
        }
        match talos::load("talos-nodes", &path, expected) {
            Ok(config) => nodes.push(NodeConfig {
                mac: mac_norm,
                arch,
                config,
            }),
            Err(e) => c.errors.push(e.from_source(c.origins.get("talos-nodes"))),
        }
    }
    (default, nodes)
}

/// `DC-A6-32-01-02-03` → `dc:a6:32:01:02:03`, as matchbox normalises the `mac` label.
pub fn normalise_mac(mac: &str) -> Option<String> {
    let parts: Vec<&str> = mac.trim().split([':', '-']).collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|ch| ch.is_ascii_hexdigit()));
    ok.then(|| parts.join(":").to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_normalise_like_matchbox() {
        assert_eq!(normalise_mac("DC-A6-32-01-02-03").as_deref(), Some("dc:a6:32:01:02:03"));
        assert_eq!(normalise_mac("dc:a6:32:01:02"), None);
    }
}
