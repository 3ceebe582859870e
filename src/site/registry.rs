//! The host's list of boot sites: one small file per site naming its data dir, so that a
//! command given no settings can find the site(s) without the Docker Engine, and after
//! `down` has removed the containers (their labels name the data dir too, but only while
//! they exist and only when the engine answers).
//!
//! Where: `COZYBOOT_SITES_DIR` when set (tests point it at a temporary dir); else, for root,
//! `/var/lib/cozyboot/sites` (`up` usually runs as root, and `sudo` keeps that, whatever
//! `$HOME` is); else `$XDG_STATE_HOME/cozyboot/sites` or `~/.local/state/cozyboot/sites`.
//! One file per site, not one shared list: two `up`s of different sites at once cannot
//! lose each other's entry. The record itself stays in the data dir; an entry is only a
//! pointer, and one whose record is gone is ignored.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const ENV: &str = "COZYBOOT_SITES_DIR";
pub const ROOT_DIR: &str = "/var/lib/cozyboot/sites";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// `None` when no place is known (no `$HOME` for a non-root user): nothing is recorded.
    dir: Option<PathBuf>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    data_dir: PathBuf,
}

impl Registry {
    pub fn at(dir: impl Into<PathBuf>) -> Registry {
        Registry { dir: Some(dir.into()) }
    }

    /// The registry of whoever runs cozyboot (see the module comment).
    pub fn locate(env: &dyn Fn(&str) -> Option<String>, is_root: bool) -> Registry {
        let dir = match env(ENV) {
            Some(dir) => Some(PathBuf::from(dir)),
            None if is_root => Some(PathBuf::from(ROOT_DIR)),
            None => env("XDG_STATE_HOME")
                .map(PathBuf::from)
                .or_else(|| env("HOME").map(|h| Path::new(&h).join(".local/state")))
                .map(|state| state.join("cozyboot/sites")),
        };
        Registry { dir }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn entry(&self, data_dir: &Path) -> Option<PathBuf> {
        let hash = hex::encode(Sha256::digest(data_dir.as_os_str().as_encoded_bytes()));
        self.dir.as_ref().map(|d| d.join(format!("{}.json", &hash[..16])))
    }

    /// Adds `data_dir` (absolute); adding it again changes nothing.
    pub fn register(&self, data_dir: &Path) -> std::io::Result<()> {
        let (Some(dir), Some(entry)) = (&self.dir, self.entry(data_dir)) else {
            return Ok(());
        };
        fs_err::create_dir_all(dir)?;
        let mut bytes = serde_json::to_vec_pretty(&Entry {
            data_dir: data_dir.to_path_buf(),
        })
        .map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        crate::render::atomic_write(&entry, &bytes)
    }

    /// Removes `data_dir`; true if it was listed.
    pub fn forget(&self, data_dir: &Path) -> std::io::Result<bool> {
        let Some(entry) = self.entry(data_dir) else {
            return Ok(false);
        };
        match std::fs::remove_file(entry) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every data dir listed, sorted; unreadable entries are skipped (they name nothing).
    pub fn data_dirs(&self) -> Vec<PathBuf> {
        let Some(dir) = &self.dir else { return Vec::new() };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut dirs: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|bytes| serde_json::from_slice::<Entry>(&bytes).ok())
            .map(|e| e.data_dir)
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_is_idempotent_and_forget_removes() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = Registry::at(tmp.path().join("sites"));
        assert!(
            reg.data_dirs().is_empty(),
            "a registry that does not exist lists nothing"
        );
        reg.register(Path::new("/srv/b")).unwrap();
        reg.register(Path::new("/srv/a")).unwrap();
        reg.register(Path::new("/srv/a")).unwrap();
        assert_eq!(reg.data_dirs(), vec![PathBuf::from("/srv/a"), PathBuf::from("/srv/b")]);
        assert!(reg.forget(Path::new("/srv/a")).unwrap());
        assert!(!reg.forget(Path::new("/srv/a")).unwrap());
        assert_eq!(reg.data_dirs(), vec![PathBuf::from("/srv/b")]);
    }

    #[test]
    fn the_override_wins_then_root_then_the_user_state_dir() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let dir = |r: Registry| r.dir().map(Path::to_path_buf);
        let all = env(&[(ENV, "/tmp/s"), ("HOME", "/home/u"), ("XDG_STATE_HOME", "/x")]);
        assert_eq!(dir(Registry::locate(&all, true)), Some("/tmp/s".into()));
        let user = env(&[("HOME", "/home/u"), ("XDG_STATE_HOME", "/x")]);
        assert_eq!(dir(Registry::locate(&user, true)), Some(ROOT_DIR.into()));
        assert_eq!(dir(Registry::locate(&user, false)), Some("/x/cozyboot/sites".into()));
        let home = env(&[("HOME", "/home/u")]);
        assert_eq!(
            dir(Registry::locate(&home, false)),
            Some("/home/u/.local/state/cozyboot/sites".into())
        );
        assert_eq!(dir(Registry::locate(&env(&[]), false)), None);
    }
}
