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
pub mod rpi;
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

/// Writes `<dir>/.cozyboot/journey.json` as `nodes` would after reading these logs (each with
/// the container it came from), so a test can start from machines whose containers are gone.
pub fn save_journal(dir: &std::path::Path, logs: &[(cozyboot::journey::event::Source, String)]) {
    use cozyboot::journey::event::Source;
    use cozyboot::journey::journal::{Entry, Journal, SCHEMA};
    use cozyboot::journey::{dnsmasq_log, matchbox_log};
    let events = logs
        .iter()
        .flat_map(|(source, text)| {
            let read = match source {
                Source::Dnsmasq => dnsmasq_log::events(text),
                Source::Matchbox => matchbox_log::events(text),
            };
            read.into_iter().map(|event| Entry {
                source: Some(*source),
                event,
            })
        })
        .collect();
    Journal {
        schema: SCHEMA.into(),
        events,
    }
    .save(dir)
    .unwrap();
}
