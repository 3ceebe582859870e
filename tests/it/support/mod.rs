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

/// A captured log under `tests/fixtures/journey/` (see its README for where each came from).
pub fn journey_log(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/journey")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
