//! [`Engine`]: cozyboot's only door to the Docker Engine API (through bollard).
//!
//! - [`client`]: the connection, images, containers, logs;
//! - [`export`]: files out of an image, streamed through the extractor;
//! - [`body`]: a [`ContainerSpec`](crate::render::container_spec::ContainerSpec) as a Docker create body;
//! - [`errors`]: [`EngineError`], and bollard's errors mapped to it;
//! - [`types`]: the plain data the engine returns.

mod body;
mod client;
mod errors;
mod export;
mod types;

pub use client::Engine;
pub use errors::EngineError;
pub use export::TEMPORARY_LABEL;
pub use types::{ContainerInfo, ExportedFiles, FileSet, ImageInfo, NetworkInfo, PullEvent};
