//! `cozyboot down`: the managed containers removed, and with `--purge` what cozyboot wrote.

use super::managed::{managed, scope};
use super::{registry, runtime, Output};
use crate::cli::DownArgs;
use crate::engine::docker::Engine;
use crate::error::Result;
use crate::render::containers::LABEL_DATA_DIR;
use crate::store::state;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub fn run(args: &DownArgs) -> Result<Output> {
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
