//! Turning a merged [`Raw`] layer into validated [`Settings`], collecting every problem.

mod dhcp;
mod interface;
mod machines;
mod nodes;
mod rpi_nodes;

use super::choice::Choice;
use super::net::HostNet;
use super::raw::{Raw, Text};
use super::{
    error_for, images, BootloaderNames, ContainerNames, LogLevel, MatchboxListen, Network, PullPolicy, Settings,
    Source, Variant,
};
use crate::artifacts::arch::Arch;
use crate::error::setting::ConfigError;
use crate::error::Error;
use dhcp::dhcp_mode;
use interface::interface_facts;
pub use nodes::normalise_mac;
use nodes::talos_configs;
use rpi_nodes::rpi_nodes;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

pub const DEFAULT_REGISTRY: &str = "ghcr.io/urmanac/cozystack-assets";
pub const DEFAULT_DNSMASQ_IMAGE: &str = "quay.io/poseidon/dnsmasq:v0.5.0-32-g4327d60-{arch}";
pub const DEFAULT_DATA_DIR: &str = "/opt/matchbox";
/// The iPXE project's own arm64 EFI build (ipxe.org publishes one per architecture under
/// boot.ipxe.org/<platform>/).
pub const DEFAULT_IPXE_ARM64_URL: &str = "https://boot.ipxe.org/arm64-efi/ipxe.efi";

/// What the settings are for decides what must exist on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Rendering config files, possibly for another host: the interface need not exist here
    /// when `server-ip` and the subnet are given.
    Render,
    /// Serving from this host (`up`, `validate`): on the host network the interface must exist.
    Serve,
}

/// Collects problems so the user sees all of them at once.
struct Checker<'a> {
    origins: &'a mut BTreeMap<String, Source>,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn fail(&mut self, field: &str, value: Option<&str>, problem: impl Into<String>, fix: impl Into<String>) {
        let mut e = error_for(field, self.origins, problem, fix);
        if let Some(v) = value {
            e = e.value(v);
        }
        self.errors.push(e);
    }

    /// A [`Choice`] setting's value, or the same error whichever source gave it.
    fn choice<T: Choice>(&mut self, field: &str, text: &str) -> Option<T> {
        match T::parse(text) {
            Ok(value) => Some(value),
            Err(problem) => {
                self.fail(field, Some(text), problem, T::fix());
                None
            }
        }
    }

    fn default<T>(&mut self, field: &str, value: T) -> T {
        self.origins.entry(field.to_string()).or_insert(Source::Default);
        value
    }

    fn derived<T>(&mut self, field: &str, how: impl Into<String>, value: T) -> T {
        self.origins.insert(field.to_string(), Source::Derived(how.into()));
        value
    }

    fn ip(&mut self, field: &str, text: &str) -> Option<Ipv4Addr> {
        match text.trim().parse::<Ipv4Addr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.fail(
                    field,
                    Some(text),
                    "not an IPv4 address",
                    "write four dot-separated numbers from 0 to 255, e.g. 10.20.13.140",
                );
                None
            }
        }
    }

    fn port(&mut self, field: &str, text: &str) -> Option<u16> {
        match text.trim().parse::<u16>() {
            Ok(p) if p > 0 => Some(p),
            _ => {
                self.fail(field, Some(text), "not a TCP port", "use a number from 1 to 65535");
                None
            }
        }
    }
}

fn text(v: &Option<Text>) -> Option<&str> {
    v.as_ref().map(|t| t.0.as_str())
}

pub(super) fn build(
    raw: Raw,
    origins: &mut BTreeMap<String, Source>,
    host: &dyn HostNet,
    purpose: Purpose,
) -> Result<Settings, Error> {
    let mut c = Checker {
        origins,
        errors: Vec::new(),
    };

    let variant = match text(&raw.variant) {
        None => Some(c.default("variant", Variant::SpinOnly)),
        Some(v) => c.choice("variant", v),
    };

    let tag = match text(&raw.tag) {
        None => c.default("tag", "latest".to_string()),
        Some(t) => {
            if let Err(problem) = images::check_tag(t) {
                c.fail(
                    "tag",
                    Some(t),
                    problem,
                    "use a published tag such as 'latest' or 'v1.3.3'",
                );
            }
            t.to_string()
        }
    };

    let registry = match text(&raw.registry) {
        None => c.default("registry", DEFAULT_REGISTRY.to_string()),
        Some(r) => {
            let r = r.trim_end_matches('/').to_string();
            if let Err(problem) = images::check_registry(&r) {
                c.fail(
                    "registry",
                    Some(&r),
                    problem,
                    format!(
                        "give a registry prefix such as '{DEFAULT_REGISTRY}' or 'mirror.lan:5000/cozystack-assets'"
                    ),
                );
            }
            r
        }
    };

    let dnsmasq_image = match text(&raw.dnsmasq_image) {
        None => c.default("dnsmasq-image", DEFAULT_DNSMASQ_IMAGE.to_string()),
        Some(i) => {
            if let Err(problem) = images::check_reference(&i.replace("{arch}", "amd64")) {
                c.fail(
                    "dnsmasq-image",
                    Some(i),
                    format!("not a valid image reference: {problem}"),
                    "give a full reference with a tag; '{arch}' is replaced by the engine's architecture",
                );
            }
            i.to_string()
        }
    };

    let network = match text(&raw.network) {
        None | Some("host") => c.default("network", Network::Host),
        Some(n) if n.trim().is_empty() || n.contains(char::is_whitespace) => {
            c.fail(
                "network",
                Some(n),
                "not a Docker network name",
                "use 'host' or the name of a Docker network",
            );
            Network::Host
        }
        Some(n) => Network::Named(n.to_string()),
    };

    let arches = parse_arches(&mut c, &raw.arch);
    let (iface, server_ip, subnet) = interface_facts(&mut c, &raw, &network, host, purpose);
    let dhcp = dhcp_mode(&mut c, &raw, server_ip, subnet);

    let http_port = match text(&raw.http_port) {
        None => Some(c.default("http-port", 8080)),
        Some(p) => c.port("http-port", p),
    };

    let rpc_enabled = match text(&raw.rpc) {
        None => c.default("rpc", false),
        Some(v) => match v.trim() {
            "true" | "yes" | "1" | "on" => true,
            "false" | "no" | "0" | "off" => false,
            other => {
                c.fail("rpc", Some(other), "not a boolean", "use true or false");
                false
            }
        },
    };
    let rpc_port = match text(&raw.rpc_port) {
        None => Some(c.default("rpc-port", 8081)),
        Some(p) => c.port("rpc-port", p),
    };
    if rpc_enabled && rpc_port.is_some() && rpc_port == http_port {
        c.fail(
            "rpc-port",
            rpc_port.map(|p| p.to_string()).as_deref(),
            "is the same port as http-port",
            "pick another port for the gRPC API, e.g. 8081",
        );
    }

    let matchbox_listen = match text(&raw.matchbox_listen) {
        None => c.default("matchbox-listen", MatchboxListen::DEFAULT),
        Some(l) => c.choice("matchbox-listen", l).unwrap_or(MatchboxListen::DEFAULT),
    };

    let data_dir = match &raw.data_dir {
        None => c.default("data-dir", PathBuf::from(DEFAULT_DATA_DIR)),
        Some(p) if p.as_os_str().is_empty() => {
            c.fail(
                "data-dir",
                Some(""),
                "is empty",
                "give a directory such as /opt/matchbox",
            );
            PathBuf::new()
        }
        Some(p) => std::path::absolute(p).unwrap_or_else(|_| p.clone()),
    };

    let bootloaders = BootloaderNames {
        arm64: bootloader_name(&mut c, "bootloader-arm64", &raw.bootloader_arm64, "bootaa64.efi"),
        x86_64: bootloader_name(&mut c, "bootloader-x86-64", &raw.bootloader_x86_64, "ipxe.efi"),
        bios: bootloader_name(&mut c, "bootloader-bios", &raw.bootloader_bios, "undionly.kpxe"),
    };
    if bootloaders.arm64 == bootloaders.x86_64 || bootloaders.arm64 == bootloaders.bios {
        c.fail(
            "bootloader-arm64",
            Some(&bootloaders.arm64),
            "is the same file name as an x86 bootloader, so one architecture would get the other's binary",
            "give the arm64 iPXE binary its own name, e.g. bootaa64.efi",
        );
    }

    let ipxe_arm64 = text(&raw.ipxe_arm64).map(|s| s.to_string());
    let ipxe_arm64_url = match text(&raw.ipxe_arm64_url) {
        None => c.default("ipxe-arm64-url", DEFAULT_IPXE_ARM64_URL.to_string()),
        Some(u) => {
            let u = u.trim();
            if let Err(problem) = check_http_url(u) {
                c.fail(
                    "ipxe-arm64-url",
                    Some(u),
                    problem,
                    format!("give the http:// or https:// URL of an arm64 iPXE EFI build, e.g. a mirror of {DEFAULT_IPXE_ARM64_URL}"),
                );
            }
            u.to_string()
        }
    };

    let rpi_netboot = on_off(
        &mut c,
        "rpi-netboot",
        text(&raw.rpi_netboot),
        "use on (serve the Raspberry Pi EEPROM's network boot) or off (the Pis carry their own firmware)",
    );
    let uboot_netboot = on_off(
        &mut c,
        "uboot-netboot",
        text(&raw.uboot_netboot),
        "use on (answer U-Boot's own network boot with a boot script) or off (leave U-Boot boards alone)",
    );
    let rpi_uefi = text(&raw.rpi_uefi).map(|s| s.trim().to_string());
    if let Some(u) = rpi_uefi.as_deref().filter(|u| u.contains("://")) {
        if let Err(problem) = check_http_url(u) {
            c.fail(
                "rpi-uefi",
                Some(u),
                problem,
                format!(
                    "give a path to the release zip or its unpacked directory, or the http(s) URL of the zip, e.g. {}",
                    crate::artifacts::rpi::PINNED.url
                ),
            );
        }
    }

    let kernel_args = kernel_args(&mut c, &raw);

    let pull = match text(&raw.pull) {
        None => c.default("pull", PullPolicy::Missing),
        Some(p) => c.choice("pull", p).unwrap_or(PullPolicy::Missing),
    };

    // Kept as text: it is passed to matchbox as is.
    let log_level = match text(&raw.log_level) {
        None => c.default("log-level", LogLevel::Info),
        Some(l) => c.choice("log-level", l).unwrap_or(LogLevel::Info),
    }
    .name()
    .to_string();

    let names = ContainerNames {
        matchbox: container_name(&mut c, "matchbox-name", &raw.matchbox_name, "matchbox"),
        dnsmasq: container_name(&mut c, "dnsmasq-name", &raw.dnsmasq_name, "dnsmasq"),
    };
    if names.matchbox == names.dnsmasq {
        c.fail(
            "dnsmasq-name",
            Some(&names.dnsmasq),
            "is the same as matchbox-name",
            "give the two containers different names",
        );
    }

    // Talos configs are checked against the installer image, which needs a valid variant.
    let (talos_config, talos_nodes) = match variant {
        Some(variant) => {
            let expected = images::variant_image(&registry, variant, "talos", &tag);
            talos_configs(&mut c, &raw, &arches, &expected)
        }
        None => (None, Vec::new()),
    };
    let rpi_nodes = rpi_nodes(&mut c, &raw, &arches);
    if !rpi_netboot && rpi_nodes.iter().any(|n| !n.settings.is_empty()) {
        c.fail(
            "rpi-nodes",
            None,
            "boards have settings but rpi-netboot is off, so their own RPI_EFI.fd would never be served",
            "drop rpi-netboot off (cozyboot then serves the Pi UEFI firmware and each board's folder), or remove the boards' settings",
        );
    }

    let machines = machines::machines(&mut c, &raw);
    if raw.machines.is_none() {
        c.default("machines", ());
    }

    if !c.errors.is_empty() {
        return Err(Error::Config(c.errors));
    }
    // Every `None` below was reported above, so these cannot fail here.
    let (Some(variant), Some(server_ip), Some(subnet), Some(dhcp), Some(http_port), Some(rpc_port)) =
        (variant, server_ip, subnet, dhcp, http_port, rpc_port)
    else {
        unreachable!("a missing value is always reported as an error")
    };
    Ok(Settings {
        variant,
        tag,
        registry,
        dnsmasq_image,
        iface: iface.unwrap_or_default(),
        server_ip,
        subnet,
        dhcp,
        http_port,
        data_dir,
        arches,
        bootloaders,
        ipxe_arm64,
        ipxe_arm64_url,
        rpi_uefi,
        rpi_netboot,
        uboot_netboot,
        kernel_args,
        talos_config,
        talos_nodes,
        rpi_nodes,
        rpc_port: rpc_enabled.then_some(rpc_port),
        matchbox_listen,
        network,
        pull,
        log_level,
        names,
        machines,
    })
}

fn parse_arches(c: &mut Checker<'_>, raw: &Option<Vec<Text>>) -> Vec<Arch> {
    let Some(list) = raw else {
        return c.default("arch", vec![Arch::Arm64]);
    };
    let mut arches = Vec::new();
    for Text(item) in list {
        match item.parse::<Arch>() {
            Ok(a) if !arches.contains(&a) => arches.push(a),
            Ok(_) => {}
            Err(problem) => c.fail("arch", Some(item), problem, "use arm64, amd64, or both (arm64,amd64)"),
        }
    }
    if list.is_empty() {
        c.fail(
            "arch",
            Some(""),
            "no architecture to serve",
            "use arm64, amd64, or both",
        );
    }
    // arm64 first: ordering is part of the rendered output and must not depend on input order.
    arches.sort();
    arches
}

/// An absolute http(s) URL with a host: what the download of a bootloader can fetch.
fn check_http_url(u: &str) -> Result<(), String> {
    if !u.contains("://") {
        return Err("not an http(s) URL: it does not start with http:// or https://".into());
    }
    let url = reqwest::Url::parse(u).map_err(|e| format!("not an http(s) URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("not an http(s) URL: the scheme is '{}'", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("not an http(s) URL: it names no host".into());
    }
    Ok(())
}

fn bootloader_name(c: &mut Checker<'_>, field: &str, raw: &Option<Text>, default: &str) -> String {
    match text(raw) {
        None => c.default(field, default.to_string()),
        Some(name) => {
            let ok = !name.is_empty()
                && name != "."
                && name != ".."
                && name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'));
            if !ok {
                c.fail(
                    field,
                    Some(name),
                    "not a plain file name",
                    "use a name such as bootaa64.efi: letters, digits, '.', '_', '-', no directories",
                );
            }
            name.to_string()
        }
    }
}

fn container_name(c: &mut Checker<'_>, field: &str, raw: &Option<Text>, default: &str) -> String {
    match text(raw) {
        None => c.default(field, default.to_string()),
        Some(name) => {
            let mut chars = name.chars();
            let ok = chars.next().is_some_and(|ch| ch.is_ascii_alphanumeric())
                && chars.all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-'));
            if !ok {
                c.fail(
                    field,
                    Some(name),
                    "not a valid container name",
                    "use letters, digits, '_', '.', '-', starting with a letter or digit",
                );
            }
            name.to_string()
        }
    }
}

fn kernel_args(c: &mut Checker<'_>, raw: &Raw) -> Vec<String> {
    let args: Vec<String> = raw
        .kernel_args
        .iter()
        .flatten()
        .flat_map(|Text(a)| a.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect();
    for arg in &args {
        if let Some(url) = arg.strip_prefix("talos.config=") {
            if url.contains("/ignition") {
                c.fail(
                    "kernel-args",
                    Some(arg),
                    "matchbox's /ignition endpoint renders only Ignition/Butane: a Talos machine config there is a 404",
                    "give the machine config with --talos-config; cozyboot serves it through /generic",
                );
            } else if raw.talos_config.is_some() || raw.talos_nodes.as_ref().is_some_and(|n| !n.is_empty()) {
                c.fail(
                    "kernel-args",
                    Some(arg),
                    "conflicts with talos-config/talos-nodes, which set talos.config themselves",
                    "remove one of the two",
                );
            }
        }
    }
    if raw.kernel_args.is_none() {
        c.default("kernel-args", ());
    }
    args
}

/// A switch: `on` (default) or `off` (and the usual spellings of both).
fn on_off(c: &mut Checker<'_>, key: &'static str, value: Option<&str>, fix: &str) -> bool {
    match value.map(str::trim) {
        None => c.default(key, true),
        Some("on" | "true" | "yes" | "1") => true,
        Some("off" | "false" | "no" | "0") => false,
        Some(other) => {
            c.fail(key, Some(other), "not on or off", fix);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_urls_must_be_http_with_a_host() {
        assert!(check_http_url(DEFAULT_IPXE_ARM64_URL).is_ok());
        assert!(check_http_url("http://mirror.lan:8000/ipxe/arm64.efi").is_ok());
        for bad in [
            "ftp://mirror.lan/ipxe.efi",
            "boot.ipxe.org/arm64-efi/ipxe.efi",
            "file:///tmp/x.efi",
            "",
        ] {
            assert!(check_http_url(bad).unwrap_err().contains("not an http(s) URL"), "{bad}");
        }
    }
}
