//! U-Boot's legacy image format, for the one kind cozyboot makes: a boot script, as
//! `mkimage -A arm64 -O linux -T script -C none` writes it (U-Boot `include/image.h`,
//! `struct legacy_img_hdr`; `tools/mkimage.c` for the payload), which U-Boot's `source`
//! command runs after checking both CRCs.
//!
//! Made here rather than by running `mkimage`: the script is rendered, and rendering is pure.
//! The tests compare the bytes with what Debian's `mkimage` makes of the same text.

use crate::artifacts::arch::Arch;

/// `IH_MAGIC`: the first four bytes of every legacy image.
pub const MAGIC: u32 = 0x2705_1956;
/// The header's length; the payload follows it.
pub const HEADER_LEN: usize = 64;
/// `ih_name` is 32 bytes, NUL-padded; a longer name is cut (mkimage `strncpy`s it).
const NAME_LEN: usize = 32;

/// `IH_OS_LINUX`: mkimage's `-O linux`, what distributions' boot scripts carry.
const OS_LINUX: u8 = 5;
/// `IH_TYPE_SCRIPT`.
const TYPE_SCRIPT: u8 = 6;
/// `IH_COMP_NONE`.
const COMP_NONE: u8 = 0;

/// `IH_ARCH_*` of U-Boot's `include/image.h`.
fn arch_code(arch: Arch) -> u8 {
    match arch {
        Arch::Arm64 => 22, // IH_ARCH_ARM64
        Arch::Amd64 => 3,  // IH_ARCH_I386 (U-Boot has no separate code for x86_64 scripts)
    }
}

/// A boot script as a legacy image. The time stamp is 0 (mkimage writes `SOURCE_DATE_EPOCH`
/// when set), so the same script always makes the same bytes.
pub fn script(arch: Arch, name: &str, text: &str) -> Vec<u8> {
    // A script image is a multi-file image of one file: a zero-terminated table of
    // big-endian lengths, then the file. `source` reads the first length and skips the table.
    let mut payload = Vec::with_capacity(8 + text.len());
    payload.extend_from_slice(&(text.len() as u32).to_be_bytes());
    payload.extend_from_slice(&0u32.to_be_bytes());
    payload.extend_from_slice(text.as_bytes());

    let mut header = [0u8; HEADER_LEN];
    header[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    // 4..8: the header CRC, computed with this field zero.
    // 8..12: the time stamp, 0.
    header[12..16].copy_from_slice(&(payload.len() as u32).to_be_bytes());
    // 16..20 load address, 20..24 entry point: 0 for a script.
    header[24..28].copy_from_slice(&crc32fast::hash(&payload).to_be_bytes());
    header[28] = OS_LINUX;
    header[29] = arch_code(arch);
    header[30] = TYPE_SCRIPT;
    header[31] = COMP_NONE;
    let name = name.as_bytes();
    let n = name.len().min(NAME_LEN);
    header[32..32 + n].copy_from_slice(&name[..n]);
    let hcrc = crc32fast::hash(&header);
    header[4..8].copy_from_slice(&hcrc.to_be_bytes());

    let mut out = header.to_vec();
    out.extend_from_slice(&payload);
    out
}

/// What a script image holds, checked as U-Boot's `source` checks it: the magic, both CRCs,
/// the type. For `validate` and the tests; `Err` says what is wrong.
pub fn read_script(bytes: &[u8]) -> Result<Script, String> {
    if bytes.len() < HEADER_LEN + 8 {
        return Err(format!("{} bytes: shorter than a legacy image header", bytes.len()));
    }
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    if be(0) != MAGIC {
        return Err(format!(
            "magic {:#010x}, not a legacy U-Boot image ({MAGIC:#010x})",
            be(0)
        ));
    }
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&bytes[..HEADER_LEN]);
    header[4..8].fill(0);
    if crc32fast::hash(&header) != be(4) {
        return Err("the header CRC does not match: U-Boot refuses it (\"Bad header checksum\")".into());
    }
    let size = be(12) as usize;
    let payload = bytes.get(HEADER_LEN..HEADER_LEN + size).ok_or_else(|| {
        format!(
            "the header says {size} bytes of data, the file has {}",
            bytes.len() - HEADER_LEN
        )
    })?;
    if crc32fast::hash(payload) != be(24) {
        return Err("the data CRC does not match: U-Boot refuses it (\"Bad data CRC\")".into());
    }
    if bytes[30] != TYPE_SCRIPT {
        return Err(format!("image type {}, not a script ({TYPE_SCRIPT})", bytes[30]));
    }
    let len = be(HEADER_LEN) as usize;
    let text = payload
        .get(8..8 + len)
        .filter(|_| be(HEADER_LEN + 4) == 0)
        .ok_or("the script's length table is not one length and a zero")?;
    let name_end = bytes[32..64].iter().position(|b| *b == 0).unwrap_or(NAME_LEN);
    Ok(Script {
        name: String::from_utf8_lossy(&bytes[32..32 + name_end]).into_owned(),
        arch_code: bytes[29],
        text: String::from_utf8_lossy(text).into_owned(),
    })
}

/// A script image, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub name: String,
    pub arch_code: u8,
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_reads_back_with_its_name_and_text() {
        let img = script(Arch::Arm64, "cozyboot", "echo hi\n");
        assert_eq!(&img[..4], &[0x27, 0x05, 0x19, 0x56]);
        assert_eq!(img.len(), HEADER_LEN + 8 + 8);
        let s = read_script(&img).unwrap();
        assert_eq!(
            (s.name.as_str(), s.arch_code, s.text.as_str()),
            ("cozyboot", 22, "echo hi\n")
        );
    }

    #[test]
    fn a_changed_byte_is_caught_by_the_crc_it_falls_under() {
        let img = script(Arch::Arm64, "cozyboot", "echo hi\n");
        let mut data = img.clone();
        *data.last_mut().unwrap() ^= 1;
        assert!(read_script(&data).unwrap_err().contains("data CRC"));
        let mut header = img.clone();
        header[40] ^= 1;
        assert!(read_script(&header).unwrap_err().contains("header CRC"));
        assert!(read_script(&img[..70]).is_err());
    }

    #[test]
    fn a_long_name_is_cut_to_what_the_header_holds() {
        let img = script(Arch::Arm64, &"x".repeat(40), "");
        assert_eq!(read_script(&img).unwrap().name, "x".repeat(32));
    }
}
