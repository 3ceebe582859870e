//! `status`, `logs`, `restart`, `down`: containers are found by cozyboot's labels (like kind),
//! so these need no settings and work whatever names `up` was given. Which site they act on:
//! `--data-dir` if given, else the one site recorded on this host (several: exit 2 with the
//! list), else every managed container, as before sites were recorded. `status` shows every
//! recorded site, running or not.

use super::{registry, runtime, Output};
use crate::cli::{DownArgs, LogsArgs, RestartArgs, Role as CliRole, SiteArgs, StatusArgs};
use crate::engine::docker::{ContainerInfo, Engine};
use crate::error::{Error, Result};
use crate::render::containers::{Role, LABEL_DATA_DIR, LABEL_MANAGED, LABEL_ROLE};
use crate::site;
use crate::store::state;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn given_dir(site: &SiteArgs) -> Option<PathBuf> {
    site.data_dir
        .as_ref()
        .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.clone()))
}

/// The data dir a command that acts on one site means; `None`: every managed container.
pub(super) fn scope(site: &SiteArgs) -> Result<Option<PathBuf>> {
    match given_dir(site) {
        Some(dir) => Ok(Some(dir)),
        None => Ok(site::find(None, &registry())?.map(|(dir, _)| dir)),
    }
}

pub(super) async fn managed(engine: &Engine, dir: Option<&Path>) -> Result<Vec<(Role, ContainerInfo)>> {
    let mut found: Vec<(Role, ContainerInfo)> = engine
        .list_labelled(&format!("{LABEL_MANAGED}=true"))
        .await?
        .into_iter()
        .filter(|c| dir.is_none_or(|d| c.labels.get(LABEL_DATA_DIR).map(PathBuf::from).as_deref() == Some(d)))
        .filter_map(|c| {
            let role = c.labels.get(LABEL_ROLE).and_then(|r| Role::from_label(r))?;
            Some((role, c))
        })
        .collect();
    found.sort_by_key(|(role, _)| *role);
    Ok(found)
}

/// The managed containers of `role` (both when `None`); none at all is an error.
async fn selected(engine: &Engine, dir: Option<&Path>, role: Option<CliRole>) -> Result<Vec<(Role, ContainerInfo)>> {
    let wanted = |r: &Role| match role {
        None => true,
        Some(CliRole::Matchbox) => *r == Role::Matchbox,
        Some(CliRole::Dnsmasq) => *r == Role::Dnsmasq,
    };
    let found: Vec<(Role, ContainerInfo)> = managed(engine, dir)
        .await?
        .into_iter()
        .filter(|(r, _)| wanted(r))
        .collect();
    if found.is_empty() {
        return Err(none_found());
    }
    Ok(found)
}

/// The recorded sites `status` shows: the one given, else all.
fn recorded_sites(given: Option<&Path>) -> Vec<(PathBuf, site::Record)> {
    match given {
        Some(dir) => site::load(dir)
            .ok()
            .flatten()
            .map(|r| (dir.to_path_buf(), r))
            .into_iter()
            .collect(),
        None => site::sites(&registry()),
    }
}

fn none_found() -> Error {
    Error::Failed("no containers managed by cozyboot were found\n  fix: start them with `cozyboot up`".into())
}

pub fn status(args: &StatusArgs) -> Result<Output> {
    runtime()?.block_on(async {
        let given = given_dir(&args.site);
        let sites = recorded_sites(given.as_deref());
        let mut human = String::new();
        let mut data_dirs: BTreeSet<String> = BTreeSet::new();
        let mut site_docs = Vec::new();
        for (dir, r) in &sites {
            let age = state::now().saturating_sub(r.recorded_at);
            human.push_str(&format!(
                "site      {}  {}, recorded {} ago\n",
                dir.display(),
                r.summary(),
                humantime(age)
            ));
            data_dirs.insert(dir.display().to_string());
            site_docs.push(json!({
                "data_dir": dir, "record": site::record::file(dir), "recorded_at": r.recorded_at,
                "iface": r.value("iface"), "variant": r.value("variant"), "tag": r.value("tag"),
                "server_ip": r.value("server-ip"), "http_port": r.value("http-port"),
            }));
        }
        let engine = Engine::connect().await?;
        let found = managed(&engine, given.as_deref()).await?;
        let mut containers = Vec::new();
        for (role, c) in &found {
            let image = engine.image(&c.image).await?;
            let mode = if c.cmd.iter().any(|a| a.contains(",proxy")) {
                "proxy"
            } else {
                "full"
            };
            let digest = image.as_ref().and_then(|i| i.repo_digests.first().cloned());
            human.push_str(&format!(
                "{:<9} {:<10} {} restarts={} image={} ({}){}\n",
                role.name(),
                c.name,
                c.status,
                c.restart_count,
                c.image,
                short(&c.image_id),
                if *role == Role::Dnsmasq {
                    format!(" dhcp={mode}")
                } else {
                    String::new()
                },
            ));
            data_dirs.extend(c.labels.get(LABEL_DATA_DIR).cloned());
            containers.push(json!({
                "role": role, "name": c.name, "status": c.status, "running": c.running,
                "restart_count": c.restart_count, "started_at": c.started_at,
                "image": c.image, "image_id": c.image_id, "image_digest": digest,
                "dhcp_mode": (*role == Role::Dnsmasq).then_some(mode),
            }));
        }
        if found.is_empty() {
            human.push_str("no containers managed by cozyboot (start them with `cozyboot up`)\n");
        }
        let mut assets = Vec::new();
        let mut bootloaders = Vec::new();
        for dir in &data_dirs {
            let st = state::load(Path::new(dir));
            for (arch, rec) in &st.assets {
                let bytes: u64 = rec.files.iter().map(|f| f.size).sum();
                let age = state::now().saturating_sub(rec.extracted_at);
                human.push_str(&format!(
                    "assets    {arch:<10} {} files {} from {} ({}), extracted {} ago, in {dir}\n          {:<10} {}\n",
                    rec.files.len(),
                    crate::apply::human_bytes(bytes),
                    rec.image,
                    short(&rec.image_id),
                    humantime(age),
                    "",
                    rec.origin()
                ));
                assets.push(json!({ "data_dir": dir, "arch": arch, "record": rec, "age_seconds": age }));
            }
            if let Some(rec) = &st.arm64_bootloader {
                let kind = rec.source_kind.map_or("unknown", |k| k.name());
                human.push_str(&format!(
                    "ipxe      {:<10} {} {}, {kind} from {}, sha256 {}, in {dir}\n",
                    "arm64",
                    rec.file.name,
                    crate::apply::human_bytes(rec.file.size),
                    rec.file.source.as_deref().unwrap_or("-"),
                    short(&rec.file.sha256),
                ));
                bootloaders.push(json!({
                    "data_dir": dir, "arch": "arm64", "name": rec.file.name, "size": rec.file.size,
                    "sha256": rec.file.sha256, "source": rec.file.source, "source_kind": rec.source_kind,
                }));
            }
        }
        let json =
            json!({ "sites": site_docs, "containers": containers, "assets": assets, "bootloaders": bootloaders });
        Ok(Output::new(human, json))
    })
}

pub fn logs(args: &LogsArgs) -> Result<Output> {
    runtime()?.block_on(async {
        let dir = scope(&args.site)?;
        let engine = Engine::connect().await?;
        let found = selected(&engine, dir.as_deref(), args.role).await?;
        if args.follow {
            let [(_, c)] = found.as_slice() else {
                return Err(Error::Config(vec![crate::error::ConfigError::new(
                    "logs",
                    "--follow follows one container",
                    "name it: `cozyboot logs matchbox -f` or `cozyboot logs dnsmasq -f`",
                )]));
            };
            engine.follow_logs(&c.name, args.tail, &mut tokio::io::stdout()).await?;
            return Ok(Output::new(String::new(), json!(null)));
        }
        let mut human = String::new();
        let mut doc = serde_json::Map::new();
        for (role, c) in &found {
            let text = engine.logs(&c.name, args.tail).await?;
            if found.len() > 1 {
                human.push_str(&format!("==> {} ({}) <==\n", c.name, role.name()));
            }
            human.push_str(&text);
            doc.insert(role.name().to_string(), json!(text));
        }
        Ok(Output::new(human, serde_json::Value::Object(doc)))
    })
}

pub fn restart(args: &RestartArgs) -> Result<Output> {
    runtime()?.block_on(async {
        let dir = scope(&args.site)?;
        let engine = Engine::connect().await?;
        let mut found = selected(&engine, dir.as_deref(), args.role).await?;
        // A dnsmasq in matchbox's network namespace loses its network when matchbox restarts.
        if found.iter().any(|(r, _)| *r == Role::Matchbox) && !found.iter().any(|(r, _)| *r == Role::Dnsmasq) {
            let followers = managed(&engine, dir.as_deref())
                .await?
                .into_iter()
                .filter(|(r, c)| *r == Role::Dnsmasq && c.network_mode.starts_with("container:"));
            found.extend(followers);
        }
        let mut done = Vec::new();
        // matchbox first: dnsmasq may share its network namespace.
        for (_, c) in &found {
            engine.stop(&c.name, Duration::from_secs(10)).await?;
            engine.start(&c.name).await?;
            engine.wait_running(&c.name, Duration::from_secs(20)).await?;
            done.push(c.name.clone());
        }
        Ok(Output::new(
            format!("restarted {}", done.join(", ")),
            json!({ "restarted": done }),
        ))
    })
}

pub fn down(args: &DownArgs) -> Result<Output> {
    runtime()?.block_on(async {
        let dir = scope(&args.site)?;
        let engine = Engine::connect().await?;
        let found = managed(&engine, dir.as_deref()).await?;
        let mut removed = Vec::new();
        let mut data_dirs: BTreeSet<PathBuf> = dir.iter().cloned().collect();
        // dnsmasq first: it may share matchbox's network namespace.
        for (_, c) in found.iter().rev() {
            engine.remove(&c.name, true).await?;
            data_dirs.extend(c.labels.get(LABEL_DATA_DIR).map(PathBuf::from));
            removed.push(c.name.clone());
        }
        let mut purged = Vec::new();
        let mut forgotten = Vec::new();
        if args.purge {
            let registry = registry();
            for dir in &data_dirs {
                purged.extend(purge(dir)?);
                // Purged, the site is gone: no later command should find it.
                if registry.forget(dir)? {
                    forgotten.push(dir.display().to_string());
                }
            }
        }
        let mut human = if removed.is_empty() {
            "no containers managed by cozyboot were running".to_string()
        } else {
            format!("removed {}", removed.join(", "))
        };
        if args.purge {
            human.push_str(&format!("\npurged {} path(s) cozyboot wrote", purged.len()));
            for dir in &forgotten {
                human.push_str(&format!("\nforgot the site {dir}"));
            }
        } else if !data_dirs.is_empty() {
            human.push_str(
                "\nthe data dir and the site's recorded settings were kept (use --purge to remove what cozyboot wrote)",
            );
        }
        Ok(Output::new(
            human,
            json!({ "removed": removed, "purged": purged, "forgotten": forgotten }),
        ))
    })
}

/// Removes only what cozyboot wrote into `dir`: the recorded assets and bootloaders (not an
/// arm64 iPXE binary placed by hand), the rendered files listed in its manifest, the
/// certificates and its own folder (state, lock, the download cache).
fn purge(dir: &Path) -> Result<Vec<String>> {
    let st = state::load(dir);
    let assets = dir.join("assets");
    let mut paths: Vec<PathBuf> = st.assets.keys().map(|arch| assets.join("talos").join(arch)).collect();
    for f in st
        .x86_bootloaders
        .iter()
        .flat_map(|r| &r.files)
        // A binary placed by hand was only checked and recorded: it is the user's, and stays.
        .chain(
            st.arm64_bootloader
                .as_ref()
                .filter(|r| r.source_kind != Some(state::SourceKind::Placed))
                .map(|r| &r.file),
        )
    {
        paths.push(assets.join(&f.name));
    }
    paths.extend(crate::render::rendered_paths(dir).into_iter().map(|p| dir.join(p)));
    paths.push(dir.join(".cozyboot-rendered.json"));
    paths.push(dir.join("tls"));
    paths.push(state::dir(dir));
    let mut gone = Vec::new();
    for p in paths {
        let result = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        if result.is_ok() {
            gone.push(p.display().to_string());
        }
    }
    Ok(gone)
}

fn short(id: &str) -> &str {
    let id = id.trim_start_matches("sha256:");
    &id[..id.len().min(12)]
}

fn humantime(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}
