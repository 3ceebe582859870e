//! cozyboot: a PXE/iPXE boot server for Talos/Cozystack nodes, driven through Docker.
//!
//! Data flows one way, and the modules are layered to match: a module may name (`crate::X`)
//! only its own layer or a lower one. From the bottom up:
//!
//! | layer | holds |
//! |---|---|
//! | [`error`] | errors that reach the user, exit codes, a problem with one setting |
//! | [`artifacts`] | pure facts: the arch table, image references, image layouts, PE, UKI, TLS, matchbox versions |
//! | [`settings`] | flags + file + environment → validated `Settings` |
//! | [`render`] | settings → dnsmasq argv, matchbox tree, container specs (pure, and the atomic writes of the tree) |
//! | [`store`] | what cozyboot keeps in the data dir, and the files there it did not write |
//! | [`plan`] | desired vs observed → actions (pure) |
//! | [`engine`] | the only code that talks to Docker |
//! | [`host`] | the only code that asks the host's network directly: ports, reachability, DHCP/TFTP probe |
//! | [`journey`] | machines' ways through the boot, from the containers' logs |
//! | [`site`] | which boot site a command means, as `up` recorded it |
//! | [`apply`] | `up`: the plan carried out through the engine |
//! | [`validate`] | checks with evidence |
//! | [`smoke`] | a whole boot in a VM |
//! | [`cli`] | clap types only |
//! | [`commands`] | one per subcommand: resolve, call, return an `Output` |
//!
//! The modules are declared below in that order. `tests/it/layers.rs` holds the rule and fails naming the file and line that breaks it.

pub mod error;

pub mod artifacts;

pub mod settings;

pub mod render;

pub mod store;

pub mod plan;

pub mod engine;

pub mod host;

pub mod journey;

pub mod site;

pub mod apply;

pub mod validate;

pub mod smoke;

pub mod cli;

pub mod commands;
