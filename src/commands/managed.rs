//! Which containers and which site `status`, `logs`, `restart`, `down` and `nodes` act on.
//! Containers are found by cozyboot's labels (like kind), so these need no settings and work
//! whatever names `up` was given. Which site: `--data-dir` if given, else the one site
//! recorded on this host (several: exit 2 with the list), else every managed container, as
//! before sites were recorded.

use super::registry;
use crate::cli::{Role as CliRole, SiteArgs};
use crate::engine::docker::{ContainerInfo, Engine};
use crate::error::{Error, Result};
use crate::render::containers::{Role, LABEL_DATA_DIR, LABEL_MANAGED, LABEL_ROLE};
use crate::site;
use std::path::{Path, PathBuf};

pub(super) fn given_dir(site: &SiteArgs) -> Option<PathBuf> {
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
pub(super) async fn selected(
    engine: &Engine,
    dir: Option<&Path>,
    role: Option<CliRole>,
) -> Result<Vec<(Role, ContainerInfo)>> {
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

fn none_found() -> Error {
    Error::Failed("no containers managed by cozyboot were found\n  fix: start them with `cozyboot up`".into())
}
