//! The exact Docker create body for a [`ContainerSpec`], and the checks made before it.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, Mount, MountType, NetworkingConfig,
    RestartPolicy, RestartPolicyNameEnum,
};

use super::errors::EngineError;
use crate::render::container_spec::{ContainerSpec, NetworkMode};

pub(super) fn validate_spec(spec: &ContainerSpec) -> Result<(), EngineError> {
    let invalid = |reason: String| EngineError::InvalidSpec {
        name: spec.name.clone(),
        reason,
    };
    if spec.name.is_empty() || spec.image.is_empty() {
        return Err(invalid("name and image must not be empty".into()));
    }
    for bind in &spec.binds {
        // A relative source would silently become a named volume.
        if !bind.host.is_absolute() || !bind.container.starts_with('/') {
            return Err(invalid(format!(
                "bind {} -> {} must use absolute paths on both sides",
                bind.host.display(),
                bind.container
            )));
        }
        if bind.host.to_str().is_none() {
            return Err(invalid(format!("bind source {} is not UTF-8", bind.host.display())));
        }
    }
    Ok(())
}

/// The exact Docker create body for a spec.
pub(super) fn container_body(spec: &ContainerSpec) -> ContainerCreateBody {
    // Mounts rather than `Binds`: no `:` parsing of paths, and a missing host path is an
    // error instead of an empty root-owned directory Docker would create.
    let mounts = spec
        .binds
        .iter()
        .map(|bind| Mount {
            typ: Some(MountType::BIND),
            source: Some(bind.host.to_string_lossy().into_owned()),
            target: Some(bind.container.clone()),
            read_only: Some(bind.read_only),
            ..Default::default()
        })
        .collect();
    let restart = if spec.restart_unless_stopped {
        RestartPolicyNameEnum::UNLESS_STOPPED
    } else {
        RestartPolicyNameEnum::NO
    };
    let host_config = HostConfig {
        mounts: Some(mounts),
        network_mode: Some(spec.network.docker_value()),
        cap_add: Some(spec.cap_add.clone()).filter(|caps| !caps.is_empty()),
        restart_policy: Some(RestartPolicy {
            name: Some(restart),
            maximum_retry_count: None,
        }),
        ..Default::default()
    };
    let networking_config = match &spec.network {
        NetworkMode::Named { name, ipv4: Some(ip) } => Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                name.clone(),
                EndpointSettings {
                    ipam_config: Some(EndpointIpamConfig {
                        ipv4_address: Some(ip.to_string()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )])),
        }),
        _ => None,
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        // An empty `Cmd` would be ambiguous across engine versions; leave it unset instead.
        cmd: Some(spec.cmd.clone()).filter(|cmd| !cmd.is_empty()),
        labels: Some(spec.labels.clone().into_iter().collect()),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::container_spec::Bind;
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;
    use std::path::PathBuf;

    fn spec() -> ContainerSpec {
        ContainerSpec {
            name: "cozyboot-matchbox".into(),
            image: "quay.io/poseidon/matchbox:v0.11.0".into(),
            cmd: vec!["-address=0.0.0.0:8080".into()],
            labels: BTreeMap::from([("io.cozyboot.role".into(), "matchbox".into())]),
            binds: vec![Bind {
                host: PathBuf::from("/var/lib/cozyboot/matchbox"),
                container: "/var/lib/matchbox".into(),
                read_only: true,
            }],
            network: NetworkMode::Named {
                name: "lan".into(),
                ipv4: Some(Ipv4Addr::new(10, 9, 8, 7)),
            },
            cap_add: vec!["NET_ADMIN".into()],
            restart_unless_stopped: true,
        }
    }

    #[test]
    fn create_body_maps_the_spec_exactly() {
        let body = container_body(&spec());
        assert_eq!(body.image.as_deref(), Some("quay.io/poseidon/matchbox:v0.11.0"));
        assert_eq!(body.cmd, Some(vec!["-address=0.0.0.0:8080".to_owned()]));
        assert_eq!(body.labels.unwrap()["io.cozyboot.role"], "matchbox");
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("lan"));
        assert_eq!(host.cap_add, Some(vec!["NET_ADMIN".to_owned()]));
        assert_eq!(
            host.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::UNLESS_STOPPED)
        );
        let mount = &host.mounts.unwrap()[0];
        assert_eq!(mount.typ, Some(MountType::BIND));
        assert_eq!(mount.source.as_deref(), Some("/var/lib/cozyboot/matchbox"));
        assert_eq!(mount.target.as_deref(), Some("/var/lib/matchbox"));
        assert_eq!(mount.read_only, Some(true));
        let endpoints = body.networking_config.unwrap().endpoints_config.unwrap();
        assert_eq!(
            endpoints["lan"].ipam_config.as_ref().unwrap().ipv4_address.as_deref(),
            Some("10.9.8.7")
        );
    }

    #[test]
    fn create_body_for_host_and_shared_netns() {
        let mut s = spec();
        s.network = NetworkMode::Host;
        s.cmd.clear();
        s.restart_unless_stopped = false;
        let body = container_body(&s);
        assert_eq!(body.cmd, None, "empty cmd keeps the image CMD");
        assert!(body.networking_config.is_none());
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("host"));
        assert_eq!(host.restart_policy.unwrap().name, Some(RestartPolicyNameEnum::NO));

        s.network = NetworkMode::Container("cozyboot-dnsmasq".into());
        assert_eq!(
            container_body(&s).host_config.unwrap().network_mode.as_deref(),
            Some("container:cozyboot-dnsmasq")
        );
    }

    #[test]
    fn specs_with_relative_binds_are_refused() {
        let mut s = spec();
        s.binds[0].host = PathBuf::from("relative/dir");
        assert!(matches!(validate_spec(&s), Err(EngineError::InvalidSpec { .. })));
        assert!(validate_spec(&spec()).is_ok());
    }
}
