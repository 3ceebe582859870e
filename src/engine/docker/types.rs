//! Plain data the engine returns: images, containers, networks, pull events, file sets.

use std::collections::BTreeMap;

use bollard::models::{ContainerInspectResponse, CreateImageInfo};
use serde::{Deserialize, Serialize};

use crate::engine::extract::ExtractReport;

/// One way an image may lay out a set of files (absolute paths inside the image).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSet {
    pub required: Vec<String>,
    pub optional: Vec<String>,
}

impl FileSet {
    /// How an error names the set: its required paths.
    pub(crate) fn describe(&self) -> String {
        self.required.join(" + ")
    }
}

/// What [`Engine::export_files`] copied.
#[derive(Debug, Clone)]
pub struct ExportedFiles {
    /// Index of the set the image has.
    pub set: usize,
    /// The paths in the image that were copied.
    pub paths: Vec<String>,
    pub report: ExtractReport,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullEvent {
    /// Short layer id; `None` for messages about the whole image.
    pub layer: Option<String>,
    pub status: String,
    pub current: Option<u64>,
    pub total: Option<u64>,
}

impl PullEvent {
    /// The layer is on disk (downloaded and extracted, or already present).
    pub fn layer_done(&self) -> bool {
        self.layer.is_some() && matches!(self.status.as_str(), "Pull complete" | "Already exists")
    }
}

impl From<CreateImageInfo> for PullEvent {
    fn from(info: CreateImageInfo) -> Self {
        let status = info.status.unwrap_or_default();
        // "Pulling from library/x" carries the tag in `id`, not a layer.
        let layer = info.id.filter(|_| !status.starts_with("Pulling from"));
        let progress = info.progress_detail.unwrap_or_default();
        let non_negative = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
        PullEvent {
            layer,
            status,
            current: non_negative(progress.current),
            total: non_negative(progress.total),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub id: String,
    pub repo_digests: Vec<String>,
    pub created: Option<String>,
    pub architecture: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    /// The image reference as configured at create time.
    pub image: String,
    /// The image id the container actually runs.
    pub image_id: String,
    pub labels: BTreeMap<String, String>,
    pub running: bool,
    /// Docker's state: created, running, restarting, exited, ...
    pub status: String,
    pub restart_count: u64,
    pub started_at: Option<String>,
    pub exit_code: Option<i64>,
    pub cmd: Vec<String>,
    pub network_mode: String,
    /// The pid of the container's first process as the engine's host sees it, while it runs:
    /// the way into its network namespace (`/proc/<pid>/ns/net`).
    #[serde(default)]
    pub pid: Option<u32>,
}

/// What cozyboot needs to know about a Docker network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    pub name: String,
    /// `bridge`, `macvlan`, `ipvlan`, ...
    pub driver: String,
    /// The host interface a macvlan or ipvlan network hangs off (`-o parent=`).
    pub parent: Option<String>,
}

impl NetworkInfo {
    /// macvlan and ipvlan children cannot be reached from their parent interface on the
    /// same host (the kernel keeps them apart by design).
    pub fn hides_children_from_parent(&self) -> bool {
        matches!(self.driver.as_str(), "macvlan" | "ipvlan")
    }
}

impl From<ContainerInspectResponse> for ContainerInfo {
    fn from(c: ContainerInspectResponse) -> Self {
        let config = c.config.unwrap_or_default();
        let state = c.state.unwrap_or_default();
        let running = state.running.unwrap_or(false);
        let status = state.status.map(|s| s.to_string()).unwrap_or_default();
        // Docker reports 0 for containers that never ran; only a finished run has an exit code.
        let exit_code = state.exit_code.filter(|_| matches!(status.as_str(), "exited" | "dead"));
        ContainerInfo {
            id: c.id.unwrap_or_default(),
            name: c.name.unwrap_or_default().trim_start_matches('/').to_owned(),
            image: config.image.unwrap_or_default(),
            image_id: c.image.unwrap_or_default(),
            labels: config.labels.unwrap_or_default().into_iter().collect(),
            running,
            status,
            restart_count: c.restart_count.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
            // Docker reports year 1 for a container that never started.
            started_at: state.started_at.filter(|t| !t.starts_with("0001-")),
            exit_code,
            cmd: config.cmd.unwrap_or_default(),
            network_mode: c.host_config.and_then(|h| h.network_mode).unwrap_or_default(),
            // Docker reports 0 for a container that is not running.
            pid: state.pid.and_then(|p| u32::try_from(p).ok()).filter(|p| *p > 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_events_keep_layers_apart_from_image_messages() {
        let info = |id: &str, status: &str| CreateImageInfo {
            id: Some(id.into()),
            status: Some(status.into()),
            ..Default::default()
        };
        assert_eq!(
            PullEvent::from(info("v1.10", "Pulling from cozystack/talos")).layer,
            None
        );
        let done = PullEvent::from(info("abc123", "Pull complete"));
        assert!(done.layer_done());
        let mut downloading = info("abc123", "Downloading");
        downloading.progress_detail = Some(bollard::models::ProgressDetail {
            current: Some(10),
            total: Some(-1),
        });
        let event = PullEvent::from(downloading);
        assert_eq!((event.current, event.total), (Some(10), None));
        assert!(!event.layer_done());
    }
}
