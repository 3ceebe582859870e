//! The only code that talks to the Docker Engine.
//!
//! - [`contract`]: [`ContainerEngine`], what `apply` needs from an engine (Docker, or the
//!   in-memory fake of the unit tests).
//! - [`docker`]: [`Engine`], the bollard-backed client (images, containers, logs, extraction).
//! - [`extract`]: the streaming, path-safe tar extractor used for boot assets.
//! - [`candidates`]: which of an image's possible layouts it has, for the engine and its fake.
//!
//! What a container should look like is plain data one layer down
//! ([`crate::render::container_spec`]): the engine consumes it and never defines it.

pub mod candidates;
pub mod contract;
pub mod docker;
pub mod extract;
#[cfg(test)]
pub mod fake;

pub use contract::ContainerEngine;
pub use docker::{ContainerInfo, Engine, EngineError, ExportedFiles, FileSet, ImageInfo, PullEvent, TEMPORARY_LABEL};
pub use extract::{extract, ExtractError, ExtractReport, ExtractedFile, Limits, Rule};
// What `create` takes, named where the engine's callers look for it.
pub use crate::render::container_spec::{Bind, ContainerSpec, NetworkMode};
