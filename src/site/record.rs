//! `<data-dir>/.cozyboot/site.json`: what `up` was given, so later commands need nothing.
//!
//! What is recorded, and why this form:
//! - `settings`: the raw values some source gave `up` (flags, `COZYBOOT_*`, the config
//!   file), not the validated [`crate::settings::Settings`]. Every command resolves them
//!   again, so values derived from the host (the address and subnet of `iface`) follow the
//!   host instead of going stale, and a default that a newer cozyboot changes is not frozen
//!   at the old one. Paths are made absolute against the directory `up` ran in (a config
//!   file's are already relative to the file), so the record works from any directory. The
//!   data dir is always recorded, default or not: it is the site's identity.
//! - `sources`: where each of those values came from when `up` ran, so that
//!   `render --print-settings` can say `site (<file>), first from flag --iface`.
//! - `effective`: every setting as `up` ran it, as `render --print-settings` shows it. It
//!   is never resolved from: it is what `validate` compares the settings of the day against
//!   (`config.site-settings`) and what the list of sites shows.

// A ConfigError carries the file, problem and fix a user needs; it is built once, on the
// error path, so its size does not matter (as in `settings`).
#![allow(clippy::result_large_err)]

use crate::error::ConfigError;
use crate::settings::raw::key_name;
use crate::settings::{Raw, Resolved, SiteLayer, Source};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bumped only when a key is renamed or removed.
pub const SCHEMA: &str = "cozyboot.site/v1";

/// The site file of `data_dir`.
pub fn file(data_dir: &Path) -> PathBuf {
    crate::store::state::dir(data_dir).join("site.json")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub schema: String,
    /// Where the site was when it was recorded (absolute).
    pub data_dir: PathBuf,
    /// Seconds since the Unix epoch.
    pub recorded_at: u64,
    pub cozyboot_version: String,
    /// The config file `up` read, if any (for people; its values are in `settings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<PathBuf>,
    pub settings: Raw,
    #[serde(default)]
    pub sources: BTreeMap<String, Source>,
    #[serde(default)]
    pub effective: BTreeMap<String, String>,
}

impl Record {
    /// The record of the settings `resolved` (as `up` got them), run from `cwd`.
    pub fn of(resolved: &Resolved, cwd: &Path) -> Record {
        let s = &resolved.settings;
        let mut settings = resolved.raw.clone();
        settings.anchor_paths(cwd);
        settings.data_dir = Some(s.data_dir.clone());
        let given = settings.keys_given();
        let sources = resolved
            .origins
            .iter()
            .filter(|(key, _)| given.contains(key))
            .map(|(key, source)| (key.clone(), source.original().clone()))
            .collect();
        Record {
            schema: SCHEMA.to_string(),
            data_dir: s.data_dir.clone(),
            recorded_at: crate::store::state::now(),
            cozyboot_version: env!("CARGO_PKG_VERSION").to_string(),
            config_file: resolved
                .config_file
                .as_ref()
                .map(|p| std::path::absolute(p).unwrap_or(p.clone())),
            settings,
            sources,
            effective: s.describe().into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        }
    }

    /// The record as a layer of resolution, for the site found in `data_dir` (which is where
    /// it is now, should the directory have been moved since).
    pub fn layer(&self, data_dir: &Path) -> SiteLayer {
        let mut raw = self.settings.clone();
        raw.data_dir = Some(data_dir.to_path_buf());
        SiteLayer {
            file: file(data_dir),
            raw,
            sources: self.sources.clone(),
        }
    }

    /// One recorded effective value, `-` when the record has none.
    pub fn value(&self, key: &str) -> &str {
        self.effective.get(key).map_or("-", String::as_str)
    }

    /// What tells sites apart: `iface eth0, spin-only v1.3.3, server http://10.0.0.2:8080`.
    pub fn summary(&self) -> String {
        format!(
            "iface {}, {} {}, server http://{}:{}",
            self.value("iface"),
            self.value("variant"),
            self.value("tag"),
            self.value("server-ip"),
            self.value("http-port"),
        )
    }
}

impl Raw {
    /// The user-facing keys (`server-ip`) this layer gives a value for.
    fn keys_given(&self) -> Vec<String> {
        let json = serde_json::to_value(self).unwrap_or_default();
        json.as_object()
            .map(|o| o.keys().map(|k| key_name(k)).collect())
            .unwrap_or_default()
    }
}

/// The record in `data_dir`; `Ok(None)` when there is none. A record that cannot be read is
/// an error, not "none": resolving without it would silently act on other settings.
pub fn load(data_dir: &Path) -> Result<Option<Record>, ConfigError> {
    let path = file(data_dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(&path, &e.to_string())),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| unreadable(&path, &e.to_string()))
}

fn unreadable(path: &Path, why: &str) -> ConfigError {
    ConfigError::new(
        "site",
        format!("cannot read the recorded site settings: {why}"),
        "run `cozyboot up` for this site again to rewrite the record, or delete the file to forget them",
    )
    .value(path.display().to_string())
}

/// Writes the record atomically: a reader sees the old record or the new one, never half.
pub fn save(record: &Record) -> std::io::Result<()> {
    fs_err::create_dir_all(crate::store::state::dir(&record.data_dir))?;
    let mut bytes = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    crate::render::atomic_write(&file(&record.data_dir), &bytes)
}
