//! `cozyboot smoke`: boot a real firmware under QEMU through a boot site of its own, on a
//! private network this run creates, and report how far the machine got.
//!
//! The pieces, each in its own module:
//! - [`prereq`]: root, `ip`, QEMU, firmware and dnsmasq found before anything is touched;
//! - [`lab`]: the namespace, veth, bridge and tap (and proxy mode's router DHCP), deleted on drop;
//! - [`vm`]: the QEMU command line for a firmware and how it is accelerated;
//! - [`follow`]: the stages reached, read with the same parsers as `cozyboot nodes`;
//! - [`report`]: what the user sees, as text and as `cozyboot.smoke/v1` JSON.
//!
//! The site itself is started by `apply::up` and removed through the engine, like any other.

pub mod follow;
pub mod lab;
pub mod prereq;
pub mod report;
pub mod run;
pub mod vm;

use crate::artifacts::arch::Arch;
use crate::journey::model::Stage;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Which firmware the VM starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Firmware {
    /// AAVMF (arm64) or OVMF (amd64): PXE by the firmware's own network stack.
    Uefi,
    /// SeaBIOS running the NIC's iPXE option ROM (amd64 only).
    Bios,
    /// U-Boot's own network boot: its DHCP, then cozyboot's boot script over TFTP, which reads
    /// the kernel and initramfs over TFTP too (arm64 only).
    Uboot,
}

/// How addresses are handed out on the smoke network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DhcpMode {
    /// The site's dnsmasq is the DHCP server.
    Full,
    /// A plain router DHCP hands out addresses; the site's dnsmasq answers as proxy DHCP.
    Proxy,
}

/// How far the machine must get for the run to pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Until {
    /// DHCP offered the firmware a boot file.
    Dhcp,
    /// The bootloader is running: TFTP sent iPXE (a BIOS NIC's iPXE ROM: the boot.ipxe URL was offered).
    Bootloader,
    /// iPXE fetched its script and matchbox chose a profile for it.
    Ipxe,
    /// iPXE fetched the kernel.
    Kernel,
    /// iPXE fetched the initramfs.
    Initramfs,
    /// The node answers on TCP 50000 (Talos maintenance mode).
    Talos,
}

impl Until {
    pub const ALL: [Until; 6] = [
        Until::Dhcp,
        Until::Bootloader,
        Until::Ipxe,
        Until::Kernel,
        Until::Initramfs,
        Until::Talos,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Until::Dhcp => "dhcp",
            Until::Bootloader => "bootloader",
            Until::Ipxe => "ipxe",
            Until::Kernel => "kernel",
            Until::Initramfs => "initramfs",
            Until::Talos => "talos",
        }
    }

    /// The journey stage that proves this one; a BIOS client's bootloader is its iPXE ROM,
    /// which runs without TFTP, so for it the DHCP offer (of the `boot.ipxe` URL) is the proof.
    /// U-Boot runs no iPXE: its bootloader and `ipxe` stages are the boot script read.
    pub fn stage(self, firmware: Firmware) -> Stage {
        match (self, firmware) {
            (Until::Dhcp, _) | (Until::Bootloader, Firmware::Bios) => Stage::Dhcp,
            (Until::Bootloader | Until::Ipxe, Firmware::Uboot) => Stage::Tftp,
            (Until::Bootloader, Firmware::Uefi) => Stage::Tftp,
            (Until::Ipxe, _) => Stage::Profile,
            (Until::Kernel, _) => Stage::Kernel,
            (Until::Initramfs, _) => Stage::Initramfs,
            (Until::Talos, _) => Stage::Talos,
        }
    }
}

macro_rules! named {
    ($t:ty, $what:literal, $($v:expr),+) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let all = [$($v),+];
                all.into_iter().find(|v| v.name() == s).ok_or_else(|| {
                    let names: Vec<&str> = all.iter().map(|v| v.name()).collect();
                    format!("unknown {} `{s}`; one of: {}", $what, names.join(", "))
                })
            }
        }
    };
}

impl Firmware {
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Uefi => "uefi",
            Firmware::Bios => "bios",
            Firmware::Uboot => "uboot",
        }
    }
}

impl DhcpMode {
    pub fn name(self) -> &'static str {
        match self {
            DhcpMode::Full => "full",
            DhcpMode::Proxy => "proxy",
        }
    }
}

named!(Firmware, "firmware", Firmware::Uefi, Firmware::Bios, Firmware::Uboot);
named!(DhcpMode, "DHCP mode", DhcpMode::Full, DhcpMode::Proxy);
named!(
    Until,
    "stage",
    Until::Dhcp,
    Until::Bootloader,
    Until::Ipxe,
    Until::Kernel,
    Until::Initramfs,
    Until::Talos
);

/// The machine to boot: what QEMU emulates and which firmware it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Machine {
    pub arch: Arch,
    pub firmware: Firmware,
}

impl Machine {
    /// A BIOS is x86 only.
    pub fn new(arch: Arch, firmware: Firmware) -> Result<Machine, String> {
        if arch == Arch::Arm64 && firmware == Firmware::Bios {
            return Err(
                "arm64 machines boot UEFI or U-Boot: use --firmware uefi or uboot, or --arch amd64 for BIOS".into(),
            );
        }
        if arch == Arch::Amd64 && firmware == Firmware::Uboot {
            return Err("U-Boot machines are arm64 (Debian's u-boot-qemu qemu_arm64): use --arch arm64".into());
        }
        Ok(Machine { arch, firmware })
    }

    pub fn label(self) -> &'static str {
        match (self.arch, self.firmware) {
            (_, Firmware::Uboot) => "ARM64 U-Boot (u-boot-qemu)",
            (Arch::Arm64, _) => "ARM64 UEFI (AAVMF)",
            (Arch::Amd64, Firmware::Uefi) => "x86_64 UEFI (OVMF)",
            (Arch::Amd64, Firmware::Bios) => "x86 BIOS (SeaBIOS + iPXE ROM)",
        }
    }
}

/// The whole of one run: the machine, the network, the goal and the time allowed.
#[derive(Debug, Clone)]
pub struct Request {
    pub machine: Machine,
    pub dhcp: DhcpMode,
    pub until: Until,
    /// `--timeout`; `None`: what fits the accelerator ([`vm::default_timeout`]).
    pub timeout: Option<Duration>,
    /// Guest memory in MiB (Talos wants 2 GiB in maintenance mode).
    pub memory_mib: u32,
}
