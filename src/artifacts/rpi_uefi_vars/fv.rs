//! Where the variable store sits in an `RPI_EFI.fd`, found by its structure and then held
//! against the layouts the Pi firmware's sources give it.
//!
//! The FD the pftf/RPi4 releases ship is edk2-platforms' `Build/RPi4/RELEASE_GCC5/FV/RPI_EFI.fd`
//! as it is (pftf/RPi4 `.github/workflows/linux_edk2.yml`: `cp Build/RPi4/RELEASE_GCC5/FV/RPI_EFI.fd .`),
//! and its layout is edk2-platforms `Platform/RaspberryPi/RPi4/RPi4.fdf` `[FD.RPI_EFI]`: TF-A's
//! bl31 at 0, FVMAIN_COMPACT at 0x20000, then the NV_VARIABLE_STORE region (0xe000 bytes) that
//! opens with an EFI_FIRMWARE_VOLUME_HEADER (file system gEfiSystemNvDataFvGuid, FvLength
//! 0x20000, HeaderLength 0x48) followed by a VARIABLE_STORE_HEADER (gEfiAuthenticatedVariableGuid,
//! Size 0xdfb8, Format 0x5a, State 0xfe), then the event log, the fault-tolerant-write working
//! block and its spare.

use super::guid::{Guid, AUTHENTICATED_VARIABLE, SYSTEM_NV_DATA_FV, VARIABLE};
use super::FdError;

/// A layout of `RPI_EFI.fd` that a release of the Pi UEFI firmware has had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownLayout {
    pub name: &'static str,
    pub fd_size: usize,
    /// `PcdNvStorageVariableBase`: where the firmware volume holding the store begins.
    pub store_region: usize,
    /// `PcdFlashNvStorageVariableSize`.
    pub store_region_size: usize,
}

/// From RPi4.fdf: 0x3e0000 bytes with the store at 0x3b0000 since edk2-platforms 991b802e8f
/// ("Platform/RPi4: Allocate more space for UEFI image"), first released in pftf/RPi4 v1.39 (its
/// edk2-platforms submodule 65e64c0b) and kept through v1.50 (1e64c110); 0x1f0000 bytes with the
/// store at 0x1d0000 before it (edk2-platforms 828fcbf96a to 991b802e8f^; pftf/RPi4 v1.38 and
/// earlier: v1.35's release FD measured so).
pub const KNOWN_LAYOUTS: &[KnownLayout] = &[
    KnownLayout {
        name: "RPi4.fdf since 2024 (pftf/RPi4 v1.39 and later)",
        fd_size: 0x3e_0000,
        store_region: 0x3b_0000,
        store_region_size: 0xe000,
    },
    KnownLayout {
        name: "RPi4.fdf 2020 to 2024 (pftf/RPi4 up to v1.38)",
        fd_size: 0x1f_0000,
        store_region: 0x1d_0000,
        store_region_size: 0xe000,
    },
];

/// EFI_FIRMWARE_VOLUME_HEADER (MdePkg/Include/Pi/PiFirmwareVolume.h): ZeroVector[16],
/// FileSystemGuid at 16, FvLength (UINT64) at 32, Signature "_FVH" at 40, Attributes at 44,
/// HeaderLength (UINT16) at 48, Checksum at 50, ExtHeaderOffset at 52, Reserved at 54,
/// Revision at 55, the block map from 56.
const FV_SIGNATURE: &[u8; 4] = b"_FVH";
const FV_MIN_HEADER: usize = 0x48;
/// VARIABLE_STORE_HEADER (MdeModulePkg/Include/Guid/VariableFormat.h): Signature (GUID), Size
/// (UINT32, this header included), Format, State, Reserved (UINT16), Reserved1 (UINT32).
pub const STORE_HEADER_LEN: usize = 28;
const VARIABLE_STORE_FORMATTED: u8 = 0x5a;
const VARIABLE_STORE_HEALTHY: u8 = 0xfe;

/// Which header each variable in the store carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFormat {
    /// AUTHENTICATED_VARIABLE_HEADER, 60 bytes.
    Authenticated,
    /// VARIABLE_HEADER, 32 bytes.
    Plain,
}

impl StoreFormat {
    pub fn header_len(self) -> usize {
        match self {
            StoreFormat::Authenticated => 60,
            StoreFormat::Plain => 32,
        }
    }
}

/// The store found in an FD: byte offsets into the FD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLocation {
    /// The firmware volume's first byte.
    pub volume: usize,
    /// The VARIABLE_STORE_HEADER's first byte.
    pub header: usize,
    /// The first variable's place (right after the store header).
    pub first_variable: usize,
    /// One past the store's last byte (`header + Size`).
    pub end: usize,
    pub format: StoreFormat,
    pub layout: KnownLayout,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The edk2 rule (FvHeader checksum): the header's UINT16s sum to zero.
fn header_checksum_ok(header: &[u8]) -> bool {
    header
        .chunks_exact(2)
        .fold(0u16, |sum, w| sum.wrapping_add(u16::from_le_bytes([w[0], w[1]])))
        == 0
}

/// A firmware volume header that claims to hold the variable store, at `at`; `Err` says why it
/// cannot be the store after all.
fn store_at(fd: &[u8], at: usize) -> Result<(usize, usize, usize, StoreFormat), String> {
    let fv_len = u64_at(fd, at + 32);
    let header_len = usize::from(u16_at(fd, at + 48));
    if header_len < FV_MIN_HEADER || header_len % 2 != 0 {
        return Err(format!(
            "its header length {header_len:#x} is not a firmware volume header's"
        ));
    }
    if fv_len < (header_len + STORE_HEADER_LEN) as u64 || at as u64 + fv_len > fd.len() as u64 {
        return Err(format!("its length {fv_len:#x} does not fit the file"));
    }
    if !header_checksum_ok(&fd[at..at + header_len]) {
        return Err("its header checksum is wrong".into());
    }
    let store = at + header_len;
    let format = match Guid::read(fd, store) {
        Some(AUTHENTICATED_VARIABLE) => StoreFormat::Authenticated,
        Some(VARIABLE) => StoreFormat::Plain,
        Some(other) => {
            return Err(format!(
                "the store after it has the signature {other}, not an edk2 variable store's"
            ))
        }
        None => return Err("the file ends inside it".into()),
    };
    let size = u32_at(fd, store + 16) as usize;
    let (fmt, state) = (fd[store + 20], fd[store + 21]);
    if fmt != VARIABLE_STORE_FORMATTED || state != VARIABLE_STORE_HEALTHY {
        return Err(format!(
            "the store's format/state bytes are {fmt:#04x}/{state:#04x}, not formatted and healthy (0x5a/0xfe)"
        ));
    }
    if size < STORE_HEADER_LEN || store + size > at + fv_len as usize {
        return Err(format!("the store's size {size:#x} does not fit its volume"));
    }
    Ok((store, store + STORE_HEADER_LEN, store + size, format))
}

/// Finds the one firmware volume with gEfiSystemNvDataFvGuid and a healthy edk2 variable store
/// in it, and checks it sits where a known release's RPi4.fdf puts it.
pub fn locate(fd: &[u8]) -> Result<StoreLocation, FdError> {
    let mut found = Vec::new();
    let mut rejected = Vec::new();
    // PI volumes are at least 8-byte aligned; the store's is block-aligned (0x1000) in every
    // known layout, but looking at every 8 bytes also finds one a future layout moved.
    let mut at = 0;
    while at + FV_MIN_HEADER + STORE_HEADER_LEN <= fd.len() {
        if &fd[at + 40..at + 44] == FV_SIGNATURE && Guid::read(fd, at + 16) == Some(SYSTEM_NV_DATA_FV) {
            match store_at(fd, at) {
                Ok(store) => found.push((at, store)),
                Err(why) => rejected.push(format!("at {at:#x}: {why}")),
            }
        }
        at += 8;
    }
    let (volume, (header, first_variable, end, format)) = match found.as_slice() {
        [one] => *one,
        [] => {
            return Err(FdError::NoStore {
                size: fd.len(),
                rejected,
            })
        }
        many => return Err(FdError::SeveralStores(many.iter().map(|(at, _)| *at).collect())),
    };
    let layout = KNOWN_LAYOUTS
        .iter()
        .find(|l| l.fd_size == fd.len() && l.store_region == volume && end <= volume + l.store_region_size)
        .copied()
        .ok_or(FdError::UnknownLayout { size: fd.len(), volume })?;
    Ok(StoreLocation {
        volume,
        header,
        first_variable,
        end,
        format,
        layout,
    })
}
