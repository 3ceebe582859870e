//! `cozyboot::artifacts::pe` against Debian's real iPXE binaries (package `ipxe`, which
//! scripts/install-test-deps installs): the x86_64 `ipxe.efi` that must never reach an ARM64
//! client is recognised as x86_64, and the BIOS `undionly.kpxe` is not taken for a PE image.

use crate::support;

use cozyboot::artifacts::pe::{machine_of_file, PeError, PeMachine};
use std::path::Path;

const IPXE_EFI: &str = "/usr/lib/ipxe/ipxe.efi";
const UNDIONLY: &str = "/usr/lib/ipxe/undionly.kpxe";

/// Whether Debian's `ipxe` package is installed; when it is not, the test is skipped or, where
/// tests must run, fails (`support::guard`).
fn require_ipxe_package() -> bool {
    let missing: Vec<&str> = [IPXE_EFI, UNDIONLY]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    support::guard::skip::<()>(
        None,
        &format!("{} absent: install the Debian package `ipxe`", missing.join(" and ")),
    );
    false
}

#[test]
fn debian_ipxe_efi_is_x86_64_and_undionly_is_not_pe() {
    if !require_ipxe_package() {
        return;
    }
    assert_eq!(machine_of_file(Path::new(IPXE_EFI)).unwrap(), PeMachine::X86_64);
    assert!(matches!(machine_of_file(Path::new(UNDIONLY)), Err(PeError::NotPe(_))));
}
