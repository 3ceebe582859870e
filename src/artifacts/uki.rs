//! Unified kernel images: the kernel and initramfs a UKI carries, taken out as two files.
//!
//! Since Talos v1.10 the installer image holds only `vmlinuz.efi`, a UKI (systemd-stub PE
//! with `.linux`, `.initrd` and `.cmdline` sections). UEFI iPXE could boot it whole, but a
//! BIOS client cannot run a PE at all, so cozyboot serves every firmware the pair taken out
//! of the sections, as Talos's own GRUB install does. One pair per architecture also keeps
//! one profile per architecture, `initrd=` on the kernel line, and an initramfs request that
//! can be seen apart from the kernel request.

use object::read::pe::PeFile64;
use object::read::ReadCache;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The section holding the EFI-stub kernel.
pub const LINUX: &str = ".linux";
/// The section holding the initramfs.
pub const INITRD: &str = ".initrd";
/// The section holding the command line the stub passes when the loader passes none.
pub const CMDLINE: &str = ".cmdline";

/// dnsmasq's TFTP server (running as root) serves only world-readable files.
const FILE_MODE: u32 = 0o644;
/// A `.cmdline` longer than this is not a command line (Linux allows 2 KiB to 64 KiB).
const MAX_CMDLINE: u64 = 64 * 1024;

/// Where one section's bytes lie in the UKI file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    pub offset: u64,
    pub size: u64,
}

/// What a UKI holds, read from its headers alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub machine: crate::artifacts::pe::PeMachine,
    pub kernel: Section,
    pub initrd: Section,
    /// The embedded command line; the one iPXE passes replaces it (Secure Boot off).
    pub cmdline: Option<String>,
}

/// One file written by [`split`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

/// What [`split`] took out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parts {
    pub layout: Layout,
    pub kernel: Written,
    pub initrd: Written,
}

#[derive(Debug, thiserror::Error)]
pub enum UkiError {
    #[error("{} is not a unified kernel image: {why}", path.display())]
    NotUki { path: PathBuf, why: String },
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Reads the section table of the UKI at `path` (headers only, not the sections).
pub fn inspect(path: &Path) -> Result<Layout, UkiError> {
    let file = File::open(path).map_err(|source| UkiError::Read {
        path: path.to_owned(),
        source,
    })?;
    let not_uki = |why: String| UkiError::NotUki {
        path: path.to_owned(),
        why,
    };
    let machine = crate::artifacts::pe::machine_from_reader(&file).map_err(|e| not_uki(e.to_string()))?;
    let cache = ReadCache::new(&file);
    // arm64 and x86_64 EFI binaries are PE32+; a 32-bit PE cannot be a Talos UKI.
    let pe = PeFile64::parse(&cache).map_err(|e| not_uki(format!("unreadable PE32+ headers ({e})")))?;
    let mut kernel = None;
    let mut initrd = None;
    let mut cmdline_at = None;
    for header in pe.section_table().iter() {
        let name = header.raw_name();
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        let (offset, size) = header.pe_file_range();
        let section = Section {
            offset: u64::from(offset),
            size: u64::from(size),
        };
        match name {
            n if n == LINUX.as_bytes() => kernel = Some(section),
            n if n == INITRD.as_bytes() => initrd = Some(section),
            n if n == CMDLINE.as_bytes() => cmdline_at = Some(section),
            _ => {}
        }
    }
    let kernel = kernel
        .filter(|s| s.size > 0)
        .ok_or_else(|| not_uki(format!("it has no non-empty {LINUX} section (a plain EFI program?)")))?;
    let initrd = initrd.filter(|s| s.size > 0).ok_or_else(|| {
        not_uki(format!(
            "it has no non-empty {INITRD} section (a UKI without an initramfs cannot boot Talos)"
        ))
    })?;
    let len = file
        .metadata()
        .map_err(|source| UkiError::Read {
            path: path.to_owned(),
            source,
        })?
        .len();
    for (name, s) in [(LINUX, kernel), (INITRD, initrd)] {
        if s.offset.saturating_add(s.size) > len {
            return Err(not_uki(format!(
                "its {name} section ends at byte {}, past the end of the {len}-byte file (truncated?)",
                s.offset + s.size
            )));
        }
    }
    let cmdline = match cmdline_at {
        Some(s) if s.size <= MAX_CMDLINE && s.offset.saturating_add(s.size) <= len => {
            let mut bytes = vec![0u8; s.size as usize];
            read_at(&file, s.offset, &mut bytes).map_err(|source| UkiError::Read {
                path: path.to_owned(),
                source,
            })?;
            let text = String::from_utf8_lossy(&bytes);
            Some(text.trim_end_matches(['\0', '\n', ' ']).to_string())
        }
        _ => None,
    };
    Ok(Layout {
        machine,
        kernel,
        initrd,
        cmdline,
    })
}

/// Writes the UKI's kernel to `kernel_out` and its initramfs to `initrd_out` (both created
/// new, world-readable), hashing them as they are written.
pub fn split(uki: &Path, kernel_out: &Path, initrd_out: &Path) -> Result<Parts, UkiError> {
    let layout = inspect(uki)?;
    let mut file = File::open(uki).map_err(|source| UkiError::Read {
        path: uki.to_owned(),
        source,
    })?;
    let kernel = copy_section(&mut file, uki, layout.kernel, kernel_out)?;
    let initrd = copy_section(&mut file, uki, layout.initrd, initrd_out)?;
    Ok(Parts { layout, kernel, initrd })
}

fn copy_section(from: &mut File, from_path: &Path, section: Section, to: &Path) -> Result<Written, UkiError> {
    let read_err = |source| UkiError::Read {
        path: from_path.to_owned(),
        source,
    };
    let write_err = |source| UkiError::Write {
        path: to.to_owned(),
        source,
    };
    from.seek(SeekFrom::Start(section.offset)).map_err(read_err)?;
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(to)
        .map_err(write_err)?;
    let mut hasher = Sha256::new();
    let mut left = section.size;
    let mut buf = vec![0u8; 1024 * 1024];
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        from.read_exact(&mut buf[..want]).map_err(read_err)?;
        hasher.update(&buf[..want]);
        out.write_all(&buf[..want]).map_err(write_err)?;
        left -= want as u64;
    }
    out.sync_all().map_err(write_err)?;
    Ok(Written {
        path: to.to_owned(),
        size: section.size,
        sha256: hex::encode(hasher.finalize()),
    })
}

fn read_at(mut file: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

/// Builds a minimal PE32+ image with the given sections, as `ukify` lays one out: headers,
/// then each section's raw data at a 512-byte file alignment. For tests and test images.
#[doc(hidden)]
pub fn build_for_tests(machine: u16, sections: &[(&str, &[u8])]) -> Vec<u8> {
    const FILE_ALIGN: usize = 0x200;
    const PE_AT: usize = 0x80;
    const OPT_LEN: usize = 240; // PE32+ optional header with 16 data directories
    let align = |n: usize| n.div_ceil(FILE_ALIGN) * FILE_ALIGN;
    let table_at = PE_AT + 24 + OPT_LEN;
    let headers_len = align(table_at + 40 * sections.len());
    let mut out = vec![0u8; headers_len];
    out[..2].copy_from_slice(b"MZ");
    out[0x3C..0x40].copy_from_slice(&(PE_AT as u32).to_le_bytes());
    out[PE_AT..PE_AT + 4].copy_from_slice(b"PE\0\0");
    let coff = PE_AT + 4;
    out[coff..coff + 2].copy_from_slice(&machine.to_le_bytes());
    out[coff + 2..coff + 4].copy_from_slice(&(sections.len() as u16).to_le_bytes());
    out[coff + 16..coff + 18].copy_from_slice(&(OPT_LEN as u16).to_le_bytes());
    out[coff + 18..coff + 20].copy_from_slice(&0x0206u16.to_le_bytes()); // executable, large address aware
    let opt = coff + 20;
    out[opt..opt + 2].copy_from_slice(&0x20Bu16.to_le_bytes()); // PE32+
    out[opt + 32..opt + 36].copy_from_slice(&0x1000u32.to_le_bytes()); // section alignment
    out[opt + 36..opt + 40].copy_from_slice(&(FILE_ALIGN as u32).to_le_bytes());
    out[opt + 60..opt + 64].copy_from_slice(&(headers_len as u32).to_le_bytes()); // size of headers
    out[opt + 68..opt + 70].copy_from_slice(&10u16.to_le_bytes()); // EFI application
    out[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes()); // data directories
    let mut raw_at = headers_len;
    let mut vaddr = 0x1000usize;
    for (i, (name, data)) in sections.iter().enumerate() {
        let h = table_at + 40 * i;
        let n = name.as_bytes();
        out[h..h + n.len().min(8)].copy_from_slice(&n[..n.len().min(8)]);
        out[h + 8..h + 12].copy_from_slice(&(data.len() as u32).to_le_bytes()); // virtual size
        out[h + 12..h + 16].copy_from_slice(&(vaddr as u32).to_le_bytes());
        out[h + 16..h + 20].copy_from_slice(&(align(data.len()) as u32).to_le_bytes()); // raw size
        out[h + 20..h + 24].copy_from_slice(&(raw_at as u32).to_le_bytes());
        out[h + 36..h + 40].copy_from_slice(&0x4000_0040u32.to_le_bytes()); // initialised data, read
        raw_at += align(data.len());
        vaddr += data.len().div_ceil(0x1000) * 0x1000;
    }
    for (_, data) in sections {
        out.extend_from_slice(data);
        out.resize(align(out.len()), 0);
    }
    let size_of_image = vaddr as u32;
    out[opt + 56..opt + 60].copy_from_slice(&size_of_image.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::pe::PeMachine;

    fn kernel() -> Vec<u8> {
        let mut k = vec![0x5Au8; 70_001];
        k[..2].copy_from_slice(b"MZ");
        k
    }

    fn initrd() -> Vec<u8> {
        let mut i = vec![0xA5u8; 123_457];
        i[..6].copy_from_slice(b"\xfd7zXZ\x00");
        i
    }

    fn uki(machine: u16) -> Vec<u8> {
        build_for_tests(
            machine,
            &[
                (".osrel", b"ID=talos\n"),
                (CMDLINE, b"talos.platform=metal console=tty0\0"),
                (LINUX, &kernel()),
                (INITRD, &initrd()),
            ],
        )
    }

    #[test]
    fn takes_out_exactly_the_kernel_and_initramfs_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmlinuz.efi");
        std::fs::write(&path, uki(0xAA64)).unwrap();
        let (k, i) = (dir.path().join("vmlinuz"), dir.path().join("initramfs.xz"));
        let parts = split(&path, &k, &i).unwrap();
        assert_eq!(
            std::fs::read(&k).unwrap(),
            kernel(),
            "section padding must not reach the file"
        );
        assert_eq!(std::fs::read(&i).unwrap(), initrd());
        assert_eq!(parts.layout.machine, PeMachine::Arm64);
        assert_eq!(
            parts.layout.cmdline.as_deref(),
            Some("talos.platform=metal console=tty0")
        );
        assert_eq!(parts.kernel.size, kernel().len() as u64);
        assert_eq!(parts.initrd.sha256, hex::encode(Sha256::digest(initrd())));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&i).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "dnsmasq and matchbox serve world-readable files only");
    }

    #[test]
    fn refuses_a_pe_without_the_sections_and_says_which() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("systemd-boot.efi");
        std::fs::write(
            &path,
            build_for_tests(0x8664, &[(".text", b"code"), (LINUX, &kernel())]),
        )
        .unwrap();
        let err = inspect(&path).unwrap_err().to_string();
        assert!(err.contains(".initrd") && err.contains("systemd-boot.efi"), "{err}");
        std::fs::write(&path, build_for_tests(0x8664, &[(".text", b"code")])).unwrap();
        assert!(inspect(&path).unwrap_err().to_string().contains(".linux"));
    }

    #[test]
    fn truncated_and_foreign_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmlinuz.efi");
        let whole = uki(0x8664);
        for cut in [0, 2, 0x40, 0x90, 0x200, whole.len() - 1000] {
            std::fs::write(&path, &whole[..cut]).unwrap();
            assert!(matches!(inspect(&path), Err(UkiError::NotUki { .. })), "cut at {cut}");
        }
        std::fs::write(&path, b"\xfd7zXZ\0 not a PE at all").unwrap();
        assert!(matches!(inspect(&path), Err(UkiError::NotUki { .. })));
    }

    #[test]
    fn never_overwrites_an_existing_output() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmlinuz.efi");
        std::fs::write(&path, uki(0xAA64)).unwrap();
        let k = dir.path().join("vmlinuz");
        std::fs::write(&k, b"keep").unwrap();
        let err = split(&path, &k, &dir.path().join("initramfs.xz")).unwrap_err();
        assert!(matches!(err, UkiError::Write { .. }), "{err}");
        assert_eq!(std::fs::read(&k).unwrap(), b"keep");
    }
}
