//! The site as Kubernetes manifests (`cozyboot render --kubernetes DIR`): the same dnsmasq
//! argv, matchbox args and matchbox tree `up` runs, taken from [`super::render`]'s output and
//! never worked out again. Pure: the arm64 iPXE binary is read by the caller.
//!
//! One file per object, numbered in the order `kubectl apply -f DIR` should create them (it
//! applies a directory's files in name order): a kustomization would make the directory
//! unreadable to `kubectl apply -f` and to schema checkers, and adds nothing here.
//!
//! How the site sits in the cluster (docs/fleet.md, "The site in Kubernetes"):
//! - dnsmasq is a DaemonSet on the host network of the nodes labelled
//!   [`BOOT_LAN_LABEL`]`=<the subnet>`: DHCP needs the LAN's broadcasts, and one node per LAN
//!   carries the label, so one DHCP answerer serves each LAN.
//! - matchbox is a Deployment on the host network of the same node, bound to `server-ip` as
//!   `up` binds it: the address dnsmasq hands out must be one the booting machine reaches
//!   directly, and a Service's cluster address is not. `server-ip` is therefore that node's
//!   address on the LAN. The Service is for the cluster's own use.
//! - the matchbox tree is ConfigMaps (profiles, groups) and a Secret (the Talos machine
//!   configs under `generic/` carry the cluster's keys).
//! - the kernel and initramfs come out of the variant's Talos image by an init container
//!   (every Kubernetes version), or from an image volume ([`ServedFiles::ImageVolume`]).
//! - the arm64 iPXE binary is the one `up` serves, carried in ConfigMaps of
//!   [`IPXE_CHUNK`] bytes each (one would fit the API's 1 MiB, but not the 256 KiB annotation
//!   a client-side `kubectl apply` adds) and joined, checked by its SHA-256, by an init container.

mod objects;
mod served_files;

use super::Rendered;
use crate::artifacts::arch::Arch;
use crate::settings::Settings;
use serde_json::Value;

pub use objects::MATCHBOX_TLS_SECRET;
pub use served_files::{layouts, APPLETS, BUSYBOX_IMAGE, IPXE_CHUNK};

/// The node label that says which LAN a node's boot interface is on; its value is
/// [`boot_lan`]. Set on exactly one node per LAN.
pub const BOOT_LAN_LABEL: &str = "cozyboot.io/boot-lan";

/// How the Talos kernel and initramfs reach matchbox's assets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServedFiles {
    /// An init container runs the Talos image (with a busybox copied in, since the image has
    /// no shell) and copies them into an emptyDir: works on every Kubernetes version.
    InitContainer,
    /// The Talos image mounted as an image volume (`volumes[].image`): alpha in 1.31, beta in
    /// 1.33, on by default from 1.35; a busybox init container copies from the mount.
    ImageVolume,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub namespace: String,
    /// The architecture of the node(s) on the boot LAN: it picks the dnsmasq image's tag and
    /// is a node selector, as the engine's architecture picks it for `up`.
    pub node_arch: Arch,
    pub served_files: ServedFiles,
    /// The arm64 iPXE binary `up` serves, when arm64 is served.
    pub ipxe_arm64: Option<Vec<u8>>,
}

/// One object and the file it is written to.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub file: String,
    pub value: Value,
}

impl Manifest {
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }

    /// The file's text: a comment saying what made it, then the object as YAML.
    pub fn to_yaml(&self) -> String {
        let body = serde_yaml_ng::to_string(&self.value).expect("JSON values always serialize as YAML");
        format!("# Written by `cozyboot render --kubernetes`; render again rather than edit.\n{body}")
    }
}

/// The label value naming the boot LAN: the subnet, as a label value may spell it
/// (`10.20.13.0/24` → `10.20.13.0_24`).
pub fn boot_lan(s: &Settings) -> String {
    s.subnet.to_string().replace('/', "_")
}

/// Every object of the site, in the order they are applied.
pub fn manifests(s: &Settings, r: &Rendered, o: &Options) -> Vec<Manifest> {
    let mut out = vec![objects::namespace(o)];
    out.extend(objects::tree(s, r, o));
    out.push(served_files::scripts_config_map(o));
    if let Some(ipxe) = &o.ipxe_arm64 {
        out.extend(served_files::ipxe_config_maps(o, ipxe));
    }
    out.push(objects::matchbox_deployment(s, r, o));
    out.push(objects::matchbox_service(s, o));
    out.push(objects::dnsmasq_daemon_set(s, r, o));
    for (i, m) in out.iter_mut().enumerate() {
        m.file = format!("{:02}-{}", i, m.file);
    }
    out
}
