//! [`Engine`]: cozyboot's only door to the Docker Engine API (through bollard).
//!
//! Every method names what it was doing and on which object when it fails, so callers can
//! show the error as is.

use std::collections::{BTreeMap, HashMap};
use std::error::Error as StdError;
use std::future::Future;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::errors::Error as ApiError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, CreateImageInfo, EndpointIpamConfig, EndpointSettings, HostConfig,
    Mount, MountType, NetworkingConfig, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    ContainerArchiveInfoOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    DownloadFromContainerOptionsBuilder, InspectContainerOptions, InspectNetworkOptions, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder, RenameContainerOptionsBuilder,
    StartContainerOptions, StopContainerOptionsBuilder, WaitContainerOptions,
};
use bollard::Docker;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::extract::{extract, ExtractError, ExtractReport, Limits};
use super::spec::{ContainerSpec, NetworkMode};
use crate::image_ref::ImageRef;

const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// Connecting and pinging a healthy local engine takes milliseconds; anything slower is a
/// daemon that is hung or a TCP host that drops packets, and the user should hear about it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Images built FROM scratch have no CMD, and Docker refuses to create a container without
/// one. The container is never started, so the command never has to exist.
const NEVER_STARTED_CMD: &str = "/cozyboot-never-started";
/// Marks containers the engine creates for its own short-lived use (asset extraction).
pub const TEMPORARY_LABEL: &str = "io.cozyboot.temporary";
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// A container must stay up this long to count as running: a crash-looping one is briefly
/// "running" between restarts.
const SETTLE: Duration = Duration::from_secs(1);
const LOG_LINES_IN_ERRORS: usize = 20;
/// Chunks in flight between the download and the extractor thread (bounded: backpressure).
const PIPE_DEPTH: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{}", unreachable_message(host, detail))]
    Unreachable { host: String, detail: String },
    #[error("invalid image reference `{reference}`: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("pulling image {image} failed: {detail}")]
    Pull { image: String, detail: String },
    #[error("image {image} is not in the Docker Engine (pull it first)")]
    NoSuchImage { image: String },
    #[error("no container named {name}")]
    NoSuchContainer { name: String },
    #[error("container name {name} is taken: {detail}")]
    Conflict { name: String, detail: String },
    #[error("invalid container spec for {name}: {reason}")]
    InvalidSpec { name: String, reason: String },
    #[error("image {image} has none of these paths: {}", tried.join(", "))]
    NoCandidatePath { image: String, tried: Vec<String> },
    #[error("extracting {path} from image {image}: {source}")]
    Extract {
        image: String,
        path: String,
        #[source]
        source: ExtractError,
    },
    #[error("container {name} is not running (status {status}{}); last log lines:\n{logs}",
        exit_code.map(|c| format!(", exit code {c}")).unwrap_or_default())]
    NotRunning {
        name: String,
        status: String,
        exit_code: Option<i64>,
        logs: String,
    },
    #[error("the Docker Engine runs on `{0}`; cozyboot supports amd64 and arm64 hosts")]
    UnsupportedArch(String),
    #[error("{action}: {detail}")]
    Api { action: String, detail: String },
    #[error("writing container logs: {0}")]
    Output(#[source] io::Error),
}

/// One way an image may lay out a set of files (absolute paths inside the image).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSet {
    pub required: Vec<String>,
    pub optional: Vec<String>,
}

impl FileSet {
    fn describe(&self) -> String {
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

fn unreachable_message(host: &str, detail: &str) -> String {
    let env = match std::env::var("DOCKER_HOST") {
        Ok(value) if !value.is_empty() => format!("it is `{value}`"),
        _ => "it is unset".to_owned(),
    };
    format!(
        "cannot reach the Docker Engine at {host}: {detail}. Check that the Docker daemon is running \
         (e.g. `systemctl status docker`), that this user may use its socket (root, or a member of the \
         `docker` group), and that the DOCKER_HOST environment variable names the right engine ({env})"
    )
}

/// One progress message from `docker pull`.
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

/// A connection to one Docker Engine.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    host: String,
    extra_labels: BTreeMap<String, String>,
}

impl Engine {
    /// Connects to `DOCKER_HOST`, or the local socket when it is unset.
    pub async fn connect() -> Result<Engine, EngineError> {
        Self::connect_to(None).await
    }

    /// Connects to `host` (`unix://…`, `tcp://…`, or a socket path), falling back to
    /// `DOCKER_HOST` and then the local socket, and checks that an engine answers.
    pub async fn connect_to(host: Option<&str>) -> Result<Engine, EngineError> {
        let host = resolve_host(host);
        let unreachable = |detail: String| EngineError::Unreachable {
            host: host.clone(),
            detail,
        };
        let docker = Docker::connect_with_host(&host).map_err(|e| unreachable(detail(&e)))?;
        // bollard speaks a newer API than older engines accept (Docker 20.10 stops at 1.41);
        // negotiating settles on the lower of the two.
        let docker = within(CONNECT_TIMEOUT, docker.negotiate_version())
            .await
            .map_err(unreachable)?;
        within(CONNECT_TIMEOUT, docker.ping()).await.map_err(unreachable)?;
        Ok(Engine {
            docker,
            host,
            extra_labels: BTreeMap::new(),
        })
    }

    /// Labels added to the temporary containers the engine creates on its own (tests use
    /// this to find and clean up what they caused).
    pub fn with_extra_labels(mut self, labels: BTreeMap<String, String>) -> Self {
        self.extra_labels = labels;
        self
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// The API version in use after negotiation, e.g. `1.41`.
    pub fn api_version(&self) -> String {
        self.docker.client_version().to_string()
    }

    /// The engine's CPU architecture as an image platform name: `amd64` or `arm64`.
    pub async fn arch(&self) -> Result<&'static str, EngineError> {
        let version = self
            .docker
            .version()
            .await
            .map_err(|e| api("reading the engine version", e))?;
        let raw = version.arch.unwrap_or_default();
        normalize_arch(&raw).ok_or(EngineError::UnsupportedArch(raw))
    }

    // ---- images -------------------------------------------------------------------------

    pub async fn image(&self, reference: &str) -> Result<Option<ImageInfo>, EngineError> {
        match self.docker.inspect_image(reference).await {
            Ok(image) => Ok(Some(ImageInfo {
                id: image.id.unwrap_or_default(),
                repo_digests: image.repo_digests.unwrap_or_default(),
                created: image.created.map(|d| d.to_string()),
                architecture: image.architecture,
            })),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(api(format!("inspecting image {reference}"), e)),
        }
    }

    /// Pulls exactly `reference` (a missing tag means `latest`, never "all tags").
    pub async fn pull(&self, reference: &str, on_event: &mut dyn FnMut(PullEvent)) -> Result<(), EngineError> {
        let (from_image, tag) = split_reference(reference)?;
        let mut options = CreateImageOptionsBuilder::new().from_image(&from_image);
        if let Some(tag) = &tag {
            options = options.tag(tag);
        }
        let pull_error = |detail: String| EngineError::Pull {
            image: reference.to_owned(),
            detail,
        };
        let mut progress = self.docker.create_image(Some(options.build()), None, None);
        while let Some(message) = progress.next().await {
            on_event(PullEvent::from(message.map_err(|e| pull_error(detail(&e)))?));
        }
        // The stream can end cleanly without an image (e.g. a proxy cut it short).
        match self.image(reference).await? {
            Some(_) => Ok(()),
            None => Err(pull_error("the pull ended but the engine has no such image".into())),
        }
    }

    /// Removes an image; an image that is already gone is not an error.
    pub async fn remove_image(&self, reference: &str, force: bool) -> Result<(), EngineError> {
        let options = RemoveImageOptionsBuilder::new().force(force).build();
        match self.docker.remove_image(reference, Some(options), None).await {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(api(format!("removing image {reference}"), e)),
        }
    }

    // ---- containers ---------------------------------------------------------------------

    pub async fn container(&self, name: &str) -> Result<Option<ContainerInfo>, EngineError> {
        match self
            .docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => Ok(Some(c.into())),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(api(format!("inspecting container {name}"), e)),
        }
    }

    /// A Docker network by name or id; `None` when there is none.
    pub async fn network(&self, name: &str) -> Result<Option<NetworkInfo>, EngineError> {
        match self.docker.inspect_network(name, None::<InspectNetworkOptions>).await {
            Ok(n) => {
                let options = n.options.unwrap_or_default();
                Ok(Some(NetworkInfo {
                    name: n.name.unwrap_or_else(|| name.to_string()),
                    driver: n.driver.unwrap_or_default(),
                    parent: options.get("parent").cloned(),
                }))
            }
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(api(format!("inspecting network {name}"), e)),
        }
    }

    /// Whether the engine runs on this machine (a unix socket), so that the pids it reports
    /// are this machine's.
    pub fn is_local(&self) -> bool {
        self.host.starts_with("unix://")
    }

    /// All containers, running or not, carrying `label` (`key` or `key=value`), by name.
    pub async fn list_labelled(&self, label: &str) -> Result<Vec<ContainerInfo>, EngineError> {
        let filters = HashMap::from([("label", vec![label])]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| api(format!("listing containers labelled {label}"), e))?;
        let mut found = Vec::with_capacity(summaries.len());
        for id in summaries.into_iter().filter_map(|s| s.id) {
            // A container removed between the list and the inspect is simply gone.
            if let Some(info) = self.container(&id).await? {
                found.push(info);
            }
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    /// Creates (does not start) the container described by `spec`; returns its id.
    pub async fn create(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        validate_spec(spec)?;
        let options = CreateContainerOptionsBuilder::new().name(&spec.name).build();
        match self.docker.create_container(Some(options), container_body(spec)).await {
            Ok(created) => Ok(created.id),
            Err(e) => Err(create_error(&spec.name, &spec.image, e)),
        }
    }

    /// Starts a container; one that is already running is left alone.
    pub async fn start(&self, name: &str) -> Result<(), EngineError> {
        self.docker
            .start_container(name, None::<StartContainerOptions>)
            .await
            .map_err(|e| container_error(name, format!("starting container {name}"), e))
    }

    /// Stops a container, killing it after `timeout`; a stopped one is left alone.
    /// Keep `timeout` well under two minutes, bollard's limit for one request.
    pub async fn stop(&self, name: &str, timeout: Duration) -> Result<(), EngineError> {
        let seconds = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::new().t(seconds).build();
        self.docker
            .stop_container(name, Some(options))
            .await
            .map_err(|e| container_error(name, format!("stopping container {name}"), e))
    }

    /// Removes a container; one that is already gone is not an error.
    pub async fn remove(&self, name: &str, force: bool) -> Result<(), EngineError> {
        let options = RemoveContainerOptionsBuilder::new().force(force).build();
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(api(format!("removing container {name}"), e)),
        }
    }

    pub async fn rename(&self, name: &str, new_name: &str) -> Result<(), EngineError> {
        let options = RenameContainerOptionsBuilder::new().name(new_name).build();
        self.docker
            .rename_container(name, options)
            .await
            .map_err(|e| match status(&e) {
                Some(409) => EngineError::Conflict {
                    name: new_name.to_owned(),
                    detail: detail(&e),
                },
                _ => container_error(name, format!("renaming container {name} to {new_name}"), e),
            })
    }

    /// The container's stdout and stderr, interleaved as Docker stored them.
    pub async fn logs(&self, name: &str, tail: Option<usize>) -> Result<String, EngineError> {
        self.read_logs(name, logs_options(tail, false)).await
    }

    /// The container's logs with docker's RFC 3339 time in front of each line: dnsmasq writes
    /// none of its own, and `cozyboot nodes` needs to know when each machine got where.
    pub async fn logs_with_times(&self, name: &str, tail: Option<usize>) -> Result<String, EngineError> {
        let mut options = logs_options(tail, false);
        options.timestamps = true;
        self.read_logs(name, options).await
    }

    async fn read_logs(
        &self,
        name: &str,
        options: bollard::query_parameters::LogsOptions,
    ) -> Result<String, EngineError> {
        let mut stream = self.docker.logs(name, Some(options));
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| container_error(name, format!("reading logs of {name}"), e))?;
            out.extend_from_slice(chunk.as_ref());
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Copies the container's logs to `out` as they come, until it stops or ctrl-c.
    pub async fn follow_logs<W>(&self, name: &str, tail: Option<usize>, out: &mut W) -> Result<(), EngineError>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        self.follow_logs_until(name, tail, out, async {
            // If no handler can be installed, follow until the container stops.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
        .await
    }

    /// Like [`Engine::follow_logs`], stopping when `stop` completes instead of on ctrl-c.
    pub async fn follow_logs_until<W>(
        &self,
        name: &str,
        tail: Option<usize>,
        out: &mut W,
        stop: impl Future<Output = ()>,
    ) -> Result<(), EngineError>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let mut stream = self.docker.logs(name, Some(logs_options(tail, true)));
        tokio::pin!(stop);
        loop {
            tokio::select! {
                chunk = stream.next() => match chunk {
                    None => break,
                    Some(Ok(chunk)) => {
                        out.write_all(chunk.as_ref()).await.map_err(EngineError::Output)?;
                        out.flush().await.map_err(EngineError::Output)?;
                    }
                    Some(Err(e)) => return Err(container_error(name, format!("following logs of {name}"), e)),
                },
                () = &mut stop => break,
            }
        }
        Ok(())
    }

    /// Waits until the container has been running for a moment, or fails with its last log
    /// lines when it exits or `timeout` passes.
    pub async fn wait_running(&self, name: &str, timeout: Duration) -> Result<ContainerInfo, EngineError> {
        let deadline = Instant::now() + timeout;
        // (started_at, restart_count, first seen) of the current run.
        let mut up_since: Option<(Option<String>, u64, Instant)> = None;
        let mut initial_restarts: Option<u64> = None;
        loop {
            let info = self
                .container(name)
                .await?
                .ok_or_else(|| EngineError::NoSuchContainer { name: name.to_owned() })?;
            let now = Instant::now();
            if info.status == "running" {
                let run = (info.started_at.clone(), info.restart_count);
                match &up_since {
                    Some((started, restarts, since)) if (started, restarts) == (&run.0, &run.1) => {
                        if now.duration_since(*since) >= SETTLE {
                            return Ok(info);
                        }
                    }
                    _ => up_since = Some((run.0, run.1, now)),
                }
            } else {
                up_since = None;
            }
            // Under a restart policy a crashing container never stays "exited": a restart
            // already means it crashed.
            let first_count = *initial_restarts.get_or_insert(info.restart_count);
            let crashed = info.status == "restarting" || info.restart_count > first_count;
            let gave_up = matches!(info.status.as_str(), "exited" | "dead") || crashed || now >= deadline;
            if gave_up {
                return Err(self.not_running(info).await);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn not_running(&self, info: ContainerInfo) -> EngineError {
        let logs = match self.logs(&info.name, Some(LOG_LINES_IN_ERRORS)).await {
            Ok(logs) if logs.trim().is_empty() => "(no output)".to_owned(),
            Ok(logs) => logs.trim_end().to_owned(),
            Err(e) => format!("(logs unavailable: {e})"),
        };
        EngineError::NotRunning {
            name: info.name,
            status: info.status,
            exit_code: info.exit_code,
            logs,
        }
    }

    /// Runs `image` once with `args` (after its entrypoint), without a network, and returns
    /// its exit code and output; the container is removed afterwards. For short questions to
    /// an image, such as `matchbox -version`.
    pub async fn run_once(&self, image: &str, args: &[&str], timeout: Duration) -> Result<(i64, String), EngineError> {
        self.in_temporary(image, Some(args), |name| async move {
            self.docker
                .start_container(&name, None::<StartContainerOptions>)
                .await
                .map_err(|e| container_error(&name, format!("starting {image} {}", args.join(" ")), e))?;
            let waited = tokio::time::timeout(timeout, async {
                let mut wait = self.docker.wait_container(&name, None::<WaitContainerOptions>);
                let mut code = None;
                while let Some(item) = wait.next().await {
                    match item {
                        Ok(r) => code = Some(r.status_code),
                        // bollard reports a non-zero exit as an error carrying the code
                        Err(ApiError::DockerContainerWaitError { code: c, .. }) => code = Some(c),
                        Err(e) => return Err(api(format!("waiting for {image} {}", args.join(" ")), e)),
                    }
                }
                Ok(code.unwrap_or(-1))
            })
            .await
            .map_err(|_| EngineError::Api {
                action: format!("running {image} {}", args.join(" ")),
                detail: format!("it did not finish within {} s", timeout.as_secs()),
            })??;
            let output = self.logs(&name, None).await?;
            Ok((waited, output))
        })
        .await
    }

    // ---- asset extraction ---------------------------------------------------------------

    /// Copies the first of `candidate_paths` that exists in `image` into `dest_staging`,
    /// through a container that is created, never started, and always removed.
    ///
    /// The archive streams from the engine into [`extract`] without being held in memory.
    /// On error `dest_staging` may hold part of the files: callers discard it.
    pub async fn export_dir(
        &self,
        image: &str,
        candidate_paths: &[&str],
        dest_staging: &Path,
        limits: &Limits,
    ) -> Result<ExtractReport, EngineError> {
        self.in_temporary(image, None, |name| async move {
            self.export_first(&name, image, candidate_paths, dest_staging, limits)
                .await
        })
        .await
    }

    /// Copies single files out of `image` into `dest_staging` (each under its base name):
    /// those of the first of `sets` whose required files all exist, and whichever of its
    /// optional files exist. Which set an image has is found with the archive API's `HEAD`
    /// stat, so files outside the chosen set are never read.
    ///
    /// A required path that exists but is a link, device or directory is still copied, so
    /// the extractor refuses it with the rule it breaks instead of the set being passed over.
    pub async fn export_files(
        &self,
        image: &str,
        sets: &[FileSet],
        dest_staging: &Path,
        limits: &Limits,
    ) -> Result<ExportedFiles, EngineError> {
        self.in_temporary(image, None, |name| async move {
            for (index, set) in sets.iter().enumerate() {
                let mut found = true;
                for path in &set.required {
                    if !self.exists(&name, image, path).await? {
                        found = false;
                        break;
                    }
                }
                if !found {
                    continue;
                }
                let mut paths: Vec<&str> = set.required.iter().map(String::as_str).collect();
                for path in &set.optional {
                    if self.exists(&name, image, path).await? {
                        paths.push(path);
                    }
                }
                let mut report = ExtractReport::default();
                for path in &paths {
                    let one = self
                        .download_into(&name, image, path, "", dest_staging, limits)
                        .await?
                        .ok_or_else(|| EngineError::Api {
                            action: format!("reading {path} from image {image}"),
                            detail: "the path vanished between stat and copy".to_owned(),
                        })?;
                    report.merge(one);
                }
                report.source_path = set.required.first().cloned();
                return Ok(ExportedFiles {
                    set: index,
                    paths: paths.into_iter().map(str::to_owned).collect(),
                    report,
                });
            }
            Err(EngineError::NoCandidatePath {
                image: image.to_owned(),
                tried: sets.iter().map(FileSet::describe).collect(),
            })
        })
        .await
    }

    /// Whether `path` exists in `container`, from the archive API's `HEAD` stat (no bytes
    /// of the file are read).
    async fn exists(&self, container: &str, image: &str, path: &str) -> Result<bool, EngineError> {
        let options = ContainerArchiveInfoOptionsBuilder::new().path(path).build();
        match self.docker.get_container_archive_info(container, Some(options)).await {
            Ok(_) => Ok(true),
            Err(e) if status(&e) == Some(404) => Ok(false),
            Err(e) => Err(api(format!("looking for {path} in image {image}"), e)),
        }
    }

    /// Runs `work` with a container of `image` (never started unless `cmd` is given, which
    /// becomes its arguments), removed afterwards, also when `work` fails or the future is
    /// dropped.
    async fn in_temporary<T, F, Fut>(&self, image: &str, cmd: Option<&[&str]>, work: F) -> Result<T, EngineError>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<T, EngineError>>,
    {
        // Armed before the create request so that a cancellation while Docker is still
        // creating the container removes it too; it is found by its name.
        let name = temporary_name();
        let mut guard = RemoveOnDrop {
            docker: Some(self.docker.clone()),
            name: name.clone(),
        };
        if let Err(e) = self.create_temporary(image, &name, cmd).await {
            guard.docker = None;
            return Err(e);
        }
        let outcome = work(name.clone()).await;
        let removed = self.remove(&name, true).await;
        if removed.is_ok() {
            guard.docker = None;
        }
        let value = outcome?;
        removed?;
        Ok(value)
    }

    async fn create_temporary(&self, image: &str, name: &str, cmd: Option<&[&str]>) -> Result<(), EngineError> {
        let mut labels: HashMap<String, String> = self.extra_labels.clone().into_iter().collect();
        labels.insert(
            TEMPORARY_LABEL.to_owned(),
            if cmd.is_some() { "run" } else { "extract" }.to_owned(),
        );
        let cmd = match cmd {
            Some(args) => args.iter().map(|a| (*a).to_owned()).collect(),
            None => vec![NEVER_STARTED_CMD.to_owned()],
        };
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            cmd: Some(cmd),
            labels: Some(labels),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                network_mode: Some("none".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        match self.docker.create_container(Some(options), body).await {
            Ok(_) => Ok(()),
            Err(e) => Err(create_error(name, image, e)),
        }
    }

    async fn export_first(
        &self,
        container: &str,
        image: &str,
        candidate_paths: &[&str],
        dest: &Path,
        limits: &Limits,
    ) -> Result<ExtractReport, EngineError> {
        for path in candidate_paths {
            if let Some(mut report) = self
                .download_into(container, image, path, &archive_prefix(path), dest, limits)
                .await?
            {
                report.source_path = Some((*path).to_owned());
                return Ok(report);
            }
        }
        Err(EngineError::NoCandidatePath {
            image: image.to_owned(),
            tried: candidate_paths.iter().map(|p| (*p).to_owned()).collect(),
        })
    }

    /// `Ok(None)` when `path` does not exist in the container. `prefix` is the top directory
    /// of the archive to strip (empty for a single file, which keeps its name).
    async fn download_into(
        &self,
        container: &str,
        image: &str,
        path: &str,
        prefix: &str,
        dest: &Path,
        limits: &Limits,
    ) -> Result<Option<ExtractReport>, EngineError> {
        let options = DownloadFromContainerOptionsBuilder::new().path(path).build();
        let mut body = self.docker.download_from_container(container, Some(options));
        // The engine answers 404 before any byte when the path is missing: peek to tell.
        let first = match body.next().await {
            Some(Err(e)) if is_missing_path(&e) => return Ok(None),
            Some(Err(e)) => return Err(api(format!("reading {path} from image {image}"), e)),
            first => first.and_then(Result::ok),
        };
        let (tx, rx) = mpsc::channel(PIPE_DEPTH);
        let (dest_owned, prefix, limits) = (dest.to_owned(), prefix.to_owned(), *limits);
        let extractor =
            tokio::task::spawn_blocking(move || extract(ChannelReader::new(rx), &dest_owned, &prefix, &limits));
        pump(first, body, tx).await;
        let extracted = extractor.await.map_err(|e| EngineError::Api {
            action: format!("extracting {path} from image {image}"),
            detail: format!("the extractor stopped unexpectedly: {e}"),
        })?;
        extracted.map(Some).map_err(|source| EngineError::Extract {
            image: image.to_owned(),
            path: path.to_owned(),
            source,
        })
    }
}

/// Feeds the download into the extractor thread; stops early when the extractor is done.
async fn pump<B, S>(first: Option<B>, mut rest: S, tx: mpsc::Sender<io::Result<B>>)
where
    S: Stream<Item = Result<B, ApiError>> + Unpin,
{
    // No first chunk means an empty body: dropping `tx` gives the extractor its EOF.
    let Some(first) = first else { return };
    if tx.send(Ok(first)).await.is_err() {
        return;
    }
    while let Some(chunk) = rest.next().await {
        let failed = chunk.is_err();
        let chunk = chunk.map_err(|e| io::Error::other(format!("download from the engine failed: {}", detail(&e))));
        if tx.send(chunk).await.is_err() || failed {
            return;
        }
    }
}

/// A blocking [`Read`] over chunks sent from async code (tokio-util's `SyncIoBridge` needs
/// a feature this crate does not enable).
struct ChannelReader<B> {
    rx: mpsc::Receiver<io::Result<B>>,
    current: Option<B>,
    offset: usize,
}

impl<B> ChannelReader<B> {
    fn new(rx: mpsc::Receiver<io::Result<B>>) -> Self {
        ChannelReader {
            rx,
            current: None,
            offset: 0,
        }
    }
}

impl<B: AsRef<[u8]>> Read for ChannelReader<B> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(chunk) = &self.current {
                let rest = &chunk.as_ref()[self.offset..];
                if !rest.is_empty() {
                    let n = rest.len().min(buf.len());
                    buf[..n].copy_from_slice(&rest[..n]);
                    self.offset += n;
                    return Ok(n);
                }
            }
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.current = Some(chunk);
                    self.offset = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
    }
}

/// Best-effort removal when an extraction is abandoned (future dropped, or a panic).
struct RemoveOnDrop {
    docker: Option<Docker>,
    name: String,
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let (Some(docker), Ok(runtime)) = (self.docker.take(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let name = std::mem::take(&mut self.name);
        runtime.spawn(async move {
            let options = RemoveContainerOptionsBuilder::new().force(true).build();
            // A create still in flight when the removal arrives: retry once it has landed.
            for _ in 0..3 {
                match docker.remove_container(&name, Some(options.clone())).await {
                    Err(e) if status(&e) == Some(404) => tokio::time::sleep(Duration::from_millis(500)).await,
                    _ => return,
                }
            }
        });
    }
}

// ---- pure helpers -----------------------------------------------------------------------

fn resolve_host(explicit: Option<&str>) -> String {
    let host = explicit
        .map(str::to_owned)
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| DEFAULT_HOST.to_owned());
    // Accept a bare socket path, which people paste from `ls`.
    if host.starts_with('/') {
        format!("unix://{host}")
    } else {
        host
    }
}

async fn within<T>(limit: Duration, call: impl Future<Output = Result<T, ApiError>>) -> Result<T, String> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map_err(|e| detail(&e)),
        Err(_) => Err(format!("no answer within {} seconds", limit.as_secs())),
    }
}

fn normalize_arch(raw: &str) -> Option<&'static str> {
    match raw {
        "amd64" | "x86_64" => Some("amd64"),
        "arm64" | "aarch64" => Some("arm64"),
        _ => None,
    }
}

/// Splits a reference into the `fromImage` and `tag` query parameters of `/images/create`.
/// A registry port (`127.0.0.1:5000/a/b:tag`) is not a tag; a digest pins the image itself.
fn split_reference(reference: &str) -> Result<(String, Option<String>), EngineError> {
    let invalid = |reason: &str| EngineError::InvalidReference {
        reference: reference.to_owned(),
        reason: reason.to_owned(),
    };
    if reference.is_empty() || reference.chars().any(char::is_whitespace) {
        return Err(invalid("it is empty or contains whitespace"));
    }
    let parts = ImageRef::split(reference);
    if let Some(digest) = parts.digest {
        if parts.name.is_empty() || !digest.contains(':') {
            return Err(invalid("expected name@algorithm:digest"));
        }
        return Ok((reference.to_owned(), None));
    }
    if parts.name.is_empty() || parts.name.ends_with('/') || parts.tag == Some("") {
        return Err(invalid("expected [registry[:port]/]name[:tag]"));
    }
    Ok((parts.name.to_owned(), Some(parts.tag_or_latest().to_owned())))
}

/// The name Docker puts first in the tar of a directory: its last path component.
fn archive_prefix(path: &str) -> String {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn temporary_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "cozyboot-extract-{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn validate_spec(spec: &ContainerSpec) -> Result<(), EngineError> {
    let invalid = |reason: String| EngineError::InvalidSpec {
        name: spec.name.clone(),
        reason,
    };
    if spec.name.is_empty() || spec.image.is_empty() {
        return Err(invalid("name and image must not be empty".into()));
    }
    for bind in &spec.binds {
        // A relative source would silently become a named volume.
        if !bind.host.is_absolute() || !bind.container.starts_with('/') {
            return Err(invalid(format!(
                "bind {} -> {} must use absolute paths on both sides",
                bind.host.display(),
                bind.container
            )));
        }
        if bind.host.to_str().is_none() {
            return Err(invalid(format!("bind source {} is not UTF-8", bind.host.display())));
        }
    }
    Ok(())
}

/// The exact Docker create body for a spec.
fn container_body(spec: &ContainerSpec) -> ContainerCreateBody {
    // Mounts rather than `Binds`: no `:` parsing of paths, and a missing host path is an
    // error instead of an empty root-owned directory Docker would create.
    let mounts = spec
        .binds
        .iter()
        .map(|bind| Mount {
            typ: Some(MountType::BIND),
            source: Some(bind.host.to_string_lossy().into_owned()),
            target: Some(bind.container.clone()),
            read_only: Some(bind.read_only),
            ..Default::default()
        })
        .collect();
    let restart = if spec.restart_unless_stopped {
        RestartPolicyNameEnum::UNLESS_STOPPED
    } else {
        RestartPolicyNameEnum::NO
    };
    let host_config = HostConfig {
        mounts: Some(mounts),
        network_mode: Some(spec.network.docker_value()),
        cap_add: Some(spec.cap_add.clone()).filter(|caps| !caps.is_empty()),
        restart_policy: Some(RestartPolicy {
            name: Some(restart),
            maximum_retry_count: None,
        }),
        ..Default::default()
    };
    let networking_config = match &spec.network {
        NetworkMode::Named { name, ipv4: Some(ip) } => Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                name.clone(),
                EndpointSettings {
                    ipam_config: Some(EndpointIpamConfig {
                        ipv4_address: Some(ip.to_string()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )])),
        }),
        _ => None,
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        // An empty `Cmd` would be ambiguous across engine versions; leave it unset instead.
        cmd: Some(spec.cmd.clone()).filter(|cmd| !cmd.is_empty()),
        labels: Some(spec.labels.clone().into_iter().collect()),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    }
}

fn logs_options(tail: Option<usize>, follow: bool) -> bollard::query_parameters::LogsOptions {
    let tail = tail.map_or_else(|| "all".to_owned(), |n| n.to_string());
    LogsOptionsBuilder::new()
        .stdout(true)
        .stderr(true)
        .follow(follow)
        .tail(&tail)
        .build()
}

fn status(err: &ApiError) -> Option<u16> {
    match err {
        ApiError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn is_missing_path(err: &ApiError) -> bool {
    // A 404 also answers a vanished container; only a missing path moves to the next candidate.
    status(err) == Some(404) && !detail(err).contains("No such container")
}

fn api(action: impl Into<String>, err: ApiError) -> EngineError {
    EngineError::Api {
        action: action.into(),
        detail: detail(&err),
    }
}

fn container_error(name: &str, action: String, err: ApiError) -> EngineError {
    match status(&err) {
        Some(404) if detail(&err).contains("No such container") => {
            EngineError::NoSuchContainer { name: name.to_owned() }
        }
        _ => api(action, err),
    }
}

fn create_error(name: &str, image: &str, err: ApiError) -> EngineError {
    match status(&err) {
        Some(409) => EngineError::Conflict {
            name: name.to_owned(),
            detail: detail(&err),
        },
        Some(404) if detail(&err).contains("No such image") => EngineError::NoSuchImage {
            image: image.to_owned(),
        },
        _ => api(format!("creating container {name} from {image}"), err),
    }
}

/// The useful text of a bollard error: the engine's own message, or the cause chain.
fn detail(err: &ApiError) -> String {
    match err {
        ApiError::DockerResponseServerError { message, .. } => message.trim().to_owned(),
        ApiError::DockerStreamError { error } => error.trim().to_owned(),
        ApiError::SocketNotFoundError(path) => format!("the socket {path} does not exist"),
        ApiError::RequestTimeoutError => "the engine did not answer in time".to_owned(),
        other => cause_chain(other),
    }
}

fn cause_chain(err: &dyn StdError) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::spec::Bind;
    use std::net::Ipv4Addr;
    use std::path::PathBuf;

    #[test]
    fn pulls_by_name_and_tag_and_never_all_tags() {
        // How references split is image_ref's (tested there); the engine's part is that a
        // missing tag means `latest` (an empty tag would pull every tag) and a digest pins.
        for (reference, name, tag) in [
            ("alpine", "alpine", "latest"),
            ("127.0.0.1:5000/a/b:tag", "127.0.0.1:5000/a/b", "tag"),
        ] {
            let (got_name, got_tag) = split_reference(reference).unwrap();
            assert_eq!(
                (got_name.as_str(), got_tag.as_deref()),
                (name, Some(tag)),
                "{reference}"
            );
        }
        let digest = "quay.io/poseidon/matchbox@sha256:0123abcd";
        assert_eq!(split_reference(digest).unwrap(), (digest.to_owned(), None));
    }

    #[test]
    fn rejects_malformed_references() {
        for bad in ["", "a b", "alpine:", "reg:5000/", "@sha256:00", "x@nodigest"] {
            let err = split_reference(bad).unwrap_err();
            assert!(matches!(err, EngineError::InvalidReference { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn archive_prefix_is_the_last_component() {
        assert_eq!(archive_prefix("/assets/talos/arm64"), "arm64");
        assert_eq!(archive_prefix("/usr/install/arm64/"), "arm64");
    }

    #[test]
    fn host_resolution_accepts_bare_socket_paths() {
        assert_eq!(resolve_host(Some("/run/docker.sock")), "unix:///run/docker.sock");
        assert_eq!(resolve_host(Some("tcp://10.0.0.1:2375")), "tcp://10.0.0.1:2375");
    }

    #[test]
    fn arch_names_map_to_image_platforms() {
        assert_eq!(normalize_arch("x86_64"), Some("amd64"));
        assert_eq!(normalize_arch("aarch64"), Some("arm64"));
        assert_eq!(normalize_arch("arm64"), Some("arm64"));
        assert_eq!(normalize_arch("s390x"), None);
    }

    #[test]
    fn unreachable_message_says_what_to_check() {
        let err = EngineError::Unreachable {
            host: "unix:///nope.sock".into(),
            detail: "the socket /nope.sock does not exist".into(),
        };
        let text = err.to_string();
        for needle in ["unix:///nope.sock", "daemon is running", "docker` group", "DOCKER_HOST"] {
            assert!(text.contains(needle), "missing {needle:?} in {text}");
        }
    }

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

    fn spec() -> ContainerSpec {
        ContainerSpec {
            name: "cozyboot-matchbox".into(),
            image: "quay.io/poseidon/matchbox:v0.11.0".into(),
            cmd: vec!["-address=0.0.0.0:8080".into()],
            labels: BTreeMap::from([("io.cozyboot.role".into(), "matchbox".into())]),
            binds: vec![Bind {
                host: PathBuf::from("/var/lib/cozyboot/matchbox"),
                container: "/var/lib/matchbox".into(),
                read_only: true,
            }],
            network: NetworkMode::Named {
                name: "lan".into(),
                ipv4: Some(Ipv4Addr::new(10, 9, 8, 7)),
            },
            cap_add: vec!["NET_ADMIN".into()],
            restart_unless_stopped: true,
        }
    }

    #[test]
    fn create_body_maps_the_spec_exactly() {
        let body = container_body(&spec());
        assert_eq!(body.image.as_deref(), Some("quay.io/poseidon/matchbox:v0.11.0"));
        assert_eq!(body.cmd, Some(vec!["-address=0.0.0.0:8080".to_owned()]));
        assert_eq!(body.labels.unwrap()["io.cozyboot.role"], "matchbox");
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("lan"));
        assert_eq!(host.cap_add, Some(vec!["NET_ADMIN".to_owned()]));
        assert_eq!(
            host.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::UNLESS_STOPPED)
        );
        let mount = &host.mounts.unwrap()[0];
        assert_eq!(mount.typ, Some(MountType::BIND));
        assert_eq!(mount.source.as_deref(), Some("/var/lib/cozyboot/matchbox"));
        assert_eq!(mount.target.as_deref(), Some("/var/lib/matchbox"));
        assert_eq!(mount.read_only, Some(true));
        let endpoints = body.networking_config.unwrap().endpoints_config.unwrap();
        assert_eq!(
            endpoints["lan"].ipam_config.as_ref().unwrap().ipv4_address.as_deref(),
            Some("10.9.8.7")
        );
    }

    #[test]
    fn create_body_for_host_and_shared_netns() {
        let mut s = spec();
        s.network = NetworkMode::Host;
        s.cmd.clear();
        s.restart_unless_stopped = false;
        let body = container_body(&s);
        assert_eq!(body.cmd, None, "empty cmd keeps the image CMD");
        assert!(body.networking_config.is_none());
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("host"));
        assert_eq!(host.restart_policy.unwrap().name, Some(RestartPolicyNameEnum::NO));

        s.network = NetworkMode::Container("cozyboot-dnsmasq".into());
        assert_eq!(
            container_body(&s).host_config.unwrap().network_mode.as_deref(),
            Some("container:cozyboot-dnsmasq")
        );
    }

    #[test]
    fn specs_with_relative_binds_are_refused() {
        let mut s = spec();
        s.binds[0].host = PathBuf::from("relative/dir");
        assert!(matches!(validate_spec(&s), Err(EngineError::InvalidSpec { .. })));
        assert!(validate_spec(&spec()).is_ok());
    }

    #[test]
    fn channel_reader_reassembles_chunks_and_reports_errors() {
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Ok(b"hello ".to_vec())).unwrap();
        tx.try_send(Ok(Vec::new())).unwrap();
        tx.try_send(Ok(b"world".to_vec())).unwrap();
        tx.try_send(Err(io::Error::other("cut"))).unwrap();
        drop(tx);
        let mut reader = ChannelReader::new(rx);
        let mut out = Vec::new();
        let err = reader.read_to_end(&mut out).unwrap_err();
        assert_eq!(out, b"hello world");
        assert_eq!(err.to_string(), "cut");
        assert_eq!(reader.read(&mut [0u8; 8]).unwrap(), 0, "a closed channel reads as EOF");
    }
}
