//! The two containers as data: what `up` creates and what `render` prints as `docker run`.

use super::container_spec::{Bind, ContainerSpec, NetworkMode};
use super::{dnsmasq::TFTP_ROOT, Rendered, MATCHBOX_DATA};
use crate::settings::{Network, Settings};
use std::collections::BTreeMap;

/// Label marking containers cozyboot manages; day-2 commands find them by it, like kind.
pub const LABEL_MANAGED: &str = "io.cozyboot.managed";
pub const LABEL_ROLE: &str = "io.cozyboot.role";
pub const LABEL_SPEC_HASH: &str = "io.cozyboot.spec-hash";
/// The data dir, so `status` and `down --purge` need no settings.
pub const LABEL_DATA_DIR: &str = "io.cozyboot.data-dir";

/// Where matchbox reads its TLS files for the gRPC API.
pub const MATCHBOX_TLS: &str = "/etc/matchbox";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Matchbox,
    Dnsmasq,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Matchbox => "matchbox",
            Role::Dnsmasq => "dnsmasq",
        }
    }

    pub fn from_label(label: &str) -> Option<Role> {
        match label {
            "matchbox" => Some(Role::Matchbox),
            "dnsmasq" => Some(Role::Dnsmasq),
            _ => None,
        }
    }
}

/// The matchbox spec, then the dnsmasq spec (dnsmasq may share matchbox's network namespace,
/// so matchbox must exist first).
pub fn specs(s: &Settings, r: &Rendered, dnsmasq_image: &str) -> [ContainerSpec; 2] {
    let mut matchbox_binds = vec![Bind {
        host: s.data_dir.clone(),
        container: MATCHBOX_DATA.to_string(),
        read_only: false,
    }];
    if s.rpc_port.is_some() {
        matchbox_binds.push(Bind {
            host: tls_dir(s),
            container: MATCHBOX_TLS.to_string(),
            read_only: true,
        });
    }
    let (matchbox_net, dnsmasq_net) = match &s.network {
        Network::Host => (NetworkMode::Host, NetworkMode::Host),
        Network::Named(name) => (
            NetworkMode::Named {
                name: name.clone(),
                ipv4: Some(s.server_ip),
            },
            NetworkMode::Container(s.names.matchbox.clone()),
        ),
    };
    let matchbox = spec(
        s,
        Role::Matchbox,
        &s.names.matchbox,
        s.matchbox_image(),
        r.matchbox_args.clone(),
        matchbox_binds,
        matchbox_net,
        vec![],
    );
    let dnsmasq = spec(
        s,
        Role::Dnsmasq,
        &s.names.dnsmasq,
        dnsmasq_image.to_string(),
        r.dnsmasq_args.clone(),
        vec![Bind {
            host: s.assets_dir(),
            container: TFTP_ROOT.to_string(),
            read_only: true,
        }],
        dnsmasq_net,
        vec!["NET_ADMIN".to_string()],
    );
    [matchbox, dnsmasq]
}

pub fn tls_dir(s: &Settings) -> std::path::PathBuf {
    s.data_dir.join("tls")
}

#[allow(clippy::too_many_arguments)]
fn spec(
    s: &Settings,
    role: Role,
    name: &str,
    image: String,
    cmd: Vec<String>,
    binds: Vec<Bind>,
    network: NetworkMode,
    cap_add: Vec<String>,
) -> ContainerSpec {
    let mut spec = ContainerSpec {
        name: name.to_string(),
        image,
        cmd,
        labels: BTreeMap::new(),
        binds,
        network,
        cap_add,
        restart_unless_stopped: true,
    };
    let hash = spec.spec_hash();
    spec.labels = BTreeMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (LABEL_ROLE.to_string(), role.name().to_string()),
        (LABEL_SPEC_HASH.to_string(), hash),
        (LABEL_DATA_DIR.to_string(), s.data_dir.display().to_string()),
    ]);
    spec
}

/// `docker run` options equivalent to a spec, for people who want to see or copy them.
pub fn docker_run_options(spec: &ContainerSpec) -> Vec<String> {
    let mut opts = match &spec.network {
        NetworkMode::Host => vec!["--net=host".to_string()],
        NetworkMode::Named { name, ipv4 } => {
            let mut o = vec![format!("--network={name}")];
            o.extend(ipv4.map(|ip| format!("--ip={ip}")));
            o
        }
        NetworkMode::Container(other) => vec![format!("--network=container:{other}")],
    };
    opts.extend(spec.cap_add.iter().map(|c| format!("--cap-add={c}")));
    for b in &spec.binds {
        let ro = if b.read_only { ":ro" } else { "" };
        opts.push(format!("-v {}:{}{ro}", b.host.display(), b.container));
    }
    opts
}
