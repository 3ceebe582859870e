//! Raspberry Pi 4 / CM4 network boot: the one place for what the bootloader EEPROM sends and
//! wants, and for the shape of the Pi UEFI firmware's release (pftf/RPi4).
//!
//! Sources (read with the project's search tools, December 2026):
//! - raspberrypi/documentation `hardware/raspberrypi/bcm2711_bootloader_config.md` (today
//!   `computers/raspberry-pi/bcm2711-bootloader.adoc`): `TFTP_PREFIX` (0 = the serial as 8 hex
//!   digits, the default; 1 = `TFTP_PREFIX_STR`; 2 = the MAC as `dc-a6-32-01-36-c2/`),
//!   `PXE_OPTION43` (default match string `Raspberry Pi Boot`), `DHCP_OPTION97` (default GUID:
//!   FourCC `RPi4` 0x34695052 little endian, board revision, the MAC's low 4 bytes, serial).
//! - raspberrypi/rpi-eeprom `firmware/release-notes.md`, 2019-11-18: "Avoid resetting TFTP
//!   prefix after retries or if start4.elf is not found": without `<prefix>/start4.elf` the
//!   bootloader drops the prefix and reads the TFTP root.
//! - raspberrypi/documentation, network boot (`boot-net.adoc`): option 43 "must contain the
//!   string Raspberry Pi Boot"; the three trailing spaces it mentions are for the Pi 3 boot
//!   ROM's bug. The Pi 4 EEPROM matches the string itself (`PXE_OPTION43`); dnsmasq's
//!   `pxe-service=0,"Raspberry Pi Boot"` sends it as PXE menu text (sub-option 9), checked
//!   against dnsmasq 2.90 in `/work/shared/netboot-facts.md`.
//! - pftf/RPi4 `.github/workflows/linux_edk2.yml`: the release zip is
//!   `zip -r RPi4_UEFI_Firmware_<v>.zip RPI_EFI.fd *.dtb config.txt fixup4.dat start4.elf
//!   overlays Readme.md firmware`, the dtbs being `bcm2711-rpi-4-b.dtb`, `bcm2711-rpi-cm4.dtb`,
//!   `bcm2711-rpi-400.dtb`, the overlays `miniuart-bt.dtbo` (and since 2022 `upstream-pi4.dtbo`);
//!   the FD carries `PcdFirmwareVersionString = L"UEFI Firmware <v>"`.
//! - pftf/RPi4 `config.txt`: `armstub=RPI_EFI.fd` (start4.elf runs the UEFI firmware as its
//!   ARM stub), `device_tree_address=0x1f0000`.
//! - pftf/RPi4 issue #283: "Network Device MAC Address is empty/zero in v1.51/v1.52 (works fine
//!   in v1.50)": with an all-zero MAC the firmware's own DHCP fails, so it never netboots.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// What the EEPROM sends as option 60. x86 PXE 2.1 BIOS ROMs send the same, so the vendor
/// class alone cannot tell a Pi from a PC.
pub const EEPROM_VENDOR_CLASS: &str = "PXEClient:Arch:00000:UNDI:002001";

/// The EEPROM's option 93: 0, the code of an x86 BIOS.
pub const EEPROM_CLIENT_ARCH: u16 = 0;

/// MAC blocks (OUIs) of Raspberry Pi boards: Raspberry Pi Foundation (`b8:27:eb`) and
/// Raspberry Pi Trading Ltd (the rest), from the IEEE registry.
pub const OUIS: &[&str] = &[
    "b8:27:eb", "dc:a6:32", "e4:5f:01", "d8:3a:dd", "28:cd:c1", "2c:cf:67", "88:a2:9e",
];

/// The start of the EEPROM's option 97 (client GUID): type 0, then FourCC `RPi4` as the
/// little-endian 0x34695052 (`DHCP_OPTION97` default since pieeprom 2020-03-19).
pub const OPTION97_PREFIX: [u8; 5] = [0x00, b'R', b'P', b'i', b'4'];

/// What option 43 must hold for the EEPROM to boot from the reply (`PXE_OPTION43` default).
pub const OPTION43_MATCH: &str = "Raspberry Pi Boot";

/// The proxy-DHCP CSA the EEPROM's arch maps to (dnsmasq `x86PC` = 0).
pub const PXE_CSA: &str = "x86PC";

/// The first file the EEPROM reads over TFTP.
pub const START_FILE: &str = "start4.elf";

/// The UEFI firmware image `config.txt` has start4.elf load.
pub const UEFI_FD: &str = "RPI_EFI.fd";

pub const CONFIG_TXT: &str = "config.txt";

/// The device tree of the Compute Module 4, the board cozyboot exists for.
pub const CM4_DTB: &str = "bcm2711-rpi-cm4.dtb";

/// Every file a release must hold to boot a Pi 4, CM4 or Pi 400 over the network.
pub const REQUIRED_FILES: &[&str] = &[
    UEFI_FD,
    CONFIG_TXT,
    START_FILE,
    "fixup4.dat",
    "bcm2711-rpi-4-b.dtb",
    CM4_DTB,
    "bcm2711-rpi-400.dtb",
    "overlays/miniuart-bt.dtbo",
];

/// A pinned release of the Pi UEFI firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    pub version: &'static str,
    pub url: &'static str,
    pub sha256: &'static str,
}

/// The release downloaded when no other source is given. The digest is the one Siemens' MTDA
/// Isar layer pins for this exact URL (`SRC_URI[sha256sum]` in its `rpi-uefi` recipe); no
/// published digest of v1.50 (the last release before the all-zero MAC) was found.
pub const PINNED: Release = Release {
    version: "v1.41",
    url: "https://github.com/pftf/RPi4/releases/download/v1.41/RPi4_UEFI_Firmware_v1.41.zip",
    sha256: "d2a97e36665920dbb5a6aea200e48fc59b1e26cf94a478db7f57833118c2b64a",
};

/// Releases that cannot netboot, with the reason.
pub const KNOWN_BAD: &[(&str, &str)] = &[
    (
        "v1.51",
        "its network device reports the MAC address 00:00:00:00:00:00, so UEFI's DHCP fails (pftf/RPi4 issue #283)",
    ),
    (
        "v1.52",
        "its network device reports the MAC address 00:00:00:00:00:00, so UEFI's DHCP fails (pftf/RPi4 issue #283)",
    ),
];

/// Whether `mac` (`dc:a6:32:..`, `DC-A6-32-..`) is in a Raspberry Pi MAC block.
pub fn is_raspberry_pi_mac(mac: &str) -> bool {
    let norm = mac.trim().to_ascii_lowercase().replace('-', ":");
    OUIS.iter().any(|oui| norm.starts_with(oui))
}

/// The option 97 payload the EEPROM sends (`DHCP_OPTION97` default): type 0, `RPi4`, the
/// board revision, the MAC's low 4 bytes and the serial, each 4 bytes.
pub fn option97(board_revision: u32, mac: [u8; 6], serial: u32) -> [u8; 17] {
    let mut guid = [0u8; 17];
    guid[..5].copy_from_slice(&OPTION97_PREFIX);
    guid[5..9].copy_from_slice(&board_revision.to_le_bytes());
    guid[9..13].copy_from_slice(&mac[2..]);
    guid[13..].copy_from_slice(&serial.to_le_bytes());
    guid
}

/// Option 43 as dnsmasq 2.90 encodes `pxe-service=0,"Raspberry Pi Boot"` (logged as
/// `sent size: 32 option: 43 vendor-encap 06:01:03:0a:04:00:50:58:45:09:14:00:00:11...`):
/// PXE discovery control 3, menu prompt (timeout 0, `PXE`), a boot menu of one local-boot
/// item (type 0) named [`OPTION43_MATCH`], end.
pub fn option43() -> Vec<u8> {
    let name = OPTION43_MATCH.as_bytes();
    let mut o = vec![
        6,
        1,
        3,
        10,
        4,
        0,
        b'P',
        b'X',
        b'E',
        9,
        (name.len() + 3) as u8,
        0,
        0,
        name.len() as u8,
    ];
    o.extend_from_slice(name);
    o.push(255);
    o
}

/// [`option43`] as dnsmasq's colon-separated hex.
pub fn option43_hex() -> String {
    option43()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The TFTP directory the EEPROM tries first with the default `TFTP_PREFIX=0`.
pub fn serial_prefix(serial: u32) -> String {
    format!("{serial:08x}/")
}

/// `--dhcp-match` value for dnsmasq: the option 97 prefix as colon-separated hex (dnsmasq
/// matches a value that is a prefix of the option).
pub fn option97_match() -> String {
    OPTION97_PREFIX
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Whether a `config.txt` has start4.elf run the UEFI firmware (an uncommented
/// `armstub=RPI_EFI.fd` outside any conditional section that would not apply to a Pi 4).
pub fn config_loads_uefi(config: &str) -> bool {
    config.lines().map(str::trim).any(|l| {
        l.split_once('=')
            .is_some_and(|(k, v)| k.trim() == "armstub" && v.trim() == UEFI_FD)
    })
}

/// The version the FD was built as (`UEFI Firmware v1.41`, UTF-16LE in the image).
pub fn firmware_version(fd: &[u8]) -> Option<String> {
    let needle: Vec<u8> = "UEFI Firmware v".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    let at = fd.windows(needle.len()).position(|w| w == needle.as_slice())?;
    let mut version = String::from("v");
    let mut i = at + needle.len();
    while i + 1 < fd.len() && version.len() < 16 {
        let c = u16::from_le_bytes([fd[i], fd[i + 1]]);
        match char::from_u32(c as u32) {
            Some(ch) if ch.is_ascii_alphanumeric() || ch == '.' || ch == '-' => version.push(ch),
            _ => break,
        }
        i += 2;
    }
    (version.len() > 1).then_some(version)
}

/// Why a release must not be served, if it is known to break network boot.
pub fn known_bad(version: &str) -> Option<&'static str> {
    KNOWN_BAD.iter().find(|(v, _)| *v == version).map(|(_, why)| *why)
}

/// The firmware's files, read from a release zip or an unpacked directory and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// Path relative to the TFTP root (`/`-separated) → content.
    pub files: BTreeMap<String, Vec<u8>>,
    /// What the FD says it is, when it says.
    pub version: Option<String>,
}

/// Files of the release that are not boot files.
const NOT_SERVED: &[&str] = &["Readme.md"];

/// A zip larger than this is not the firmware's release (about 3 MiB).
pub const MAX_ZIP: u64 = 128 << 20;

impl Bundle {
    /// Reads a release zip; `what` names it in messages.
    pub fn from_zip(bytes: &[u8], what: &str) -> Result<Bundle, String> {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| {
            format!("{what} is not a zip archive ({e})\n  fix: give the RPi4_UEFI_Firmware_vX.YY.zip of a pftf/RPi4 release, or the directory it was unpacked into")
        })?;
        let mut files = BTreeMap::new();
        let mut total = 0u64;
        for i in 0..archive.len() {
            let mut entry = archive
                .by_index(i)
                .map_err(|e| format!("{what}: entry {i} cannot be read ({e})\n  fix: download the release again"))?;
            if entry.is_dir() {
                continue;
            }
            let Some(name) = entry.enclosed_name() else {
                return Err(format!(
                    "{what} holds an entry whose path leaves the archive\n  fix: give the release zip as pftf/RPi4 publishes it"
                ));
            };
            total += entry.size();
            if total > MAX_ZIP {
                return Err(format!(
                    "{what} unpacks to more than {} MiB: not the Pi UEFI firmware\n  fix: give the RPi4_UEFI_Firmware_vX.YY.zip of a pftf/RPi4 release",
                    MAX_ZIP >> 20
                ));
            }
            let mut content = Vec::new();
            entry.read_to_end(&mut content).map_err(|e| {
                format!(
                    "{what}: {} cannot be unpacked ({e})\n  fix: download the release again",
                    name.display()
                )
            })?;
            let key = name
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            files.insert(key, content);
        }
        Bundle::checked(files, what)
    }

    /// Reads an unpacked release (every regular file under `dir`, links not followed).
    pub fn from_dir(dir: &Path) -> Result<Bundle, String> {
        let what = dir.display().to_string();
        let mut files = BTreeMap::new();
        let mut stack = vec![(dir.to_path_buf(), String::new())];
        let mut total = 0u64;
        while let Some((at, prefix)) = stack.pop() {
            let entries = std::fs::read_dir(&at).map_err(|e| {
                format!(
                    "cannot read {}: {e}\n  fix: check the path given to --rpi-uefi",
                    at.display()
                )
            })?;
            for entry in entries {
                let entry = entry.map_err(|e| format!("cannot read {}: {e}", at.display()))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let key = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                let kind = entry.file_type().map_err(|e| format!("cannot read {key}: {e}"))?;
                if kind.is_dir() {
                    stack.push((entry.path(), key));
                } else if kind.is_file() {
                    let content = std::fs::read(entry.path())
                        .map_err(|e| format!("cannot read {}: {e}", entry.path().display()))?;
                    total += content.len() as u64;
                    if total > MAX_ZIP {
                        return Err(format!(
                            "{what} holds more than {} MiB: not an unpacked Pi UEFI firmware release\n  fix: give the directory RPi4_UEFI_Firmware_vX.YY.zip was unpacked into",
                            MAX_ZIP >> 20
                        ));
                    }
                    files.insert(key, content);
                }
            }
        }
        Bundle::checked(files, &what)
    }

    /// Reads `bytes` as a zip, checked against `sha256` when given (the pinned download).
    pub fn from_download(bytes: &[u8], what: &str, sha256: Option<&str>) -> Result<Bundle, String> {
        if let Some(want) = sha256 {
            let got = hex::encode(Sha256::digest(bytes));
            if got != want {
                return Err(format!(
                    "{what} has sha256 {got}, not the pinned {want}: a changed release or a broken download\n  fix: download it again, or pass --rpi-uefi PATH|URL with a release you trust"
                ));
            }
        }
        Bundle::from_zip(bytes, what)
    }

    fn checked(mut files: BTreeMap<String, Vec<u8>>, what: &str) -> Result<Bundle, String> {
        // A zip of the release's folder (not of its files) holds everything one level down.
        if !files.contains_key(UEFI_FD) {
            let tops: std::collections::BTreeSet<&str> = files
                .keys()
                .filter_map(|k| k.split_once('/').map(|(top, _)| top))
                .collect();
            if let [top] = tops.iter().copied().collect::<Vec<_>>()[..] {
                let inner = format!("{top}/");
                if files.contains_key(&format!("{inner}{UEFI_FD}")) {
                    files = files
                        .into_iter()
                        .filter_map(|(k, v)| k.strip_prefix(&inner).map(|k| (k.to_string(), v)))
                        .collect();
                }
            }
        }
        let missing: Vec<&str> = REQUIRED_FILES
            .iter()
            .copied()
            .filter(|f| !files.contains_key(*f))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "{what} is not the Pi UEFI firmware: it has no {}\n  fix: give the RPi4_UEFI_Firmware_vX.YY.zip of a pftf/RPi4 release (https://github.com/pftf/RPi4/releases), or the directory it was unpacked into",
                missing.join(", ")
            ));
        }
        let config = String::from_utf8_lossy(&files[CONFIG_TXT]);
        if !config_loads_uefi(&config) {
            return Err(format!(
                "{what}: its config.txt has no `armstub={UEFI_FD}`, so start4.elf would never start the UEFI firmware\n  fix: use the config.txt the release ships, or add the line `armstub={UEFI_FD}`"
            ));
        }
        let version = firmware_version(&files[UEFI_FD]);
        if let Some(v) = &version {
            if let Some(why) = known_bad(v) {
                return Err(format!(
                    "{what} is the Pi UEFI firmware {v}, which cannot netboot: {why}\n  fix: use another release (v1.50, or the pinned {}), e.g. leave --rpi-uefi unset to download {}",
                    PINNED.version, PINNED.url
                ));
            }
        }
        for skip in NOT_SERVED {
            files.remove(*skip);
        }
        Ok(Bundle { files, version })
    }

    /// `(path, size, sha256)` of every file, as recorded at install.
    pub fn digests(&self) -> Vec<(String, u64, String)> {
        self.files
            .iter()
            .map(|(k, v)| (k.clone(), v.len() as u64, hex::encode(Sha256::digest(v))))
            .collect()
    }
}

#[cfg(test)]
pub mod stand_in {
    //! A stand-in release of the real one's exact shape (see the module sources), for tests:
    //! every file the workflow zips, with made-up content, and the FD's version string.
    use super::*;
    use std::io::Write;

    /// The release's config.txt (pftf/RPi4 `config.txt`).
    pub const CONFIG: &str = "arm_64bit=1\nenable_uart=1\nuart_2ndstage=1\nenable_gic=1\narmstub=RPI_EFI.fd\ndisable_commandline_tags=1\ndisable_overscan=1\ndevice_tree_address=0x1f0000\ndevice_tree_end=0x200000\ndtoverlay=miniuart-bt\ndtoverlay=upstream-pi4\n";

    pub fn files(version: &str) -> Vec<(String, Vec<u8>)> {
        let mut fd = vec![0xffu8; 4096];
        let tag: Vec<u8> = format!("UEFI Firmware {version}")
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        fd[1024..1024 + tag.len()].copy_from_slice(&tag);
        fd[1024 + tag.len()..1026 + tag.len()].copy_from_slice(&[0, 0]);
        let mut v: Vec<(String, Vec<u8>)> = vec![
            (UEFI_FD.into(), fd),
            ("bcm2711-rpi-4-b.dtb".into(), b"\xd0\x0d\xfe\xed 4b".to_vec()),
            (CM4_DTB.into(), b"\xd0\x0d\xfe\xed cm4".to_vec()),
            ("bcm2711-rpi-400.dtb".into(), b"\xd0\x0d\xfe\xed 400".to_vec()),
            (CONFIG_TXT.into(), CONFIG.as_bytes().to_vec()),
            ("fixup4.dat".into(), b"fixup4".to_vec()),
            (START_FILE.into(), b"\x7fELF start4".to_vec()),
            ("overlays/miniuart-bt.dtbo".into(), b"\xd0\x0d\xfe\xed bt".to_vec()),
            ("overlays/upstream-pi4.dtbo".into(), b"\xd0\x0d\xfe\xed up".to_vec()),
            ("Readme.md".into(), b"Raspberry Pi 4 UEFI Firmware Images\n".to_vec()),
            ("firmware/Readme.txt".into(), b"wireless firmware\n".to_vec()),
        ];
        v.sort();
        v
    }

    pub fn zip(files: &[(String, Vec<u8>)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, content) in files {
            w.start_file(name.as_str(), opts).unwrap();
            w.write_all(content).unwrap();
        }
        w.finish().unwrap().into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pi_macs_by_block_in_either_spelling() {
        assert!(is_raspberry_pi_mac("dc:a6:32:01:36:c2"));
        assert!(is_raspberry_pi_mac("DC-A6-32-01-36-C2"));
        assert!(is_raspberry_pi_mac("e4:5f:01:aa:bb:cc"));
        assert!(!is_raspberry_pi_mac("52:54:00:12:34:56"));
    }

    #[test]
    fn option97_is_rpi4_then_revision_mac_low_bytes_and_serial() {
        // The documentation's example: board revision 0x00c03111.
        let g = option97(0x00c0_3111, [0xdc, 0xa6, 0x32, 0x01, 0x36, 0xc2], 0x9ffe_fdef);
        assert_eq!(&g[..5], b"\x00RPi4");
        assert_eq!(u32::from_le_bytes(g[1..5].try_into().unwrap()), 0x3469_5052);
        assert_eq!(&g[5..9], &0x00c0_3111u32.to_le_bytes());
        assert_eq!(&g[9..13], &[0x32, 0x01, 0x36, 0xc2]);
        assert_eq!(&g[13..], &0x9ffe_fdefu32.to_le_bytes());
        assert_eq!(option97_match(), "00:52:50:69:34");
        // What dnsmasq sent for `pxe-service=0,"Raspberry Pi Boot"` (captured, 32 bytes).
        assert_eq!(option43().len(), 32);
        assert!(option43_hex().starts_with("06:01:03:0a:04:00:50:58:45:09:14:00:00:11"));
        assert_eq!(serial_prefix(0x9ffe_fdef), "9ffefdef/");
    }

    #[test]
    fn the_release_shape_is_read_from_a_zip_and_readme_is_not_served() {
        let zip = stand_in::zip(&stand_in::files("v1.41"));
        let b = Bundle::from_zip(&zip, "RPi4_UEFI_Firmware_v1.41.zip").unwrap();
        assert_eq!(b.version.as_deref(), Some("v1.41"));
        for f in REQUIRED_FILES {
            assert!(b.files.contains_key(*f), "{f}");
        }
        assert!(b.files.contains_key("firmware/Readme.txt"));
        assert!(!b.files.contains_key("Readme.md"));
    }

    #[test]
    fn a_zip_of_the_folder_is_taken_one_level_down() {
        let files: Vec<_> = stand_in::files("v1.50")
            .into_iter()
            .map(|(k, v)| (format!("RPi4_UEFI_Firmware_v1.50/{k}"), v))
            .collect();
        let b = Bundle::from_zip(&stand_in::zip(&files), "x.zip").unwrap();
        assert!(b.files.contains_key(START_FILE));
    }

    #[test]
    fn wrong_shape_bad_config_and_known_bad_releases_are_refused_with_the_fix() {
        let mut files = stand_in::files("v1.41");
        files.retain(|(k, _)| k != CM4_DTB);
        let e = Bundle::from_zip(&stand_in::zip(&files), "x.zip").unwrap_err();
        assert!(e.contains("bcm2711-rpi-cm4.dtb") && e.contains("fix:"), "{e}");

        let mut files = stand_in::files("v1.41");
        for (k, v) in files.iter_mut() {
            if k == CONFIG_TXT {
                *v = b"arm_64bit=1\n#armstub=RPI_EFI.fd\n".to_vec();
            }
        }
        let e = Bundle::from_zip(&stand_in::zip(&files), "x.zip").unwrap_err();
        assert!(e.contains("armstub=RPI_EFI.fd"), "{e}");

        let e = Bundle::from_zip(&stand_in::zip(&stand_in::files("v1.51")), "x.zip").unwrap_err();
        assert!(e.contains("00:00:00:00:00:00") && e.contains("#283"), "{e}");

        let e = Bundle::from_zip(b"not a zip", "x.zip").unwrap_err();
        assert!(e.contains("not a zip archive"), "{e}");
    }

    #[test]
    fn a_download_is_checked_against_the_digest() {
        let zip = stand_in::zip(&stand_in::files("v1.41"));
        let e = Bundle::from_download(&zip, "u", Some(PINNED.sha256)).unwrap_err();
        assert!(e.contains("not the pinned") && e.contains(PINNED.sha256), "{e}");
        let good = hex::encode(Sha256::digest(&zip));
        assert!(Bundle::from_download(&zip, "u", Some(&good)).is_ok());
    }

    #[test]
    fn the_pinned_release_is_not_a_known_bad_one() {
        assert!(known_bad(PINNED.version).is_none());
        assert!(PINNED
            .url
            .ends_with(&format!("RPi4_UEFI_Firmware_{}.zip", PINNED.version)));
        assert_eq!(PINNED.sha256.len(), 64);
    }
}
