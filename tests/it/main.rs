//! The integration tests: one binary (each test binary links the whole crate again), a module
//! per user-visible area, and `support` compiled once for all of them.

mod bad_input;
mod debian_ipxe;
mod dhcp_boot;
mod docs_tests;
mod engine_docker;
mod errors_doc;
mod export_bootbox;
mod extract_full_disk;
mod firmware_boot;
mod firmware_up;
mod ipxe_arm64;
mod layers;
mod macvlan;
mod nodes;
mod ports_netns;
mod power;
mod probe_netns;
mod reliability;
mod render;
mod render_kubernetes;
mod rpc_grpc;
mod rpi_eeprom;
mod rpi_uefi_vars;
mod secrets;
mod site_memory;
mod smoke;
mod support;
mod test_tree;
mod two_sites;
mod uboot;
mod up_engine;
mod validate;
