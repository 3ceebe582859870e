//! [`ContainerEngine`]: what `apply` needs from a container engine, and nothing more.
//!
//! [`super::docker::Engine`] implements it against the Docker API; `engine::fake` (tests
//! only) implements it in memory, so every branch of a container replacement, rollback
//! included, runs in a unit test without a daemon.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::docker::{ContainerInfo, Engine, EngineError, ExportedFiles, FileSet, ImageInfo, NetworkInfo, PullEvent};
use super::extract::{ExtractReport, Limits};
use crate::render::container_spec::ContainerSpec;

// `up` runs on one task (`block_on`, futures joined, never spawned), so the futures need not
// be `Send`; a concrete engine's futures still are, since auto traits leak through them.
#[allow(async_fn_in_trait)]
pub trait ContainerEngine: Clone {
    /// The engine's address, for messages.
    fn host(&self) -> &str;
    fn api_version(&self) -> String;
    /// Whether the engine runs on this machine, so the pids it reports are this machine's.
    fn is_local(&self) -> bool;
    /// A copy that adds `labels` to the temporary containers it creates for its own use.
    fn with_temporary_labels(&self, labels: BTreeMap<String, String>) -> Self;

    /// `amd64` or `arm64`.
    async fn arch(&self) -> Result<&'static str, EngineError>;
    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>, EngineError>;
    async fn pull(&self, reference: &str, on_event: &mut dyn FnMut(PullEvent)) -> Result<(), EngineError>;

    async fn container(&self, name: &str) -> Result<Option<ContainerInfo>, EngineError>;
    async fn network(&self, name: &str) -> Result<Option<NetworkInfo>, EngineError>;
    async fn list_labelled(&self, label: &str) -> Result<Vec<ContainerInfo>, EngineError>;
    async fn create(&self, spec: &ContainerSpec) -> Result<String, EngineError>;
    async fn start(&self, name: &str) -> Result<(), EngineError>;
    async fn stop(&self, name: &str, timeout: Duration) -> Result<(), EngineError>;
    /// An already removed container is not an error.
    async fn remove(&self, name: &str, force: bool) -> Result<(), EngineError>;
    async fn rename(&self, name: &str, new_name: &str) -> Result<(), EngineError>;
    async fn logs(&self, name: &str, tail: Option<usize>) -> Result<String, EngineError>;
    async fn run_once(&self, image: &str, args: &[&str], timeout: Duration) -> Result<(i64, String), EngineError>;

    async fn export_dir(
        &self,
        image: &str,
        candidate_paths: &[&str],
        dest_staging: &Path,
        limits: &Limits,
    ) -> Result<ExtractReport, EngineError>;
    async fn export_files(
        &self,
        image: &str,
        sets: &[FileSet],
        dest_staging: &Path,
        limits: &Limits,
    ) -> Result<ExportedFiles, EngineError>;
}

impl ContainerEngine for Engine {
    fn host(&self) -> &str {
        Engine::host(self)
    }
    fn api_version(&self) -> String {
        Engine::api_version(self)
    }
    fn is_local(&self) -> bool {
        Engine::is_local(self)
    }
    fn with_temporary_labels(&self, labels: BTreeMap<String, String>) -> Self {
        self.clone().with_extra_labels(labels)
    }
    async fn arch(&self) -> Result<&'static str, EngineError> {
        Engine::arch(self).await
    }
    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>, EngineError> {
        Engine::image(self, reference).await
    }
    async fn pull(&self, reference: &str, on_event: &mut dyn FnMut(PullEvent)) -> Result<(), EngineError> {
        Engine::pull(self, reference, on_event).await
    }
    async fn container(&self, name: &str) -> Result<Option<ContainerInfo>, EngineError> {
        Engine::container(self, name).await
    }
    async fn network(&self, name: &str) -> Result<Option<NetworkInfo>, EngineError> {
        Engine::network(self, name).await
    }
    async fn list_labelled(&self, label: &str) -> Result<Vec<ContainerInfo>, EngineError> {
        Engine::list_labelled(self, label).await
    }
    async fn create(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        Engine::create(self, spec).await
    }
    async fn start(&self, name: &str) -> Result<(), EngineError> {
        Engine::start(self, name).await
    }
    async fn stop(&self, name: &str, timeout: Duration) -> Result<(), EngineError> {
        Engine::stop(self, name, timeout).await
    }
    async fn remove(&self, name: &str, force: bool) -> Result<(), EngineError> {
        Engine::remove(self, name, force).await
    }
    async fn rename(&self, name: &str, new_name: &str) -> Result<(), EngineError> {
        Engine::rename(self, name, new_name).await
    }
    async fn logs(&self, name: &str, tail: Option<usize>) -> Result<String, EngineError> {
        Engine::logs(self, name, tail).await
    }
    async fn run_once(&self, image: &str, args: &[&str], timeout: Duration) -> Result<(i64, String), EngineError> {
        Engine::run_once(self, image, args, timeout).await
    }
    async fn export_dir(
        &self,
        image: &str,
        candidate_paths: &[&str],
        dest_staging: &Path,
        limits: &Limits,
    ) -> Result<ExtractReport, EngineError> {
        Engine::export_dir(self, image, candidate_paths, dest_staging, limits).await
    }
    async fn export_files(
        &self,
        image: &str,
        sets: &[FileSet],
        dest_staging: &Path,
        limits: &Limits,
    ) -> Result<ExportedFiles, EngineError> {
        Engine::export_files(self, image, sets, dest_staging, limits).await
    }
}
