//! cozyboot: a PXE/iPXE boot server for Talos/Cozystack nodes, driven through Docker.
//!
//! Data flows one way: `settings` → `render` → `plan` → `engine` → `validate`.

pub mod apply;
pub mod arch;
pub mod cli;
pub mod commands;
pub mod engine;
pub mod error;
pub mod foreign;
pub mod image_ref;
pub mod journey;
pub mod layout;
pub mod log_level;
pub mod matchbox_version;
pub mod pe;
pub mod plan;
pub mod ports;
pub mod probe;
pub mod progress;
pub mod reach;
pub mod render;
pub mod setting_problem;
pub mod settings;
pub mod site;
pub mod smoke;
pub mod state;
pub mod tls;
pub mod uki;
pub mod validate;
