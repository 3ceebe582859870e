//! The boot site remembers itself: `up` records its settings in the data dir
//! ([`record`]) and lists the data dir in the host's registry ([`registry`]); a later
//! command given no settings finds the site there and resolves against its record.
//!
//! Which site a command means:
//! - a data dir named by a flag, `COZYBOOT_DATA_DIR` or the config file: that one (its
//!   record if it has one, else none, as before sites were recorded);
//! - else the registry's sites: none → no record; one → that one; several → exit 2 with
//!   the list, asking for `--data-dir`.

pub mod record;
pub mod registry;

use crate::error::{ConfigError, Error};
use crate::settings::Resolved;
pub use record::{load, Record};
pub use registry::Registry;
use std::path::{Path, PathBuf};

/// Every listed site whose record can be read, in data dir order. A listed data dir whose
/// record is gone (purged by hand, a removed disk) is skipped, not an error: the entry is
/// only a pointer.
pub fn sites(registry: &Registry) -> Vec<(PathBuf, Record)> {
    registry
        .data_dirs()
        .into_iter()
        .filter_map(|dir| load(&dir).ok().flatten().map(|r| (dir, r)))
        .collect()
}

/// The site a command means (see the module comment); `named` is the data dir some source
/// names, absolute.
pub fn find(named: Option<&Path>, registry: &Registry) -> Result<Option<(PathBuf, Record)>, Error> {
    if let Some(dir) = named {
        return Ok(load(dir).map_err(Error::config)?.map(|r| (dir.to_path_buf(), r)));
    }
    let mut all = sites(registry);
    match all.len() {
        0 | 1 => Ok(all.pop()),
        _ => Err(several(&all)),
    }
}

/// The error for a call that cannot tell which of several sites it means.
fn several(sites: &[(PathBuf, Record)]) -> Error {
    let width = sites
        .iter()
        .map(|(d, _)| d.display().to_string().len())
        .max()
        .unwrap_or(0);
    let list: String = sites
        .iter()
        .map(|(dir, r)| format!("\n  {:<width$}  {}", dir.display().to_string(), r.summary()))
        .collect();
    Error::config(ConfigError::new(
        "data-dir",
        format!(
            "{} boot sites are recorded on this host and nothing says which one is meant:{list}",
            sites.len()
        ),
        format!("pick one with --data-dir, e.g. --data-dir {}", sites[0].0.display()),
    ))
}

/// Records a site after a successful `up`: the record in its data dir, then the registry
/// entry. `cwd` anchors relative paths. Returns a warning for what could not be recorded:
/// the site runs either way, only later commands will need its settings again.
pub fn remember(resolved: &Resolved, cwd: &Path, registry: &Registry) -> Option<String> {
    let record = Record::of(resolved, cwd);
    let data_dir = &resolved.settings.data_dir;
    if let Err(e) = record::save(&record) {
        return Some(format!(
            "could not record the site's settings in {}: {e}; later commands need them given again",
            record::file(data_dir).display()
        ));
    }
    if let Err(e) = registry.register(data_dir) {
        let dir = registry.dir().map_or_else(String::new, |d| d.display().to_string());
        return Some(format!(
            "could not list the site in {dir}: {e}; later commands need --data-dir {} (set {} to use another place)",
            data_dir.display(),
            registry::ENV
        ));
    }
    None
}

#[cfg(test)]
mod tests;
