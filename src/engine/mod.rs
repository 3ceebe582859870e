//! The only code that talks to the Docker Engine.
//!
//! - [`spec`]: what a container should look like, as plain data with a stable hash.
//! - [`docker`]: [`Engine`], the bollard-backed client (images, containers, logs, extraction).
//! - [`extract`]: the streaming, path-safe tar extractor used for boot assets.

pub mod docker;
pub mod extract;
pub mod spec;

pub use docker::{ContainerInfo, Engine, EngineError, ExportedFiles, FileSet, ImageInfo, PullEvent, TEMPORARY_LABEL};
pub use extract::{extract, ExtractError, ExtractReport, ExtractedFile, Limits, Rule};
pub use spec::{Bind, ContainerSpec, NetworkMode};
