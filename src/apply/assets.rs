//! Talos kernel and initramfs: streamed out of the image into staging, checked, swapped in.

use super::Context;
use crate::arch::Arch;
use crate::engine::extract::Limits;
use crate::error::Error;
use crate::render::talos;
use crate::settings::Settings;
use crate::state::{self, AssetRecord, FileRecord};
use std::fs;
use std::path::{Path, PathBuf};

/// Extracts into a staging dir beside the target, checks it, then swaps it in; the previous
/// assets stay in place until the new ones are complete.
pub(super) async fn extract_assets(
    cx: &Context<'_>,
    arch: Arch,
    image: &str,
    image_id: &str,
) -> Result<AssetRecord, Error> {
    let talos_dir = cx.s.assets_dir().join("talos");
    fs::create_dir_all(&talos_dir)?;
    let staging = staging_dir(cx.s, &format!("assets-{arch}"))?;
    let candidates = [format!("/assets/talos/{arch}"), format!("/usr/install/{arch}")];
    let candidates: Vec<&str> = candidates.iter().map(String::as_str).collect();
    let report = match cx
        .engine
        .export_dir(image, &candidates, &staging, &Limits::default())
        .await
    {
        Ok(r) => r,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(Error::Failed(format!(
                "{e}\n  nothing was changed: the previous assets are in place\n  fix: use a variant image that holds /assets/talos/{arch}/ or /usr/install/{arch}/ with {} and {}",
                talos::KERNEL,
                talos::INITRAMFS
            )));
        }
    };
    for wanted in [talos::KERNEL, talos::INITRAMFS] {
        let ok = report.file(wanted).is_some_and(|f| f.size > 0);
        if !ok {
            let _ = fs::remove_dir_all(&staging);
            return Err(Error::Failed(format!(
                "{image} has no non-empty {wanted} in {}\n  nothing was changed: the previous assets are in place",
                report.source_path.as_deref().unwrap_or("?")
            )));
        }
    }
    swap_in(&staging, &talos_dir.join(arch.asset_dir()))?;
    Ok(AssetRecord {
        image: image.to_string(),
        image_id: image_id.to_string(),
        source: report.source_path.clone().unwrap_or_default(),
        files: report
            .files
            .iter()
            .map(|f| FileRecord {
                name: f.path.display().to_string(),
                size: f.size,
                sha256: f.sha256.clone(),
                source: None,
            })
            .collect(),
        extracted_at: state::now(),
    })
}

/// A fresh, empty staging path under cozyboot's own folder in the data dir (same filesystem
/// as the target, so the swap is a rename). Leftovers of a killed run are removed first.
pub(super) fn staging_dir(s: &Settings, name: &str) -> Result<PathBuf, Error> {
    let dir = state::dir(&s.data_dir).join(format!("staging-{name}"));
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    Ok(dir)
}

/// Exchanges `new` and `target` in one step (renameat2 RENAME_EXCHANGE), so readers see the
/// old tree or the new one, never a missing one; then removes the old tree.
fn swap_in(new: &Path, target: &Path) -> Result<(), Error> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    if !target.exists() {
        fs::rename(new, target)?;
        return Ok(());
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
    fs::remove_dir_all(new)?;
    Ok(())
}
