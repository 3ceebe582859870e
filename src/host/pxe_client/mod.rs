//! DHCP and TFTP client used to prove what a PXE firmware would be offered.
//!
//! The probe behaves like a network card's boot firmware on one interface: it broadcasts a
//! DHCPDISCOVER carrying the same architecture and vendor-class options a firmware sends,
//! collects every answer (a second DHCP server on the segment is the most common reason a node
//! boots the wrong thing), follows a proxy-DHCP server to UDP 4011 when that is how it answers,
//! and downloads the boot file over TFTP. Only [`lease`] (for the power-on storm benchmark)
//! requests a lease.
//!
//! Everything is blocking and bounded by the caller's timeouts, so a CLI command or a test can
//! run it on a plain thread (for example inside a network namespace).

pub mod dhcp;
pub mod tftp;

use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

pub use dhcp::{boot_file_for, discover, lease, pxe_boot_request, BootAnswer, DiscoverSpec, Offer, PxeMenuItem};
pub use tftp::{fetch, fetch_as};

/// Everything that can stop a probe, worded for the person running `cozyboot`.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "no DHCP offer within {waited_ms} ms on {iface}; likely causes: no DHCP server on that \
         segment, a firewall dropping UDP 67/68, or dnsmasq bound to another interface"
    )]
    NoAnswer { iface: String, waited_ms: u128 },

    #[error(
        "proxy DHCP server {server} sent no PXE boot answer on UDP {port} within {waited_ms} ms \
         via {iface}; likely causes: a firewall dropping UDP {port}, or no --pxe-service \
         matching this client's architecture"
    )]
    NoBootServerAnswer {
        iface: String,
        server: Ipv4Addr,
        port: u16,
        waited_ms: u128,
    },

    #[error(
        "permission denied binding UDP port {port} on {iface}: probing like a PXE firmware \
         needs root (or CAP_NET_BIND_SERVICE and CAP_NET_RAW)"
    )]
    PermissionDenied { iface: String, port: u16 },

    #[error(
        "UDP port {port} is already taken on this host (a DHCP client or server is running \
         without SO_REUSEADDR?)"
    )]
    PortInUse { port: u16 },

    #[error("network interface {iface} does not exist")]
    NoSuchInterface { iface: String },

    #[error("building the DHCP packet failed: {0}")]
    Encode(String),

    #[error("TFTP server {server} refused {file}: error {code}: {message}")]
    TftpRefused {
        server: Ipv4Addr,
        file: String,
        code: u16,
        message: String,
    },

    #[error(
        "TFTP transfer of {file} from {server} timed out: no answer after {attempts} attempts \
         of {per_attempt:?}; likely causes: TFTP not enabled (dnsmasq --enable-tftp), a \
         firewall dropping UDP 69 or the server's data port"
    )]
    TftpTimeout {
        server: Ipv4Addr,
        file: String,
        attempts: u32,
        per_attempt: Duration,
    },

    #[error("TFTP server {server} broke the protocol while sending {file}: {detail}")]
    TftpProtocol {
        server: Ipv4Addr,
        file: String,
        detail: String,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl ProbeError {
    fn io(context: impl Into<String>, source: io::Error) -> Self {
        ProbeError::Io {
            context: context.into(),
            source,
        }
    }
}
