//! Talos kernel and initramfs: streamed out of the image into staging, checked, swapped in.

use super::undo::Undo;
use super::Context;
use crate::artifacts::arch::Arch;
use crate::artifacts::layout::{self, Kind};
use crate::artifacts::pe::PeMachine;
use crate::artifacts::uki;
use crate::engine::extract::Limits;
use crate::engine::ContainerEngine;
use crate::error::Error;
use crate::settings::Settings;
use crate::store::state::{self, AssetRecord, FileRecord, UkiRecord};
use std::fs;
use std::path::{Path, PathBuf};

/// Copies the served files of the first layout the image has (see [`crate::artifacts::layout`]) into a
/// staging dir beside the target, checks them, then swaps them in; the previous assets stay
/// in place until the new ones are complete and verified.
pub(super) async fn extract_assets<E: ContainerEngine>(
    cx: &Context<'_, E>,
    arch: Arch,
    image: &str,
    image_id: &str,
    undo: &mut Undo,
) -> Result<AssetRecord, Error> {
    let talos_dir = cx.s.assets_dir().join("talos");
    fs_err::create_dir_all(&talos_dir)?;
    let staging = staging_dir(cx.s, &format!("assets-{arch}"))?;
    let outcome = stage(cx, arch, image, &staging).await;
    let staged = match outcome {
        Ok(staged) => staged,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(Error::Failed(format!(
                "{e}\n  nothing was changed: the previous assets are in place"
            )));
        }
    };
    let target = talos_dir.join(arch.asset_dir());
    match swap_in(&staging, &target)? {
        Some(previous) => undo.keep_tree(&target, &previous)?,
        None => undo.created_tree(&target),
    }
    Ok(AssetRecord {
        image: image.to_string(),
        image_id: image_id.to_string(),
        source: staged.kind.dir(arch),
        layout: staged.kind.name().to_string(),
        verified_by: staged.verified_by,
        uki: staged.uki,
        files: staged.files,
        archive_bytes: staged.archive_bytes,
        extracted_at: state::now(),
    })
}

/// The files of one layout, ready in staging.
struct Staged {
    kind: Kind,
    files: Vec<FileRecord>,
    verified_by: Option<String>,
    uki: Option<UkiRecord>,
    archive_bytes: u64,
}

/// Copies, splits (UKI) and verifies (checksum file) into `staging`. Errors name the image
/// and the file; the caller discards `staging` on error.
async fn stage<E: ContainerEngine>(
    cx: &Context<'_, E>,
    arch: Arch,
    image: &str,
    staging: &Path,
) -> Result<Staged, String> {
    let exported = cx
        .engine
        .export_files(image, &layout::file_sets(arch), staging, &Limits::default())
        .await
        .map_err(|e| {
            let tried = Kind::ALL
                .iter()
                .map(|k| format!("{}/{{{}}}", k.dir(arch), k.required().join(",")))
                .collect::<Vec<_>>()
                .join(", ");
            format!("{e}\n  fix: use a variant image that holds the {arch} kernel and initramfs in one of: {tried}")
        })?;
    let kind = Kind::ALL[exported.set];
    let dir = kind.dir(arch);
    let report = exported.report;
    for name in kind.required() {
        if report.file(name).is_none_or(|f| f.size == 0) {
            return Err(format!("{image}: {dir}/{name} is empty or not a regular file"));
        }
    }
    let mut staged = Staged {
        kind,
        files: Vec::new(),
        verified_by: None,
        uki: None,
        archive_bytes: report.archive_bytes,
    };
    if kind == Kind::InstallerUki {
        let uki_path = staging.join(layout::UKI);
        let parts = uki::split(
            &uki_path,
            &staging.join(layout::KERNEL),
            &staging.join(layout::INITRAMFS),
        )
        .map_err(|e| format!("{image}: {e}"))?;
        let wanted = match arch {
            Arch::Arm64 => PeMachine::Arm64,
            Arch::Amd64 => PeMachine::X86_64,
        };
        if parts.layout.machine != wanted {
            return Err(format!(
                "{image}: {dir}/{} is built for {}, but it would be served to {arch} clients\n  fix: check --tag and the image's platform",
                layout::UKI,
                parts.layout.machine
            ));
        }
        let uki_file = report.file(layout::UKI).expect("checked above");
        staged.uki = Some(UkiRecord {
            path: format!("{dir}/{}", layout::UKI),
            size: uki_file.size,
            sha256: uki_file.sha256.clone(),
            embedded_cmdline: parts.layout.cmdline.clone(),
        });
        for (written, section) in [(&parts.kernel, uki::LINUX), (&parts.initrd, uki::INITRD)] {
            staged.files.push(FileRecord {
                name: written
                    .path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                size: written.size,
                sha256: written.sha256.clone(),
                source: Some(format!("{dir}/{} section {section}", layout::UKI)),
            });
        }
        fs::remove_file(&uki_path).map_err(|e| format!("removing {}: {e}", uki_path.display()))?;
        return Ok(staged);
    }
    for name in kind.required() {
        let f = report.file(name).expect("checked above");
        staged.files.push(FileRecord {
            name: name.to_string(),
            size: f.size,
            sha256: f.sha256.clone(),
            source: None,
        });
    }
    if let Some((sums_path, prefix)) = kind.checksums(arch) {
        let local = staging.join(layout::CHECKSUMS);
        if local.exists() {
            staged.verified_by = verify(&local, &sums_path, prefix, &staged.files, image)?;
            fs::remove_file(&local).map_err(|e| format!("removing {}: {e}", local.display()))?;
        }
    }
    Ok(staged)
}

/// Checks the served files against the image's own checksum file. A listed file whose
/// digest differs fails; `Some(path)` when every served file was listed and matched.
fn verify(
    local: &Path,
    in_image: &str,
    prefix: &str,
    files: &[FileRecord],
    image: &str,
) -> Result<Option<String>, String> {
    let text = fs::read_to_string(local).map_err(|e| format!("{image}: reading {in_image}: {e}"))?;
    let sums = layout::parse_checksums(&text);
    let mut all_listed = true;
    for f in files {
        match sums.get(&format!("{prefix}{}", f.name)) {
            Some(expected) if *expected != f.sha256 => {
                return Err(format!(
                    "{image}: {prefix}{} does not match the image's own {in_image}\n  expected sha256 {expected}\n  got      sha256 {}\n  fix: the image is corrupt or was changed after its checksums were written; pull it again or rebuild it",
                    f.name, f.sha256
                ))
            }
            Some(_) => {}
            None => all_listed = false,
        }
    }
    Ok(all_listed.then(|| in_image.to_string()))
}

/// A fresh, empty staging path under cozyboot's own folder in the data dir (same filesystem
/// as the target, so the swap is a rename). Leftovers of a killed run are removed first.
pub(super) fn staging_dir(s: &Settings, name: &str) -> Result<PathBuf, Error> {
    let dir = state::dir(&s.data_dir).join(format!("staging-{name}"));
    if dir.exists() {
        fs_err::remove_dir_all(&dir)?;
    }
    Ok(dir)
}

/// Exchanges `new` and `target` in one step (renameat2 RENAME_EXCHANGE), so readers see the
/// old tree or the new one, never a missing one. Returns where the old tree is now (`new`),
/// if there was one: it is kept until the run succeeded.
fn swap_in(new: &Path, target: &Path) -> Result<Option<PathBuf>, Error> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    if !target.exists() {
        fs_err::rename(new, target)?;
        return Ok(None);
    }
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|e| Error::Failed(e.to_string()));
    let (a, b) = (c(new)?, c(target)?);
    // SAFETY: both are valid NUL-terminated paths; AT_FDCWD resolves them like rename(2).
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc != 0 {
        return Err(Error::Failed(format!(
            "swapping {} into place: {}",
            target.display(),
            std::io::Error::last_os_error()
        )));
    }
    // `new` now holds the previous tree.
    Ok(Some(new.to_path_buf()))
}
