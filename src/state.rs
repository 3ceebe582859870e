//! What cozyboot records in the data dir about what it wrote there, so a re-run can skip work
//! whose inputs have not changed, and `status` and `validate` can compare against it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// cozyboot's own folder inside the data dir: state, lock, staging areas.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join(".cozyboot")
}

fn file(data_dir: &Path) -> PathBuf {
    dir(data_dir).join("state.json")
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Talos kernel and initramfs per architecture (`arm64`, `amd64`).
    #[serde(default)]
    pub assets: BTreeMap<String, AssetRecord>,
    /// `undionly.kpxe` and `ipxe.efi`, copied out of the dnsmasq image.
    #[serde(default)]
    pub x86_bootloaders: Option<CopiedFrom>,
    /// The arm64 iPXE binary.
    #[serde(default)]
    pub arm64_bootloader: Option<FileRecord>,
}

/// Files copied out of an image, and which image exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopiedFrom {
    pub image: String,
    pub image_id: String,
    pub files: Vec<FileRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetRecord {
    pub image: String,
    pub image_id: String,
    /// The directory in the image the files came from.
    pub source: String,
    pub files: Vec<FileRecord>,
    /// Seconds since the Unix epoch.
    pub extracted_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Relative to the directory the record describes.
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// Where it came from, for files not taken from an image (a path or URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl FileRecord {
    /// True when the file on disk still has the recorded size (cheap; hashes are for validate).
    pub fn present_in(&self, dir: &Path) -> bool {
        std::fs::metadata(dir.join(&self.name)).is_ok_and(|m| m.is_file() && m.len() == self.size)
    }
}

/// A missing or unreadable state file means "nothing recorded": the next `up` redoes the work.
pub fn load(data_dir: &Path) -> State {
    std::fs::read(file(data_dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub fn save(data_dir: &Path, state: &State) -> std::io::Result<()> {
    std::fs::create_dir_all(dir(data_dir))?;
    let mut bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    crate::render::atomic_write(&file(data_dir), &bytes)
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
