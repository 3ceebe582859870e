//! EFI GUIDs as the firmware keeps them in flash: the first three fields little-endian.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// From the `{ 0xAABBCCDD, 0xEEFF, 0x1122, { ... } }` form the edk2 sources write.
    pub const fn new(a: u32, b: u16, c: u16, d: [u8; 8]) -> Guid {
        let a = a.to_le_bytes();
        let b = b.to_le_bytes();
        let c = c.to_le_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7],
        ])
    }

    pub fn read(bytes: &[u8], at: usize) -> Option<Guid> {
        bytes.get(at..at + 16).map(|s| Guid(s.try_into().expect("16 bytes")))
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
            u16::from_le_bytes([g[4], g[5]]),
            u16::from_le_bytes([g[6], g[7]]),
            g[8],
            g[9],
            g[10],
            g[11],
            g[12],
            g[13],
            g[14],
            g[15]
        )
    }
}

/// gEfiSystemNvDataFvGuid (MdeModulePkg.dec): the file system GUID of the firmware volume that
/// holds the variable store.
pub const SYSTEM_NV_DATA_FV: Guid = Guid::new(
    0xfff1_2b8d,
    0x7696,
    0x4c8b,
    [0xa9, 0x85, 0x27, 0x47, 0x07, 0x5b, 0x4f, 0x50],
);
/// gEfiAuthenticatedVariableGuid: a store of AUTHENTICATED_VARIABLE_HEADERs (what RPi4.fdf writes,
/// "compatible with SECURE_BOOT_ENABLE == FALSE as well").
pub const AUTHENTICATED_VARIABLE: Guid = Guid::new(
    0xaaf3_2c78,
    0x947b,
    0x439a,
    [0xa1, 0x80, 0x2e, 0x14, 0x4e, 0xc3, 0x77, 0x92],
);
/// gEfiVariableGuid: a store of plain VARIABLE_HEADERs.
pub const VARIABLE: Guid = Guid::new(
    0xddcf_3616,
    0x3275,
    0x4164,
    [0x98, 0xb6, 0xfe, 0x85, 0x70, 0x7f, 0xfe, 0x7d],
);
/// gConfigDxeFormSetGuid (edk2-platforms Platform/RaspberryPi/RaspberryPi.dec): the vendor GUID of
/// every setting of the Pi firmware's own setup pages (ConfigDxe).
pub const CONFIG_DXE_FORM_SET: Guid = Guid::new(
    0xcd7c_c258,
    0x31db,
    0x22e6,
    [0x9f, 0x22, 0x63, 0xb0, 0xb8, 0xee, 0xd6, 0xb5],
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_print_as_registry_form_and_sit_in_flash_as_the_fdf_bytes() {
        assert_eq!(SYSTEM_NV_DATA_FV.to_string(), "fff12b8d-7696-4c8b-a985-2747075b4f50");
        // RPi4.fdf NV_VARIABLE_STORE DATA: "0x8D, 0x2B, 0xF1, 0xFF, 0x96, 0x76, 0x8B, 0x4C, ..."
        assert_eq!(
            &SYSTEM_NV_DATA_FV.0[..8],
            &[0x8d, 0x2b, 0xf1, 0xff, 0x96, 0x76, 0x8b, 0x4c]
        );
        assert_eq!(&AUTHENTICATED_VARIABLE.0[..4], &[0x78, 0x2c, 0xf3, 0xaa]);
        assert_eq!(CONFIG_DXE_FORM_SET.to_string(), "cd7cc258-31db-22e6-9f22-63b0b8eed6b5");
    }
}
