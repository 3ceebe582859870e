//! The namespace, the matchbox tree, and the two workloads.

use super::served_files;
use super::{boot_lan, Manifest, Options, BOOT_LAN_LABEL};
use crate::render::containers::MATCHBOX_TLS;
use crate::render::dnsmasq::TFTP_ROOT;
use crate::render::{Rendered, MATCHBOX_DATA};
use crate::settings::{DhcpMode, PullPolicy, Settings};
use serde_json::{json, Map, Value};
use std::net::Ipv4Addr;

pub(super) const MATCHBOX: &str = "matchbox";
pub(super) const DNSMASQ: &str = "dnsmasq";
/// The Secret holding matchbox's gRPC certificates, made by the operator from `up`'s.
pub const MATCHBOX_TLS_SECRET: &str = "matchbox-tls";

pub(super) fn manifest(file: &str, value: Value) -> Manifest {
    Manifest {
        file: file.to_string(),
        value,
    }
}

/// `app.kubernetes.io/*` labels; `name` and `instance` are also the selector.
pub(super) fn labels(name: &str, component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": "cozyboot",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "cozyboot",
        "app.kubernetes.io/managed-by": "cozyboot",
    })
}

fn selector(name: &str) -> Value {
    json!({ "app.kubernetes.io/name": name, "app.kubernetes.io/instance": "cozyboot" })
}

pub(super) fn metadata(o: &Options, name: &str, component: &str) -> Value {
    json!({ "name": name, "namespace": o.namespace, "labels": labels(name, component) })
}

pub(super) fn pull_policy(s: &Settings) -> &'static str {
    match s.pull {
        PullPolicy::Missing => "IfNotPresent",
        PullPolicy::Always => "Always",
        PullPolicy::Never => "Never",
    }
}

/// hostNetwork and the capabilities dnsmasq needs are refused by the `baseline` Pod Security
/// level (Talos enforces it by default), so the namespace says `privileged`.
pub(super) fn namespace(o: &Options) -> Manifest {
    let mut labels = labels("cozyboot", "boot-site");
    for mode in ["enforce", "audit", "warn"] {
        labels[format!("pod-security.kubernetes.io/{mode}")] = json!("privileged");
    }
    manifest(
        "namespace.yaml",
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": o.namespace, "labels": labels },
        }),
    )
}

/// The matchbox tree `up` writes to the data dir: profiles and groups as ConfigMaps, the
/// Talos configs (which hold the cluster's keys) as a Secret.
pub(super) fn tree(_s: &Settings, r: &Rendered, o: &Options) -> Vec<Manifest> {
    let files = r.files();
    let dir = |prefix: &str| -> Map<String, Value> {
        files
            .iter()
            .filter_map(|f| f.path.strip_prefix(prefix).map(|name| (name, &f.content)))
            .map(|(name, content)| (name.to_string(), json!(String::from_utf8_lossy(content))))
            .collect()
    };
    let mut out = Vec::new();
    for (what, prefix) in [("profiles", "profiles/"), ("groups", "groups/")] {
        let name = format!("matchbox-{what}");
        out.push(manifest(
            &format!("configmap-{name}.yaml"),
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": metadata(o, &name, "boot-config"),
                "data": dir(prefix),
            }),
        ));
    }
    let generic = dir("generic/");
    if !generic.is_empty() {
        out.push(manifest(
            "secret-matchbox-generic.yaml",
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": metadata(o, "matchbox-generic", "boot-config"),
                "type": "Opaque",
                "stringData": generic,
            }),
        ));
    }
    out
}

fn has_generic(r: &Rendered) -> bool {
    !r.tree.generics.is_empty()
}

/// Control-plane nodes are often the only nodes of a small Cozystack cluster.
fn tolerations() -> Value {
    json!([{ "key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule" }])
}

/// Only the node labelled for this LAN, and of the architecture the images were picked for.
fn node_selector(s: &Settings, o: &Options) -> Value {
    json!({ BOOT_LAN_LABEL: boot_lan(s), "kubernetes.io/arch": o.node_arch.name() })
}

/// matchbox as `up` runs it: its args as rendered, so bound to `server-ip` (the labelled
/// node's address on the LAN) on the host network; one replica, replaced by stopping the old
/// one first, since both could not bind the same address and port.
pub(super) fn matchbox_deployment(s: &Settings, r: &Rendered, o: &Options) -> Manifest {
    let mut mounts = vec![
        json!({ "name": "assets", "mountPath": format!("{MATCHBOX_DATA}/assets"), "readOnly": true }),
        json!({ "name": "profiles", "mountPath": format!("{MATCHBOX_DATA}/profiles"), "readOnly": true }),
        json!({ "name": "groups", "mountPath": format!("{MATCHBOX_DATA}/groups"), "readOnly": true }),
    ];
    let mut volumes = vec![
        json!({ "name": "assets", "emptyDir": {} }),
        json!({ "name": "profiles", "configMap": { "name": "matchbox-profiles" } }),
        json!({ "name": "groups", "configMap": { "name": "matchbox-groups" } }),
    ];
    if has_generic(r) {
        mounts.push(json!({ "name": "generic", "mountPath": format!("{MATCHBOX_DATA}/generic"), "readOnly": true }));
        volumes.push(json!({ "name": "generic", "secret": { "secretName": "matchbox-generic" } }));
    }
    let mut ports = vec![json!({ "name": "http", "containerPort": s.http_port, "protocol": "TCP" })];
    if let Some(port) = s.rpc_port {
        ports.push(json!({ "name": "grpc", "containerPort": port, "protocol": "TCP" }));
        mounts.push(json!({ "name": "tls", "mountPath": MATCHBOX_TLS, "readOnly": true }));
        volumes.push(json!({ "name": "tls", "secret": { "secretName": MATCHBOX_TLS_SECRET } }));
    }
    let (init, extra_volumes) = served_files::talos_assets(s, o, "assets");
    volumes.extend(extra_volumes);
    // `GET /` answers `matchbox`: its only health signal. Asked where matchbox listens.
    let mut probe = json!({ "path": "/", "port": s.http_port });
    if s.matchbox_bind_ip() != Ipv4Addr::UNSPECIFIED {
        probe["host"] = json!(s.matchbox_bind_ip().to_string());
    }
    let container = json!({
        "name": MATCHBOX,
        "image": s.matchbox_image(),
        "imagePullPolicy": pull_policy(s),
        "args": r.matchbox_args,
        "ports": ports,
        "volumeMounts": mounts,
        "readinessProbe": { "httpGet": probe, "periodSeconds": 10 },
    });
    manifest(
        "deployment-matchbox.yaml",
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata(o, MATCHBOX, "boot-http"),
            "spec": {
                "replicas": 1,
                "strategy": { "type": "Recreate" },
                "selector": { "matchLabels": selector(MATCHBOX) },
                "template": host_network_pod(s, o, MATCHBOX, "boot-http", init, container, volumes),
            },
        }),
    )
}

/// The pod template both workloads share: on the host network of the node labelled for the
/// boot LAN (DHCP needs its broadcasts; booting machines reach matchbox at its LAN address).
fn host_network_pod(
    s: &Settings,
    o: &Options,
    name: &str,
    component: &str,
    init: Vec<Value>,
    container: Value,
    volumes: Vec<Value>,
) -> Value {
    json!({
        "metadata": { "labels": labels(name, component) },
        "spec": {
            "hostNetwork": true,
            "dnsPolicy": "ClusterFirstWithHostNet",
            "nodeSelector": node_selector(s, o),
            "tolerations": tolerations(),
            "initContainers": init,
            "containers": [container],
            "volumes": volumes,
        },
    })
}

/// For the cluster's own use (port-forward, monitoring): booting machines reach matchbox at
/// `server-ip` on the LAN, which is where dnsmasq sends them.
pub(super) fn matchbox_service(s: &Settings, o: &Options) -> Manifest {
    let mut ports = vec![json!({ "name": "http", "port": s.http_port, "targetPort": "http", "protocol": "TCP" })];
    if let Some(port) = s.rpc_port {
        ports.push(json!({ "name": "grpc", "port": port, "targetPort": "grpc", "protocol": "TCP" }));
    }
    manifest(
        "service-matchbox.yaml",
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(o, MATCHBOX, "boot-http"),
            "spec": { "type": "ClusterIP", "selector": selector(MATCHBOX), "ports": ports },
        }),
    )
}

/// dnsmasq as `up` runs it, on the host network of the labelled node: DHCP needs the LAN's
/// broadcasts. NET_ADMIN as `up` gives it (dnsmasq sets the ARP entry of a client it answers);
/// NET_RAW, which Docker grants by default but a cluster's policy may not, for the ICMP check
/// dnsmasq makes before offering an address.
pub(super) fn dnsmasq_daemon_set(s: &Settings, r: &Rendered, o: &Options) -> Manifest {
    let mut ports = vec![
        json!({ "name": "dhcp", "containerPort": 67, "protocol": "UDP" }),
        json!({ "name": "tftp", "containerPort": 69, "protocol": "UDP" }),
    ];
    if s.dhcp == DhcpMode::Proxy {
        ports.push(json!({ "name": "pxe", "containerPort": 4011, "protocol": "UDP" }));
    }
    let image = s.dnsmasq_image_for(o.node_arch.name());
    let (init, extra_volumes) = served_files::bootloaders(s, o, &image, "tftp");
    let mut volumes = vec![json!({ "name": "tftp", "emptyDir": {} })];
    volumes.extend(extra_volumes);
    let container = json!({
        "name": DNSMASQ,
        "image": image,
        "imagePullPolicy": pull_policy(s),
        "args": r.dnsmasq_args,
        "ports": ports,
        "securityContext": { "capabilities": { "add": ["NET_ADMIN", "NET_RAW"] } },
        "volumeMounts": [{ "name": "tftp", "mountPath": TFTP_ROOT, "readOnly": true }],
    });
    manifest(
        "daemonset-dnsmasq.yaml",
        json!({
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": metadata(o, DNSMASQ, "dhcp-tftp"),
            "spec": {
                "selector": { "matchLabels": selector(DNSMASQ) },
                "template": host_network_pod(s, o, DNSMASQ, "dhcp-tftp", init, container, volumes),
            },
        }),
    )
}
