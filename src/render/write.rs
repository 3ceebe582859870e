//! Laying the rendered matchbox tree down on disk, atomically and idempotently.

use super::File;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Records which files cozyboot wrote, so files it no longer renders can be removed
/// without touching anything the user put there.
pub const MANIFEST: &str = ".cozyboot-rendered.json";

/// The layout matchbox expects under its data path.
const DIRS: &[&str] = &["profiles", "groups", "generic", "assets"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Written {
    pub path: String,
    pub sha256: String,
    pub bytes: usize,
    /// False when the file already held exactly this content and was left alone.
    pub changed: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    files: Vec<String>,
}

/// Writes `files` under `dir`; each file is replaced by rename, so matchbox never reads a
/// half-written profile. Unchanged files are not rewritten.
pub fn write_tree(dir: &Path, files: &[File]) -> std::io::Result<(Vec<Written>, Vec<String>)> {
    for d in DIRS {
        fs_err::create_dir_all(dir.join(d))?;
    }
    let mut written = Vec::new();
    for f in files {
        let target = dir.join(&f.path);
        let changed = fs::read(&target).map(|old| old != f.content).unwrap_or(true);
        if changed {
            atomic_write(&target, &f.content)?;
        }
        written.push(Written {
            path: f.path.clone(),
            sha256: hex::encode(Sha256::digest(&f.content)),
            bytes: f.content.len(),
            changed,
        });
    }

    let previous: Manifest = fs::read(dir.join(MANIFEST))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut removed = Vec::new();
    for old in previous.files {
        let still_rendered = files.iter().any(|f| f.path == old);
        // Only names cozyboot itself could have written: never follow `..` out of the dir.
        let safe = DIRS.iter().any(|d| old.starts_with(&format!("{d}/"))) && !old.contains("..");
        if !still_rendered && safe && fs::remove_file(dir.join(&old)).is_ok() {
            removed.push(old);
        }
    }
    let manifest = Manifest {
        files: files.iter().map(|f| f.path.clone()).collect(),
    };
    let mut bytes = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    atomic_write(&dir.join(MANIFEST), &bytes)?;
    Ok((written, removed))
}

/// Paths (relative to `dir`) that the last render recorded writing.
pub fn rendered_paths(dir: &Path) -> Vec<String> {
    fs::read(dir.join(MANIFEST))
        .ok()
        .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
        .map(|m| m.files)
        .unwrap_or_default()
}

/// Write to a temporary file in the same directory, fsync, then rename over the target.
pub fn atomic_write(target: &Path, content: &[u8]) -> std::io::Result<()> {
    let parent = target.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(parent)?;
    tmp.write_all(content)?;
    tmp.as_file().sync_all()?;
    // matchbox may run as another user; these files are not secret (keys are written elsewhere).
    tmp.as_file().set_permissions(fs::Permissions::from_mode(0o644))?;
    tmp.persist(target).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file operation that fails says which file: here `groups` is a file where the tree
    /// needs a directory.
    #[test]
    fn a_failed_write_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("groups"), b"not a directory").unwrap();
        let err = write_tree(dir.path(), &[]).unwrap_err().to_string();
        let path = dir.path().join("groups").display().to_string();
        assert!(err.contains(&path), "{err}");
    }
}
