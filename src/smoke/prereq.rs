//! What a smoke run needs on the host, found before anything is created, so that a missing
//! package is one error that names every package to install.

use super::{DhcpMode, Firmware, Machine};
use crate::artifacts::arch::Arch;
use std::path::{Path, PathBuf};

/// Where Debian and Ubuntu put each file, and the package that ships it.
struct Need {
    what: &'static str,
    candidates: &'static [&'static str],
    package: &'static str,
}

const IP: Need = Need {
    what: "ip (iproute2)",
    candidates: &["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"],
    package: "iproute2",
};
const QEMU_ARM64: Need = Need {
    what: "qemu-system-aarch64",
    candidates: &["/usr/bin/qemu-system-aarch64"],
    package: "qemu-system-arm",
};
const QEMU_AMD64: Need = Need {
    what: "qemu-system-x86_64",
    candidates: &["/usr/bin/qemu-system-x86_64"],
    package: "qemu-system-x86",
};
const AAVMF: Need = Need {
    what: "AAVMF (arm64 UEFI firmware)",
    candidates: &[
        "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd",
        "/usr/share/AAVMF/AAVMF_CODE.fd",
    ],
    package: "qemu-efi-aarch64",
};
/// Debian's U-Boot for QEMU's `virt` board: the same DHCP, TFTP and script code as its
/// Raspberry Pi builds (`u-boot-rpi`).
const UBOOT: Need = Need {
    what: "U-Boot for QEMU arm64",
    candidates: &["/usr/lib/u-boot/qemu_arm64/u-boot.bin"],
    package: "u-boot-qemu",
};
// `-bios` wants the combined image; the split CODE files need a pflash pair instead.
const OVMF: Need = Need {
    what: "OVMF (x86_64 UEFI firmware)",
    candidates: &["/usr/share/ovmf/OVMF.fd", "/usr/share/qemu/OVMF.fd"],
    package: "ovmf",
};
const SEABIOS: Need = Need {
    what: "SeaBIOS",
    candidates: &["/usr/share/seabios/bios-256k.bin", "/usr/share/qemu/bios-256k.bin"],
    package: "seabios",
};
// QEMU's default ROM for virtio-net-pci: the iPXE that SeaBIOS runs from the NIC.
const IPXE_ROM: Need = Need {
    what: "iPXE option ROM for virtio-net (efi-virtio.rom)",
    candidates: &["/usr/lib/ipxe/qemu/efi-virtio.rom", "/usr/share/qemu/efi-virtio.rom"],
    package: "ipxe-qemu",
};
const DNSMASQ: Need = Need {
    what: "dnsmasq (the router DHCP of proxy mode)",
    candidates: &["/usr/sbin/dnsmasq"],
    package: "dnsmasq-base",
};

/// The host programs and files one run uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    pub ip: PathBuf,
    pub qemu: PathBuf,
    /// The `-bios` image (`None`: QEMU's own SeaBIOS).
    pub firmware: Option<PathBuf>,
    /// The router DHCP's dnsmasq, in proxy mode.
    pub dnsmasq: Option<PathBuf>,
}

/// What is missing, said once: the files looked for and the packages that ship them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub what: Vec<String>,
    pub packages: Vec<&'static str>,
}

impl Missing {
    pub fn message(&self) -> String {
        format!("smoke needs {} on this host", self.what.join("; "))
    }

    pub fn fix(&self) -> String {
        format!("sudo apt-get install -y {}", self.packages.join(" "))
    }
}

/// Finds every tool `machine` and `dhcp` need; `exists` is the file system (a fake in tests).
pub fn find(machine: Machine, dhcp: DhcpMode, exists: &dyn Fn(&Path) -> bool) -> Result<Tools, Missing> {
    let mut needs = vec![&IP];
    needs.push(match machine.arch {
        Arch::Arm64 => &QEMU_ARM64,
        Arch::Amd64 => &QEMU_AMD64,
    });
    let firmware = match (machine.arch, machine.firmware) {
        (_, Firmware::Uboot) => Some(&UBOOT),
        (Arch::Arm64, _) => Some(&AAVMF),
        (Arch::Amd64, Firmware::Uefi) => Some(&OVMF),
        (Arch::Amd64, Firmware::Bios) => None,
    };
    needs.extend(firmware);
    if machine.firmware == Firmware::Bios {
        needs.extend([&SEABIOS, &IPXE_ROM]);
    }
    if dhcp == DhcpMode::Proxy {
        needs.push(&DNSMASQ);
    }
    let found = |n: &Need| n.candidates.iter().map(PathBuf::from).find(|p| exists(p));
    let mut missing = Missing {
        what: Vec::new(),
        packages: Vec::new(),
    };
    for n in &needs {
        if found(n).is_none() {
            missing.what.push(format!("{} ({})", n.what, n.candidates.join(" or ")));
            if !missing.packages.contains(&n.package) {
                missing.packages.push(n.package);
            }
        }
    }
    if !missing.what.is_empty() {
        return Err(missing);
    }
    let get = |n: &Need| found(n).expect("checked above");
    Ok(Tools {
        ip: get(&IP),
        qemu: get(needs[1]),
        firmware: firmware.map(get),
        dnsmasq: (dhcp == DhcpMode::Proxy).then(|| get(&DNSMASQ)),
    })
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(files: &'static [&'static str]) -> impl Fn(&Path) -> bool {
        move |p: &Path| files.iter().any(|f| Path::new(f) == p)
    }

    #[test]
    fn a_bare_host_gets_one_error_naming_every_package() {
        let m = Machine::new(Arch::Arm64, Firmware::Uefi).unwrap();
        let e = find(m, DhcpMode::Proxy, &only(&["/usr/sbin/ip"])).unwrap_err();
        assert_eq!(e.packages, ["qemu-system-arm", "qemu-efi-aarch64", "dnsmasq-base"]);
        assert_eq!(
            e.fix(),
            "sudo apt-get install -y qemu-system-arm qemu-efi-aarch64 dnsmasq-base"
        );
        assert!(
            e.message().contains("/usr/share/AAVMF/AAVMF_CODE.fd"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn bios_needs_seabios_and_the_ipxe_rom_but_no_firmware_file() {
        let m = Machine::new(Arch::Amd64, Firmware::Bios).unwrap();
        let e = find(m, DhcpMode::Full, &only(&["/sbin/ip", "/usr/bin/qemu-system-x86_64"])).unwrap_err();
        assert_eq!(e.packages, ["seabios", "ipxe-qemu"]);
        let t = find(
            m,
            DhcpMode::Full,
            &only(&[
                "/sbin/ip",
                "/usr/bin/qemu-system-x86_64",
                "/usr/share/seabios/bios-256k.bin",
                "/usr/lib/ipxe/qemu/efi-virtio.rom",
            ]),
        )
        .unwrap();
        assert_eq!(t.firmware, None);
        assert_eq!(t.dnsmasq, None);
        assert_eq!(t.ip, PathBuf::from("/sbin/ip"));
    }

    #[test]
    fn the_aavmf_code_image_is_taken_when_qemu_efi_is_not_there() {
        let m = Machine::new(Arch::Arm64, Firmware::Uefi).unwrap();
        let t = find(
            m,
            DhcpMode::Full,
            &only(&[
                "/usr/sbin/ip",
                "/usr/bin/qemu-system-aarch64",
                "/usr/share/AAVMF/AAVMF_CODE.fd",
            ]),
        )
        .unwrap();
        assert_eq!(t.firmware, Some(PathBuf::from("/usr/share/AAVMF/AAVMF_CODE.fd")));
        assert_eq!(t.qemu, PathBuf::from("/usr/bin/qemu-system-aarch64"));
    }
}
