//! A stand-in of the Raspberry Pi UEFI firmware's release zip, of the real release's exact
//! shape, and the Pi EEPROM's request shape.
//!
//! The zip: pftf/RPi4 `.github/workflows/linux_edk2.yml` builds it as `zip -r
//! RPi4_UEFI_Firmware_<v>.zip RPI_EFI.fd *.dtb config.txt fixup4.dat start4.elf overlays
//! Readme.md firmware` (dtbs `bcm2711-rpi-4-b`, `-cm4`, `-400`; overlays `miniuart-bt.dtbo`,
//! `upstream-pi4.dtbo`), deflated, files at the top level; the FD carries
//! `PcdFirmwareVersionString = L"UEFI Firmware <v>"` (UTF-16LE). `config.txt` is pftf/RPi4's
//! own (`armstub=RPI_EFI.fd`). Contents are made up; sizes span several TFTP blocks.
//!
//! The request: client-arch 0 and vendor class `PXEClient:Arch:00000:UNDI:002001`, option 97
//! `RPi4` + board revision + the MAC's low 4 bytes + serial (raspberrypi/documentation,
//! `bcm2711_bootloader_config.md`, `DHCP_OPTION97`), a MAC in a Raspberry Pi block.

use std::io::Write;

pub const VERSION: &str = "v1.41";
pub const ZIP_NAME: &str = "RPi4_UEFI_Firmware_v1.41.zip";
/// A CM4's MAC (Raspberry Pi Trading's `d8:3a:dd` block), board revision and serial.
pub const PI_MAC: [u8; 6] = [0xd8, 0x3a, 0xdd, 0x20, 0x04, 0x01];
pub const PI_REVISION: u32 = 0x00b0_3141;
pub const PI_SERIAL: u32 = 0x2f0a_11c4;

/// pftf/RPi4 `config.txt` (with the `upstream-pi4` overlay newer releases add).
pub const CONFIG: &str = "arm_64bit=1\nenable_uart=1\nuart_2ndstage=1\nenable_gic=1\narmstub=RPI_EFI.fd\ndisable_commandline_tags=1\ndisable_overscan=1\ndevice_tree_address=0x1f0000\ndevice_tree_end=0x200000\ndtoverlay=miniuart-bt\ndtoverlay=upstream-pi4\n";

fn blob(tag: &str, len: usize) -> Vec<u8> {
    let mut b = tag.as_bytes().to_vec();
    b.extend((0..len).map(|i| (i % 251) as u8));
    b
}

/// The release's files (path in the zip, content), for `version`.
pub fn files(version: &str) -> Vec<(String, Vec<u8>)> {
    let mut fd = blob("FD", 9000);
    let id: Vec<u8> = format!("UEFI Firmware {version}\0")
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    fd[4096..4096 + id.len()].copy_from_slice(&id);
    vec![
        ("RPI_EFI.fd".into(), fd),
        ("bcm2711-rpi-4-b.dtb".into(), blob("\u{d0}dtb 4b", 1200)),
        ("bcm2711-rpi-cm4.dtb".into(), blob("\u{d0}dtb cm4", 1300)),
        ("bcm2711-rpi-400.dtb".into(), blob("\u{d0}dtb 400", 1250)),
        ("config.txt".into(), CONFIG.as_bytes().to_vec()),
        ("fixup4.dat".into(), blob("fixup4", 700)),
        ("start4.elf".into(), blob("\u{7f}ELF start4", 3000)),
        ("overlays/miniuart-bt.dtbo".into(), blob("dtbo bt", 300)),
        ("overlays/upstream-pi4.dtbo".into(), blob("dtbo up", 300)),
        ("Readme.md".into(), b"Raspberry Pi 4 UEFI Firmware Images\n".to_vec()),
        (
            "firmware/Readme.txt".into(),
            b"Wireless firmware for the Pi 4\n".to_vec(),
        ),
    ]
}

pub fn zip_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, content) in files {
        w.start_file(name.as_str(), opts).unwrap();
        w.write_all(content).unwrap();
    }
    w.finish().unwrap().into_inner()
}

pub fn stand_in_zip() -> Vec<u8> {
    zip_of(&files(VERSION))
}

/// The content of one file of the stand-in release.
pub fn file(name: &str) -> Vec<u8> {
    files(VERSION)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, c)| c)
        .unwrap_or_else(|| panic!("no {name} in the stand-in release"))
}
