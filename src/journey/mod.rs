//! Every machine's way from DHCP to Talos maintenance mode, read from dnsmasq's and
//! matchbox's logs, and a diagnosis of where it stopped (`cozyboot nodes`); the machines seen,
//! as Cozystack BootBox's values (`cozyboot export bootbox`).
//!
//! Pure code: the logs come in as text, journeys and diagnoses go out. Reading the
//! containers, the journal on disk and the TCP probe live in `commands/nodes.rs` and
//! `journey/journal.rs`.

pub mod board;
pub mod bootbox;
pub mod clock;
pub mod diagnosis;
pub mod dnsmasq_log;
pub mod event;
pub mod journal;
pub mod matchbox_log;
pub mod model;
pub mod powered;
pub mod report;
pub mod validate_marks;
