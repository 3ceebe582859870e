//! `cozyboot status`: every recorded site, running or not, and the containers of each.

use super::managed::{given_dir, managed};
use super::{registry, runtime, Output};
use crate::cli::StatusArgs;
use crate::engine::docker::Engine;
use crate::error::Result;
use crate::render::containers::{Role, LABEL_DATA_DIR};
use crate::site;
use crate::store::state;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub fn run(args: &StatusArgs) -> Result<Output> {
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
