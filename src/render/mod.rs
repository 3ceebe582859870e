//! Pure rendering: settings in, dnsmasq argv and matchbox files out. No I/O here but
//! [`write`], which lays the files down. (Which Talos configs were taken out of the tree once
//! their machines had them is a record in the data dir: `store::withdrawal`.)

pub mod container_spec;
pub mod containers;
pub mod dnsmasq;
pub mod kubernetes;
pub mod log_level;
pub mod matchbox;
pub mod rpi_boards;
pub mod talos;
pub mod uboot;
mod write;

use crate::settings::Settings;
use serde::Serialize;

pub use write::{atomic_write, rendered_paths, write_tree, Written, MANIFEST};

/// Where matchbox keeps its data inside its container.
pub const MATCHBOX_DATA: &str = "/var/lib/matchbox";

/// A file of the matchbox tree, relative to the data dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct File {
    pub path: String,
    #[serde(skip)]
    pub content: Vec<u8>,
}

/// Everything cozyboot derives from settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rendered {
    pub dnsmasq_args: Vec<String>,
    pub matchbox_args: Vec<String>,
    pub tree: matchbox::Tree,
    /// U-Boot's boot script (arm64 served); its text follows the tree's arm64 profiles.
    pub uboot: Option<uboot::Boot>,
}

pub fn render(s: &Settings) -> Rendered {
    Rendered {
        dnsmasq_args: dnsmasq::args(s),
        matchbox_args: matchbox_args(s),
        tree: matchbox::tree(s),
        uboot: uboot::boot(s),
    }
}

/// matchbox's flags. `-address` defaults to loopback only, and `-rpc-address` without TLS
/// files makes matchbox exit, so both are always explicit; both bind the address
/// `matchbox-listen` picks (see [`crate::settings::MatchboxListen`]).
pub fn matchbox_args(s: &Settings) -> Vec<String> {
    let mut args = vec![
        format!("-address={}:{}", s.matchbox_bind_ip(), s.http_port),
        format!("-data-path={MATCHBOX_DATA}"),
        format!("-assets-path={MATCHBOX_DATA}/assets"),
        format!("-log-level={}", log_level::matchbox_runs_at(&s.log_level)),
    ];
    if let Some(port) = s.rpc_port {
        args.push(format!("-rpc-address={}:{port}", s.matchbox_bind_ip()));
    }
    args
}

impl Rendered {
    /// The matchbox tree as files, in a stable order, and U-Boot's script in the assets.
    pub fn files(&self) -> Vec<File> {
        let mut files = Vec::new();
        for p in &self.tree.profiles {
            files.push(File {
                path: format!("profiles/{}.json", p.id),
                content: json(p),
            });
        }
        for g in &self.tree.groups {
            files.push(File {
                path: format!("groups/{}.json", g.id),
                content: json(g),
            });
        }
        for g in &self.tree.generics {
            files.push(File {
                path: format!("generic/{}", g.id),
                content: g.content.clone().into_bytes(),
            });
        }
        if let Some(boot) = &self.uboot {
            files.push(uboot::script_file(boot, &self.tree));
        }
        files
    }
}

pub(crate) fn json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("tree types always serialize");
    bytes.push(b'\n');
    bytes
}
