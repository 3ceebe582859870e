//! Files in the matchbox tree that cozyboot did not write — typically an `/opt/matchbox` laid
//! out by hand from the manual guide — and which of their groups can take a machine away
//! from cozyboot's groups.
//!
//! matchbox picks, among the groups whose selector pairs all equal the machine's labels, the
//! one with the most selector pairs; between groups with as many, the order is an accident
//! of sorting. So a hand-made group competes with one of cozyboot's when some machine can
//! match both and it has at least as many selector pairs: the guide's `default` group
//! (`arch: arm64`) ties with cozyboot's arm64 group for every ARM64 machine.

use crate::render::matchbox::Group;
use crate::render::rendered_paths;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The folders of matchbox's data path whose files decide what a machine boots.
pub const DIRS: &[&str] = &["profiles", "groups", "generic"];

/// A foreign group that can win against one of cozyboot's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Competitor {
    /// Relative to the data dir, e.g. `groups/default.json`.
    pub path: String,
    pub selector: BTreeMap<String, String>,
    /// The cozyboot group it competes with.
    pub against: String,
    /// Whether it always wins (more selector pairs) rather than ties.
    pub always_wins: bool,
}

impl Competitor {
    pub fn describe(&self) -> String {
        let selector = if self.selector.is_empty() {
            "every machine (empty selector)".to_string()
        } else {
            self.selector
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if self.always_wins {
            format!(
                "{} selects {selector}: more specific than cozyboot's group {}, it always wins for those machines",
                self.path, self.against
            )
        } else {
            format!(
                "{} selects {selector}, as specific as cozyboot's group {}: matchbox picks one of the two by accident of sorting",
                self.path, self.against
            )
        }
    }
}

/// What is in the tree besides cozyboot's own files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Foreign {
    /// Every file cozyboot did not write, relative to the data dir, sorted.
    pub files: Vec<String>,
    pub competitors: Vec<Competitor>,
    /// Group files that are not valid group JSON (matchbox refuses to start on those).
    pub unreadable: Vec<String>,
}

/// Looks at `data_dir`'s matchbox folders. `ours` are the paths cozyboot renders now;
/// files it rendered before (its manifest) are its own too.
pub fn scan(data_dir: &Path, ours: &[String], our_groups: &[Group]) -> Foreign {
    let recorded = rendered_paths(data_dir);
    let mut found = Foreign::default();
    for dir in DIRS {
        let Ok(entries) = fs::read_dir(data_dir.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Editors' and atomic writers' temporaries are not matchbox's business.
            if name.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let path = format!("{dir}/{name}");
            if ours.contains(&path) || recorded.contains(&path) {
                continue;
            }
            if *dir == "groups" {
                match fs::read(entry.path())
                    .ok()
                    .and_then(|b| serde_json::from_slice::<GroupFile>(&b).ok())
                {
                    Some(g) => found.competitors.extend(compete(&path, &g.selector, our_groups)),
                    None => found.unreadable.push(path.clone()),
                }
            }
            found.files.push(path);
        }
    }
    found.files.sort();
    found
        .competitors
        .sort_by(|a, b| a.path.cmp(&b.path).then(a.against.cmp(&b.against)));
    found
}

/// Only the selector matters here; the rest of a hand-made group may be anything.
#[derive(serde::Deserialize)]
struct GroupFile {
    #[serde(default)]
    selector: BTreeMap<String, String>,
}

/// The cozyboot groups a foreign selector competes with.
pub fn compete(path: &str, selector: &BTreeMap<String, String>, ours: &[Group]) -> Vec<Competitor> {
    ours.iter()
        .filter(|g| {
            // Some machine matches both unless a label is required with two values.
            let overlap = selector
                .iter()
                .all(|(k, v)| g.selector.get(k).is_none_or(|mine| mine == v));
            overlap && selector.len() >= g.selector.len()
        })
        .map(|g| Competitor {
            path: path.to_string(),
            selector: selector.clone(),
            against: g.id.clone(),
            always_wins: selector.len() > g.selector.len(),
        })
        .collect()
}

/// Moves the foreign file `data_dir/file` to `to/file` (`to` is
/// `<data-dir>/.cozyboot/moved-<stamp>`), keeping its folder; returns where it went.
pub fn move_one(data_dir: &Path, file: &str, to: &Path) -> std::io::Result<PathBuf> {
    let dest = to.join(file);
    if let Some(parent) = dest.parent() {
        fs_err::create_dir_all(parent)?;
    }
    fs_err::rename(data_dir.join(file), &dest)?;
    Ok(dest)
}

/// `20261129-184700` in UTC, for the moved-aside folder's name.
pub fn stamp(unix_seconds: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(i64::try_from(unix_seconds).unwrap_or(0))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(id: &str, pairs: &[(&str, &str)]) -> Group {
        Group {
            id: id.into(),
            name: id.into(),
            profile: id.into(),
            selector: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            metadata: BTreeMap::new(),
        }
    }

    fn sel(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_guides_default_group_ties_with_ours_and_only_for_its_arch() {
        let ours = [
            group("c-arm64-arm64", &[("arch", "arm64")]),
            group("c-amd64-x86_64", &[("arch", "x86_64")]),
        ];
        let c = compete("groups/default.json", &sel(&[("arch", "arm64")]), &ours);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].against, "c-arm64-arm64");
        assert!(!c[0].always_wins);
        assert!(c[0].describe().contains("accident of sorting"), "{}", c[0].describe());
    }

    #[test]
    fn a_more_specific_group_always_wins_and_an_empty_one_never_does() {
        let ours = [group("c-arm64-arm64", &[("arch", "arm64")])];
        let node = compete(
            "groups/n.json",
            &sel(&[("arch", "arm64"), ("mac", "dc:a6:32:01:02:03")]),
            &ours,
        );
        assert!(node[0].always_wins && node[0].describe().contains("always wins"));
        let by_mac = compete("groups/m.json", &sel(&[("mac", "dc:a6:32:01:02:03")]), &ours);
        assert!(
            !by_mac[0].always_wins,
            "mac alone ties with arch alone for that machine"
        );
        assert!(
            compete("groups/any.json", &sel(&[]), &ours).is_empty(),
            "fewer pairs never win"
        );
        assert!(compete("groups/x.json", &sel(&[("arch", "x86_64")]), &ours).is_empty());
        let node_group = [group("c-node", &[("arch", "arm64"), ("mac", "dc:a6:32:01:02:03")])];
        assert!(compete(
            "groups/other-node.json",
            &sel(&[("arch", "arm64"), ("mac", "dc:a6:32:09:09:09")]),
            &node_group
        )
        .is_empty());
    }

    #[test]
    fn scans_only_what_cozyboot_did_not_write_and_moves_it_aside() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in DIRS {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        fs::write(
            d.join("groups/ours.json"),
            r#"{"id":"ours","selector":{"arch":"arm64"}}"#,
        )
        .unwrap();
        fs::write(
            d.join("groups/default.json"),
            r#"{"id":"default","profile":"cozystack-arm64","selector":{"arch":"arm64"}}"#,
        )
        .unwrap();
        fs::write(d.join("groups/broken.json"), "{not json").unwrap();
        fs::write(d.join("groups/.ours.json.tmp"), "x").unwrap();
        fs::write(d.join("profiles/cozystack-arm64.json"), "{}").unwrap();
        let ours = [group("ours", &[("arch", "arm64")])];
        let found = scan(d, &["groups/ours.json".to_string()], &ours);
        assert_eq!(
            found.files,
            [
                "groups/broken.json",
                "groups/default.json",
                "profiles/cozystack-arm64.json"
            ]
        );
        assert_eq!(found.unreadable, ["groups/broken.json"]);
        assert_eq!(found.competitors.len(), 1);
        assert_eq!(found.competitors[0].path, "groups/default.json");

        let to = crate::store::state::dir(d).join("moved-20261129-184700");
        for file in &found.files {
            assert_eq!(move_one(d, file, &to).unwrap(), to.join(file));
        }
        assert!(to.join("groups/default.json").is_file() && to.join("profiles/cozystack-arm64.json").is_file());
        assert!(d.join("groups/ours.json").is_file(), "cozyboot's own files stay");
        assert!(scan(d, &["groups/ours.json".to_string()], &ours).files.is_empty());
    }

    #[test]
    fn stamps_read_as_utc_dates() {
        assert_eq!(stamp(0), "19700101-000000");
        assert_eq!(stamp(1_795_978_020), "20261129-184700");
        assert_eq!(stamp(951_782_400), "20000229-000000");
    }
}
