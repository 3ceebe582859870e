//! A stand-in of the Raspberry Pi UEFI firmware's release zip, of the real release's exact
//! shape, and the Pi EEPROM's request shape.
//!
//! The zip: pftf/RPi4 `.github/workflows/linux_edk2.yml` builds it as `zip -r
//! RPi4_UEFI_Firmware_<v>.zip RPI_EFI.fd *.dtb config.txt fixup4.dat start4.elf overlays
//! Readme.md firmware` (dtbs `bcm2711-rpi-4-b`, `-cm4`, `-400`; overlays `miniuart-bt.dtbo`,
//! `upstream-pi4.dtbo`), deflated, files at the top level; the FD carries
//! `PcdFirmwareVersionString = L"UEFI Firmware <v>"` (UTF-16LE). `config.txt` is pftf/RPi4's
//! own (`armstub=RPI_EFI.fd`). Contents are made up, but `RPI_EFI.fd` has the real one's
//! layout (below); sizes span several TFTP blocks.
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
    // The FD of the release's layout, so that boards' settings can go into its store; the
    // version string where the firmware's PCD puts it, inside FVMAIN_COMPACT.
    let mut fd = stand_in_release_fd();
    let id: Vec<u8> = format!("UEFI Firmware {version}\0")
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let at = 0x2_1000;
    fd[at..at + id.len()].copy_from_slice(&id);
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

// ---- RPI_EFI.fd of the release's exact layout, from the sources the release is built from:
// - pftf/RPi4 `.github/workflows/linux_edk2.yml` (tag v1.50): the release's `RPI_EFI.fd` is
//   `Build/RPi4/RELEASE_GCC5/FV/RPI_EFI.fd`, copied as it is into the zip;
// - that tag's edk2-platforms submodule (1e64c1109ae2ac0185351e8d0c19732970d4fecf),
//   `Platform/RaspberryPi/RPi4/RPi4.fdf` `[FD.RPI_EFI]`: Size 0x3e0000, ErasePolarity 1; TF-A
//   bl31 at 0x0 (0x20000), FVMAIN_COMPACT at 0x20000 (0x390000), NV_VARIABLE_STORE at
//   0x3b0000 (0xe000) opening with the DATA block copied below byte for byte, NV_EVENT_LOG at
//   0x3be000, NV_FTW_WORKING at 0x3bf000 with its DATA block, the FTW spare at 0x3c0000
//   (0x10000), the rest erased. The code regions are pseudo-random bytes behind the headers
//   GenFv gives them.

pub const FD_SIZE: usize = 0x3e_0000;
pub const STORE_REGION: usize = 0x3b_0000;
pub const STORE_REGION_SIZE: usize = 0xe000;
const FTW_WORKING: usize = 0x3b_f000;

/// RPi4.fdf, NV_VARIABLE_STORE's DATA: the EFI_FIRMWARE_VOLUME_HEADER then the
/// VARIABLE_STORE_HEADER, as the .fdf lists them.
pub const NV_STORE_DATA: [u8; 100] = [
    // ZeroVector
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    // FileSystemGuid: gEfiSystemNvDataFvGuid
    0x8D, 0x2B, 0xF1, 0xFF, 0x96, 0x76, 0x8B, 0x4C, 0xA9, 0x85, 0x27, 0x47, 0x07, 0x5B, 0x4F, 0x50,
    // FvLength: 0x20000
    0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, // Signature "_FVH", Attributes
    0x5f, 0x46, 0x56, 0x48, 0xff, 0xfe, 0x04, 0x00, // HeaderLength, CheckSum
    0x48, 0x00, 0x19, 0xF9, // ExtHeaderOffset, Reserved, Revision
    0x00, 0x00, 0x00, 0x02, // Blockmap[0]: 0x20 blocks of 0x1000; Blockmap[1]: end
    0x20, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    // VARIABLE_STORE_HEADER Signature: gEfiAuthenticatedVariableGuid
    0x78, 0x2c, 0xf3, 0xaa, 0x7b, 0x94, 0x9a, 0x43, 0xa1, 0x80, 0x2e, 0x14, 0x4e, 0xc3, 0x77, 0x92,
    // Size: 0xe000 - 0x48
    0xB8, 0xDF, 0x00, 0x00, // FORMATTED, HEALTHY, Reserved, Reserved1
    0x5A, 0xFE, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// RPi4.fdf, NV_FTW_WORKING header's DATA (EFI_FAULT_TOLERANT_WORKING_BLOCK_HEADER).
const FTW_WORKING_DATA: [u8; 32] = [
    0x2b, 0x29, 0x58, 0x9e, 0x68, 0x7c, 0x7d, 0x49, 0xa0, 0xce, 0x65, 0x0, 0xfd, 0x9f, 0x1b, 0x95, 0x2c, 0xaf, 0x2c,
    0x64, 0xFE, 0xFF, 0xFF, 0xFF, 0xE0, 0x0F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

fn pseudo_random(out: &mut [u8], mut x: u64) {
    for b in out {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

/// The stand-in release `RPI_EFI.fd`, of the layout of the real one (see above).
pub fn stand_in_release_fd() -> Vec<u8> {
    let mut fd = vec![0xffu8; FD_SIZE];
    // TF-A's bl31 (a plain binary, shorter than its region; GenFds pads the rest erased).
    pseudo_random(&mut fd[..0x1_a000], 1);
    // FVMAIN_COMPACT: a firmware volume (EFI_FIRMWARE_FILE_SYSTEM2_GUID
    // 8c8ce578-8a3d-4f1c-9935-896185c32dd3) filling its region, its files pseudo-random.
    let fv = 0x2_0000;
    pseudo_random(&mut fd[fv..fv + 0x30_0000], 2);
    fd[fv..fv + 16].fill(0);
    fd[fv + 16..fv + 32].copy_from_slice(&[
        0x78, 0xe5, 0x8c, 0x8c, 0x3d, 0x8a, 0x1c, 0x4f, 0x99, 0x35, 0x89, 0x61, 0x85, 0xc3, 0x2d, 0xd3,
    ]);
    fd[fv + 32..fv + 40].copy_from_slice(&0x39_0000u64.to_le_bytes());
    fd[fv + 40..fv + 44].copy_from_slice(b"_FVH");
    fd[STORE_REGION..STORE_REGION + NV_STORE_DATA.len()].copy_from_slice(&NV_STORE_DATA);
    fd[FTW_WORKING..FTW_WORKING + FTW_WORKING_DATA.len()].copy_from_slice(&FTW_WORKING_DATA);
    fd
}
