//! Command-line types only: parsing lives here, behaviour lives in `commands`.

use crate::settings::raw::{NodeEntry, Raw, Text};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "cozyboot",
    version,
    about = "PXE/iPXE boot server for Talos/Cozystack nodes (ARM64 first), run on Docker",
    long_about = "cozyboot turns a Linux host with Docker into a PXE/iPXE boot server for Talos Linux \
nodes of Cozystack's spin-only and spin-tailscale variants: dnsmasq (DHCP + TFTP) and matchbox (HTTP), \
configured correctly for ARM64 UEFI (client-arch 11) and x86.\n\n\
Settings come from built-in defaults, then a YAML file (--config, or ./cozyboot.yaml), then \
COZYBOOT_* environment variables, then flags; later sources win."
)]
pub struct Cli {
    /// Print one JSON document on stdout instead of text (progress and logs go to stderr).
    #[arg(long, global = true)]
    pub json: bool,

    /// YAML config file [default: ./cozyboot.yaml when it exists; env: COZYBOOT_CONFIG].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pull the images, extract the Talos assets, write the matchbox config and start matchbox and dnsmasq.
    Up(UpArgs),
    /// Render the matchbox config and the dnsmasq arguments without touching Docker.
    Render(RenderArgs),
    /// Check, with evidence, whether machines will boot from this server.
    Validate(ValidateArgs),
    /// Show the managed containers, their images and the assets.
    Status(StatusArgs),
    /// Show the logs of matchbox, dnsmasq or both.
    Logs(LogsArgs),
    /// Restart the managed containers (or one of them).
    Restart(RestartArgs),
    /// Stop and remove the managed containers; the data dir is kept unless --purge.
    Down(DownArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Print the actions `up` would take and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Move files in the data dir's profiles/, groups/ and generic/ that cozyboot did not
    /// write (e.g. from the manual guide) into <data-dir>/.cozyboot/moved-<date>/.
    #[arg(long)]
    pub move_foreign: bool,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Directory to write the matchbox tree to [default: the data dir].
    #[arg(long, short, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Print the resolved settings and where each value came from; write nothing.
    #[arg(long)]
    pub print_settings: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Treat warnings as failures (exit 1).
    #[arg(long)]
    pub strict: bool,
    /// Also act as a PXE client: send DHCPDISCOVERs and fetch the offered files (needs root).
    #[arg(long)]
    pub probe_dhcp: bool,
    /// Interface to probe from [default: --iface].
    #[arg(long, value_name = "IFACE", requires = "probe_dhcp")]
    pub probe_iface: Option<String>,
}

/// Day-2 commands find the containers by label, as `up` made them: no settings needed.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub site: SiteArgs,
}

/// Narrows day-2 commands to one boot site when a host runs several.
#[derive(Debug, Default, Args)]
pub struct SiteArgs {
    /// Only the containers `up` started with this data dir [default: all managed containers].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    Matchbox,
    Dnsmasq,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Which container; both when omitted.
    pub role: Option<Role>,
    /// Keep printing new lines until interrupted.
    #[arg(long, short)]
    pub follow: bool,
    /// Number of lines from the end.
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    #[command(flatten)]
    pub site: SiteArgs,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Which container; both when omitted.
    pub role: Option<Role>,
    #[command(flatten)]
    pub site: SiteArgs,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Also remove what cozyboot wrote to the data dir (assets, rendered config, certificates).
    #[arg(long)]
    pub purge: bool,
    /// Also purged when no managed container names it.
    #[command(flatten)]
    pub site: SiteArgs,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}

/// Every setting as a flag. Values stay text here: `settings` validates all sources alike,
/// so a bad value gets the same message from a flag, the file or the environment.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Settings")]
pub struct SettingsArgs {
    /// Cozystack Talos variant [default: spin-only].
    #[arg(long, value_parser = ["spin-only", "spin-tailscale"])]
    pub variant: Option<String>,
    /// Image tag of the variant's talos and matchbox images [default: latest].
    #[arg(long)]
    pub tag: Option<String>,
    /// Registry prefix of the variant images, for mirrors [default: ghcr.io/urmanac/cozystack-assets].
    #[arg(long, value_name = "PREFIX")]
    pub registry: Option<String>,
    /// dnsmasq image; `{arch}` becomes the engine's architecture.
    #[arg(long, value_name = "IMAGE")]
    pub dnsmasq_image: Option<String>,
    /// Interface facing the machines to boot (dnsmasq binds to it).
    #[arg(long, value_name = "IFACE")]
    pub iface: Option<String>,
    /// Address clients reach TFTP and HTTP on [default: the IPv4 address of --iface].
    #[arg(long, value_name = "IP")]
    pub server_ip: Option<String>,
    /// Subnet of the boot network, CIDR [default: from --iface].
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<String>,
    /// Full DHCP mode with this address range (START,END); without it, proxy DHCP beside the router.
    #[arg(long, value_name = "START,END")]
    pub dhcp_range: Option<String>,
    /// Router handed out in full DHCP mode.
    #[arg(long, value_name = "IP")]
    pub gateway: Option<String>,
    /// DNS servers handed out in full DHCP mode.
    #[arg(long, value_name = "IP", value_delimiter = ',')]
    pub dns: Vec<String>,
    /// Lease time in full DHCP mode [default: 12h].
    #[arg(long, value_name = "TIME")]
    pub lease_time: Option<String>,
    /// matchbox HTTP port [default: 8080].
    #[arg(long, value_name = "PORT")]
    pub http_port: Option<String>,
    /// Where assets and matchbox config live [default: /opt/matchbox].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Architectures to serve [default: arm64].
    #[arg(long, value_name = "ARCH", value_delimiter = ',', value_parser = ["arm64", "amd64"])]
    pub arch: Vec<String>,
    /// File name of the arm64 iPXE binary in the TFTP root [default: bootaa64.efi].
    #[arg(long, value_name = "NAME")]
    pub bootloader_arm64: Option<String>,
    /// File name of the x86_64 UEFI iPXE binary [default: ipxe.efi].
    #[arg(long = "bootloader-x86-64", value_name = "NAME")]
    pub bootloader_x86_64: Option<String>,
    /// File name of the BIOS iPXE binary [default: undionly.kpxe].
    #[arg(long, value_name = "NAME")]
    pub bootloader_bios: Option<String>,
    /// Where to get the arm64 iPXE binary: a path or an http(s) URL [default: the host's
    /// /usr/lib/ipxe/ipxe-arm64.efi, else cozyboot's cached download, else --ipxe-arm64-url].
    #[arg(long, value_name = "PATH|URL")]
    pub ipxe_arm64: Option<String>,
    /// Where to download the arm64 iPXE binary when no other source has one, for mirrors and
    /// air gaps [default: https://boot.ipxe.org/arm64-efi/ipxe.efi].
    #[arg(long, value_name = "URL")]
    pub ipxe_arm64_url: Option<String>,
    /// Extra kernel arguments (repeatable).
    #[arg(long = "kernel-args", alias = "kernel-arg", value_name = "ARG")]
    pub kernel_args: Vec<String>,
    /// Talos machine config served to every node [default: none, nodes boot to maintenance mode].
    #[arg(long, value_name = "FILE")]
    pub talos_config: Option<PathBuf>,
    /// Talos machine config for one node: MAC=FILE or MAC@ARCH=FILE (repeatable).
    #[arg(long = "talos-nodes", alias = "talos-node", value_name = "MAC=FILE")]
    pub talos_nodes: Vec<String>,
    /// Enable matchbox's gRPC API, with generated mTLS certificates.
    #[arg(long)]
    pub rpc: bool,
    /// matchbox gRPC port [default: 8081].
    #[arg(long, value_name = "PORT")]
    pub rpc_port: Option<String>,
    /// Docker network for the containers: `host`, or a network name (e.g. macvlan) [default: host].
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
    /// When to pull images [default: missing].
    #[arg(long, value_parser = ["missing", "always", "never"])]
    pub pull: Option<String>,
    /// matchbox log level [default: info].
    #[arg(long, value_parser = ["debug", "info", "warn", "error"])]
    pub log_level: Option<String>,
    /// Name of the matchbox container [default: matchbox].
    #[arg(long, value_name = "NAME")]
    pub matchbox_name: Option<String>,
    /// Name of the dnsmasq container [default: dnsmasq].
    #[arg(long, value_name = "NAME")]
    pub dnsmasq_name: Option<String>,
}

impl SettingsArgs {
    /// The flag layer of settings resolution.
    pub fn to_raw(&self) -> Raw {
        let t = |v: &Option<String>| v.clone().map(Text);
        let list = |v: &[String]| (!v.is_empty()).then(|| v.iter().cloned().map(Text).collect());
        Raw {
            variant: t(&self.variant),
            tag: t(&self.tag),
            registry: t(&self.registry),
            dnsmasq_image: t(&self.dnsmasq_image),
            iface: t(&self.iface),
            server_ip: t(&self.server_ip),
            subnet: t(&self.subnet),
            dhcp_range: t(&self.dhcp_range),
            gateway: t(&self.gateway),
            dns: list(&self.dns),
            lease_time: t(&self.lease_time),
            http_port: t(&self.http_port),
            data_dir: self.data_dir.clone(),
            arch: list(&self.arch),
            bootloader_arm64: t(&self.bootloader_arm64),
            bootloader_x86_64: t(&self.bootloader_x86_64),
            bootloader_bios: t(&self.bootloader_bios),
            ipxe_arm64: t(&self.ipxe_arm64),
            ipxe_arm64_url: t(&self.ipxe_arm64_url),
            kernel_args: list(&self.kernel_args),
            talos_config: self.talos_config.clone(),
            talos_nodes: (!self.talos_nodes.is_empty())
                .then(|| self.talos_nodes.iter().cloned().map(NodeEntry::Short).collect()),
            rpc: self.rpc.then(|| Text("true".into())),
            rpc_port: t(&self.rpc_port),
            network: t(&self.network),
            pull: t(&self.pull),
            log_level: t(&self.log_level),
            matchbox_name: t(&self.matchbox_name),
            dnsmasq_name: t(&self.dnsmasq_name),
        }
    }
}
