//! The parser and writer on FDs shaped like RPi4.fdf's (see `fv.rs`): pseudo-random code
//! before the store, the store's volume and store headers as the .fdf's DATA block writes them.

use super::fv::{StoreFormat, STORE_HEADER_LEN};
use super::guid::{AUTHENTICATED_VARIABLE, CONFIG_DXE_FORM_SET, SYSTEM_NV_DATA_FV, VARIABLE};
use super::store::{self, Variable, NV_BS_RT, VAR_ADDED};
use super::*;

fn code(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// An FD of `fd_size` with the store's volume at `volume` (0x20000 long, HeaderLength 0x48,
/// store Size 0xdfb8, as in RPi4.fdf).
pub(crate) fn fd_with_store_at(fd_size: usize, volume: usize, format: StoreFormat) -> Vec<u8> {
    let mut fd = code(volume, 0x5eed);
    fd.resize(fd_size, 0xff);
    let h = &mut fd[volume..volume + 0x48];
    h[..16].fill(0);
    h[16..32].copy_from_slice(&SYSTEM_NV_DATA_FV.0);
    h[32..40].copy_from_slice(&0x20000u64.to_le_bytes());
    h[40..44].copy_from_slice(b"_FVH");
    h[44..48].copy_from_slice(&0x0004_feffu32.to_le_bytes());
    h[48..50].copy_from_slice(&0x48u16.to_le_bytes());
    h[50..52].fill(0);
    h[52..56].copy_from_slice(&[0, 0, 0, 2]);
    h[56..64].copy_from_slice(&[0x20, 0, 0, 0, 0, 0x10, 0, 0]);
    h[64..72].fill(0);
    let sum = h
        .chunks_exact(2)
        .fold(0u16, |s, w| s.wrapping_add(u16::from_le_bytes([w[0], w[1]])));
    h[50..52].copy_from_slice(&0u16.wrapping_sub(sum).to_le_bytes());
    let s = &mut fd[volume + 0x48..volume + 0x48 + STORE_HEADER_LEN];
    let sig = match format {
        StoreFormat::Authenticated => AUTHENTICATED_VARIABLE,
        StoreFormat::Plain => VARIABLE,
    };
    s[..16].copy_from_slice(&sig.0);
    s[16..20].copy_from_slice(&0xdfb8u32.to_le_bytes());
    s[20..28].copy_from_slice(&[0x5a, 0xfe, 0, 0, 0, 0, 0, 0]);
    fd
}

pub(crate) fn release_fd() -> Vec<u8> {
    fd_with_store_at(0x3e_0000, 0x3b_0000, StoreFormat::Authenticated)
}

fn ram_and_dt() -> BoardSettings {
    let mut s = BoardSettings::default();
    s.set("ram-above-3gb", "true").unwrap();
    s.set("system-table", "devicetree").unwrap();
    s
}

fn live(fd: &[u8]) -> Vec<(String, Vec<u8>)> {
    let loc = locate(fd).unwrap();
    let (vars, _) = store::read(fd, &loc).unwrap();
    vars.into_iter()
        .filter(|v| v.live())
        .map(|v| (v.name, v.data))
        .collect()
}

#[test]
fn the_store_of_a_release_shaped_fd_is_found_where_rpi4_fdf_puts_it() {
    let fd = release_fd();
    let loc = locate(&fd).unwrap();
    assert_eq!(loc.volume, 0x3b_0000);
    assert_eq!(loc.header, 0x3b_0048);
    assert_eq!(loc.first_variable, 0x3b_0048 + 28);
    assert_eq!(loc.end, 0x3b_0048 + 0xdfb8);
    assert_eq!(
        loc.end, 0x3b_e000,
        "the store ends where RPi4.fdf's NV_EVENT_LOG begins"
    );
    assert_eq!(loc.format, StoreFormat::Authenticated);
    assert_eq!(loc.layout, KNOWN_LAYOUTS[0]);

    let old = fd_with_store_at(0x1f_0000, 0x1d_0000, StoreFormat::Authenticated);
    assert_eq!(locate(&old).unwrap().layout, KNOWN_LAYOUTS[1]);
}

#[test]
fn settings_are_written_and_nothing_outside_the_store_changes() {
    let fd = release_fd();
    let out = board_fd(&fd, &ram_and_dt()).unwrap();
    assert_eq!(out.len(), fd.len());
    let loc = locate(&fd).unwrap();
    assert_eq!(out[..loc.first_variable], fd[..loc.first_variable]);
    assert_eq!(out[loc.end..], fd[loc.end..]);
    assert_eq!(
        live(&out),
        [
            ("RamLimitTo3GB".to_string(), 0u32.to_le_bytes().to_vec()),
            ("SystemTableMode".to_string(), 2u32.to_le_bytes().to_vec())
        ]
    );
    // The first variable, byte for byte: AUTHENTICATED_VARIABLE_HEADER then name then data.
    let v = &out[loc.first_variable..];
    assert_eq!(&v[..4], &[0xaa, 0x55, VAR_ADDED, 0]);
    assert_eq!(&v[4..8], &NV_BS_RT.to_le_bytes());
    assert!(
        v[8..36].iter().all(|&b| b == 0),
        "count, time stamp and key index are zero"
    );
    assert_eq!(
        &v[36..40],
        &28u32.to_le_bytes(),
        "\"RamLimitTo3GB\" and its NUL in UTF-16"
    );
    assert_eq!(&v[40..44], &4u32.to_le_bytes());
    assert_eq!(&v[44..60], &CONFIG_DXE_FORM_SET.0);
    assert_eq!(&v[60..62], &[b'R', 0]);
    assert_eq!(&v[88..92], &[0, 0, 0, 0]);
    // 60 + 28 + 4 = 92, already 4-aligned: the next header follows at once.
    assert_eq!(&v[92..94], &[0xaa, 0x55]);
}

#[test]
fn writing_the_same_settings_again_changes_nothing() {
    let once = board_fd(&release_fd(), &ram_and_dt()).unwrap();
    let twice = board_fd(&once, &ram_and_dt()).unwrap();
    assert_eq!(once, twice);
}

#[test]
fn a_changed_setting_retires_the_old_copy_and_appends_the_new() {
    let once = board_fd(&release_fd(), &ram_and_dt()).unwrap();
    let mut acpi = BoardSettings::default();
    acpi.set("system-table", "acpi").unwrap();
    let twice = board_fd(&once, &acpi).unwrap();
    let loc = locate(&twice).unwrap();
    let (all, _) = store::read(&twice, &loc).unwrap();
    let states: Vec<(&str, u8)> = all.iter().map(|v| (v.name.as_str(), v.state)).collect();
    assert_eq!(
        states,
        [
            ("RamLimitTo3GB", 0x3f),
            ("SystemTableMode", 0x3d),
            ("SystemTableMode", 0x3f)
        ]
    );
    assert_eq!(
        live(&twice)[1],
        ("SystemTableMode".to_string(), 0u32.to_le_bytes().to_vec())
    );
}

#[test]
fn deleted_and_in_transition_copies_already_there_are_handled_as_edk2_does() {
    let mut fd = release_fd();
    let loc = locate(&fd).unwrap();
    let old = |value: u32| Variable {
        name: "SystemTableMode".into(),
        vendor: CONFIG_DXE_FORM_SET,
        attributes: NV_BS_RT,
        data: value.to_le_bytes().to_vec(),
    };
    store::write(&mut fd, &loc, &[old(1)]).unwrap();
    // the firmware's own update: the live copy goes into deleted transition...
    fd[loc.first_variable + 2] &= 0xfe;
    assert_eq!(live(&fd).len(), 1, "a copy in deleted transition is still live");
    let mut dt = BoardSettings::default();
    dt.set("system-table", "devicetree").unwrap();
    let out = board_fd(&fd, &dt).unwrap();
    let loc = locate(&out).unwrap();
    let (all, _) = store::read(&out, &loc).unwrap();
    assert_eq!(all.iter().map(|v| v.state).collect::<Vec<_>>(), [0x3c, 0x3f]);
    assert_eq!(
        live(&out),
        [("SystemTableMode".to_string(), 2u32.to_le_bytes().to_vec())]
    );
}

#[test]
fn a_full_store_is_refused_and_the_fd_left_as_it_was() {
    let mut fd = release_fd();
    let loc = locate(&fd).unwrap();
    let filler = Variable {
        name: "Filler".into(),
        vendor: CONFIG_DXE_FORM_SET,
        attributes: NV_BS_RT,
        data: vec![0; loc.end - loc.first_variable - 60 - 14 - 40],
    };
    store::write(&mut fd, &loc, &[filler]).unwrap();
    let before = fd.clone();
    let err = store::write(&mut fd, &loc, &ram_and_dt().variables()).unwrap_err();
    assert!(matches!(err, FdError::StoreFull { .. }), "{err}");
    assert!(err.to_string().contains("bytes of the variable store"), "{err}");
    assert_eq!(fd, before);
}

#[test]
fn the_plain_variable_format_is_written_with_its_shorter_header() {
    let fd = fd_with_store_at(0x3e_0000, 0x3b_0000, StoreFormat::Plain);
    let out = board_fd(&fd, &ram_and_dt()).unwrap();
    let loc = locate(&out).unwrap();
    assert_eq!(loc.format, StoreFormat::Plain);
    assert_eq!(
        &out[loc.first_variable + 16..loc.first_variable + 32],
        &CONFIG_DXE_FORM_SET.0
    );
    assert_eq!(live(&out).len(), 2);
}

#[test]
fn an_fd_without_a_store_or_with_a_broken_one_is_refused_with_the_reason() {
    let err = locate(&code(0x3e_0000, 7)).unwrap_err();
    assert!(
        matches!(err, FdError::NoStore { ref rejected, .. } if rejected.is_empty()),
        "{err}"
    );
    assert!(err.config_error("rpi-uefi").fix.contains("release zip"));

    let mut bad_sum = release_fd();
    bad_sum[0x3b_0000 + 50] ^= 1;
    let err = locate(&bad_sum).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");

    let mut unformatted = release_fd();
    unformatted[0x3b_0048 + 20] = 0xff;
    assert!(locate(&unformatted).unwrap_err().to_string().contains("0x5a/0xfe"));
}

#[test]
fn a_store_where_no_release_keeps_it_or_two_stores_are_refused() {
    let moved = fd_with_store_at(0x3e_0000, 0x3a_0000, StoreFormat::Authenticated);
    let err = locate(&moved).unwrap_err();
    assert_eq!(
        err,
        FdError::UnknownLayout {
            size: 0x3e_0000,
            volume: 0x3a_0000
        }
    );
    assert!(err.to_string().contains("0x3b0000 in 0x3e0000 bytes"), "{err}");

    let mut two = release_fd();
    let copy = two[0x3b_0000..0x3b_0100].to_vec();
    two[0x38_0000..0x38_0100].copy_from_slice(&copy);
    assert!(matches!(locate(&two), Err(FdError::SeveralStores(ref at)) if at == &[0x38_0000, 0x3b_0000]));
}

#[test]
fn a_variable_running_past_the_store_is_reported_not_trusted() {
    let mut fd = board_fd(&release_fd(), &ram_and_dt()).unwrap();
    let first = locate(&fd).unwrap().first_variable;
    fd[first + 40..first + 44].copy_from_slice(&0x10_0000u32.to_le_bytes());
    let err = board_fd(&fd, &ram_and_dt()).unwrap_err();
    assert!(matches!(err, FdError::Corrupt { at, .. } if at == first), "{err}");
}
