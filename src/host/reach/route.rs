//! Which way would a packet to an address leave from here? Asked of the kernel, because only
//! the kernel's routing table knows: a `connect()`ed UDP socket gets the route's source
//! address without sending anything, and the interface that holds that source address tells
//! whether the destination sits on its subnet (directly connected) or lies behind a gateway.
//!
//! Everything is looked up in the calling thread's network namespace.

use ipnet::Ipv4Net;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

/// How the kernel would reach an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// One of this namespace's own addresses (loopback included).
    Local,
    /// On the subnet of `iface`: the packet goes straight to the address, no gateway.
    OnLink { iface: String },
    /// Only through a gateway (e.g. the default route), leaving from `source`.
    ViaGateway { source: Ipv4Addr },
    /// No route at all ("network is unreachable").
    NoRoute(String),
}

impl Route {
    /// Whether a probe may be sent there: only to this namespace or its own links, never
    /// through a gateway to whatever answers for that address elsewhere.
    pub fn is_direct(&self) -> bool {
        matches!(self, Route::Local | Route::OnLink { .. })
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Local => write!(f, "a local address"),
            Route::OnLink { iface } => write!(f, "directly connected on {iface}"),
            Route::ViaGateway { source } => write!(
                f,
                "reachable only through a gateway (the route leaves from {source}, an address on another subnet)"
            ),
            Route::NoRoute(why) => write!(f, "not routable ({why})"),
        }
    }
}

/// One IPv4 address of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfaceAddr {
    pub iface: String,
    pub net: Ipv4Net,
}

/// The route to `dest` in the calling thread's network namespace.
pub fn route_to(dest: Ipv4Addr) -> Route {
    let addrs = local_addrs();
    decide(dest, source_for(dest), &addrs)
}

/// The source address the kernel picks for `dest`; connecting a UDP socket sends nothing.
fn source_for(dest: Ipv4Addr) -> Result<Ipv4Addr, String> {
    let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| e.to_string())?;
    // Any port will do: only the route is looked up.
    socket.connect(SocketAddrV4::new(dest, 9)).map_err(|e| e.to_string())?;
    match socket.local_addr().map_err(|e| e.to_string())?.ip() {
        std::net::IpAddr::V4(ip) => Ok(ip),
        std::net::IpAddr::V6(ip) => Err(format!("the kernel chose an IPv6 source {ip}")),
    }
}

fn local_addrs() -> Vec<IfaceAddr> {
    if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| match i.addr {
            if_addrs::IfAddr::V4(v4) => Ipv4Net::new(v4.ip, v4.prefixlen).ok().map(|net| IfaceAddr {
                iface: i.name.clone(),
                net,
            }),
            if_addrs::IfAddr::V6(_) => None,
        })
        .collect()
}

/// The decision itself, from what the kernel said: `dest` is direct when it is one of our
/// addresses, or lies on a subnet of the interface the kernel would send from.
pub fn decide(dest: Ipv4Addr, source: Result<Ipv4Addr, String>, addrs: &[IfaceAddr]) -> Route {
    if dest.is_loopback() || addrs.iter().any(|a| a.net.addr() == dest) {
        return Route::Local;
    }
    let source = match source {
        Ok(source) => source,
        Err(why) => return Route::NoRoute(why),
    };
    let out_ifaces: Vec<&str> = addrs
        .iter()
        .filter(|a| a.net.addr() == source)
        .map(|a| a.iface.as_str())
        .collect();
    // Every subnet of the outgoing interface counts: the source is its primary address,
    // the destination may be on a secondary one.
    let on_link = addrs
        .iter()
        .find(|a| out_ifaces.contains(&a.iface.as_str()) && a.net.contains(&dest));
    match on_link {
        Some(a) => Route::OnLink { iface: a.iface.clone() },
        None => Route::ViaGateway { source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(iface: &str, net: &str) -> IfaceAddr {
        IfaceAddr {
            iface: iface.into(),
            net: net.parse().unwrap(),
        }
    }

    fn host() -> Vec<IfaceAddr> {
        vec![
            addr("lo", "127.0.0.1/8"),
            addr("eth0", "192.168.1.5/24"),
            addr("eth0", "10.9.0.5/16"),
            addr("br0", "10.215.3.1/24"),
        ]
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn own_addresses_and_loopback_are_local() {
        assert_eq!(decide(ip("192.168.1.5"), Ok(ip("192.168.1.5")), &host()), Route::Local);
        assert_eq!(decide(ip("127.0.0.53"), Ok(ip("127.0.0.1")), &host()), Route::Local);
        // Even when the kernel has no route (a namespace without any), our own address is ours.
        assert_eq!(
            decide(ip("10.215.3.1"), Err("unreachable".into()), &host()),
            Route::Local
        );
    }

    #[test]
    fn an_address_on_the_outgoing_interfaces_subnet_is_on_link() {
        assert_eq!(
            decide(ip("192.168.1.10"), Ok(ip("192.168.1.5")), &host()),
            Route::OnLink { iface: "eth0".into() }
        );
        assert_eq!(
            decide(ip("10.215.3.10"), Ok(ip("10.215.3.1")), &host()),
            Route::OnLink { iface: "br0".into() }
        );
        // A secondary subnet of the interface the kernel sends from.
        assert_eq!(
            decide(ip("10.9.7.7"), Ok(ip("192.168.1.5")), &host()),
            Route::OnLink { iface: "eth0".into() }
        );
    }

    #[test]
    fn an_address_the_default_route_would_carry_is_behind_a_gateway() {
        // The macvlan case: the host has no address on the macvlan subnet, so the kernel
        // sends from eth0's address to the default gateway, and a stranger may answer.
        let route = decide(ip("10.217.4.10"), Ok(ip("192.168.1.5")), &host());
        assert_eq!(
            route,
            Route::ViaGateway {
                source: ip("192.168.1.5")
            }
        );
        assert!(!route.is_direct());
        // The subnet is on the host, but not on the interface the kernel would use.
        assert_eq!(
            decide(ip("10.215.3.10"), Ok(ip("192.168.1.5")), &host()),
            Route::ViaGateway {
                source: ip("192.168.1.5")
            }
        );
    }

    #[test]
    fn no_route_is_not_direct() {
        let route = decide(
            ip("10.217.4.10"),
            Err("Network is unreachable (os error 101)".into()),
            &host(),
        );
        assert!(matches!(&route, Route::NoRoute(why) if why.contains("unreachable")));
        assert!(!route.is_direct());
    }

    #[test]
    fn the_kernel_agrees_about_loopback() {
        assert_eq!(route_to(ip("127.0.0.1")), Route::Local);
    }
}
