//! Settings: built-in defaults < the recorded site < config file < `COZYBOOT_*` environment <
//! flags, validated into one [`Settings`] value before anything is touched.
//!
//! The recorded site (`<data-dir>/.cozyboot/site.json`, see [`crate::site`]) is what `up`
//! was given last time; it sits just above the defaults so that anything typed now, in any
//! form, still wins, and a bare `cozyboot validate` means "the site as `up` left it".

// A ConfigError carries the field, value, source, problem and fix a user needs; it is built
// once per bad input, so its size on the error path does not matter.
#![allow(clippy::result_large_err)]

mod build;
pub mod choice;
pub mod images;
pub mod listen;
pub mod machines;
pub mod net;
pub mod raw;
mod talos;

use crate::artifacts::arch::Arch;
use crate::error::setting::ConfigError;
use crate::error::Error;
use ipnet::Ipv4Net;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

pub use crate::error::setting::Source;
pub use build::{
    normalise_mac, Purpose, DEFAULT_DATA_DIR, DEFAULT_DNSMASQ_IMAGE, DEFAULT_IPXE_ARM64_URL, DEFAULT_REGISTRY,
};
pub use listen::MatchboxListen;
pub use raw::Raw;
pub use talos::TalosConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    SpinOnly,
    SpinTailscale,
}

impl Variant {
    pub const ALL: [Variant; 2] = [Variant::SpinOnly, Variant::SpinTailscale];

    pub fn name(self) -> &'static str {
        match self {
            Variant::SpinOnly => "spin-only",
            Variant::SpinTailscale => "spin-tailscale",
        }
    }
}

impl choice::Choice for Variant {
    const WHAT: &'static str = "variant";
    const ALL: &'static [Self] = &Variant::ALL;

    fn name(self) -> &'static str {
        Variant::name(self)
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How dnsmasq takes part in DHCP on the segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum DhcpMode {
    /// Beside an existing DHCP server: dnsmasq only adds PXE boot information.
    Proxy,
    /// dnsmasq hands out addresses too.
    Full {
        range_start: Ipv4Addr,
        range_end: Ipv4Addr,
        gateway: Option<Ipv4Addr>,
        dns: Vec<Ipv4Addr>,
        lease_time: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Network {
    /// The host's network stack: what real sites use.
    Host,
    /// A Docker network (macvlan for users, an `--internal` bridge for tests). matchbox gets
    /// `server-ip` on it and dnsmasq shares matchbox's network namespace, so one address
    /// answers DHCP, TFTP and HTTP just as on the host network.
    Named(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    Missing,
    Always,
    Never,
}

impl choice::Choice for PullPolicy {
    const WHAT: &'static str = "pull policy";
    const ALL: &'static [Self] = &[PullPolicy::Missing, PullPolicy::Always, PullPolicy::Never];

    fn name(self) -> &'static str {
        match self {
            PullPolicy::Missing => "missing",
            PullPolicy::Always => "always",
            PullPolicy::Never => "never",
        }
    }
}

/// matchbox's `-log-level` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl choice::Choice for LogLevel {
    const WHAT: &'static str = "matchbox log level";
    const ALL: &'static [Self] = &[LogLevel::Debug, LogLevel::Info, LogLevel::Warn, LogLevel::Error];

    fn name(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// File names of the bootloaders in the TFTP root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootloaderNames {
    pub arm64: String,
    pub x86_64: String,
    pub bios: String,
}

impl BootloaderNames {
    pub fn for_bootloader(&self, bootloader: crate::artifacts::arch::Bootloader) -> &str {
        use crate::artifacts::arch::Bootloader::*;
        match bootloader {
            Arm64Efi => &self.arm64,
            X86_64Efi => &self.x86_64,
            Bios => &self.bios,
        }
    }
}

/// A machine config for one node, selected by MAC address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeConfig {
    /// Lower-case, colon-separated, as matchbox normalises the `mac` label.
    pub mac: String,
    pub arch: Arch,
    pub config: TalosConfig,
}

/// A Raspberry Pi board served its own copy of the Pi UEFI firmware, with its settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RpiNode {
    /// 8 lower-case hex digits: the directory the board's EEPROM asks for first (TFTP_PREFIX 0).
    pub serial: String,
    /// Lower-case, colon-separated; lets `nodes` tie the board's DHCP to its serial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    pub settings: crate::artifacts::rpi_uefi_vars::BoardSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerNames {
    pub matchbox: String,
    pub dnsmasq: String,
}

/// Validated settings: every value here has been checked and is safe to act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settings {
    pub variant: Variant,
    pub tag: String,
    pub registry: String,
    /// May hold `{arch}`, replaced by the Docker engine's architecture (`amd64`, `arm64`).
    pub dnsmasq_image: String,
    /// The interface dnsmasq binds to, inside its network namespace.
    pub iface: String,
    pub server_ip: Ipv4Addr,
    pub subnet: Ipv4Net,
    pub dhcp: DhcpMode,
    pub http_port: u16,
    pub data_dir: PathBuf,
    pub arches: Vec<Arch>,
    pub bootloaders: BootloaderNames,
    /// Where the arm64 iPXE binary comes from (a path or an http(s) URL), if given; without
    /// it `up` looks for the host's package, then its cache, then downloads `ipxe_arm64_url`.
    pub ipxe_arm64: Option<String>,
    /// The http(s) URL of an arm64 iPXE EFI build, downloaded when no other source has one.
    pub ipxe_arm64_url: String,
    /// Where the Raspberry Pi UEFI firmware comes from (a release zip, an unpacked release, or
    /// an http(s) URL of a zip), if given; without it `up` uses its cached copy of the pinned
    /// release, else downloads that release and checks its SHA-256.
    pub rpi_uefi: Option<String>,
    /// Whether the Raspberry Pi 4/CM4 EEPROM's network boot is answered (option 43 and the Pi
    /// firmware in the TFTP root) when arm64 is served; off for sites whose Pis carry their own.
    pub rpi_netboot: bool,
    /// Answer U-Boot's own network boot with a boot script (`render::uboot`).
    pub uboot_netboot: bool,
    pub kernel_args: Vec<String>,
    /// Served to every node of a served architecture that has no node config.
    pub talos_config: Option<TalosConfig>,
    pub talos_nodes: Vec<NodeConfig>,
    /// Raspberry Pi boards with their own Pi UEFI firmware settings (`rpi-nodes`).
    pub rpi_nodes: Vec<RpiNode>,
    /// The matchbox gRPC port, when the gRPC API (with mTLS) is enabled.
    pub rpc_port: Option<u16>,
    /// Which addresses matchbox binds: the server address unless widened on purpose.
    pub matchbox_listen: MatchboxListen,
    pub network: Network,
    pub pull: PullPolicy,
    pub log_level: String,
    pub names: ContainerNames,
    /// The machines named in `machines:` (file only), and how to power each.
    pub machines: Vec<machines::Machine>,
}

impl Settings {
    /// `<registry>/talos/cozystack-<variant>/<component>:<tag>`.
    fn variant_image(&self, component: &str) -> String {
        images::variant_image(&self.registry, self.variant, component, &self.tag)
    }

    /// The Talos image: kernel and initramfs source, and the installer nodes must use.
    pub fn talos_image(&self) -> String {
        self.variant_image("talos")
    }

    pub fn matchbox_image(&self) -> String {
        self.variant_image("matchbox")
    }

    /// The dnsmasq image for an engine of architecture `engine_arch` (`amd64`, `arm64`).
    pub fn dnsmasq_image_for(&self, engine_arch: &str) -> String {
        self.dnsmasq_image.replace("{arch}", engine_arch)
    }

    /// The address matchbox's HTTP and gRPC listeners bind (`0.0.0.0` for every one).
    pub fn matchbox_bind_ip(&self) -> Ipv4Addr {
        self.matchbox_listen.address(self.server_ip)
    }

    /// Base URL of matchbox as clients reach it.
    pub fn http_base(&self) -> String {
        format!("http://{}:{}", self.server_ip, self.http_port)
    }

    /// The TFTP root on the host (also matchbox's assets dir).
    pub fn assets_dir(&self) -> PathBuf {
        self.data_dir.join("assets")
    }

    pub fn serves(&self, arch: Arch) -> bool {
        self.arches.contains(&arch)
    }

    /// Whether the Raspberry Pi EEPROM's network boot is served: arm64 served and not turned off.
    pub fn serves_rpi(&self) -> bool {
        self.serves(Arch::Arm64) && self.rpi_netboot
    }

    /// Whether boards running U-Boot's own network boot are served: arm64 served and not
    /// turned off.
    pub fn serves_uboot(&self) -> bool {
        self.serves(Arch::Arm64) && self.uboot_netboot
    }

    /// Every setting as `(key, shown value)`, keyed like files, flags and `origins`.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let join = |v: &[String]| if v.is_empty() { "-".to_string() } else { v.join(" ") };
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
        let mut rows = vec![
            ("variant", self.variant.to_string()),
            ("tag", self.tag.clone()),
            ("registry", self.registry.clone()),
            ("dnsmasq-image", self.dnsmasq_image.clone()),
            (
                "network",
                match &self.network {
                    Network::Host => "host".to_string(),
                    Network::Named(n) => n.clone(),
                },
            ),
            ("iface", self.iface.clone()),
            ("server-ip", self.server_ip.to_string()),
            ("subnet", self.subnet.to_string()),
        ];
        match &self.dhcp {
            DhcpMode::Proxy => rows.push(("dhcp-mode", "proxy".to_string())),
            DhcpMode::Full {
                range_start,
                range_end,
                gateway,
                dns,
                lease_time,
            } => {
                rows.push(("dhcp-mode", "full".to_string()));
                rows.push(("dhcp-range", format!("{range_start},{range_end}")));
                rows.push(("gateway", opt(gateway.map(|g| g.to_string()))));
                rows.push(("dns", join(&dns.iter().map(|d| d.to_string()).collect::<Vec<_>>())));
                rows.push(("lease-time", lease_time.clone()));
            }
        }
        rows.extend([
            ("http-port", self.http_port.to_string()),
            ("data-dir", self.data_dir.display().to_string()),
            (
                "arch",
                join(&self.arches.iter().map(|a| a.to_string()).collect::<Vec<_>>()),
            ),
            ("bootloader-arm64", self.bootloaders.arm64.clone()),
            ("bootloader-x86-64", self.bootloaders.x86_64.clone()),
            ("bootloader-bios", self.bootloaders.bios.clone()),
            ("ipxe-arm64", opt(self.ipxe_arm64.clone())),
            ("ipxe-arm64-url", self.ipxe_arm64_url.clone()),
            ("rpi-uefi", opt(self.rpi_uefi.clone())),
            ("rpi-netboot", if self.rpi_netboot { "on" } else { "off" }.to_string()),
            (
                "uboot-netboot",
                if self.uboot_netboot { "on" } else { "off" }.to_string(),
            ),
            ("kernel-args", join(&self.kernel_args)),
            (
                "talos-config",
                opt(self.talos_config.as_ref().map(|c| c.path.display().to_string())),
            ),
            (
                "talos-nodes",
                join(
                    &self
                        .talos_nodes
                        .iter()
                        .map(|n| format!("{}@{}={}", n.mac, n.arch, n.config.path.display()))
                        .collect::<Vec<_>>(),
                ),
            ),
            ("rpc", self.rpc_port.is_some().to_string()),
            ("rpc-port", opt(self.rpc_port.map(|p| p.to_string()))),
            (
                "matchbox-listen",
                choice::Choice::name(self.matchbox_listen).to_string(),
            ),
            ("pull", choice::Choice::name(self.pull).to_string()),
            ("log-level", self.log_level.clone()),
            ("matchbox-name", self.names.matchbox.clone()),
            ("dnsmasq-name", self.names.dnsmasq.clone()),
        ]);
        rows
    }
}

/// Settings plus where every value came from.
#[derive(Debug, Clone, Serialize)]
pub struct Resolved {
    pub settings: Settings,
    pub origins: BTreeMap<String, Source>,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// The site record laid under the other sources, if any.
    pub site_file: Option<PathBuf>,
    /// Every value some source gave, merged, before validation: what `up` records.
    #[serde(skip)]
    pub raw: Raw,
}

/// A site's recorded settings as a layer of resolution (see [`crate::site::Record`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SiteLayer {
    /// The record's file, named as the source of its values.
    pub file: PathBuf,
    pub raw: Raw,
    /// Where each recorded value came from when `up` ran.
    pub sources: BTreeMap<String, Source>,
}

/// Finds the recorded site to resolve against, given the data dir named by the other sources
/// (`None` when none names one). `Ok(None)`: no recorded site, resolve as without one.
pub type FindSite<'a> = &'a dyn Fn(Option<&Path>) -> Result<Option<SiteLayer>, Error>;

/// For callers that never resolve against a recorded site (`up`, tests of other layers).
pub fn no_site(_: Option<&Path>) -> Result<Option<SiteLayer>, Error> {
    Ok(None)
}

/// Unit tests of higher layers: settings from flags (a JSON map, keys as in files) for a
/// server host whose `eth0` is 10.20.13.140/24, with no file, environment or recorded site.
#[cfg(test)]
pub fn for_tests(flags: serde_json::Value) -> Settings {
    let flags: Raw = serde_json::from_value(flags).unwrap();
    let host = net::FixedNet(vec![("eth0".into(), vec!["10.20.13.140/24".parse().unwrap()])]);
    resolve(Inputs {
        config_file: None,
        env: &|_| None,
        flags,
        host: &host,
        purpose: Purpose::Serve,
        site: &no_site,
    })
    .unwrap_or_else(|e| panic!("{e}"))
    .settings
}

/// The inputs to resolution, gathered by the CLI so that this module never reads the
/// process environment or argv itself.
pub struct Inputs<'a> {
    /// `--config`; when `None`, see [`config_file_to_read`].
    pub config_file: Option<PathBuf>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub flags: Raw,
    /// How each flag was spelled, for messages (`server_ip` → `--server-ip`).
    pub host: &'a dyn net::HostNet,
    pub purpose: Purpose,
    /// The recorded site, if any, looked up once the other layers say which data dir is meant.
    pub site: FindSite<'a>,
}

pub const DEFAULT_CONFIG_FILE: &str = "cozyboot.yaml";

/// Which config file is read: `--config`, else `COZYBOOT_CONFIG`, else `./cozyboot.yaml` when
/// it exists. What the user names beats what merely lies in the working directory, so an
/// exported `COZYBOOT_CONFIG` is not silently ignored in a folder that has a `cozyboot.yaml`.
fn config_file_to_read(
    flag: Option<PathBuf>,
    env: &dyn Fn(&str) -> Option<String>,
    exists: &dyn Fn(&Path) -> bool,
) -> Option<PathBuf> {
    flag.or_else(|| env("COZYBOOT_CONFIG").map(PathBuf::from))
        .or_else(|| Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| exists(p)))
}

/// Merges every source and validates the result; every problem found is reported at once.
pub fn resolve(inputs: Inputs<'_>) -> Result<Resolved, Error> {
    let config_file = config_file_to_read(inputs.config_file.clone(), inputs.env, &|p| p.exists());
    let file_layer = match &config_file {
        Some(path) => Some(raw::from_file(path).map_err(Error::config)?),
        None => None,
    };
    let env_layer = Raw::from_env(inputs.env);

    // The data dir the user names (flag > environment > file) says which site is meant.
    let named_data_dir = [&inputs.flags, &env_layer]
        .into_iter()
        .chain(file_layer.as_ref())
        .find_map(|layer| layer.data_dir.clone())
        .map(|d| std::path::absolute(&d).unwrap_or(d));
    let site = (inputs.site)(named_data_dir.as_deref())?;

    let mut origins = BTreeMap::new();
    let mut merged = Raw::default();
    let site_file = site.as_ref().map(|s| s.file.clone());
    if let Some(site) = site {
        let mut site_origins = BTreeMap::new();
        merged.overlay(site.raw, &Source::Default, &mut site_origins);
        for (key, _) in site_origins {
            let given = site.sources.get(&key).map_or(Source::Default, |s| s.original().clone());
            origins.insert(
                key,
                Source::Site {
                    file: site.file.clone(),
                    given: Box::new(given),
                },
            );
        }
    }
    if let (Some(path), Some(layer)) = (&config_file, file_layer) {
        merged.overlay(layer, &Source::File(path.clone()), &mut origins);
    }
    let mut env_origins = BTreeMap::new();
    merged.overlay(env_layer, &Source::Env(String::new()), &mut env_origins);
    for (key, _) in env_origins {
        let var = raw::env_name(&key.replace('-', "_"));
        origins.insert(key, Source::Env(var));
    }
    let mut flag_origins = BTreeMap::new();
    merged.overlay(inputs.flags, &Source::Flag(String::new()), &mut flag_origins);
    for (key, _) in flag_origins {
        origins.insert(key.clone(), Source::Flag(format!("--{key}")));
    }

    let settings = build::build(merged.clone(), &mut origins, inputs.host, inputs.purpose)?;
    Ok(Resolved {
        settings,
        origins,
        config_file,
        site_file,
        raw: merged,
    })
}

pub(crate) fn error_for(
    field: &str,
    origins: &BTreeMap<String, Source>,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> ConfigError {
    ConfigError::new(field, problem, fix).from_source(origins.get(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_precedence_is_flag_then_environment_then_the_working_directory() {
        let env_set = |k: &str| (k == "COZYBOOT_CONFIG").then(|| "/etc/from-env.yaml".to_string());
        let env_unset = |_: &str| None;
        let cwd_has_one = |p: &Path| p == Path::new(DEFAULT_CONFIG_FILE);
        let cwd_has_none = |_: &Path| false;
        let flag = || Some(PathBuf::from("/srv/from-flag.yaml"));
        let pick = |flag, env: &dyn Fn(&str) -> Option<String>, exists: &dyn Fn(&Path) -> bool| {
            config_file_to_read(flag, env, exists).map(|p| p.display().to_string())
        };

        assert_eq!(
            pick(flag(), &env_set, &cwd_has_one).as_deref(),
            Some("/srv/from-flag.yaml")
        );
        assert_eq!(
            pick(None, &env_set, &cwd_has_one).as_deref(),
            Some("/etc/from-env.yaml")
        );
        assert_eq!(pick(None, &env_unset, &cwd_has_one).as_deref(), Some("cozyboot.yaml"));
        assert_eq!(pick(None, &env_unset, &cwd_has_none), None);
    }
}
