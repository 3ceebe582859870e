//! Command-line types only: parsing lives here, behaviour lives in `commands`.

use crate::artifacts::arch::Arch;
use crate::settings::raw::{NodeEntry, Raw, Text};
use crate::settings::{choice, LogLevel, MatchboxListen, PullPolicy, Variant};
use crate::smoke::{DhcpMode as SmokeDhcp, Firmware, Until};
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
Settings come from built-in defaults, then the site `up` recorded (<data-dir>/.cozyboot/site.json), \
then a YAML file (--config, or ./cozyboot.yaml), then COZYBOOT_* environment variables, then flags; \
later sources win. After `up`, the other commands need no settings: they find the site it recorded."
)]
pub struct Cli {
    /// Print one JSON document on stdout instead of text (progress and logs go to stderr).
    #[arg(long, global = true)]
    pub json: bool,

    /// YAML config file [env: COZYBOOT_CONFIG; else ./cozyboot.yaml when it exists].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

// Each command's help ends with real examples (a test parses every one of them).
const UP_EXAMPLES: &str = "\
Examples:
  # Proxy DHCP beside the router, for arm64 nodes on eth0
  cozyboot up --iface eth0

  # Full DHCP, arm64 and x86 nodes, a pinned tag, one machine config for every node
  cozyboot up --iface eth0 --dhcp-range 10.20.13.150,10.20.13.200 --gateway 10.20.13.1 --dns 10.20.13.1 --arch arm64,amd64 --tag v1.3.3 --talos-config ./worker.yaml

  # Show what would change, and change nothing
  cozyboot up --config site.yaml --dry-run";

const RENDER_EXAMPLES: &str = "\
Examples:
  # The recorded site's settings, and where each value came from
  cozyboot render --print-settings

  # Render for another host into a directory of its own
  cozyboot render --iface eth0 --server-ip 10.20.13.140 --subnet 10.20.13.0/24 --output ./matchbox

  # The same site as Kubernetes manifests, served by the node 10.20.13.21 (its eth0 on the LAN)
  cozyboot render --kubernetes ./boot-site --iface eth0 --server-ip 10.20.13.21 --subnet 10.20.13.0/24 --node-arch arm64";

const VALIDATE_EXAMPLES: &str = "\
Examples:
  # Check the site `up` recorded (several sites: add --data-dir)
  cozyboot validate

  # For CI: one JSON document, and warnings fail too
  cozyboot validate --json --strict

  # Also act as a PXE client on the boot segment (needs root)
  cozyboot validate --probe-dhcp --data-dir /opt/matchbox";

const STATUS_EXAMPLES: &str = "\
Examples:
  # Every recorded site, its containers and assets
  cozyboot status

  # One site, as JSON
  cozyboot status --data-dir /srv/site-b --json";

const LOGS_EXAMPLES: &str = "\
Examples:
  # Follow dnsmasq (DHCP and TFTP requests)
  cozyboot logs dnsmasq -f

  # The last 100 lines of both containers of one site
  cozyboot logs --tail 100 --data-dir /srv/site-b

  # Every line matchbox wrote, at a site brought up with --log-level warn
  cozyboot logs matchbox --log-level info";

const NODES_EXAMPLES: &str = "\
Examples:
  # Every machine seen, the stages it reached and why it stopped
  cozyboot nodes

  # CI: wait up to 10 minutes for 3 machines to fetch their kernel
  cozyboot nodes --wait 3 --stage kernel --timeout 600

  # Redraw live while machines boot
  cozyboot nodes --watch";

const SMOKE_EXAMPLES: &str = "\
Examples:
  # As root: boot an ARM64 UEFI VM through the variant's latest images until Talos answers on TCP 50000
  cozyboot smoke --variant spin-only --tag latest

  # CI after pushing an image: proxy DHCP beside a router, logs kept for the artifact upload
  cozyboot smoke --registry ghcr.io/me/assets --tag v1.3.3 --dhcp proxy --json --keep smoke-logs

  # An x86 BIOS machine, only as far as the kernel download
  cozyboot smoke --arch amd64 --firmware bios --serve-arch amd64 --until kernel";

const RESTART_EXAMPLES: &str = "\
Examples:
  # Restart the recorded site's matchbox and dnsmasq
  cozyboot restart

  # Restart only dnsmasq of one site
  cozyboot restart dnsmasq --data-dir /srv/site-b";

const DOWN_EXAMPLES: &str = "\
Examples:
  # Stop the recorded site; assets, config and its recorded settings stay
  cozyboot down

  # Remove one site entirely, and forget it
  cozyboot down --purge --data-dir /srv/site-b";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pull the images, extract the Talos assets, write the matchbox config and start matchbox and dnsmasq.
    #[command(after_help = UP_EXAMPLES)]
    Up(UpArgs),
    /// Render the matchbox config and the dnsmasq arguments without touching Docker.
    #[command(after_help = RENDER_EXAMPLES)]
    Render(RenderArgs),
    /// Check, with evidence, whether machines will boot from this server.
    #[command(after_help = VALIDATE_EXAMPLES)]
    Validate(ValidateArgs),
    /// Show the recorded sites, the managed containers, their images and the assets.
    #[command(after_help = STATUS_EXAMPLES)]
    Status(StatusArgs),
    /// Show the logs of matchbox, dnsmasq or both.
    #[command(after_help = LOGS_EXAMPLES)]
    Logs(LogsArgs),
    /// Every machine's way from DHCP to Talos maintenance mode, and where each one stopped.
    #[command(after_help = NODES_EXAMPLES)]
    Nodes(NodesArgs),
    /// Boot a VM (QEMU, real UEFI or BIOS firmware) through a boot site of its own on a private
    /// network, and report how far it got: a smoke test for CI (needs root).
    #[command(after_help = SMOKE_EXAMPLES)]
    Smoke(SmokeArgs),
    /// Power the machines declared under `machines:` on or off, power-cycle them, or ask their state.
    #[command(after_help = POWER_EXAMPLES)]
    Power(PowerArgs),
    /// Hand the machines this site booted to another boot service (Cozystack's BootBox).
    #[command(subcommand)]
    Export(ExportTarget),
    /// Restart the managed containers (or one of them).
    #[command(after_help = RESTART_EXAMPLES)]
    Restart(RestartArgs),
    /// Stop and remove the managed containers; the data dir and the site's record are kept unless --purge.
    #[command(after_help = DOWN_EXAMPLES)]
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
    /// Serve again the Talos configs `cozyboot nodes` withdrew once their machines took them
    /// (a config whose file changed is served again anyway).
    #[arg(long)]
    pub serve_configs_again: bool,
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
    /// Write the site as Kubernetes manifests into DIR instead: dnsmasq and matchbox on the
    /// host network of the node labelled for the boot LAN (docs/fleet.md, "The site in Kubernetes").
    #[arg(long, value_name = "DIR", conflicts_with_all = ["output", "print_settings"])]
    pub kubernetes: Option<PathBuf>,
    /// The namespace of the manifests.
    #[arg(long, value_name = "NS", default_value = "cozyboot", value_parser = parse_namespace, requires = "kubernetes")]
    pub namespace: String,
    /// The architecture of the node serving the boot LAN (picks the dnsmasq image) [default: this host's].
    #[arg(long, value_name = "ARCH", value_parser = parse_named::<Arch>, requires = "kubernetes")]
    pub node_arch: Option<Arch>,
    /// Take the kernel and initramfs from an image volume (Kubernetes 1.31+ with the
    /// ImageVolume feature gate, on by default from 1.35) instead of an init container running
    /// the Talos image.
    #[arg(long, requires = "kubernetes")]
    pub image_volume: bool,
}

/// A Kubernetes namespace name is an RFC 1123 label.
fn parse_namespace(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_string())
    } else {
        Err("not a Kubernetes namespace name: at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit".to_string())
    }
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
    /// The boot site with this data dir [default: the site recorded on this host; every
    /// managed container when none is].
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
    /// Show matchbox's lines at this level and more severe [default: the site's log-level].
    #[arg(long, value_parser = choice::value_parser::<LogLevel>())]
    pub log_level: Option<String>,
    #[command(flatten)]
    pub site: SiteArgs,
}

#[derive(Debug, Args)]
pub struct NodesArgs {
    #[command(flatten)]
    pub site: SiteArgs,
    /// Wait until N machines reached --stage (exit 0); after --timeout exit 1 with where each stopped.
    #[arg(long, value_name = "N")]
    pub wait: Option<usize>,
    /// The stage --wait waits for: dhcp, tftp, boot-ipxe, profile, kernel, initramfs, config, talos.
    #[arg(long, default_value = "talos", value_parser = parse_stage, requires = "wait")]
    pub stage: crate::journey::model::Stage,
    /// Seconds --wait waits (or --watch redraws) before giving up.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub timeout: u64,
    /// Redraw the table every 2 seconds until interrupted (or --timeout).
    #[arg(long, conflicts_with = "wait")]
    pub watch: bool,
    /// Do not try TCP 50000 (Talos maintenance mode) on the machines' addresses.
    #[arg(long)]
    pub no_probe: bool,
}

const POWER_EXAMPLES: &str = "\
Examples:
  # Power on two machines declared in cozyboot.yaml (by hostname, or by MAC)
  cozyboot power on node1 node2

  # What would be sent or run for every declared machine, sending nothing
  cozyboot power cycle --all --dry-run

  # Ask each machine's power state (drivers command with status:, and ipmi), as JSON
  cozyboot power status --all --json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PowerAction {
    On,
    Off,
    Cycle,
    Status,
}

#[derive(Debug, Args)]
pub struct PowerArgs {
    pub action: PowerAction,
    /// Machines by hostname or MAC address, as declared under `machines:`.
    #[arg(value_name = "NAME|MAC", required_unless_present = "all", conflicts_with = "all")]
    pub machines: Vec<String>,
    /// Every declared machine.
    #[arg(long)]
    pub all: bool,
    /// Print what would be sent or run, and send and run nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub site: SiteArgs,
}

#[derive(Debug, Subcommand)]
pub enum ExportTarget {
    /// The `machines:` values of Cozystack's BootBox package, from the machines the journal saw.
    #[command(after_help = BOOTBOX_EXAMPLES)]
    Bootbox(BootboxArgs),
}

const BOOTBOX_EXAMPLES: &str = "\
Examples:
  # The values for BootBox (amd64 machines; arm64 ones are left out with the reason)
  cozyboot export bootbox > bootbox-values.yaml

  # Proxy DHCP: the router hands out addresses, so name its gateway and lease time
  cozyboot export bootbox --gateway 192.168.1.1 --lease-time 86400

  # Does the values file applied earlier still hold every machine? (exit 1 when not)
  cozyboot export bootbox --check bootbox-values.yaml";

#[derive(Debug, Args)]
pub struct BootboxArgs {
    #[command(flatten)]
    pub site: SiteArgs,
    /// Include machines BootBox cannot boot (arm64: its assets are amd64 only).
    #[arg(long)]
    pub force: bool,
    /// Compare this values file's `machines:` with what would be exported; exit 1 when they differ.
    #[arg(long, value_name = "FILE")]
    pub check: Option<PathBuf>,
    /// The LAN's gateway [default: the site's gateway; needed in proxy DHCP mode].
    #[arg(long, value_name = "IP")]
    pub gateway: Option<std::net::Ipv4Addr>,
    /// The lease time BootBox hands out, in seconds [default: the site's lease-time; needed in proxy DHCP mode].
    #[arg(long, value_name = "SECONDS")]
    pub lease_time: Option<u64>,
}

fn parse_stage(s: &str) -> Result<crate::journey::model::Stage, String> {
    s.parse()
}

#[derive(Debug, Args)]
pub struct SmokeArgs {
    /// Architecture of the VM: arm64 (qemu-system-aarch64 `virt`) or amd64.
    #[arg(long, default_value = "arm64", value_parser = parse_named::<Arch>)]
    pub arch: Arch,
    /// Firmware of the VM: uefi (AAVMF or OVMF), bios (SeaBIOS with the NIC's iPXE ROM; amd64
    /// only) or uboot (Debian's U-Boot for QEMU, its own network boot; arm64 only).
    #[arg(long, default_value = "uefi", value_parser = parse_named::<Firmware>)]
    pub firmware: Firmware,
    /// full: the site hands out addresses; proxy: a plain router DHCP does, the site answers as proxy DHCP.
    #[arg(long, default_value = "full", value_parser = parse_named::<SmokeDhcp>)]
    pub dhcp: SmokeDhcp,
    /// The stage that makes the run pass: dhcp, bootloader, ipxe, kernel, initramfs, talos (TCP 50000 answers).
    #[arg(long, default_value = "talos", value_parser = parse_named::<Until>)]
    pub until: Until,
    /// Seconds the VM may take from power-on to --until [default: 600 for ARM64 under TCG, 420
    /// for x86 under TCG, 180 with KVM].
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Save the serial console, dnsmasq, matchbox (and router) logs and the JSON report into DIR.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// auto: KVM when /dev/kvm is usable and the VM has the host's architecture (falling back
    /// to TCG when KVM cannot run it), else TCG; kvm or tcg to insist.
    #[arg(long, default_value = "auto", value_parser = ["auto", "kvm", "tcg"])]
    pub accel: String,
    /// Memory of the VM in MiB (Talos wants 2 GiB in maintenance mode).
    #[arg(long, default_value_t = 2048, value_name = "MIB")]
    pub memory: u32,
    #[command(flatten)]
    pub site: SmokeSiteArgs,
}

/// The settings of the site a smoke run boots from. The network ones (`iface`, addresses,
/// DHCP range, data dir, port, container names) belong to the run and are not settable; no
/// config file or `COZYBOOT_*` variable is read, so the command line is the whole test.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Site settings")]
pub struct SmokeSiteArgs {
    #[command(flatten)]
    pub images: ImageArgs,
    /// Architectures the site serves [default: the VM's --arch].
    #[arg(long, value_name = "ARCH", value_delimiter = ',', value_parser = choice::value_parser::<Arch>())]
    pub serve_arch: Vec<String>,
    #[command(flatten)]
    pub boot: BootArgs,
}

/// The images a site serves from: every command's settings and `smoke`'s site share them.
#[derive(Debug, Default, Clone, Args)]
pub struct ImageArgs {
    /// Cozystack Talos variant [default: spin-only].
    #[arg(long, value_parser = choice::value_parser::<Variant>())]
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
    /// When to pull images [default: missing].
    #[arg(long, value_parser = choice::value_parser::<PullPolicy>())]
    pub pull: Option<String>,
}

/// What a site adds to the images for the machines: the arm64 iPXE and kernel arguments.
#[derive(Debug, Default, Clone, Args)]
pub struct BootArgs {
    /// Where to get the arm64 iPXE binary: a path or an http(s) URL [default: the host's
    /// /usr/lib/ipxe/ipxe-arm64.efi, else cozyboot's cached download, else --ipxe-arm64-url].
    #[arg(long, value_name = "PATH|URL")]
    pub ipxe_arm64: Option<String>,
    /// Where to download the arm64 iPXE binary when no other source has one, for mirrors and
    /// air gaps [default: https://boot.ipxe.org/arm64-efi/ipxe.efi].
    #[arg(long, value_name = "URL")]
    pub ipxe_arm64_url: Option<String>,
    /// Where to get the Raspberry Pi UEFI firmware (pftf/RPi4) served to the Pi 4/CM4 EEPROM:
    /// the release zip, the directory it was unpacked into, or the zip's http(s) URL [default:
    /// cozyboot's cached copy of the pinned release, else its download, checked by SHA-256].
    #[arg(long, value_name = "PATH|URL")]
    pub rpi_uefi: Option<String>,
    /// Answer the Raspberry Pi 4/CM4 EEPROM's network boot when arm64 is served: `on`, or `off`
    /// for Pis that carry their own UEFI firmware [default: on].
    #[arg(long, value_name = "on|off")]
    pub rpi_netboot: Option<String>,
    /// Answer U-Boot's own network boot (vendor class `U-Boot.armv8`) with a boot script when
    /// arm64 is served: `on`, or `off` to leave U-Boot boards alone [default: on].
    #[arg(long, value_name = "on|off")]
    pub uboot_netboot: Option<String>,
    /// Extra kernel arguments (repeatable).
    #[arg(long = "kernel-args", alias = "kernel-arg", value_name = "ARG")]
    pub kernel_args: Vec<String>,
}

fn parse_named<T: std::str::FromStr<Err = String>>(s: &str) -> Result<T, String> {
    s.parse()
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
    /// Also remove what cozyboot wrote to the data dir (assets, rendered config, certificates,
    /// the recorded settings) and forget the site.
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
    #[command(flatten)]
    pub images: ImageArgs,
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
    /// Where assets and matchbox config live; also picks one of several recorded sites
    /// [default: the recorded site's, else /opt/matchbox].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Architectures to serve [default: arm64].
    #[arg(long, value_name = "ARCH", value_delimiter = ',', value_parser = choice::value_parser::<Arch>())]
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
    #[command(flatten)]
    pub boot: BootArgs,
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
    /// Addresses matchbox listens on: `server` (--server-ip only) or `all` (every interface,
    /// e.g. for a port forward or gRPC clients on another network) [default: server].
    #[arg(long, value_parser = choice::value_parser::<MatchboxListen>())]
    pub matchbox_listen: Option<String>,
    /// Docker network for the containers: `host`, or a network name (e.g. macvlan) [default: host].
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
    /// Lowest level of matchbox's lines `cozyboot logs` shows; matchbox itself logs at info
    /// (debug with debug), which `nodes` and `validate` read [default: info].
    #[arg(long, value_parser = choice::value_parser::<LogLevel>())]
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
            variant: t(&self.images.variant),
            tag: t(&self.images.tag),
            registry: t(&self.images.registry),
            dnsmasq_image: t(&self.images.dnsmasq_image),
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
            ipxe_arm64: t(&self.boot.ipxe_arm64),
            ipxe_arm64_url: t(&self.boot.ipxe_arm64_url),
            rpi_uefi: t(&self.boot.rpi_uefi),
            rpi_netboot: t(&self.boot.rpi_netboot),
            uboot_netboot: t(&self.boot.uboot_netboot),
            kernel_args: list(&self.boot.kernel_args),
            talos_config: self.talos_config.clone(),
            talos_nodes: (!self.talos_nodes.is_empty())
                .then(|| self.talos_nodes.iter().cloned().map(NodeEntry::Short).collect()),
            // Boards' settings come from the config file or COZYBOOT_RPI_NODES; no flag.
            rpi_nodes: None,
            rpc: self.rpc.then(|| Text("true".into())),
            rpc_port: t(&self.rpc_port),
            matchbox_listen: t(&self.matchbox_listen),
            network: t(&self.network),
            pull: t(&self.images.pull),
            log_level: t(&self.log_level),
            matchbox_name: t(&self.matchbox_name),
            dnsmasq_name: t(&self.dnsmasq_name),
            machines: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every example in every command's help parses, so none can rot into a lie.
    #[test]
    fn every_command_ends_its_help_with_examples_that_parse() {
        let cli = Cli::command();
        for name in [
            "up", "render", "validate", "status", "logs", "smoke", "restart", "down", "power",
        ] {
            let cmd = cli.find_subcommand(name).unwrap();
            let help = cmd.get_after_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(help.starts_with("Examples:"), "{name}: {help:?}");
            let examples: Vec<&str> = help
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("cozyboot "))
                .collect();
            assert!(
                (2..=3).contains(&examples.len()),
                "{name}: two or three examples: {examples:?}"
            );
            for example in examples {
                let words = shell_words::split(example).unwrap();
                assert_eq!(words[1], name, "an example of {name} runs {name}: {example}");
                if let Err(e) = Cli::try_parse_from(&words) {
                    panic!("{name}: `{example}` does not parse: {e}");
                }
            }
        }
    }
}

/// The choice settings (arch, variant, pull, log-level) judged alike from flags, environment
/// and file: here rather than in `settings::choice`, since the flag goes through the real
/// clap parser and settings sits below the CLI.
#[cfg(test)]
mod choice_sources {
    use super::*;
    use crate::error::{ConfigError, Error};
    use crate::settings::choice::Choice;
    use crate::settings::net::FixedNet;
    use crate::settings::{raw, Inputs, Purpose, Source};

    /// One setting given by one source (`flag`, `env` or `file`), resolved as `render` does:
    /// the flag through the real clap parser.
    fn resolve_from(source: &str, key: &str, value: &str) -> Result<crate::settings::Settings, Vec<ConfigError>> {
        let dir = tempfile::tempdir().unwrap();
        let mut argv = vec!["cozyboot".to_string(), "render".into(), "--server-ip=10.0.0.2".into()];
        argv.extend(["--subnet=10.0.0.0/24".into(), "--iface=eth0".into()]);
        let mut env = Vec::new();
        let mut config_file = None;
        match source {
            "flag" => argv.push(format!("--{key}={value}")),
            "env" => env.push((raw::env_name(&key.replace('-', "_")), value.to_string())),
            "file" => {
                let path = dir.path().join("cozyboot.yaml");
                // `arch` is a list in the file (`arch: [arm64]`), as the README shows it.
                let yaml = match key {
                    "arch" => format!("{key}: ['{value}']\n"),
                    _ => format!("{key}: '{value}'\n"),
                };
                std::fs::write(&path, yaml).unwrap();
                config_file = Some(path);
            }
            other => panic!("{other}"),
        }
        let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("clap refused {argv:?}: {e}"));
        let Command::Render(args) = cli.command else {
            unreachable!()
        };
        let env = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let resolved = crate::settings::resolve(Inputs {
            config_file,
            env: &env,
            flags: args.settings.to_raw(),
            host: &FixedNet(vec![]),
            purpose: Purpose::Render,
            site: &crate::settings::no_site,
        });
        match resolved {
            Ok(r) => Ok(r.settings),
            Err(Error::Config(errors)) => Err(errors),
            Err(e) => panic!("{e}"),
        }
    }

    fn value_of(s: &crate::settings::Settings, key: &str) -> String {
        s.describe().into_iter().find(|(k, _)| *k == key).unwrap().1
    }

    fn spellings<T: Choice>() -> Vec<(&'static str, T)> {
        T::ALL
            .iter()
            .flat_map(|c| {
                std::iter::once(c.name())
                    .chain(c.aliases().iter().copied())
                    .map(|s| (s, *c))
            })
            .collect()
    }

    #[test]
    fn flags_environment_and_file_accept_the_same_spellings() {
        let mut cases: Vec<(&str, &str, &str)> = Vec::new();
        cases.extend(spellings::<Arch>().into_iter().map(|(s, c)| ("arch", s, c.name())));
        cases.extend(
            spellings::<Variant>()
                .into_iter()
                .map(|(s, c)| ("variant", s, c.name())),
        );
        cases.extend(
            spellings::<PullPolicy>()
                .into_iter()
                .map(|(s, c)| ("pull", s, c.name())),
        );
        cases.extend(
            spellings::<LogLevel>()
                .into_iter()
                .map(|(s, c)| ("log-level", s, c.name())),
        );
        cases.extend(
            spellings::<MatchboxListen>()
                .into_iter()
                .map(|(s, c)| ("matchbox-listen", s, c.name())),
        );
        assert!(cases.contains(&("arch", "aarch64", "arm64")));
        for (key, spelling, meant) in cases {
            for source in ["flag", "env", "file"] {
                let settings = resolve_from(source, key, spelling)
                    .unwrap_or_else(|e| panic!("{key}={spelling} from {source}: {e:?}"));
                assert_eq!(value_of(&settings, key), meant, "{key}={spelling} from {source}");
            }
        }
    }

    #[test]
    fn a_bad_value_gets_the_same_error_from_flags_environment_and_file() {
        for (key, bad) in [
            ("arch", "ppc64"),
            ("variant", "spin-all"),
            ("pull", "sometimes"),
            ("log-level", "loud"),
            ("matchbox-listen", "0.0.0.0"),
        ] {
            let errors: Vec<ConfigError> = ["flag", "env", "file"]
                .into_iter()
                .map(|source| {
                    let mut errors = resolve_from(source, key, bad).expect_err(bad);
                    assert_eq!(errors.len(), 1, "{errors:?}");
                    errors.remove(0)
                })
                .collect();
            let sources: Vec<_> = errors.iter().map(|e| e.source.clone()).collect();
            assert!(matches!(sources[0], Some(Source::Flag(_))), "{sources:?}");
            assert!(matches!(sources[1], Some(Source::Env(_))), "{sources:?}");
            assert!(matches!(sources[2], Some(Source::File(_))), "{sources:?}");
            let what = |e: &ConfigError| (e.field.clone(), e.value.clone(), e.problem.clone(), e.fix.clone());
            assert_eq!(what(&errors[0]), what(&errors[1]), "{key}");
            assert_eq!(what(&errors[0]), what(&errors[2]), "{key}");
            assert_eq!(errors[0].value.as_deref(), Some(bad));
            assert!(errors[0].problem.starts_with("unknown "), "{:?}", errors[0]);
            assert!(errors[0].fix.starts_with("use "), "{:?}", errors[0]);
        }
    }
}
