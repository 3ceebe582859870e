//! [`Engine`]: the connection, images, containers and logs.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::{Duration, Instant};

use bollard::errors::Error as ApiError;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, InspectContainerOptions, InspectNetworkOptions,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
    RenameContainerOptionsBuilder, StartContainerOptions, StopContainerOptionsBuilder, WaitContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::body::{container_body, validate_spec};
use super::errors::{api, container_error, create_error, detail, status, EngineError};
use super::types::{ContainerInfo, ImageInfo, NetworkInfo, PullEvent};
use crate::artifacts::image_ref::ImageRef;
use crate::render::container_spec::ContainerSpec;

const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// Connecting and pinging a healthy local engine takes milliseconds; anything slower is a
/// daemon that is hung or a TCP host that drops packets, and the user should hear about it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// A container must stay up this long to count as running: a crash-looping one is briefly
/// "running" between restarts.
const SETTLE: Duration = Duration::from_secs(1);
const LOG_LINES_IN_ERRORS: usize = 20;

/// A connection to one Docker Engine.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(super) docker: Docker,
    pub(super) host: String,
    pub(super) extra_labels: BTreeMap<String, String>,
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
        // negotiating settles on the lower of the two. Its `/version` request is also the
        // check that an engine answers: a `/_ping` after it only cost another round trip.
        let docker = within(CONNECT_TIMEOUT, docker.negotiate_version())
            .await
            .map_err(unreachable)?;
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
}

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

fn logs_options(tail: Option<usize>, follow: bool) -> bollard::query_parameters::LogsOptions {
    let tail = tail.map_or_else(|| "all".to_owned(), |n| n.to_string());
    LogsOptionsBuilder::new()
        .stdout(true)
        .stderr(true)
        .follow(follow)
        .tail(&tail)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
