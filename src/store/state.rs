//! What cozyboot records in the data dir about what it wrote there, so a re-run can skip work
//! whose inputs have not changed, and `status` and `validate` can compare against it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// cozyboot's own folder inside the data dir: state, lock, staging areas.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join(".cozyboot")
}

/// Downloads cozyboot keeps so that a later `up` need not fetch them again.
///
/// Inside the data dir rather than a per-user cache (`~/.cache`): `up` usually runs as root
/// (or with sudo, where `$HOME` varies), the data dir is already known to be writable by
/// whoever runs `up`, a second boot site on the same host stays independent of the first, and
/// `down --purge` removes the cache with everything else cozyboot wrote.
pub fn cache_dir(data_dir: &Path) -> PathBuf {
    dir(data_dir).join("cache")
}

/// The state file itself (`up` keeps a copy of it to put back when a run is rolled back).
pub fn file(data_dir: &Path) -> PathBuf {
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
    /// The arm64 iPXE binary, and where it came from.
    #[serde(default)]
    pub arm64_bootloader: Option<Arm64Record>,
    /// The Raspberry Pi UEFI firmware in the TFTP root, and where it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpi_firmware: Option<RpiFirmwareRecord>,
    /// The matchbox version of the image last checked, so it is asked once per image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matchbox_version: Option<ImageVersion>,
}

/// The Raspberry Pi UEFI firmware's files in the TFTP root (paths relative to it), with the
/// digests `validate` compares against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpiFirmwareRecord {
    /// `--rpi-uefi` as given, or the pinned release's URL.
    pub source: String,
    pub source_kind: SourceKind,
    /// What the firmware image says it is (`v1.41`), when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The root's files, then each board's `<serial>/` folder (`rpi-nodes` with settings).
    pub files: Vec<FileRecord>,
    /// The fingerprint of the boards' settings the folders were written with (empty: none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub boards: String,
}

/// What `<image> -version` said, for one image id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageVersion {
    pub image: String,
    pub image_id: String,
    pub version: String,
}

/// The arm64 iPXE binary in the TFTP root. Written flat (`name`, `size`, `sha256`, `source`,
/// `source_kind`), so state files from before `source_kind` existed still load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arm64Record {
    #[serde(flatten)]
    pub file: FileRecord,
    /// How the source was chosen; `None` in state written before this was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_kind: Option<SourceKind>,
}

/// Where an arm64 iPXE binary came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// `--ipxe-arm64 PATH|URL` (or its environment variable / config key).
    Explicit,
    /// The host's iPXE package (`/usr/lib/ipxe/ipxe-arm64.efi`, Debian trixie+ / Ubuntu).
    HostPackage,
    /// Downloaded from `ipxe-arm64-url` (possibly installed from cozyboot's cached copy).
    Download,
    /// A file someone placed in the assets dir by hand; cozyboot only checked and recorded it.
    Placed,
}

impl SourceKind {
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Explicit => "explicit",
            SourceKind::HostPackage => "host-package",
            SourceKind::Download => "download",
            SourceKind::Placed => "placed",
        }
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
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
    /// Which of the layouts in [`crate::artifacts::layout`] the image has (`assets`, `installer-uki`, ...).
    #[serde(default)]
    pub layout: String,
    /// The image's checksum file every served file was verified against, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_by: Option<String>,
    /// The UKI the files were taken out of, for an installer that holds only a UKI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uki: Option<UkiRecord>,
    pub files: Vec<FileRecord>,
    /// Bytes read from the image to get the files (the rest of the image is never read).
    #[serde(default)]
    pub archive_bytes: u64,
    /// Seconds since the Unix epoch.
    pub extracted_at: u64,
}

impl AssetRecord {
    /// Where the served files came from and whether they were verified, in one phrase:
    /// `installer-uki layout: taken out of /usr/install/arm64/vmlinuz.efi (.linux, .initrd)`.
    pub fn origin(&self) -> String {
        let layout = if self.layout.is_empty() {
            "unrecorded"
        } else {
            &self.layout
        };
        let from = match &self.uki {
            Some(u) => format!("taken out of {} (.linux, .initrd sections)", u.path),
            None => format!("from {}", self.source),
        };
        let verified = match &self.verified_by {
            Some(sums) => format!(", verified against {sums}"),
            None => ", not verified (the image carries no checksum file for them)".to_string(),
        };
        format!("{layout} layout: {from}{verified}")
    }
}

/// A UKI that served files were taken out of (it is not kept on disk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UkiRecord {
    /// Its path in the image.
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// The command line it embeds; the one matchbox's profile passes replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded_cmdline: Option<String>,
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
    fs_err::create_dir_all(dir(data_dir))?;
    let mut bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    crate::render::atomic_write(&file(data_dir), &bytes)
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_written_before_source_kinds_still_loads() {
        let old = r#"{"assets": {}, "arm64_bootloader": {"name": "bootaa64.efi", "size": 3, "sha256": "ab", "source": "/usr/lib/ipxe/ipxe-arm64.efi"}}"#;
        let st: State = serde_json::from_str(old).unwrap();
        let rec = st.arm64_bootloader.unwrap();
        assert_eq!(rec.file.name, "bootaa64.efi");
        assert_eq!(rec.file.source.as_deref(), Some("/usr/lib/ipxe/ipxe-arm64.efi"));
        assert_eq!(rec.source_kind, None);
    }

    #[test]
    fn the_source_kind_round_trips_flat() {
        let rec = Arm64Record {
            file: FileRecord {
                name: "bootaa64.efi".into(),
                size: 3,
                sha256: "ab".into(),
                source: Some("https://boot.ipxe.org/arm64-efi/ipxe.efi".into()),
            },
            source_kind: Some(SourceKind::Download),
        };
        let json = serde_json::to_value(&rec).unwrap();
        assert_eq!(json["source_kind"], "download");
        assert_eq!(json["sha256"], "ab");
        assert_eq!(serde_json::from_value::<Arm64Record>(json).unwrap(), rec);
    }
}
