//! `matchbox-listen`: which addresses matchbox's HTTP and gRPC listeners bind.
//!
//! matchbox serves kernels, boot scripts and, with `talos-config`/`talos-nodes`, whole Talos
//! machine configs to anyone who asks. Bound to every interface (`0.0.0.0`) it answers on the
//! host's other networks too: an uplink, a VPN such as Tailscale. So it binds the server
//! address by default, the one address machines are told to use.

use super::choice::Choice;
use serde::Serialize;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatchboxListen {
    /// `server-ip` only: what the machines use, and nothing else.
    Server,
    /// Every IPv4 address of matchbox's network namespace, for clients that reach it some
    /// other way: through a port forward or NAT to another address of the host, a proxy on
    /// the host asking 127.0.0.1, or gRPC clients (terraform-provider-matchbox) on a
    /// management network.
    All,
}

impl MatchboxListen {
    pub const DEFAULT: MatchboxListen = MatchboxListen::Server;

    /// The address matchbox's listeners bind.
    pub fn address(self, server_ip: Ipv4Addr) -> Ipv4Addr {
        match self {
            MatchboxListen::Server => server_ip,
            MatchboxListen::All => Ipv4Addr::UNSPECIFIED,
        }
    }
}

impl Choice for MatchboxListen {
    const WHAT: &'static str = "matchbox listen scope";
    const ALL: &'static [Self] = &[MatchboxListen::Server, MatchboxListen::All];

    fn name(self) -> &'static str {
        match self {
            MatchboxListen::Server => "server",
            MatchboxListen::All => "all",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_binds_the_server_address_and_all_binds_every_address() {
        let ip = Ipv4Addr::new(10, 20, 13, 140);
        assert_eq!(MatchboxListen::parse("server").unwrap().address(ip), ip);
        assert_eq!(
            MatchboxListen::parse(" ALL ").unwrap().address(ip),
            Ipv4Addr::UNSPECIFIED
        );
        assert!(MatchboxListen::parse("0.0.0.0").is_err());
    }
}
