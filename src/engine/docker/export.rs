//! Asset extraction: a never-started container's archive streamed into the extractor, and
//! the temporary container removed afterwards, also when the future is dropped.

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::errors::Error as ApiError;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    ContainerArchiveInfoOptionsBuilder, CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use bollard::{ClientVersion, Docker};
use futures_util::future::join_all;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::oneshot;
use tokio_util::io::StreamReader;
use tokio_util::sync::CancellationToken;

use super::client::Engine;
use super::errors::{api, create_error, detail, is_missing_path, status, EngineError};
use super::types::{ExportedFiles, FileSet};
use crate::engine::candidates::{archive_prefix, first_complete_set, first_present};
use crate::engine::extract::{extract, ExtractReport, Limits};

/// Images built FROM scratch have no CMD, and Docker refuses to create a container without
/// one. The container is never started, so the command never has to exist.
const NEVER_STARTED_CMD: &str = "/cozyboot-never-started";
/// Marks containers the engine creates for its own short-lived use (asset extraction).
pub const TEMPORARY_LABEL: &str = "io.cozyboot.temporary";
/// bollard's own default for a request to get its answer.
const REQUEST_TIMEOUT_SECS: u64 = 120;

impl Engine {
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
        // The second container is only used when a set has two files or more, but created
        // beside the first it costs no wait.
        self.in_temporaries(image, None, |containers: [String; 2]| async move {
            // dockerd answers a container's requests one at a time (it holds the container's
            // lock for each, and mounts it for each): spread the stats over both.
            let chosen = first_complete_set(sets, |i, path| self.stat_size(&containers[i % 2], image, path)).await?;
            let Some(chosen) = chosen else {
                return Err(EngineError::NoCandidatePath {
                    image: image.to_owned(),
                    tried: sets.iter().map(FileSet::describe).collect(),
                });
            };
            let mut report = self
                .copy_files(&containers, image, &chosen.files, dest_staging, limits)
                .await?;
            report.source_path = sets[chosen.set].required.first().cloned();
            Ok(ExportedFiles {
                set: chosen.set,
                paths: chosen.files.iter().map(|(path, _)| (*path).to_owned()).collect(),
                report,
            })
        })
        .await
    }

    /// The size of `path` in `container` if it exists, from the archive API's `HEAD` stat (no
    /// bytes of the file are read).
    async fn stat_size(&self, container: &str, image: &str, path: &str) -> Result<Option<u64>, EngineError> {
        let options = ContainerArchiveInfoOptionsBuilder::new().path(path).build();
        match self.docker.get_container_archive_info(container, Some(options)).await {
            Ok(stat) => Ok(Some(u64::try_from(stat.size).unwrap_or(0))),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(api(format!("looking for {path} in image {image}"), e)),
        }
    }

    /// Copies `files` (path and size in the image) into `dest`, each under its base name,
    /// the report's files in the order given.
    ///
    /// Two or more files are copied side by side from the two containers: the largest from
    /// the first, the others one after another from the second. dockerd holds a container's
    /// lock until its archive has been read to the end, so two copies from one container
    /// only ever run one after the other; from two, one file's `tar` runs while the other's
    /// bytes are written (Talos-shaped image on the bench VM: 1.78 s against 2.00 s, median
    /// of seven).
    async fn copy_files(
        &self,
        containers: &[String; 2],
        image: &str,
        files: &[(&str, u64)],
        dest: &Path,
        limits: &Limits,
    ) -> Result<ExtractReport, EngineError> {
        let Some(largest) = (0..files.len()).max_by_key(|&i| files[i].1) else {
            return Ok(ExtractReport::default());
        };
        let first = [files[largest].0];
        let rest: Vec<&str> = (0..files.len()).filter(|&i| i != largest).map(|i| files[i].0).collect();
        let (mut report, others) = futures_util::try_join!(
            self.copy_each(&containers[0], image, &first, dest, limits),
            self.copy_each(&containers[1], image, &rest, dest, limits),
        )?;
        report.merge(others);
        let place = |file: &crate::engine::extract::ExtractedFile| {
            files
                .iter()
                .position(|(path, _)| Path::new(path).file_name() == Some(file.path.as_os_str()))
        };
        report.files.sort_by_key(|file| place(file));
        Ok(report)
    }

    /// Copies `paths` from `container`, one after another.
    async fn copy_each(
        &self,
        container: &str,
        image: &str,
        paths: &[&str],
        dest: &Path,
        limits: &Limits,
    ) -> Result<ExtractReport, EngineError> {
        let mut report = ExtractReport::default();
        for path in paths {
            let one = self
                .download_into(container, image, path, "", dest, limits)
                .await?
                .ok_or_else(|| EngineError::Api {
                    action: format!("reading {path} from image {image}"),
                    detail: "the path vanished between stat and copy".to_owned(),
                })?;
            report.merge(one);
        }
        Ok(report)
    }

    /// Runs `work` with a container of `image` (never started unless `cmd` is given, which
    /// becomes its arguments), removed afterwards, also when `work` fails or the future is
    /// dropped.
    pub(super) async fn in_temporary<T, F, Fut>(
        &self,
        image: &str,
        cmd: Option<&[&str]>,
        work: F,
    ) -> Result<T, EngineError>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<T, EngineError>>,
    {
        self.in_temporaries::<1, _, _, _>(image, cmd, |[name]| work(name)).await
    }

    /// [`Engine::in_temporary`] with `N` containers, created and removed side by side.
    async fn in_temporaries<const N: usize, T, F, Fut>(
        &self,
        image: &str,
        cmd: Option<&[&str]>,
        work: F,
    ) -> Result<T, EngineError>
    where
        F: FnOnce([String; N]) -> Fut,
        Fut: Future<Output = Result<T, EngineError>>,
    {
        // Armed before the create requests so that a cancellation while Docker is still
        // creating a container removes it too; it is found by its name.
        let names: [String; N] = std::array::from_fn(|_| temporary_name());
        let mut guards = names.clone().map(|name| RemoveOnDrop {
            docker: Some(self.docker.clone()),
            name,
        });
        let created = join_all(names.iter().map(|name| self.create_temporary(image, name, cmd))).await;
        let mut failure = None;
        for (guard, outcome) in guards.iter_mut().zip(created) {
            if let Err(e) = outcome {
                guard.docker = None;
                failure.get_or_insert(e);
            }
        }
        if let Some(e) = failure {
            for (name, guard) in names.iter().zip(&mut guards) {
                if guard.docker.is_some() && self.remove(name, true).await.is_ok() {
                    guard.docker = None;
                }
            }
            return Err(e);
        }
        let outcome = work(names.clone()).await;
        let removed = join_all(names.iter().map(|name| self.remove(name, true))).await;
        for (guard, outcome) in guards.iter_mut().zip(&removed) {
            if outcome.is_ok() {
                guard.docker = None;
            }
        }
        let value = outcome?;
        removed.into_iter().collect::<Result<Vec<()>, _>>()?;
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
        let found = first_present(candidate_paths, |path| async move {
            self.download_into(container, image, path, &archive_prefix(path), dest, limits)
                .await
        })
        .await?;
        if let Some((path, mut report)) = found {
            report.source_path = Some(path.to_owned());
            return Ok(report);
        }
        Err(EngineError::NoCandidatePath {
            image: image.to_owned(),
            tried: candidate_paths.iter().map(|p| (*p).to_owned()).collect(),
        })
    }

    /// `Ok(None)` when `path` does not exist in the container. `prefix` is the top directory
    /// of the archive to strip (empty for a single file, which keeps its name).
    ///
    /// The download and the extractor run on one thread of their own, with a connection and
    /// a single-threaded runtime of their own: the engine's bytes go from the socket to the
    /// file without crossing threads. Handing each 32 KiB piece of the body from the shared
    /// runtime to a blocking thread cost two wake-ups a piece and left the extraction
    /// slower than `docker cp` (docs/performance.md).
    async fn download_into(
        &self,
        container: &str,
        image: &str,
        path: &str,
        prefix: &str,
        dest: &Path,
        limits: &Limits,
    ) -> Result<Option<ExtractReport>, EngineError> {
        let job = Download {
            host: self.host.clone(),
            version: self.docker.client_version(),
            container: container.to_owned(),
            image: image.to_owned(),
            path: path.to_owned(),
            prefix: prefix.to_owned(),
            dest: dest.to_owned(),
            limits: *limits,
            cancel: CancellationToken::new(),
        };
        // Dropping this future (Ctrl-C, a timeout) stops the thread at its next read.
        let _stop = job.cancel.clone().drop_guard();
        let (done, result) = oneshot::channel();
        std::thread::Builder::new()
            .name("cozyboot-extract".to_owned())
            .spawn(move || {
                let _ = done.send(job.run());
            })
            .map_err(|e| EngineError::Api {
                action: format!("extracting {path} from image {image}"),
                detail: format!("could not start the extraction thread: {e}"),
            })?;
        result.await.unwrap_or_else(|_| {
            Err(EngineError::Api {
                action: format!("extracting {path} from image {image}"),
                detail: "the extractor stopped unexpectedly".to_owned(),
            })
        })
    }
}

/// One archive download and extraction, run on its own thread by [`Download::run`].
struct Download {
    host: String,
    /// The API version the shared client negotiated.
    version: ClientVersion,
    container: String,
    image: String,
    path: String,
    prefix: String,
    dest: std::path::PathBuf,
    limits: Limits,
    cancel: CancellationToken,
}

impl Download {
    fn run(self) -> Result<Option<ExtractReport>, EngineError> {
        let reading = || format!("reading {} from image {}", self.path, self.image);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| EngineError::Api {
                action: reading(),
                detail: format!("could not start a runtime for the download: {e}"),
            })?;
        // A client of its own: connections already in the shared client's pool are driven
        // by the shared runtime's threads.
        let docker = runtime
            .block_on(connect(&self.host, &self.version))
            .map_err(|e| api(reading(), e))?;
        let options = DownloadFromContainerOptionsBuilder::new().path(&self.path).build();
        // Fused: an empty body is polled again after its end by the reader below.
        let mut body = docker.download_from_container(&self.container, Some(options)).fuse();
        // The engine answers 404 before any byte when the path is missing: peek to tell.
        let first = match runtime.block_on(body.next()) {
            Some(Err(e)) if is_missing_path(&e) => return Ok(None),
            Some(Err(e)) => return Err(api(reading(), e)),
            Some(Ok(first)) => Some(first),
            None => None,
        };
        let pieces = futures_util::stream::iter(first.map(Ok)).chain(body).map(|piece| {
            piece.map_err(|e| io::Error::other(format!("download from the engine failed: {}", detail(&e))))
        });
        let reader = BlockingBody {
            runtime: &runtime,
            body: StreamReader::new(pieces),
            cancel: &self.cancel,
        };
        extract(reader, &self.dest, &self.prefix, &self.limits)
            .map(Some)
            .map_err(|source| EngineError::Extract {
                image: self.image.clone(),
                path: self.path.clone(),
                source,
            })
    }
}

/// The same engine as the shared client, at the API version it negotiated (asked again only
/// where bollard cannot be given it: the engine's `/version` takes tens of milliseconds).
async fn connect(host: &str, version: &ClientVersion) -> Result<Docker, ApiError> {
    if host.starts_with("unix://") {
        return Docker::connect_with_unix(host, REQUEST_TIMEOUT_SECS, version);
    }
    Docker::connect_with_host(host)?.negotiate_version().await
}

/// A blocking [`Read`] over an async body, driven by a single-threaded runtime on the
/// reading thread itself. (tokio-util's `SyncIoBridge` blocks on a runtime handle, which on
/// a single-threaded runtime cannot drive the socket.)
struct BlockingBody<'a, R> {
    runtime: &'a tokio::runtime::Runtime,
    body: R,
    cancel: &'a CancellationToken,
}

impl<R: AsyncRead + Unpin> Read for BlockingBody<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (body, cancel) = (&mut self.body, self.cancel);
        self.runtime.block_on(async {
            tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    // Not `Interrupted`: readers retry those.
                    Err(io::Error::other("the extraction was cancelled"))
                },
                read = body.read(buf) => read,
            }
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn blocking_read<S>(pieces: S, cancel: &CancellationToken, out: &mut Vec<u8>) -> io::Result<usize>
    where
        S: futures_util::Stream<Item = io::Result<&'static [u8]>> + Unpin,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut reader = BlockingBody {
            runtime: &runtime,
            body: StreamReader::new(pieces),
            cancel,
        };
        reader.read_to_end(out)
    }

    #[test]
    fn blocking_body_reassembles_pieces_and_reports_errors() {
        let pieces = futures_util::stream::iter([
            Ok(&b"hello "[..]),
            Ok(&b""[..]),
            Ok(&b"world"[..]),
            Err(io::Error::other("cut")),
        ]);
        let mut out = Vec::new();
        let err = blocking_read(pieces, &CancellationToken::new(), &mut out).unwrap_err();
        assert_eq!(out, b"hello world");
        assert_eq!(err.to_string(), "cut");
    }

    #[test]
    fn blocking_body_stops_a_waiting_read_when_cancelled() {
        // A body that never sends another byte: only the cancellation can end the read. It
        // comes while the read waits, as when `up` is interrupted mid-download.
        let cancel = CancellationToken::new();
        let waiting = {
            let cancel = cancel.clone();
            futures_util::stream::poll_fn(move |_| {
                cancel.cancel();
                std::task::Poll::Pending
            })
        };
        let pieces = futures_util::stream::iter([Ok(&b"part"[..])]).chain(waiting);
        let mut out = Vec::new();
        let err = blocking_read(pieces, &cancel, &mut out).unwrap_err();
        assert_eq!(out, b"part");
        assert_eq!(err.to_string(), "the extraction was cancelled");
        assert_ne!(err.kind(), io::ErrorKind::Interrupted, "readers would retry it forever");
    }
}
