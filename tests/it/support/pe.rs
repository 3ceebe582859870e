//! Stand-in EFI binaries: just enough PE header for cozyboot's machine-type checks.

/// A PE header for `machine` (0xAA64 arm64, 0x8664 x86_64), 512 bytes.
pub fn pe(machine: u16) -> Vec<u8> {
    pe_sized(machine, 512, 0)
}

/// Like [`pe`], `len` bytes long and filled with `fill`, so files can be told apart and span
/// several TFTP blocks.
pub fn pe_sized(machine: u16, len: usize, fill: u8) -> Vec<u8> {
    let mut b = vec![fill; len];
    b[0..2].copy_from_slice(b"MZ");
    b[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    b[0x80..0x84].copy_from_slice(b"PE\0\0");
    b[0x84..0x86].copy_from_slice(&machine.to_le_bytes());
    b
}
