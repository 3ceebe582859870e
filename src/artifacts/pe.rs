//! Which CPU a PE/COFF (EFI) binary is for.
//!
//! Serving the x86_64 `ipxe.efi` to ARM64 UEFI clients fails silently on the client, so every
//! iPXE binary cozyboot serves is checked against the architecture it is served for.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

const DOS_MAGIC: &[u8; 2] = b"MZ";
const PE_MAGIC: &[u8; 4] = b"PE\0\0";
/// Offset of `e_lfanew`, the file offset of the PE header, in the DOS header.
const E_LFANEW_OFFSET: usize = 0x3C;
const DOS_HEADER_LEN: usize = 0x40;
/// EFI binaries put the PE header within the first few hundred bytes; a far larger offset
/// means a corrupt or hostile file, not one worth seeking through.
const MAX_PE_OFFSET: u32 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeMachine {
    Arm64,
    X86_64,
    I386,
    Other(u16),
}

impl PeMachine {
    fn from_raw(raw: u16) -> Self {
        match raw {
            0xAA64 => PeMachine::Arm64,
            0x8664 => PeMachine::X86_64,
            0x014C => PeMachine::I386,
            other => PeMachine::Other(other),
        }
    }
}

impl fmt::Display for PeMachine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeMachine::Arm64 => write!(f, "arm64"),
            PeMachine::X86_64 => write!(f, "x86_64"),
            PeMachine::I386 => write!(f, "i386"),
            PeMachine::Other(raw) => write!(f, "unknown machine 0x{raw:04X}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PeError {
    #[error("not a PE/EFI binary: {0}")]
    NotPe(String),
    #[error("reading the binary: {0}")]
    Io(#[from] io::Error),
}

/// Reads the machine field of a PE image held in memory.
pub fn machine(bytes: &[u8]) -> Result<PeMachine, PeError> {
    machine_from_reader(io::Cursor::new(bytes))
}

/// Reads the machine field of the PE file at `path`.
pub fn machine_of_file(path: &Path) -> Result<PeMachine, PeError> {
    machine_from_reader(File::open(path)?)
}

/// Reads the machine field, touching only the DOS header and the PE signature.
pub fn machine_from_reader(mut reader: impl Read + Seek) -> Result<PeMachine, PeError> {
    let mut dos = [0u8; DOS_HEADER_LEN];
    read_or_not_pe(&mut reader, &mut dos, "shorter than a DOS header")?;
    if &dos[..2] != DOS_MAGIC {
        return Err(PeError::NotPe(
            "no `MZ` signature (BIOS PXE images such as undionly.kpxe are not PE files)".into(),
        ));
    }
    let mut offset = [0u8; 4];
    offset.copy_from_slice(&dos[E_LFANEW_OFFSET..E_LFANEW_OFFSET + 4]);
    let pe_offset = u32::from_le_bytes(offset);
    if pe_offset > MAX_PE_OFFSET || (pe_offset as usize) < DOS_HEADER_LEN {
        return Err(PeError::NotPe(format!("implausible PE header offset 0x{pe_offset:X}")));
    }
    reader.seek(SeekFrom::Start(u64::from(pe_offset)))?;
    let mut header = [0u8; 6];
    read_or_not_pe(&mut reader, &mut header, "the PE header is past the end of the file")?;
    if &header[..4] != PE_MAGIC {
        return Err(PeError::NotPe(format!(
            "`MZ` header but no `PE\\0\\0` signature at 0x{pe_offset:X} (a plain DOS program?)"
        )));
    }
    Ok(PeMachine::from_raw(u16::from_le_bytes([header[4], header[5]])))
}

fn read_or_not_pe(reader: &mut impl Read, buf: &mut [u8], why: &str) -> Result<(), PeError> {
    reader.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => PeError::NotPe(why.to_owned()),
        _ => PeError::Io(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PE image: DOS header, stub bytes, then `PE\0\0` and the machine field.
    fn synthetic(machine: u16, pe_offset: u32) -> Vec<u8> {
        let mut bytes = vec![0u8; pe_offset as usize + 24];
        bytes[..2].copy_from_slice(b"MZ");
        bytes[E_LFANEW_OFFSET..E_LFANEW_OFFSET + 4].copy_from_slice(&pe_offset.to_le_bytes());
        let at = pe_offset as usize;
        bytes[at..at + 4].copy_from_slice(b"PE\0\0");
        bytes[at + 4..at + 6].copy_from_slice(&machine.to_le_bytes());
        bytes
    }

    #[test]
    fn reads_known_machines() {
        assert_eq!(machine(&synthetic(0xAA64, 0x80)).unwrap(), PeMachine::Arm64);
        assert_eq!(machine(&synthetic(0x8664, 0x40)).unwrap(), PeMachine::X86_64);
        assert_eq!(machine(&synthetic(0x014C, 0x100)).unwrap(), PeMachine::I386);
        assert_eq!(machine(&synthetic(0x5064, 0x80)).unwrap(), PeMachine::Other(0x5064));
        assert_eq!(PeMachine::Other(0x5064).to_string(), "unknown machine 0x5064");
    }

    #[test]
    fn bios_pxe_images_are_not_pe() {
        // undionly.kpxe starts with x86 real-mode code, no MZ header.
        let kpxe = [0xEBu8, 0x3C, 0x00, 0x00].repeat(64);
        let err = machine(&kpxe).unwrap_err();
        assert!(matches!(err, PeError::NotPe(_)));
        assert!(err.to_string().contains("undionly.kpxe"), "{err}");
    }

    #[test]
    fn truncated_and_corrupt_headers_are_errors_not_panics() {
        assert!(matches!(machine(b""), Err(PeError::NotPe(_))));
        assert!(matches!(machine(b"MZ"), Err(PeError::NotPe(_))));
        let full = synthetic(0xAA64, 0x80);
        for cut in [0x3E, 0x40, 0x80, 0x84, 0x85] {
            assert!(matches!(machine(&full[..cut]), Err(PeError::NotPe(_))), "cut at {cut}");
        }
        let mut no_signature = synthetic(0xAA64, 0x80);
        no_signature[0x80] = b'X';
        assert!(machine(&no_signature).unwrap_err().to_string().contains("PE\\0\\0"));
        let mut huge_offset = synthetic(0xAA64, 0x80);
        huge_offset[E_LFANEW_OFFSET..E_LFANEW_OFFSET + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(machine(&huge_offset), Err(PeError::NotPe(_))));
    }

    #[test]
    fn reads_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipxe-arm64.efi");
        std::fs::write(&path, synthetic(0xAA64, 0x80)).unwrap();
        assert_eq!(machine_of_file(&path).unwrap(), PeMachine::Arm64);
        assert!(matches!(
            machine_of_file(&dir.path().join("missing")),
            Err(PeError::Io(_))
        ));
    }
}
