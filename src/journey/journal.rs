//! What cozyboot read of the logs, kept in `<data-dir>/.cozyboot/journey.json`, so that
//! `cozyboot nodes` still knows yesterday's machines after the containers were replaced
//! (a new container starts with an empty log).

use super::event::{Event, Source};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const SCHEMA: &str = "cozyboot.journey/v1";
/// Keeps the file under ~10 MB: about 100 boots of each of 500 machines.
pub const MAX_EVENTS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub source: Option<Source>,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Journal {
    pub schema: String,
    pub events: Vec<Entry>,
}

pub fn file(data_dir: &Path) -> PathBuf {
    crate::store::state::dir(data_dir).join("journey.json")
}

impl Journal {
    /// The journal of `data_dir`; none yet is an empty one. A file that cannot be read as a
    /// journal is an error naming it, so that it is not overwritten unseen.
    pub fn load(data_dir: &Path) -> Result<Journal, String> {
        let path = file(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{} is not a journal cozyboot can read ({e})\n  fix: move it away; `cozyboot nodes` starts a new one",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Journal {
                schema: SCHEMA.into(),
                events: Vec::new(),
            }),
            Err(e) => Err(format!("reading {}: {e}", path.display())),
        }
    }

    /// Takes in what was just read of one source's log. A container's log runs from its
    /// start, so what it holds replaces what the journal has of that source from the log's
    /// first fact on; what came before is an older container's and stays.
    pub fn merge(&mut self, source: Source, fresh: Vec<Event>) {
        let Some(from) = fresh.iter().find_map(|e| e.at) else {
            if !fresh.is_empty() {
                // Facts without times cannot be placed; keep only the newest reading of them.
                self.events.retain(|e| e.source != Some(source) || e.event.at.is_some());
                self.events.extend(fresh.into_iter().map(|event| Entry {
                    source: Some(source),
                    event,
                }));
            }
            return;
        };
        self.events
            .retain(|e| e.source != Some(source) || e.event.at.is_some_and(|t| t < from));
        self.events.extend(fresh.into_iter().map(|event| Entry {
            source: Some(source),
            event,
        }));
        // Stable: facts of one source keep their order within a second.
        self.events.sort_by_key(|e| e.event.at.unwrap_or(i64::MIN));
        if self.events.len() > MAX_EVENTS {
            let drop = self.events.len() - MAX_EVENTS;
            self.events.drain(..drop);
        }
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.iter().map(|e| e.event.clone()).collect()
    }

    /// Written to a temporary file and renamed, so that a crash leaves the old journal whole.
    pub fn save(&self, data_dir: &Path) -> Result<(), String> {
        let path = file(data_dir);
        let dir = path.parent().expect("the journal is inside a folder");
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec(self).expect("the journal serializes");
        std::fs::write(&tmp, body)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("writing {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::event::What;
    use super::*;

    fn ev(at: i64, mac: &str) -> Event {
        Event {
            at: Some(at),
            what: What::Profile {
                mac: mac.into(),
                arch: None,
                uuid: None,
                serial: None,
            },
        }
    }

    #[test]
    fn reading_a_log_again_replaces_it_and_keeps_older_containers() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::load(dir.path()).unwrap();
        // Yesterday's container.
        j.merge(Source::Matchbox, vec![ev(100, "aa:aa:aa:aa:aa:01")]);
        // Today's container, read twice.
        j.merge(Source::Matchbox, vec![ev(200, "aa:aa:aa:aa:aa:02")]);
        j.merge(
            Source::Matchbox,
            vec![ev(200, "aa:aa:aa:aa:aa:02"), ev(210, "aa:aa:aa:aa:aa:03")],
        );
        j.merge(Source::Dnsmasq, vec![ev(150, "aa:aa:aa:aa:aa:04")]);
        j.save(dir.path()).unwrap();
        let j = Journal::load(dir.path()).unwrap();
        let ats: Vec<i64> = j.events.iter().filter_map(|e| e.event.at).collect();
        assert_eq!(ats, vec![100, 150, 200, 210]);
    }

    /// A journal written before the hardware facts were kept (no `uuid`, no `serial`) still
    /// loads, and one written now keeps them.
    #[test]
    fn old_journals_load_and_new_ones_keep_the_hardware() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(file(dir.path()).parent().unwrap()).unwrap();
        let old = r#"{"schema":"cozyboot.journey/v1","events":[{"source":"matchbox","at":100,"kind":"profile","mac":"52:54:00:c0:0b:11","arch":"arm64"}]}"#;
        std::fs::write(file(dir.path()), old).unwrap();
        let mut j = Journal::load(dir.path()).unwrap();
        assert_eq!(
            j.events[0].event.what,
            What::Profile {
                mac: "52:54:00:c0:0b:11".into(),
                arch: Some("arm64".into()),
                uuid: None,
                serial: None,
            }
        );
        let given = What::Profile {
            mac: "52:54:00:c0:0b:11".into(),
            arch: Some("arm64".into()),
            uuid: Some("4c4c4544-0042-3510-8052-b4c04f395a32".into()),
            serial: Some("CZB-SN-0042".into()),
        };
        j.merge(
            Source::Matchbox,
            vec![Event {
                at: Some(200),
                what: given.clone(),
            }],
        );
        j.save(dir.path()).unwrap();
        let j = Journal::load(dir.path()).unwrap();
        assert_eq!(j.events.last().unwrap().event.what, given);
    }

    #[test]
    fn it_stays_bounded() {
        let mut j = Journal::default();
        j.merge(
            Source::Matchbox,
            (0..MAX_EVENTS as i64 + 10)
                .map(|t| ev(t, "aa:aa:aa:aa:aa:01"))
                .collect(),
        );
        assert_eq!(j.events.len(), MAX_EVENTS);
        assert_eq!(j.events[0].event.at, Some(10));
    }

    #[test]
    fn a_broken_file_is_named_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(file(dir.path()).parent().unwrap()).unwrap();
        std::fs::write(file(dir.path()), "not json").unwrap();
        let err = Journal::load(dir.path()).unwrap_err();
        assert!(err.contains("journey.json") && err.contains("fix:"), "{err}");
    }
}
