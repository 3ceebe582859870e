//! The Raspberry Pi UEFI firmware (pftf/RPi4) in the TFTP root, for the Pi 4/CM4 EEPROM's
//! network boot: from `--rpi-uefi PATH|URL`, else cozyboot's cached copy of the pinned
//! release, else a download of it checked against its SHA-256. Whatever the source, the
//! release is checked (its shape, `armstub=RPI_EFI.fd`, not a release known to break network
//! boot) before anything is changed.

use super::undo::Undo;
use crate::apply::progress::Printer;
use crate::artifacts::rpi::{self, Bundle};
use crate::error::{ConfigError, Error};
use crate::plan::Arm64Source;
use crate::render::rpi_boards::{board_files, BoardFile};
use crate::settings::Settings;
use crate::store::state::{self, FileRecord, RpiFirmwareRecord, SourceKind};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The cached download of `url`, one file per URL.
pub fn cache_path(data_dir: &Path, url: &str) -> PathBuf {
    let key = hex::encode(&Sha256::digest(url.as_bytes())[..8]);
    state::cache_dir(data_dir).join(format!("rpi-uefi-{key}.zip"))
}

/// With the Pi EEPROM's netboot served: where the firmware comes from this run. A local
/// `--rpi-uefi` is read and checked now; URLs are fetched (and checked) by [`prefetch`].
pub(super) fn source(s: &Settings) -> Result<Option<Arm64Source>, Error> {
    if !s.serves_rpi() {
        return Ok(None);
    }
    if let Some(given) = &s.rpi_uefi {
        if !super::bootloaders::is_url(given) {
            board_files_of(s, &load_local(Path::new(given))?)?;
        }
        return Ok(Some(Arm64Source {
            kind: SourceKind::Explicit,
            source: given.clone(),
            cached: None,
        }));
    }
    let cache = cache_path(&s.data_dir, rpi::PINNED.url);
    let cached_bytes = std::fs::read(&cache)
        .ok()
        .filter(|b| hex::encode(Sha256::digest(b)) == rpi::PINNED.sha256);
    if let Some(bytes) = &cached_bytes {
        let bundle = Bundle::from_zip(bytes, rpi::PINNED.url).map_err(|m| settings_error(&m, rpi::PINNED.url))?;
        board_files_of(s, &bundle)?;
    }
    let cached = cached_bytes.map(|_| cache);
    Ok(Some(Arm64Source {
        kind: SourceKind::Download,
        source: rpi::PINNED.url.to_string(),
        cached,
    }))
}

/// A release zip or an unpacked directory given as `--rpi-uefi`.
fn load_local(path: &Path) -> Result<Bundle, Error> {
    let what = path.display().to_string();
    let bundle = if path.is_dir() {
        Bundle::from_dir(path)
    } else {
        match std::fs::read(path) {
            Ok(bytes) => Bundle::from_zip(&bytes, &what),
            Err(e) => Err(format!(
                "cannot read {what}: {e}\n  fix: give the path of RPi4_UEFI_Firmware_vX.YY.zip (https://github.com/pftf/RPi4/releases) or of the directory it was unpacked into"
            )),
        }
    };
    bundle.map_err(|m| settings_error(&m, &what))
}

/// Each board's `<serial>/` folder (`rpi-nodes` with settings) made from this release: every
/// file of it, with the board's settings in its own `RPI_EFI.fd`. Called on every source before
/// anything changes, so an FD whose store cannot take the settings stops `up` untouched.
fn board_files_of<'a>(s: &Settings, bundle: &'a Bundle) -> Result<Vec<BoardFile<'a>>, Error> {
    board_files(&bundle.files, &s.rpi_nodes, "rpi-nodes")
}

/// What the boards' folders are written from: the settings of every board that has some.
pub(super) fn boards_fingerprint(s: &Settings) -> String {
    let boards: Vec<_> = s.rpi_nodes.iter().filter(|n| !n.settings.is_empty()).collect();
    if boards.is_empty() {
        return String::new();
    }
    let json = serde_json::to_vec(&boards).expect("board settings serialize");
    hex::encode(&Sha256::digest(json)[..16])
}

/// A release that is not usable is a settings problem (exit 2): the fix is another source.
fn settings_error(message: &str, value: &str) -> Error {
    let (problem, fix) = message
        .split_once("\n  fix: ")
        .unwrap_or((message, "give another release with --rpi-uefi PATH|URL"));
    Error::config(ConfigError::new("rpi-uefi", problem, fix).value(value))
}

/// Downloads a release the plan installs from a URL before anything is changed, checks it
/// (against the pinned digest when it is the pinned release) and keeps it in the cache, from
/// which [`install`] takes it.
pub(super) async fn prefetch(s: &Settings, source: &Arm64Source, printer: &Printer) -> Result<(), Error> {
    let bytes = super::bootloaders::download_limited(&source.source, printer, rpi::MAX_ZIP)
        .await
        .map_err(|e| {
            let fix = if source.kind == SourceKind::Download {
                format!(
                    "download {} yourself (from a machine that can) and pass --rpi-uefi PATH, or pass --rpi-uefi URL of a mirror, or --rpi-netboot off if the Pis carry their own firmware",
                    source.source
                )
            } else {
                "check the URL, or download the zip yourself and pass its path".to_string()
            };
            Error::Failed(format!(
                "downloading the Raspberry Pi UEFI firmware from {}: {e}\n  nothing was changed\n  fix: {fix}",
                source.source
            ))
        })?;
    let pinned =
        (source.kind == SourceKind::Download && source.source == rpi::PINNED.url).then_some(rpi::PINNED.sha256);
    let bundle =
        Bundle::from_download(&bytes, &source.source, pinned).map_err(|m| settings_error(&m, &source.source))?;
    board_files_of(s, &bundle)?;
    let cache = cache_path(&s.data_dir, &source.source);
    fs_err::create_dir_all(state::cache_dir(&s.data_dir))?;
    super::bootloaders::write_atomically(&cache, &bytes)?;
    Ok(())
}

/// Writes every file of the release into the TFTP root (`<assets>/`), and each board's folder,
/// each saved for undo; files the previous install wrote and this one does not (a board
/// dropped from `rpi-nodes`, or one whose settings were removed) are taken away.
pub(super) fn install(
    s: &Settings,
    source: &Arm64Source,
    previous: Option<&RpiFirmwareRecord>,
    undo: &mut Undo,
) -> Result<RpiFirmwareRecord, Error> {
    let bundle = if super::bootloaders::is_url(&source.source) || source.cached.is_some() {
        let cache = source
            .cached
            .clone()
            .unwrap_or_else(|| cache_path(&s.data_dir, &source.source));
        let bytes = fs_err::read(&cache)?;
        Bundle::from_zip(&bytes, &source.source).map_err(|m| settings_error(&m, &source.source))?
    } else {
        load_local(Path::new(&source.source))?
    };
    let boards = board_files_of(s, &bundle)?;
    let root = s.assets_dir();
    let mut files = Vec::new();
    let all = bundle
        .files
        .iter()
        .map(|(name, content)| (name.as_str(), content.as_slice()))
        .chain(boards.iter().map(|b| (b.path.as_str(), b.content.as_ref())));
    for (name, content) in all {
        let dest = root.join(name);
        if let Some(dir) = dest.parent() {
            if !dir.exists() {
                fs_err::create_dir_all(dir)?;
                undo.created_tree(dir);
            }
        }
        undo.save_file(&dest)?;
        super::bootloaders::write_atomically(&dest, content)?;
        files.push(FileRecord {
            name: name.to_string(),
            size: content.len() as u64,
            sha256: hex::encode(Sha256::digest(content)),
            source: None,
        });
    }
    for old in previous.into_iter().flat_map(|r| &r.files) {
        if !files.iter().any(|f| f.name == old.name) {
            let path = root.join(&old.name);
            if path.is_file() {
                undo.save_file(&path)?;
                fs_err::remove_file(&path)?;
            }
        }
    }
    Ok(RpiFirmwareRecord {
        source: source.source.clone(),
        source_kind: source.kind,
        version: bundle.version.clone(),
        files,
        boards: boards_fingerprint(s),
    })
}

/// Whether every recorded file is still in the TFTP root with its size.
pub(super) fn present(record: Option<&RpiFirmwareRecord>, root: &Path) -> bool {
    record.is_some_and(|r| r.files.iter().all(|f| f.present_in(root)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_url_has_its_own_cache_file_in_the_state_dir() {
        let data = Path::new("/opt/matchbox");
        let a = cache_path(data, rpi::PINNED.url);
        assert!(a.starts_with("/opt/matchbox/.cozyboot/cache"), "{}", a.display());
        assert_ne!(a, cache_path(data, "http://mirror.lan/RPi4_UEFI_Firmware_v1.41.zip"));
    }

    #[test]
    fn a_bad_release_is_a_settings_error_with_the_fix() {
        let e = settings_error(
            "x.zip is not the Pi UEFI firmware: it has no start4.elf\n  fix: give the zip",
            "x.zip",
        );
        assert_eq!(e.exit_code(), crate::error::Error::Config(vec![]).exit_code());
        let text = e.to_string();
        assert!(
            text.contains("rpi-uefi") && text.contains("give the zip") && text.contains("no start4.elf"),
            "{text}"
        );
    }

    /// A site whose Pi firmware comes from the unpacked release `firmware`, with `boards`
    /// (`rpi-nodes` entries as YAML would give them).
    fn site(data: &Path, firmware: &Path, boards: serde_json::Value) -> Settings {
        crate::settings::for_tests(serde_json::json!({
            "data-dir": data.display().to_string(),
            "arch": ["arm64"],
            "iface": "eth0",
            "rpi-uefi": firmware.display().to_string(),
            "rpi-nodes": boards,
        }))
    }

    #[test]
    fn a_board_with_settings_gets_its_own_folder_and_loses_it_when_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let release = tmp.path().join("RPi4_UEFI_Firmware");
        for (name, content) in rpi::stand_in::files("v1.41") {
            // The FD of the real release's layout, so the board's store can be written.
            let content = if name == rpi::UEFI_FD {
                crate::artifacts::rpi_uefi_vars::tests::release_fd()
            } else {
                content
            };
            let path = release.join(&name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        let data = tmp.path().join("data");
        let board = serde_json::json!([{"serial": "1A2B3C4D", "settings": {"ram-above-3gb": "true"}}]);
        let s = site(&data, &release, board);
        let from = source(&s).unwrap().expect("the Pi netboot is served");
        let mut undo = Undo::new(tmp.path().join("undo")).unwrap();
        let first = install(&s, &from, None, &mut undo).unwrap();
        undo.commit();

        let root = s.assets_dir();
        let own = std::fs::read(root.join("1a2b3c4d").join(rpi::UEFI_FD)).unwrap();
        let released = std::fs::read(root.join(rpi::UEFI_FD)).unwrap();
        assert_eq!(own.len(), released.len());
        assert_ne!(own, released, "the board's FD carries its settings");
        for name in [rpi::START_FILE, rpi::CONFIG_TXT, "overlays/upstream-pi4.dtbo"] {
            assert_eq!(
                std::fs::read(root.join("1a2b3c4d").join(name)).unwrap(),
                std::fs::read(root.join(name)).unwrap(),
                "{name}: the EEPROM reads the whole folder once <serial>/start4.elf exists"
            );
        }
        assert!(!first.boards.is_empty());
        assert!(first.files.iter().any(|f| f.name == "1a2b3c4d/RPI_EFI.fd"));

        // The same release, the board's settings gone: its folder's files go, the root stays.
        let s = site(&data, &release, serde_json::json!([]));
        let mut undo = Undo::new(tmp.path().join("undo")).unwrap();
        let second = install(&s, &from, Some(&first), &mut undo).unwrap();
        undo.commit();
        assert!(second.boards.is_empty());
        assert!(!root.join("1a2b3c4d").join(rpi::START_FILE).exists());
        assert!(!root.join("1a2b3c4d").join(rpi::UEFI_FD).exists());
        assert_eq!(std::fs::read(root.join(rpi::UEFI_FD)).unwrap(), released);
    }
}
