//! What a cozyboot container should look like, as plain data.
//!
//! Renderers build a [`ContainerSpec`], the planner compares its [`ContainerSpec::spec_hash`]
//! with the hash recorded on the running container, and only `engine::docker` turns it into
//! Docker API calls.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Which network namespace the container joins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// The host's network namespace (what DHCP needs to see broadcasts on the LAN).
    Host,
    /// A Docker network by name (`none`, `bridge` or a user-defined one), optionally with a
    /// static IPv4 address, which Docker only accepts on networks with a configured subnet.
    Named { name: String, ipv4: Option<Ipv4Addr> },
    /// Share another container's network namespace (`container:<name>`).
    Container(String),
}

impl NetworkMode {
    /// The value Docker expects in `HostConfig.NetworkMode`.
    pub fn docker_value(&self) -> String {
        match self {
            NetworkMode::Host => "host".to_owned(),
            NetworkMode::Named { name, .. } => name.clone(),
            NetworkMode::Container(other) => format!("container:{other}"),
        }
    }
}

/// A host path mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    /// Absolute path on the Docker host; it must exist (cozyboot never lets Docker create it).
    pub host: PathBuf,
    /// Absolute path inside the container.
    pub container: String,
    pub read_only: bool,
}

/// Everything cozyboot decides about one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// Arguments after the image's ENTRYPOINT; empty keeps the image's CMD.
    pub cmd: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub binds: Vec<Bind>,
    pub network: NetworkMode,
    pub cap_add: Vec<String>,
    pub restart_unless_stopped: bool,
}

/// The hashed view of a spec: labels are left out because the hash itself is stored in a label.
#[derive(Serialize)]
struct HashedView<'a> {
    version: u32,
    name: &'a str,
    image: &'a str,
    cmd: &'a [String],
    binds: &'a [Bind],
    network: &'a NetworkMode,
    cap_add: Vec<&'a str>,
    restart_unless_stopped: bool,
}

impl ContainerSpec {
    /// SHA-256 (hex) of a canonical JSON form of the spec without its labels.
    ///
    /// Stable across runs and releases for an equal spec, so it can be recorded in a label and
    /// compared later to decide whether a container must be replaced.
    pub fn spec_hash(&self) -> String {
        // Capabilities are a set for Docker, so their order must not force a replacement.
        let mut cap_add: Vec<&str> = self.cap_add.iter().map(String::as_str).collect();
        cap_add.sort_unstable();
        cap_add.dedup();
        let view = HashedView {
            // Bump when the meaning of a field changes, so old containers get replaced.
            version: 1,
            name: &self.name,
            image: &self.image,
            cmd: &self.cmd,
            binds: &self.binds,
            network: &self.network,
            cap_add,
            restart_unless_stopped: self.restart_unless_stopped,
        };
        // Serializing plain structs, strings and paths to a Vec cannot fail (no maps with
        // non-string keys); a failure would be a programming error caught by the tests.
        let json = serde_json::to_vec(&view).unwrap_or_default();
        hex::encode(Sha256::digest(&json))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ContainerSpec {
        ContainerSpec {
            name: "cozyboot-dnsmasq".into(),
            image: "quay.io/poseidon/dnsmasq:v0.5.0-32-g4327d60-amd64".into(),
            cmd: vec!["-d".into(), "--log-dhcp".into()],
            labels: BTreeMap::from([("io.cozyboot.role".into(), "dnsmasq".into())]),
            binds: vec![Bind {
                host: PathBuf::from("/var/lib/cozyboot/tftp"),
                container: "/var/lib/tftpboot".into(),
                read_only: true,
            }],
            network: NetworkMode::Host,
            cap_add: vec!["NET_ADMIN".into(), "NET_RAW".into()],
            restart_unless_stopped: true,
        }
    }

    #[test]
    fn spec_hash_is_pinned() {
        // A change here replaces every deployed container: only on purpose, with a version bump.
        assert_eq!(
            sample().spec_hash(),
            "86d002451216e832c3588b00204e9305e3c47e3079d32ca8fafd3c2d62d6755e",
        );
    }

    #[test]
    fn spec_hash_ignores_labels_and_cap_order() {
        let base = sample().spec_hash();
        let mut other = sample();
        other.labels.insert("io.cozyboot.spec-hash".into(), base.clone());
        other.cap_add.reverse();
        assert_eq!(other.spec_hash(), base);
    }

    #[test]
    fn spec_hash_changes_with_every_other_field() {
        let base = sample().spec_hash();
        let edits: Vec<fn(&mut ContainerSpec)> = vec![
            |s| s.name.push('x'),
            |s| s.image.push('x'),
            |s| s.cmd.push("--port=0".into()),
            |s| s.binds[0].read_only = false,
            |s| s.binds[0].host.push("x"),
            |s| s.network = NetworkMode::Container("other".into()),
            |s| {
                s.network = NetworkMode::Named {
                    name: "lan".into(),
                    ipv4: Some(Ipv4Addr::new(10, 0, 0, 2)),
                }
            },
            |s| s.cap_add.push("SYS_ADMIN".into()),
            |s| s.restart_unless_stopped = false,
        ];
        for (i, edit) in edits.into_iter().enumerate() {
            let mut spec = sample();
            edit(&mut spec);
            assert_ne!(spec.spec_hash(), base, "edit #{i} left the hash unchanged");
        }
    }

    #[test]
    fn spec_round_trips_through_json() {
        let mut spec = sample();
        spec.network = NetworkMode::Named {
            name: "lan".into(),
            ipv4: Some(Ipv4Addr::new(10, 1, 2, 3)),
        };
        let json = serde_json::to_string(&spec).unwrap();
        let back: ContainerSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
        assert_eq!(back.spec_hash(), spec.spec_hash());
    }

    #[test]
    fn network_mode_docker_values() {
        assert_eq!(NetworkMode::Host.docker_value(), "host");
        assert_eq!(
            NetworkMode::Named {
                name: "none".into(),
                ipv4: None
            }
            .docker_value(),
            "none"
        );
        assert_eq!(
            NetworkMode::Container("cozyboot-matchbox".into()).docker_value(),
            "container:cozyboot-matchbox"
        );
    }
}
