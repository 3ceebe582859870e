//! Assets and bootloaders on disk: present, readable by dnsmasq's TFTP, built for the
//! architecture they are served to, and identical to what `up` recorded extracting.

use super::{Check, Findings};
use crate::artifacts::arch::{Arch, Bootloader};
use crate::artifacts::layout;
use crate::artifacts::pe::{self, PeMachine};
use crate::artifacts::rpi;
use crate::render::dnsmasq::served_firmwares;
use crate::settings::Settings;
use crate::store::state::{FileRecord, State};
use sha2::{Digest, Sha256};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

pub fn checks(s: &Settings, state: &State, talos_image_id: Option<&str>) -> Vec<Check> {
    let mut checks: Vec<Check> = s
        .arches
        .iter()
        .map(|&arch| talos_files(s, state, arch, talos_image_id))
        .collect();
    checks.extend(served_bootloaders(s).into_iter().map(|b| bootloader(s, state, b)));
    if s.serves_rpi() {
        checks.push(rpi_firmware(s, state));
    }
    checks
}

/// The Raspberry Pi UEFI firmware in the TFTP root: every file the EEPROM and start4.elf read,
/// as `up` installed it, and a config.txt that starts the UEFI firmware.
fn rpi_firmware(s: &Settings, state: &State) -> Check {
    let root = s.assets_dir();
    let record = state.rpi_firmware.as_ref();
    let mut f = Findings::default();
    for name in rpi::REQUIRED_FILES {
        let recorded = record.and_then(|r| r.files.iter().find(|file| file.name == *name));
        file(&root.join(name), recorded, true, &mut f);
    }
    match fs::read_to_string(root.join(rpi::CONFIG_TXT)) {
        Ok(config) if rpi::config_loads_uefi(&config) => f.note(format!("config.txt has armstub={}", rpi::UEFI_FD)),
        Ok(_) => f.fail(format!(
            "config.txt has no `armstub={}`: start4.elf would never start the UEFI firmware",
            rpi::UEFI_FD
        )),
        Err(_) => {}
    }
    match record {
        None => f.warn("no record of `cozyboot up` installing the Pi UEFI firmware: its digests cannot be checked"),
        Some(r) => f.note(format!(
            "installed from {} ({}{})",
            r.source,
            r.source_kind,
            r.version.as_deref().map(|v| format!(", {v}")).unwrap_or_default()
        )),
    }
    let check = f.into_check(
        "assets.rpi-firmware",
        format!(
            "the Raspberry Pi UEFI firmware ({}, {}, {}, the CM4 dtb) is in the TFTP root as installed",
            rpi::START_FILE,
            rpi::CONFIG_TXT,
            rpi::UEFI_FD
        ),
    );
    with_fix(
        check,
        "run `cozyboot up` to install it again (from --rpi-uefi PATH|URL, or the pinned release), or `--rpi-netboot off` if the Pis carry their own firmware",
    )
}

/// Each bootloader some served firmware is handed, once, in table order.
pub fn served_bootloaders(s: &Settings) -> Vec<Bootloader> {
    let mut seen = Vec::new();
    for fw in served_firmwares(s) {
        if !seen.contains(&fw.bootloader) {
            seen.push(fw.bootloader);
        }
    }
    seen
}

/// `arm64-efi`, `x86-64-efi`, `bios`: the names the JSON of other commands uses too.
pub fn bootloader_key(b: Bootloader) -> String {
    serde_json::to_value(b)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn talos_files(s: &Settings, state: &State, arch: Arch, image_id: Option<&str>) -> Check {
    let id = format!("assets.talos.{arch}");
    let dir = s.assets_dir().join("talos").join(arch.asset_dir());
    let record = state.assets.get(arch.name());
    let mut f = Findings::default();
    for name in [layout::KERNEL, layout::INITRAMFS] {
        let recorded = record.and_then(|r| r.files.iter().find(|file| file.name == name));
        file(&dir.join(name), recorded, false, &mut f);
    }
    match record {
        None => f.warn("no record of `cozyboot up` extracting these files: their sizes and digests cannot be checked"),
        Some(r) if r.image != s.talos_image() => f.warn(format!(
            "extracted from {}, but the settings boot {}",
            r.image,
            s.talos_image()
        )),
        Some(r) => match image_id {
            Some(current) if current != r.image_id => f.warn(format!(
                "{} now points to another image ({}) than the one extracted ({})",
                r.image,
                short(current),
                short(&r.image_id)
            )),
            _ => f.note(format!(
                "every {arch} firmware (UEFI and BIOS) is served {} + {} extracted from {} ({}), {}",
                layout::KERNEL,
                layout::INITRAMFS,
                r.image,
                short(&r.image_id),
                r.origin()
            )),
        },
    }
    let check = f.into_check(
        &id,
        format!(
            "{} and {} match what was extracted from {}",
            layout::KERNEL,
            layout::INITRAMFS,
            s.talos_image()
        ),
    );
    with_fix(check, "run `cozyboot up` to extract the assets again")
}

fn bootloader(s: &Settings, state: &State, b: Bootloader) -> Check {
    let id = format!("assets.bootloader.{}", bootloader_key(b));
    let name = s.bootloaders.for_bootloader(b);
    let path = s.assets_dir().join(name);
    let recorded = match b {
        Bootloader::Arm64Efi => state.arm64_bootloader.as_ref().map(|r| &r.file),
        Bootloader::X86_64Efi | Bootloader::Bios => state
            .x86_bootloaders
            .as_ref()
            .and_then(|r| r.files.iter().find(|f| f.name == name)),
    };
    let mut f = Findings::default();
    if file(&path, recorded, true, &mut f) {
        machine(&path, b, &mut f);
    }
    if recorded.is_none() {
        f.note("no record of `cozyboot up` installing this file");
    }
    let check = f.into_check(&id, format!("{name} is a readable {} bootloader", b.arch()));
    with_fix(check, &format!("run `cozyboot up` to install it again (for arm64 it comes from --ipxe-arm64, the host's ipxe package, or --ipxe-arm64-url); {name} must be world-readable"))
}

/// Checks one file; returns whether it exists and is worth looking into.
fn file(path: &Path, recorded: Option<&FileRecord>, tftp: bool, f: &mut Findings) -> bool {
    let meta = match fs::metadata(path) {
        Ok(m) if m.is_file() => m,
        Ok(_) => {
            f.fail(format!("{} is not a regular file", path.display()));
            return false;
        }
        Err(e) => {
            f.fail(format!("{} is missing ({e})", path.display()));
            return false;
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    f.note(format!("{}: {} bytes, mode {mode:04o}", path.display(), meta.len()));
    if meta.len() == 0 {
        f.fail(format!("{} is empty", path.display()));
    }
    if mode & 0o004 == 0 && tftp {
        f.fail(format!(
            "{} is not world-readable (mode {mode:04o}): dnsmasq's TFTP server refuses it",
            path.display()
        ));
    }
    if let Some(r) = recorded {
        compare(path, meta.len(), r, f);
    }
    true
}

/// Size first (free), then the digest (reads the file once).
fn compare(path: &Path, size: u64, r: &FileRecord, f: &mut Findings) {
    if size != r.size {
        return f.fail(format!(
            "{} has {size} bytes, but {} were recorded (truncated or replaced)",
            path.display(),
            r.size
        ));
    }
    match sha256(path) {
        Ok(digest) if digest == r.sha256 => f.note(format!("sha256 {} as recorded", short(&digest))),
        Ok(digest) => f.fail(format!(
            "{} has sha256 {}, but {} was recorded (modified since `cozyboot up`)",
            path.display(),
            short(&digest),
            short(&r.sha256)
        )),
        Err(e) => f.fail(format!("reading {}: {e}", path.display())),
    }
}

/// The EFI binaries must be built for the CPU of the clients they are handed to;
/// `undionly.kpxe` is not a PE file at all.
fn machine(path: &Path, b: Bootloader, f: &mut Findings) {
    let wanted = match b {
        Bootloader::Arm64Efi => PeMachine::Arm64,
        Bootloader::X86_64Efi => PeMachine::X86_64,
        Bootloader::Bios => {
            if pe::machine_of_file(path).is_ok() {
                f.fail(format!(
                    "{} is an EFI binary, but BIOS clients need undionly.kpxe",
                    path.display()
                ));
            }
            return;
        }
    };
    match pe::machine_of_file(path) {
        Ok(m) if m == wanted => f.note(format!("PE machine {m}")),
        Ok(m) => f.fail(format!(
            "{} is an EFI binary for {m}, but it is served to {} clients, whose firmware cannot run it",
            path.display(),
            b.arch()
        )),
        Err(e) => f.fail(format!("{}: {e}", path.display())),
    }
}

fn sha256(path: &Path) -> io::Result<String> {
    let mut hasher = Sha256::new();
    io::copy(&mut fs::File::open(path)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

fn with_fix(check: Check, fix: &str) -> Check {
    match check.status {
        super::Status::Pass => check,
        _ => check.fix(fix),
    }
}

fn short(digest: &str) -> &str {
    let d = digest.trim_start_matches("sha256:");
    &d[..d.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Status;

    fn pe(machine: u16) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[0..2].copy_from_slice(b"MZ");
        b[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        b[0x80..0x84].copy_from_slice(b"PE\0\0");
        b[0x84..0x86].copy_from_slice(&machine.to_le_bytes());
        b
    }

    fn record(bytes: &[u8]) -> FileRecord {
        FileRecord {
            name: "f".into(),
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
            source: None,
        }
    }

    fn check(path: &Path, r: Option<&FileRecord>, b: Bootloader) -> Check {
        let mut f = Findings::default();
        if file(path, r, true, &mut f) {
            machine(path, b, &mut f);
        }
        f.into_check("t", "ok")
    }

    #[test]
    fn an_x86_binary_served_to_arm64_fails() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bootaa64.efi");
        fs::write(&p, pe(0x8664)).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let c = check(&p, None, Bootloader::Arm64Efi);
        assert_eq!(c.status, Status::Fail);
        assert!(c.finding.contains("EFI binary for x86_64"), "{}", c.finding);
        fs::write(&p, pe(0xAA64)).unwrap();
        assert_eq!(check(&p, None, Bootloader::Arm64Efi).status, Status::Pass);
    }

    #[test]
    fn unreadable_truncated_and_modified_files_fail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bootaa64.efi");
        let good = pe(0xAA64);
        fs::write(&p, &good).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(check(&p, None, Bootloader::Arm64Efi).finding.contains("world-readable"));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            check(&p, Some(&record(&good)), Bootloader::Arm64Efi).status,
            Status::Pass
        );
        fs::write(&p, &good[..300]).unwrap();
        assert!(check(&p, Some(&record(&good)), Bootloader::Arm64Efi)
            .finding
            .contains("truncated"));
        let mut changed = good.clone();
        changed[400] = 1;
        fs::write(&p, &changed).unwrap();
        assert!(check(&p, Some(&record(&good)), Bootloader::Arm64Efi)
            .finding
            .contains("modified"));
    }

    #[test]
    fn bios_loader_must_not_be_an_efi_binary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("undionly.kpxe");
        fs::write(&p, [0xEBu8; 600]).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(check(&p, None, Bootloader::Bios).status, Status::Pass);
        fs::write(&p, pe(0x8664)).unwrap();
        assert_eq!(check(&p, None, Bootloader::Bios).status, Status::Fail);
    }

    #[test]
    fn bootloader_keys_are_stable() {
        assert_eq!(bootloader_key(Bootloader::Arm64Efi), "arm64-efi");
        assert_eq!(bootloader_key(Bootloader::X86_64Efi), "x86-64-efi");
        assert_eq!(bootloader_key(Bootloader::Bios), "bios");
    }
}
