//! matchbox-double: a test double of poseidon/matchbox v0.11.0 (see docs/testing.md).

pub mod app;
pub mod flags;
pub mod gotemplate;
pub mod http;
pub mod labels;
pub mod log;
pub mod rpc;
pub mod store;
pub mod tls;

/// The version the double reports (the matchbox release it imitates).
pub const VERSION: &str = "v0.11.0";
