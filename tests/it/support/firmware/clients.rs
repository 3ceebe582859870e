//! The firmware clients (QEMU machine + firmware) and the DHCP modes they boot in.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// `qemu-system-aarch64 -M virt`, AAVMF: DHCP option 93 = 11.
    Arm64Uefi,
    /// `qemu-system-x86_64 -M q35`, OVMF: option 93 = 7.
    X64Uefi,
    /// `qemu-system-x86_64 -M pc`, SeaBIOS running QEMU's iPXE NIC ROM: iPXE from the start,
    /// `${buildarch}` = i386.
    X86Bios,
    /// `qemu-system-aarch64 -M virt`, Debian's U-Boot (`u-boot-qemu`, qemu_arm64): its own DHCP
    /// (vendor class `U-Boot.armv8`, option 93 = 22, per U-Boot's cmd/Kconfig defaults), then
    /// cozyboot's `boot.scr.uimg`, kernel and initramfs over TFTP; no iPXE.
    Arm64UBoot,
}

impl Client {
    pub fn arch(self) -> Arch {
        match self {
            Client::Arm64Uefi | Client::Arm64UBoot => Arch::Arm64,
            Client::X64Uefi | Client::X86Bios => Arch::Amd64,
        }
    }

    /// U-Boot's own network boot: a boot script over TFTP where the others have iPXE.
    pub fn uboot(self) -> bool {
        self == Client::Arm64UBoot
    }

    /// The bootloader the firmware is handed over TFTP; `None` when the firmware is iPXE.
    pub fn bootloader(self) -> Option<Bootloader> {
        match self {
            Client::Arm64Uefi => Some(Bootloader::Arm64Efi),
            Client::X64Uefi => Some(Bootloader::X86_64Efi),
            Client::X86Bios | Client::Arm64UBoot => None,
        }
    }

    /// Distinct per client, none in a Raspberry Pi block.
    pub fn mac(self) -> &'static str {
        match self {
            Client::Arm64Uefi => "52:54:00:c0:0b:11",
            Client::X64Uefi => "52:54:00:c0:0b:07",
            Client::X86Bios => "52:54:00:c0:0b:00",
            Client::Arm64UBoot => "52:54:00:c0:0b:16",
        }
    }

    /// What the kernel prints as `uname -m`.
    pub fn uname_m(self) -> &'static str {
        match self {
            Client::Arm64Uefi | Client::Arm64UBoot => "aarch64",
            Client::X64Uefi | Client::X86Bios => "x86_64",
        }
    }

    /// The product's QEMU command line (`cozyboot smoke`'s), under TCG as CI runs it; with
    /// `smbios`, the machine's SMBIOS system uuid and serial are set.
    pub(super) fn qemu(self, a: &Artifacts, tap: &str, serial: &Path, smbios: Option<&Smbios>) -> Command {
        use cozyboot::smoke::{vm, Firmware, Machine};
        let (program, firmware, fw_file, mem) = match self {
            Client::Arm64Uefi => (
                "qemu-system-aarch64",
                Firmware::Uefi,
                Some("firmware/QEMU_EFI.fd"),
                1024,
            ),
            Client::X64Uefi => ("qemu-system-x86_64", Firmware::Uefi, Some("firmware/OVMF.fd"), 512),
            Client::Arm64UBoot => (
                "qemu-system-aarch64",
                Firmware::Uboot,
                Some("firmware/u-boot-qemu_arm64.bin"),
                1024,
            ),
            Client::X86Bios => ("qemu-system-x86_64", Firmware::Bios, None, 512),
        };
        let spec = vm::VmSpec {
            machine: Machine::new(self.arch(), firmware).expect("a machine QEMU emulates"),
            accel: vm::Accel::Tcg,
            qemu: program.into(),
            firmware: fw_file.map(|f| a.path(f)),
            tap: tap.to_string(),
            mac: self.mac().to_string(),
            serial: serial.to_path_buf(),
            memory_mib: mem,
        };
        let mut c = Command::new(program);
        c.args(spec.args());
        if let Some(smbios) = smbios {
            c.args(smbios.qemu_args());
        }
        c
    }
}

/// The SMBIOS type 1 (system) facts iPXE reads as `${uuid}` and `${serial}` and sends to
/// matchbox's `/ipxe`.
#[derive(Debug, Clone)]
pub struct Smbios {
    pub uuid: &'static str,
    pub serial: &'static str,
}

impl Smbios {
    fn qemu_args(&self) -> Vec<String> {
        vec![
            "-uuid".into(),
            self.uuid.into(),
            "-smbios".into(),
            format!("type=1,serial={}", self.serial),
        ]
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Client::Arm64Uefi => "ARM64 UEFI (AAVMF)",
            Client::X64Uefi => "x86_64 UEFI (OVMF)",
            Client::X86Bios => "x86 BIOS (SeaBIOS + iPXE ROM)",
            Client::Arm64UBoot => "ARM64 U-Boot (u-boot-qemu)",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// cozyboot's dnsmasq is the DHCP server.
    Full,
    /// A plain DHCP server (the "home router", in its own namespace) hands out addresses;
    /// cozyboot's dnsmasq answers as proxy DHCP.
    Proxy,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Full => "full DHCP",
            Mode::Proxy => "proxy DHCP beside a router",
        })
    }
}
