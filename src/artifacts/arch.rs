//! The one table that ties a client architecture to everything cozyboot serves it.
//!
//! Every renderer and every check reads this table, so that the DHCP client-arch code, the
//! bootloader, the label iPXE reports to matchbox and the asset directory can never disagree.

use serde::Serialize;
use std::fmt;

/// A CPU architecture cozyboot serves Talos to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Arm64,
    Amd64,
}

/// Which bootloader file a firmware is handed (the file names are settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bootloader {
    /// arm64 iPXE EFI binary (`bootaa64.efi` by default).
    Arm64Efi,
    /// x86_64 iPXE EFI binary (`ipxe.efi`).
    X86_64Efi,
    /// x86 BIOS iPXE (`undionly.kpxe`).
    Bios,
}

/// How a firmware of one DHCP option-93 code is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Firmware {
    /// DHCP option 93 client-arch code (IANA registry).
    pub code: u16,
    /// dnsmasq tag name set for this firmware.
    pub tag: &'static str,
    /// Vendor class prefix matched as a fallback where UEFI PXE stacks lose option 93.
    pub vendor_class: Option<&'static str>,
    /// dnsmasq `--pxe-service` CSA name used in proxy mode; `None` where proxy PXE cannot serve it.
    pub pxe_csa: Option<&'static str>,
    pub bootloader: Bootloader,
    /// UEFI HTTP boot: answered with an `http://` URL and option 60 `HTTPClient`.
    pub http_boot: bool,
}

/// Code 12 is PowerPC Open Firmware. The manual guide maps it to ARM64; cozyboot never does.
pub const POWERPC_OPEN_FIRMWARE: u16 = 12;

/// Code 22 is U-Boot's own (non-EFI) network boot on ARM64: not something iPXE can be chained
/// from; it is answered with a boot script instead (`render::uboot`).
pub const UBOOT_NON_EFI_PXE: u16 = 22;

const ARM64_FIRMWARES: &[Firmware] = &[
    Firmware {
        code: 11,
        tag: "efi-arm64",
        vendor_class: Some("PXEClient:Arch:00011"),
        pxe_csa: Some("ARM64_EFI"),
        bootloader: Bootloader::Arm64Efi,
        http_boot: false,
    },
    Firmware {
        code: 19,
        tag: "http-arm64",
        vendor_class: Some("HTTPClient:Arch:00019"),
        pxe_csa: None,
        bootloader: Bootloader::Arm64Efi,
        http_boot: true,
    },
];

const AMD64_FIRMWARES: &[Firmware] = &[
    Firmware {
        code: 0,
        tag: "bios",
        vendor_class: None,
        pxe_csa: Some("x86PC"),
        bootloader: Bootloader::Bios,
        http_boot: false,
    },
    Firmware {
        code: 7,
        tag: "efi-x64",
        vendor_class: Some("PXEClient:Arch:00007"),
        pxe_csa: Some("x86-64_EFI"),
        bootloader: Bootloader::X86_64Efi,
        http_boot: false,
    },
    Firmware {
        code: 9,
        tag: "efi-bc",
        vendor_class: Some("PXEClient:Arch:00009"),
        pxe_csa: Some("BC_EFI"),
        bootloader: Bootloader::X86_64Efi,
        http_boot: false,
    },
    Firmware {
        code: 16,
        tag: "http-x64",
        vendor_class: Some("HTTPClient:Arch:00016"),
        pxe_csa: None,
        bootloader: Bootloader::X86_64Efi,
        http_boot: true,
    },
];

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::Arm64, Arch::Amd64];

    pub fn name(self) -> &'static str {
        match self {
            Arch::Arm64 => "arm64",
            Arch::Amd64 => "amd64",
        }
    }

    /// Directory name under `/assets/talos/` in the variant image and in the data dir.
    pub fn asset_dir(self) -> &'static str {
        self.name()
    }

    /// Values iPXE's `${buildarch}` takes on this architecture; matchbox receives them as the
    /// `arch` label. BIOS clients run `undionly.kpxe`, a 32-bit iPXE, and so report `i386`.
    pub fn ipxe_buildarches(self) -> &'static [&'static str] {
        match self {
            Arch::Arm64 => &["arm64"],
            Arch::Amd64 => &["x86_64", "i386"],
        }
    }

    /// The firmwares (DHCP client-arch codes) that boot this architecture.
    pub fn firmwares(self) -> &'static [Firmware] {
        match self {
            Arch::Arm64 => ARM64_FIRMWARES,
            Arch::Amd64 => AMD64_FIRMWARES,
        }
    }

    /// The serial console kernel argument, written after `console=tty0`: the last `console=`
    /// becomes /dev/console, so a serial-console server (IPMI SOL, a UART on arm64 boards)
    /// shows Linux's and Talos's output only with it. amd64 as Cozystack's own profile has
    /// it (the 8250 UART); arm64 the PL011 of ARM64 servers, QEMU `virt` and the Raspberry Pi
    /// CM4 UEFI.
    pub fn serial_console(self) -> &'static str {
        match self {
            Arch::Arm64 => "console=ttyAMA0,115200",
            Arch::Amd64 => "console=ttyS0",
        }
    }

    /// The architecture of the machine this binary runs on, if it is one cozyboot knows.
    pub fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "aarch64" => Some(Arch::Arm64),
            "x86_64" => Some(Arch::Amd64),
            _ => None,
        }
    }
}

impl Bootloader {
    /// The architecture the binary must be built for (checked against its PE header).
    pub fn arch(self) -> Arch {
        match self {
            Bootloader::Arm64Efi => Arch::Arm64,
            Bootloader::X86_64Efi | Bootloader::Bios => Arch::Amd64,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm64_uefi_is_code_11_and_never_12() {
        let codes: Vec<u16> = Arch::Arm64.firmwares().iter().map(|f| f.code).collect();
        assert!(codes.contains(&11));
        assert!(!codes.contains(&POWERPC_OPEN_FIRMWARE));
        assert!(Arch::ALL
            .iter()
            .flat_map(|a| a.firmwares())
            .all(|f| f.code != POWERPC_OPEN_FIRMWARE));
    }

    #[test]
    fn every_firmware_bootloader_matches_its_arch() {
        for arch in Arch::ALL {
            for fw in arch.firmwares() {
                assert_eq!(fw.bootloader.arch(), arch, "code {}", fw.code);
            }
        }
    }

    #[test]
    fn firmware_tags_are_unique() {
        let mut tags: Vec<&str> = Arch::ALL.iter().flat_map(|a| a.firmwares()).map(|f| f.tag).collect();
        tags.sort();
        let before = tags.len();
        tags.dedup();
        assert_eq!(before, tags.len());
    }
}
