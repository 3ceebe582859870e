//! When `cozyboot power on` (or `cycle`) last powered each machine, kept in
//! `<data-dir>/.cozyboot/power-on.json`, so that `nodes` can say how long each stage took
//! from power-on: the figure an operator waiting on a rack wants.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const SCHEMA: &str = "cozyboot.power-on/v1";

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerOns {
    pub schema: String,
    /// MAC (lower-case, colon-separated) → Unix seconds of the latest power-on sent.
    pub at: BTreeMap<String, i64>,
}

pub fn file(data_dir: &Path) -> PathBuf {
    crate::store::state::dir(data_dir).join("power-on.json")
}

impl PowerOns {
    /// None recorded yet is an empty record; an unreadable file is an error naming it.
    pub fn load(data_dir: &Path) -> Result<PowerOns, String> {
        let path = file(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{} is not a power-on record cozyboot can read ({e})\n  fix: delete it; the next `cozyboot power on` starts a new one",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PowerOns {
                schema: SCHEMA.into(),
                at: BTreeMap::new(),
            }),
            Err(e) => Err(format!("reading {}: {e}", path.display())),
        }
    }

    pub fn record(&mut self, mac: &str, at: i64) {
        self.schema = SCHEMA.into();
        self.at.insert(mac.to_string(), at);
    }

    /// Written whole and renamed into place, like the journal.
    pub fn save(&self, data_dir: &Path) -> Result<(), String> {
        let path = file(data_dir);
        let dir = path.parent().expect("the record is inside a folder");
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(self).expect("the record serializes");
        std::fs::write(&tmp, body)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("writing {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_a_round_trip_and_none_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(PowerOns::load(dir.path()).unwrap().at.is_empty());
        let mut r = PowerOns::default();
        r.record("52:54:00:aa:00:01", 1_765_000_000);
        r.save(dir.path()).unwrap();
        assert_eq!(PowerOns::load(dir.path()).unwrap(), r);
        std::fs::write(file(dir.path()), "{").unwrap();
        assert!(PowerOns::load(dir.path()).unwrap_err().contains("fix: delete it"));
    }
}
