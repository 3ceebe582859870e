//! The variables in an edk2 variable store, and adding or replacing some the way the firmware's
//! own variable driver does: the old copy is marked deleted in place and the new one appended.
//!
//! Format (MdeModulePkg/Include/Guid/VariableFormat.h): after the VARIABLE_STORE_HEADER, each
//! variable is a header starting with StartId 0x55AA and State, then its name (UTF-16,
//! NUL-terminated, NameSize bytes) and its data (DataSize bytes) with no padding between them
//! on ARM (ALIGNMENT 1), and the next header at the next 4-byte boundary (HEADER_ALIGNMENT).
//! The first header whose StartId is not 0x55AA ends the list; the rest of the store is erased
//! flash (0xff). State bits only ever go from 1 to 0: VAR_ADDED 0x3f is live, and clearing the
//! VAR_DELETED bit (0xfd) retires a copy. A copy in VAR_IN_DELETED_TRANSITION (0x3f & 0xfe)
//! is live too while no VAR_ADDED copy exists (MdeModulePkg/Universal/Variable/RuntimeDxe
//! VariableParsing.c, FindVariableEx).

use super::fv::{StoreFormat, StoreLocation};
use super::guid::Guid;
use super::FdError;

const VARIABLE_DATA: u16 = 0x55aa;
pub const VAR_ADDED: u8 = 0x3f;
const VAR_IN_DELETED_TRANSITION: u8 = 0xfe;
const VAR_DELETED: u8 = 0xfd;
const HEADER_ALIGNMENT: usize = 4;

/// EFI_VARIABLE_NON_VOLATILE | EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS:
/// what ConfigDxeHii.vfr declares for every setting's efivarstore.
pub const NV_BS_RT: u32 = 0x7;

/// One variable to put in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    pub vendor: Guid,
    pub attributes: u32,
    pub data: Vec<u8>,
}

/// A variable as it sits in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Where its header starts, in the FD.
    pub at: usize,
    pub state: u8,
    pub attributes: u32,
    pub vendor: Guid,
    pub name: String,
    pub data: Vec<u8>,
}

impl Stored {
    /// Whether the firmware reads this copy (VAR_ADDED, or in deleted transition).
    pub fn live(&self) -> bool {
        self.state == VAR_ADDED || self.state == VAR_ADDED & VAR_IN_DELETED_TRANSITION
    }
}

fn utf16z(name: &str) -> Vec<u8> {
    name.encode_utf16().chain([0]).flat_map(u16::to_le_bytes).collect()
}

fn align(n: usize) -> usize {
    n.div_ceil(HEADER_ALIGNMENT) * HEADER_ALIGNMENT
}

/// Header field offsets: NameSize, DataSize and VendorGuid move with the format.
fn sizes_at(format: StoreFormat) -> (usize, usize, usize) {
    match format {
        // StartId, State, Reserved, Attributes, MonotonicCount (8), TimeStamp (EFI_TIME, 16),
        // PubKeyIndex, NameSize, DataSize, VendorGuid
        StoreFormat::Authenticated => (36, 40, 44),
        // StartId, State, Reserved, Attributes, NameSize, DataSize, VendorGuid
        StoreFormat::Plain => (8, 12, 16),
    }
}

/// Every variable in the store, live or not, and where the free space starts.
pub fn read(fd: &[u8], loc: &StoreLocation) -> Result<(Vec<Stored>, usize), FdError> {
    let hlen = loc.format.header_len();
    let (name_size_at, data_size_at, guid_at) = sizes_at(loc.format);
    let mut out = Vec::new();
    let mut at = loc.first_variable;
    while at + hlen <= loc.end && u16::from_le_bytes([fd[at], fd[at + 1]]) == VARIABLE_DATA {
        let u32_at = |o: usize| u32::from_le_bytes(fd[at + o..at + o + 4].try_into().expect("4 bytes")) as usize;
        let (name_size, data_size) = (u32_at(name_size_at), u32_at(data_size_at));
        let name_start = at + hlen;
        let next = name_start
            .checked_add(name_size)
            .and_then(|n| n.checked_add(data_size))
            .filter(|&end| end <= loc.end)
            .ok_or(FdError::Corrupt {
                at,
                why: format!("its name ({name_size} bytes) and data ({data_size} bytes) run past the store's end"),
            })?;
        let name_bytes = &fd[name_start..name_start + name_size];
        let units: Vec<u16> = name_bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let name = String::from_utf16_lossy(units.split(|&u| u == 0).next().unwrap_or(&[]));
        out.push(Stored {
            at,
            state: fd[at + 2],
            attributes: u32_at(4) as u32,
            vendor: Guid::read(fd, at + guid_at).expect("inside the header"),
            name,
            data: fd[name_start + name_size..next].to_vec(),
        });
        at = align(next);
    }
    let free = at.min(loc.end);
    if let Some(pos) = fd[free..loc.end].iter().position(|&b| b != 0xff) {
        return Err(FdError::Corrupt {
            at: free + pos,
            why: "the store's free space is not erased (0xff) after its last variable".into(),
        });
    }
    Ok((out, free))
}

fn encode(format: StoreFormat, v: &Variable) -> Vec<u8> {
    let name = utf16z(&v.name);
    let (name_size_at, data_size_at, guid_at) = sizes_at(format);
    // Fields the firmware leaves zero for a variable without time-based authentication:
    // MonotonicCount, TimeStamp and PubKeyIndex; Reserved is zero too.
    let mut out = vec![0u8; format.header_len()];
    out[0..2].copy_from_slice(&VARIABLE_DATA.to_le_bytes());
    out[2] = VAR_ADDED;
    out[4..8].copy_from_slice(&v.attributes.to_le_bytes());
    out[name_size_at..name_size_at + 4].copy_from_slice(&(name.len() as u32).to_le_bytes());
    out[data_size_at..data_size_at + 4].copy_from_slice(&(v.data.len() as u32).to_le_bytes());
    out[guid_at..guid_at + 16].copy_from_slice(&v.vendor.0);
    out.extend_from_slice(&name);
    out.extend_from_slice(&v.data);
    out
}

/// Puts `vars` into the store in `fd`: a variable already live with the same attributes and
/// data is left alone, another live copy of the same name and vendor is retired, and the new
/// copy appended. Touches no byte outside the store; on error `fd` is unchanged.
pub fn write(fd: &mut [u8], loc: &StoreLocation, vars: &[Variable]) -> Result<(), FdError> {
    let (stored, mut free) = read(fd, loc)?;
    let mut retire = Vec::new();
    let mut append = Vec::new();
    for v in vars {
        let same = |s: &&Stored| s.live() && s.name == v.name && s.vendor == v.vendor;
        let current: Vec<&Stored> = stored.iter().filter(same).collect();
        let unchanged = current.len() == 1
            && current[0].state == VAR_ADDED
            && current[0].attributes == v.attributes
            && current[0].data == v.data;
        if unchanged {
            continue;
        }
        retire.extend(current.iter().map(|s| s.at));
        append.push(encode(loc.format, v));
    }
    let needed: usize = append.iter().map(|a| align(a.len())).sum();
    let room = loc.end - free;
    // The last variable needs no padding after it.
    let needed_last = needed - append.last().map_or(0, |a| align(a.len()) - a.len());
    if needed_last > room {
        return Err(FdError::StoreFull {
            needed: needed_last,
            free: room,
        });
    }
    for at in retire {
        fd[at + 2] &= VAR_DELETED;
    }
    for bytes in append {
        fd[free..free + bytes.len()].copy_from_slice(&bytes);
        free = align(free + bytes.len()).min(loc.end);
    }
    Ok(())
}
