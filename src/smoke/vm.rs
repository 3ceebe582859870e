//! The QEMU command line of a smoke machine, and how it is accelerated.
//!
//! The VM gets a tap and nothing else (`-nodefaults`: no user-mode network, no display),
//! its serial console goes to a file, and `-no-reboot` makes a reboot end QEMU.

use super::{Firmware, Machine};
use crate::artifacts::arch::Arch;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// KVM when `/dev/kvm` can be opened read-write and the guest is the host's architecture;
    /// software emulation (TCG) otherwise, e.g. an ARM64 guest on an x86 CI runner.
    pub fn choose(guest: Arch, host: Option<Arch>, kvm_usable: bool) -> Accel {
        if kvm_usable && host == Some(guest) {
            Accel::Kvm
        } else {
            Accel::Tcg
        }
    }

    pub fn detect(guest: Arch) -> Accel {
        let kvm = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok();
        Accel::choose(guest, host_arch(), kvm)
    }

    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

pub fn host_arch() -> Option<Arch> {
    match std::env::consts::ARCH {
        "aarch64" => Some(Arch::Arm64),
        "x86_64" => Some(Arch::Amd64),
        _ => None,
    }
}

/// How long a run may take by default: TCG emulating ARM64 is slow (firmware alone takes
/// tens of seconds, a Talos initramfs minutes), KVM is not.
pub fn default_timeout(machine: Machine, accel: Accel) -> Duration {
    Duration::from_secs(match (accel, machine.arch) {
        (Accel::Kvm, _) => 180,
        (Accel::Tcg, Arch::Arm64) => 600,
        (Accel::Tcg, Arch::Amd64) => 420,
    })
}

/// Everything QEMU is told.
#[derive(Debug, Clone)]
pub struct VmSpec {
    pub machine: Machine,
    pub accel: Accel,
    pub qemu: PathBuf,
    /// The `-bios` image; `None`: QEMU's own SeaBIOS.
    pub firmware: Option<PathBuf>,
    pub tap: String,
    pub mac: String,
    pub serial: PathBuf,
    pub memory_mib: u32,
}

impl VmSpec {
    /// QEMU's arguments (never a shell string).
    pub fn args(&self) -> Vec<String> {
        let kvm = self.accel == Accel::Kvm;
        let (board, cpu) = match (self.machine.arch, self.machine.firmware) {
            (Arch::Arm64, _) => ("virt", if kvm { "host" } else { "cortex-a57" }),
            (Arch::Amd64, Firmware::Uefi | Firmware::Uboot) => ("q35", if kvm { "host" } else { "qemu64" }),
            (Arch::Amd64, Firmware::Bios) => ("pc", if kvm { "host" } else { "qemu64" }),
        };
        let mut a: Vec<String> = ["-M", board, "-cpu", cpu, "-accel", self.accel.name()]
            .map(String::from)
            .to_vec();
        a.extend(["-m".into(), self.memory_mib.to_string(), "-smp".into(), "1".into()]);
        if let Some(fw) = &self.firmware {
            a.extend(["-bios".into(), fw.display().to_string()]);
        }
        a.extend(["-nodefaults", "-nographic", "-monitor", "none", "-no-reboot"].map(String::from));
        a.extend(["-serial".into(), format!("file:{}", self.serial.display())]);
        a.extend([
            "-netdev".into(),
            format!("tap,id=n0,ifname={},script=no,downscript=no", self.tap),
        ]);
        // UEFI and U-Boot: no option ROM, so the firmware's own virtio-net driver does the
        // network boot, as a vendor NIC driver would. BIOS: QEMU's default ROM (ipxe-qemu's iPXE) is the PXE stack.
        let rom = match self.machine.firmware {
            Firmware::Uefi => ",romfile=",
            // U-Boot before 2024.07 (Debian bookworm's 2023.01) reads a legacy virtio device's
            // config at offset 0 whatever it asks (fixed by U-Boot's "virtio: fix get_config /
            // set_config for legacy VirtIO targets"): the MAC comes out as its first byte six
            // times (52:52:52:52:52:52). A modern-only device gives it the MAC QEMU set.
            Firmware::Uboot => ",romfile=,disable-legacy=on",
            Firmware::Bios => "",
        };
        a.extend([
            "-device".into(),
            format!("virtio-net-pci,netdev=n0,mac={},bootindex=1{rom}", self.mac),
        ]);
        if self.machine.firmware == Firmware::Bios {
            a.extend(["-boot".into(), "order=n".into()]);
        }
        a
    }

    /// The command, run inside the namespace `ns` where the tap is.
    pub fn command(&self, ip: &Path, ns: &str) -> std::process::Command {
        let mut c = std::process::Command::new(ip);
        c.args(["netns", "exec", ns]).arg(&self.qemu).args(self.args());
        c
    }
}

/// A locally administered MAC in QEMU's block, distinct per run (from the process id).
pub fn mac_for(pid: u32) -> String {
    let b = pid.to_be_bytes();
    format!("52:54:00:{:02x}:{:02x}:{:02x}", b[1] | 0x80, b[2], b[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(arch: Arch, firmware: Firmware, accel: Accel) -> VmSpec {
        VmSpec {
            machine: Machine::new(arch, firmware).unwrap(),
            accel,
            qemu: "/usr/bin/qemu".into(),
            firmware: (firmware == Firmware::Uefi).then(|| PathBuf::from("/fw.fd")),
            tap: "tap0".into(),
            mac: "52:54:00:80:00:01".into(),
            serial: "/tmp/s.log".into(),
            memory_mib: 2048,
        }
    }

    #[test]
    fn arm64_under_tcg_emulates_a_cortex_a57_with_aavmf_and_no_nic_rom() {
        let a = spec(Arch::Arm64, Firmware::Uefi, Accel::Tcg).args().join(" ");
        assert!(a.starts_with("-M virt -cpu cortex-a57 -accel tcg -m 2048"), "{a}");
        assert!(a.contains("-bios /fw.fd -nodefaults"), "{a}");
        assert!(
            a.contains("-netdev tap,id=n0,ifname=tap0,script=no,downscript=no"),
            "{a}"
        );
        assert!(a.ends_with("mac=52:54:00:80:00:01,bootindex=1,romfile="), "{a}");
    }

    #[test]
    fn bios_keeps_the_ipxe_rom_and_boots_from_the_network() {
        let a = spec(Arch::Amd64, Firmware::Bios, Accel::Kvm).args().join(" ");
        assert!(a.starts_with("-M pc -cpu host -accel kvm"), "{a}");
        assert!(!a.contains("-bios") && !a.contains("romfile"), "{a}");
        assert!(a.ends_with("-boot order=n"), "{a}");
    }

    #[test]
    fn kvm_only_for_the_hosts_own_architecture() {
        assert_eq!(Accel::choose(Arch::Arm64, Some(Arch::Amd64), true), Accel::Tcg);
        assert_eq!(Accel::choose(Arch::Amd64, Some(Arch::Amd64), true), Accel::Kvm);
        assert_eq!(Accel::choose(Arch::Amd64, Some(Arch::Amd64), false), Accel::Tcg);
    }

    #[test]
    fn macs_differ_per_process_and_stay_in_qemus_block() {
        assert_eq!(mac_for(1234), "52:54:00:80:04:d2");
        assert_ne!(mac_for(1234), mac_for(1235));
    }
}
