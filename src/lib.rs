//! cozyboot: a PXE/iPXE boot server for Talos/Cozystack nodes, driven through Docker.
//!
//! Data flows one way: `settings` → `render` → `plan` → `engine` → `validate`.

pub mod arch;
pub mod cli;
pub mod commands;
pub mod engine;
pub mod error;
pub mod probe;
pub mod render;
pub mod settings;
