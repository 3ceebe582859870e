//! Talos machine configs withdrawn once their machine took them.
//!
//! matchbox's `/generic` hands a whole machine config (the cluster CA's key, tokens) over
//! plain HTTP to anyone who asks with labels a group selects on, and a MAC or a uuid is
//! easily spoofed. So a config is served only until its machine has it: once `cozyboot
//! nodes` sees a machine fetch its config and Talos answer on that machine's address, the
//! config's file leaves `generic/` (matchbox answers 404) and every profile that pointed at
//! it boots maintenance mode. The record of what was withdrawn (`<data-dir>/.cozyboot/
//! withdrawn-configs.json`, by SHA-256 of the content) keeps `up` and `render` from serving
//! the same config again; a changed file is a new config and is served.
//!
//! A spoofed request can only make a config leave earlier (it still needs its machine's
//! Talos to answer), never serve it longer.

use super::state;
use crate::error::Error;
use crate::render::matchbox::{Group, Profile, Tree};
use crate::render::{atomic_write, json, render, Rendered};
use crate::settings::Settings;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

pub const SCHEMA: &str = "cozyboot.withdrawn-configs/v1";

pub fn file(data_dir: &Path) -> PathBuf {
    state::dir(data_dir).join("withdrawn-configs.json")
}

/// One withdrawn config: which content, and the machine whose taking it withdrew it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdrawn {
    pub sha256: String,
    /// The `generic/` files that held it when it was withdrawn.
    pub generics: Vec<String>,
    pub mac: String,
    pub ip: Option<Ipv4Addr>,
    /// Unix seconds.
    pub at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub schema: String,
    pub configs: Vec<Withdrawn>,
}

impl Default for Record {
    fn default() -> Self {
        Record {
            schema: SCHEMA.into(),
            configs: Vec::new(),
        }
    }
}

impl Record {
    /// None yet is an empty record. One that cannot be read is an error: reading it as empty
    /// would serve again every config it withdrew.
    pub fn load(data_dir: &Path) -> Result<Record, Error> {
        let path = file(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::Failed(format!(
                    "{} is not a record of withdrawn Talos configs cozyboot can read ({e})\n  fix: repair or remove it; removing it serves every withdrawn config again at the next `cozyboot up`",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Record::default()),
            Err(e) => Err(Error::Failed(format!("reading {}: {e}", path.display()))),
        }
    }

    pub fn save(&self, data_dir: &Path) -> Result<(), Error> {
        let path = file(data_dir);
        let dir = path.parent().expect("the record is inside a folder");
        let mut body = serde_json::to_vec_pretty(self).expect("the record serializes");
        body.push(b'\n');
        std::fs::create_dir_all(dir)
            .and_then(|()| atomic_write(&path, &body))
            .map_err(|e| Error::Failed(format!("writing {}: {e}", path.display())))
    }

    /// `up --serve-configs-again`: forget every withdrawal.
    pub fn clear(data_dir: &Path) -> Result<(), Error> {
        match std::fs::remove_file(file(data_dir)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::Failed(format!("removing {}: {e}", file(data_dir).display())))
            }
            _ => Ok(()),
        }
    }

    pub fn hashes(&self) -> BTreeSet<String> {
        self.configs.iter().map(|w| w.sha256.clone()).collect()
    }

    pub fn find(&self, sha256: &str) -> Option<&Withdrawn> {
        self.configs.iter().find(|w| w.sha256 == sha256)
    }
}

pub fn sha256(content: &[u8]) -> String {
    hex::encode(Sha256::digest(content))
}

/// What the site's settings render, less the configs its record withdrew: what `up` and
/// `render` write and what `validate` compares the data dir with.
pub fn render_site(s: &Settings) -> Result<Rendered, Error> {
    let mut rendered = render(s);
    apply(&mut rendered.tree, &Record::load(&s.data_dir)?.hashes());
    Ok(rendered)
}

/// Takes the withdrawn configs out of a tree; the profiles that served them boot
/// maintenance mode. Returns the ids of the generic files taken out.
pub fn apply(tree: &mut Tree, withdrawn: &BTreeSet<String>) -> Vec<String> {
    let gone: Vec<String> = tree
        .generics
        .iter()
        .filter(|g| withdrawn.contains(&sha256(g.content.as_bytes())))
        .map(|g| g.id.clone())
        .collect();
    tree.generics.retain(|g| !gone.contains(&g.id));
    for p in tree.profiles.iter_mut().filter(|p| gone.contains(&p.generic_id)) {
        without_config(p);
    }
    gone
}

/// The profile as it is rendered without a config: no `generic_id`, no `talos.config=`.
fn without_config(p: &mut Profile) {
    p.generic_id.clear();
    p.boot
        .args
        .retain(|a| !(a.starts_with("talos.config=") && a.contains("/generic?")));
}

/// A machine seen to take its config and reach Talos.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// Lower-case, colon-separated.
    pub mac: String,
    /// iPXE's `${buildarch}`, when matchbox was told it.
    pub arch: Option<String>,
    pub ip: Option<Ipv4Addr>,
    /// When it fetched its config (Unix seconds), if the log said.
    pub fetched_at: Option<i64>,
}

/// Withdraws, in `data_dir`'s matchbox tree, the config each machine in `taken` was served,
/// found as matchbox finds it (the group whose selectors all match the machine's labels,
/// most selectors winning), and records it. Returns one line per config withdrawn now.
pub fn withdraw(data_dir: &Path, taken: &[Taken]) -> Result<Vec<String>, Error> {
    let mut record = Record::load(data_dir)?;
    let groups: Vec<Group> = read_dir_json(&data_dir.join("groups"));
    let profiles: BTreeMap<String, Profile> = read_dir_json::<Profile>(&data_dir.join("profiles"))
        .into_iter()
        .map(|p| (p.id.clone(), p))
        .collect();
    let generics = generic_hashes(data_dir);
    let mut lines = Vec::new();
    for machine in taken {
        let Some(profile) = chosen_group(&groups, machine).and_then(|g| profiles.get(&g.profile)) else {
            continue;
        };
        let Some(hash) = generics.get(&profile.generic_id) else {
            continue;
        };
        // A machine keeps answering on 50000 once it runs Talos: what it fetched before the
        // file was last written (a changed config, `--serve-configs-again`) is not this one.
        if record.find(hash).is_some() || fetched_before_written(data_dir, &profile.generic_id, machine.fetched_at) {
            continue;
        }
        let ids: Vec<String> = generics
            .iter()
            .filter(|(_, h)| *h == hash)
            .map(|(id, _)| id.clone())
            .collect();
        record.configs.push(Withdrawn {
            sha256: hash.clone(),
            generics: ids.clone(),
            mac: machine.mac.clone(),
            ip: machine.ip,
            at: state::now(),
        });
        let answered = machine.ip.map_or_else(
            || "Talos answers".to_string(),
            |ip| format!("Talos answers on {ip}:50000"),
        );
        lines.push(format!(
            "withdrew the Talos config generic/{} from matchbox: {} took it and {answered}; `cozyboot up --serve-configs-again` serves it again",
            ids.join(", generic/"),
            machine.mac
        ));
    }
    if lines.is_empty() {
        return Ok(lines);
    }
    // Recorded first: should the tree be left half done, `up` still will not serve it again.
    record.save(data_dir)?;
    remove_from_disk(data_dir, &record.hashes(), &profiles, &generics)?;
    Ok(lines)
}

/// Writes U-Boot's boot script again from the site's tree less the configs withdrawn so far
/// (nothing when U-Boot boards are not served).
pub fn rewrite_uboot_script(s: &Settings) -> Result<(), Error> {
    let rendered = render_site(s)?;
    let Some(boot) = &rendered.uboot else {
        return Ok(());
    };
    let file = crate::render::uboot::script_file(boot, &rendered.tree);
    let path = s.data_dir.join(&file.path);
    atomic_write(&path, &file.content).map_err(|e| Error::Failed(format!("writing {}: {e}", path.display())))
}

fn fetched_before_written(data_dir: &Path, generic_id: &str, fetched_at: Option<i64>) -> bool {
    let written = std::fs::metadata(data_dir.join("generic").join(generic_id))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok());
    match (fetched_at, written) {
        (Some(fetched), Some(written)) => fetched < written,
        // Without a time the fetch cannot be placed: judged not to be this file's.
        (None, _) => true,
        (Some(_), None) => false,
    }
}

/// matchbox's choice: every selector pair equals a label; the most selectors win. Without
/// the machine's arch, groups are judged on their other selectors.
fn chosen_group<'a>(groups: &'a [Group], machine: &Taken) -> Option<&'a Group> {
    groups
        .iter()
        .filter(|g| {
            g.selector.iter().all(|(k, v)| match k.as_str() {
                "mac" => v.to_lowercase() == machine.mac,
                "arch" => machine.arch.as_ref().is_none_or(|a| a == v),
                _ => false,
            })
        })
        .max_by_key(|g| g.selector.len())
}

fn remove_from_disk(
    data_dir: &Path,
    withdrawn: &BTreeSet<String>,
    profiles: &BTreeMap<String, Profile>,
    generics: &BTreeMap<String, String>,
) -> Result<(), Error> {
    let failed = |path: &Path, e: std::io::Error| Error::Failed(format!("withdrawing {}: {e}", path.display()));
    for (id, _) in generics.iter().filter(|(_, h)| withdrawn.contains(*h)) {
        for p in profiles.values().filter(|p| &p.generic_id == id) {
            let mut p = p.clone();
            without_config(&mut p);
            let path = data_dir.join("profiles").join(format!("{}.json", p.id));
            atomic_write(&path, &json(&p)).map_err(|e| failed(&path, e))?;
        }
        let path = data_dir.join("generic").join(id);
        std::fs::remove_file(&path).map_err(|e| failed(&path, e))?;
    }
    Ok(())
}

/// Every file in `generic/` by name, with the SHA-256 of its content.
fn generic_hashes(data_dir: &Path) -> BTreeMap<String, String> {
    let Ok(entries) = std::fs::read_dir(data_dir.join("generic")) else {
        return BTreeMap::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let content = std::fs::read(e.path()).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), sha256(&content)))
        })
        .collect()
}

/// The JSON files of a folder that parse as `T`; others are not cozyboot's to judge here
/// (`validate`'s `config.foreign-groups` reports them).
fn read_dir_json<T: for<'de> Deserialize<'de>>(dir: &Path) -> Vec<T> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|p| serde_json::from_slice(&std::fs::read(p).ok()?).ok())
        .collect()
}

/// A config the settings give, and whether the record withdrew it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given {
    pub file: PathBuf,
    /// `None`: every machine without a config of its own; else the node's MAC.
    pub mac: Option<String>,
    pub withdrawn: Option<Withdrawn>,
}

impl Given {
    /// Who is served it, in words.
    pub fn whom(&self) -> String {
        match &self.mac {
            None => "every machine without its own config".into(),
            Some(mac) => mac.clone(),
        }
    }
}

/// Which of the settings' configs the record withdrew: the shared one, and nodes' MACs.
pub fn withdrawn_of(s: &Settings, record: &Record) -> (bool, Vec<String>) {
    let gone: Vec<Given> = given(s, record).into_iter().filter(|g| g.withdrawn.is_some()).collect();
    let shared = gone.iter().any(|g| g.mac.is_none());
    (shared, gone.into_iter().filter_map(|g| g.mac).collect())
}

/// Every config the settings give, each with its withdrawal if recorded.
pub fn given(s: &Settings, record: &Record) -> Vec<Given> {
    let shared = s.talos_config.iter().map(|c| (None, c));
    let nodes = s.talos_nodes.iter().map(|n| (Some(n.mac.clone()), &n.config));
    shared
        .chain(nodes)
        .map(|(mac, c)| Given {
            file: c.path.clone(),
            mac,
            withdrawn: record.find(&sha256(c.content.as_bytes())).cloned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::matchbox::{Boot, Generic};

    fn profile(id: &str, generic: &str) -> Profile {
        let mut args = vec!["talos.platform=metal".to_string()];
        if !generic.is_empty() {
            args.push("talos.config=http://10.0.0.1:8080/generic?arch=${buildarch:uristring}".into());
        }
        args.push("talos.config=http://elsewhere/mine.yaml".into());
        Profile {
            id: id.into(),
            name: id.into(),
            boot: Boot {
                kernel: "/assets/vmlinuz".into(),
                initrd: vec![],
                args,
            },
            generic_id: generic.into(),
        }
    }

    fn group(id: &str, profile: &str, selector: &[(&str, &str)]) -> Group {
        Group {
            id: id.into(),
            name: id.into(),
            profile: profile.into(),
            selector: selector.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            metadata: BTreeMap::new(),
        }
    }

    #[test]
    fn a_withdrawn_config_leaves_the_tree_and_its_profiles_boot_without_it() {
        let mut tree = Tree {
            profiles: vec![profile("a", "a.yaml"), profile("b", "b.yaml")],
            groups: vec![],
            generics: vec![
                Generic {
                    id: "a.yaml".into(),
                    content: "secret a".into(),
                },
                Generic {
                    id: "b.yaml".into(),
                    content: "secret b".into(),
                },
            ],
        };
        let gone = apply(&mut tree, &BTreeSet::from([sha256(b"secret a")]));
        assert_eq!(gone, vec!["a.yaml"]);
        assert_eq!(tree.generics.len(), 1);
        assert_eq!(tree.profiles[0], {
            let mut p = profile("a", "");
            p.generic_id.clear();
            p
        });
        assert_eq!(tree.profiles[1], profile("b", "b.yaml"));
    }

    #[test]
    fn the_machine_gets_the_group_matchbox_would_pick() {
        let groups = vec![
            group("all", "shared", &[("arch", "arm64")]),
            group("node", "own", &[("arch", "arm64"), ("mac", "dc:a6:32:01:02:03")]),
        ];
        let machine = |mac: &str, arch: Option<&str>| Taken {
            mac: mac.into(),
            arch: arch.map(str::to_string),
            ip: None,
            fetched_at: None,
        };
        let pick = |m: Taken| chosen_group(&groups, &m).map(|g| g.profile.clone());
        assert_eq!(
            pick(machine("dc:a6:32:01:02:03", Some("arm64"))).as_deref(),
            Some("own")
        );
        assert_eq!(
            pick(machine("dc:a6:32:01:02:04", Some("arm64"))).as_deref(),
            Some("shared")
        );
        assert_eq!(pick(machine("dc:a6:32:01:02:04", Some("x86_64"))), None);
        assert_eq!(pick(machine("dc:a6:32:01:02:03", None)).as_deref(), Some("own"));
    }

    #[test]
    fn withdrawing_on_disk_matches_what_the_record_renders() {
        let dir = tempfile::tempdir().unwrap();
        let write = |path: &str, bytes: &[u8]| {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        };
        let mut tree = Tree {
            profiles: vec![
                profile("shared-arm64", "shared-arm64.yaml"),
                profile("shared-amd64", "shared-amd64.yaml"),
            ],
            groups: vec![
                group("g1", "shared-arm64", &[("arch", "arm64")]),
                group("g2", "shared-amd64", &[("arch", "x86_64")]),
            ],
            generics: vec![
                Generic {
                    id: "shared-arm64.yaml".into(),
                    content: "one secret".into(),
                },
                Generic {
                    id: "shared-amd64.yaml".into(),
                    content: "one secret".into(),
                },
            ],
        };
        for f in (Rendered {
            dnsmasq_args: vec![],
            matchbox_args: vec![],
            tree: tree.clone(),
            uboot: None,
        })
        .files()
        {
            write(&f.path, &f.content);
        }
        let taken = |fetched_at| Taken {
            mac: "52:54:00:00:00:01".into(),
            arch: Some("arm64".into()),
            ip: Some(Ipv4Addr::new(10, 0, 0, 5)),
            fetched_at,
        };
        // Fetched before the files were written: another version of the config.
        let now = i64::try_from(state::now()).unwrap();
        assert!(withdraw(dir.path(), &[taken(Some(now - 60))]).unwrap().is_empty());
        assert!(withdraw(dir.path(), &[taken(None)]).unwrap().is_empty());
        assert!(dir.path().join("generic/shared-arm64.yaml").exists());
        let lines = withdraw(
            dir.path(),
            &[Taken {
                mac: "52:54:00:00:00:01".into(),
                arch: Some("arm64".into()),
                ip: Some(Ipv4Addr::new(10, 0, 0, 5)),
                fetched_at: Some(now),
            }],
        )
        .unwrap();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("10.0.0.5:50000"), "{lines:?}");
        // The same content served to the other arch goes too: it is the same secret.
        assert!(!dir.path().join("generic/shared-arm64.yaml").exists());
        assert!(!dir.path().join("generic/shared-amd64.yaml").exists());
        apply(&mut tree, &Record::load(dir.path()).unwrap().hashes());
        for f in (Rendered {
            dnsmasq_args: vec![],
            matchbox_args: vec![],
            tree,
            uboot: None,
        })
        .files()
        {
            assert_eq!(
                std::fs::read(dir.path().join(&f.path)).unwrap(),
                f.content,
                "{}",
                f.path
            );
        }
        // A second look withdraws nothing more.
        let again = withdraw(
            dir.path(),
            &[Taken {
                mac: "52:54:00:00:00:01".into(),
                arch: Some("arm64".into()),
                ip: None,
                fetched_at: Some(now),
            }],
        )
        .unwrap();
        assert!(again.is_empty());
    }

    #[test]
    fn an_unreadable_record_is_an_error_not_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(file(dir.path()).parent().unwrap()).unwrap();
        std::fs::write(file(dir.path()), "not json").unwrap();
        let err = Record::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("withdrawn-configs.json") && err.contains("fix:"), "{err}");
    }
}
