//! matchbox's profiles, groups and generic files, as serde types (never string templates).

use super::talos;
use crate::artifacts::arch::Arch;
use crate::artifacts::layout;
use crate::settings::{NodeConfig, Settings};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Boot {
    pub kernel: String,
    pub initrd: Vec<String>,
    pub args: Vec<String>,
}

/// `profiles/<id>.json`; matchbox finds it by file name, so the file name is the id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub id: String,
    pub name: String,
    pub boot: Boot,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub generic_id: String,
}

/// `groups/<id>.json`: a selector over labels and the profile it leads to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub profile: String,
    pub selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// A file under `generic/`, served by `/generic` (a Talos machine config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Generic {
    pub id: String,
    #[serde(skip)]
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tree {
    pub profiles: Vec<Profile>,
    pub groups: Vec<Group>,
    pub generics: Vec<Generic>,
}

pub fn tree(s: &Settings) -> Tree {
    let mut t = Tree {
        profiles: Vec::new(),
        groups: Vec::new(),
        generics: Vec::new(),
    };
    for &arch in &s.arches {
        let id = profile_id(s, arch, None);
        let generic_id = s.talos_config.as_ref().map(|config| {
            let gid = format!("{id}.yaml");
            t.generics.push(Generic {
                id: gid.clone(),
                content: config.content.clone(),
            });
            gid
        });
        let name = format!("{} {arch} (Talos {})", title(s), s.tag);
        t.profiles.push(profile(arch, &id, name, s, generic_id));
        for buildarch in arch.ipxe_buildarches() {
            t.groups.push(Group {
                id: format!("{id}-{buildarch}"),
                name: format!("{} {arch} nodes (iPXE reports {buildarch})", title(s)),
                profile: id.clone(),
                selector: BTreeMap::from([("arch".to_string(), buildarch.to_string())]),
                metadata: BTreeMap::new(),
            });
        }
        for node in s.talos_nodes.iter().filter(|n| n.arch == arch) {
            node_entries(s, node, &mut t);
        }
    }
    t
}

/// A node with its own config: its own profile and a group selecting its MAC (and arch, so
/// the group has more selectors than the arch-wide one and wins).
fn node_entries(s: &Settings, node: &NodeConfig, t: &mut Tree) {
    let id = profile_id(s, node.arch, Some(&node.mac));
    let gid = format!("{id}.yaml");
    t.generics.push(Generic {
        id: gid.clone(),
        content: node.config.content.clone(),
    });
    let name = format!("{} node {} (Talos {})", title(s), node.mac, s.tag);
    t.profiles.push(profile(node.arch, &id, name, s, Some(gid)));
    for buildarch in node.arch.ipxe_buildarches() {
        t.groups.push(Group {
            id: format!("{id}-{buildarch}"),
            name: format!("{} node {}", title(s), node.mac),
            profile: id.clone(),
            selector: BTreeMap::from([
                ("arch".to_string(), buildarch.to_string()),
                ("mac".to_string(), node.mac.clone()),
            ]),
            metadata: BTreeMap::new(),
        });
    }
}

/// Added to the kernel and initrd URLs. matchbox logs only `HTTP GET <url>`, with no client
/// address: iPXE expanding the MAC into the URL is what lets `cozyboot nodes` tell whose
/// download it was. matchbox's asset server ignores the query.
pub const MAC_QUERY: &str = "?mac=${mac:hexhyp}";

fn profile(arch: Arch, id: &str, name: String, s: &Settings, generic_id: Option<String>) -> Profile {
    let base = format!("/assets/talos/{}", arch.asset_dir());
    let with_config = generic_id.is_some();
    Profile {
        id: id.to_string(),
        name,
        boot: Boot {
            kernel: format!("{base}/{}{MAC_QUERY}", layout::KERNEL),
            // matchbox writes `initrd <element>`: `--name` keeps the name the kernel's
            // `initrd=initramfs.xz` refers to whatever the URL ends in.
            initrd: vec![format!(
                "--name {} {base}/{}{MAC_QUERY}",
                layout::INITRAMFS,
                layout::INITRAMFS
            )],
            args: talos::kernel_args(s, arch, with_config),
        },
        generic_id: generic_id.unwrap_or_default(),
    }
}

fn title(s: &Settings) -> String {
    format!("Cozystack {}", s.variant)
}

/// `cozystack-spin-only-arm64`, or `cozystack-spin-only-arm64-dc-a6-32-01-02-03` for a node.
pub fn profile_id(s: &Settings, arch: Arch, mac: Option<&str>) -> String {
    let mut id = format!("cozystack-{}-{arch}", s.variant);
    if let Some(mac) = mac {
        id.push('-');
        id.push_str(&mac.replace(':', "-"));
    }
    id
}
