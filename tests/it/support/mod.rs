//! Helpers shared by the integration tests; compiled once in the one test binary (`tests/it/main.rs`).

pub mod bad_inputs;
pub mod docker;
pub mod firmware;
pub mod grpc;
pub mod guard;
pub mod hostnet;
pub mod http;
pub mod images;
pub mod netns;
pub mod pe;
pub mod rust_source;
pub mod settings;
pub mod site;
pub mod validate_lab;
