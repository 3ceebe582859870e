//! The extractor on a filesystem that fills up: the error a user sees is the write's own
//! (no space left, naming the file), not the reader noticing that the writer thread stopped.
//! Needs root to mount a small tmpfs (a missing prerequisite fails under CI).

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use cozyboot::engine::extract::{extract, ExtractError, Limits};

/// A 1 MiB tmpfs at `path`, unmounted on drop.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(path: &Path) -> Option<SmallFs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return support::guard::skip(None, "mounting a tmpfs needs root");
        }
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(path)
            .status()
            .expect("mount runs");
        assert!(status.success(), "mount -t tmpfs failed: {status}");
        Some(SmallFs(path.to_owned()))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn archive_with(name: &str, size: usize) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(size as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    builder.append_data(&mut header, name, &data[..]).unwrap();
    builder.into_inner().unwrap()
}

#[test]
fn a_full_disk_names_the_file_and_says_no_space_is_left() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(_fs) = SmallFs::mount(tmp.path()) else {
        return;
    };
    let dest = tmp.path().join("staging");
    let tar = archive_with("initramfs.xz", 8 * 1024 * 1024);
    let err = extract(&tar[..], &dest, "", &Limits::default()).unwrap_err();
    match &err {
        ExtractError::Write { path, source } => {
            assert_eq!(path, &dest.join("initramfs.xz"), "{err}");
            assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{err}");
        }
        other => panic!("expected the write's own error, got: {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("initramfs.xz") && message.contains("No space left"),
        "{message}"
    );
}
