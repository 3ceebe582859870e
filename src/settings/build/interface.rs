//! The interface, the server address and the subnet: from flags, else guessed from the host's
//! interfaces, and checked against each other.

use super::{text, Checker, Purpose};
use crate::settings::net::HostNet;
use crate::settings::raw::Raw;
use crate::settings::Network;
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// Works out the interface, the server address and the subnet, from flags or the host.
pub(super) fn interface_facts(
    c: &mut Checker<'_>,
    raw: &Raw,
    network: &Network,
    host: &dyn HostNet,
    purpose: Purpose,
) -> (Option<String>, Option<Ipv4Addr>, Option<Ipv4Net>) {
    let server_ip = text(&raw.server_ip).and_then(|t| c.ip("server-ip", t));
    let subnet = text(&raw.subnet).and_then(|t| match t.trim().parse::<Ipv4Net>() {
        Ok(n) => Some(n.trunc()),
        Err(_) => {
            c.fail(
                "subnet",
                Some(t),
                "not an IPv4 subnet in CIDR form",
                "write it like 10.20.13.0/24",
            );
            None
        }
    });
    let bad_server = text(&raw.server_ip).is_some() && server_ip.is_none();
    let bad_subnet = text(&raw.subnet).is_some() && subnet.is_none();

    let iface = match (text(&raw.iface), network) {
        (Some(i), _) => Some(i.trim().to_string()),
        // In its own network namespace the container sees the Docker network as eth0.
        (None, Network::Named(_)) => Some(c.derived(
            "iface",
            "first interface of a container on a Docker network",
            "eth0".to_string(),
        )),
        (None, Network::Host) => None,
    };

    // On a Docker network the host's interfaces say nothing about the container's addresses.
    let on_host = *network == Network::Host;
    let host_addrs = match (&iface, on_host) {
        (Some(name), true) => host.ipv4(name),
        _ => None,
    };

    let must_exist_here = on_host
        && (purpose == Purpose::Serve || server_ip.is_none() || (subnet.is_none() && text(&raw.dhcp_range).is_none()));
    match (&iface, &host_addrs) {
        (None, _) if on_host => {
            let fix = match host.candidates() {
                names if names.is_empty() => "pass --iface with the interface facing the machines to boot".to_string(),
                names => format!(
                    "pass --iface with the interface facing the machines to boot; this host has: {}",
                    names.join(", ")
                ),
            };
            c.fail("iface", None, "no interface given", fix);
        }
        (Some(name), None) if must_exist_here => {
            let fix = match host.candidates() {
                names if names.is_empty() => "check the name with `ip -br addr`".to_string(),
                names => format!(
                    "use one of: {} (or, to render for another host, give --server-ip and --subnet)",
                    names.join(", ")
                ),
            };
            c.fail("iface", Some(name), "no such network interface on this host", fix);
        }
        (Some(name), Some(addrs)) if addrs.is_empty() && must_exist_here => {
            c.fail("iface", Some(name), "the interface has no IPv4 address", "give it an address on the boot network (e.g. `ip addr add 10.20.13.140/24 dev IFACE`) or pick another interface");
        }
        _ => {}
    }

    let addrs = host_addrs.unwrap_or_default();
    let server_ip = match server_ip {
        Some(ip) => Some(ip),
        None if bad_server => None,
        None if !on_host => {
            c.fail(
                "server-ip",
                None,
                "required with a Docker network: matchbox gets this fixed address on it",
                "pass --server-ip with a free address of that network's subnet",
            );
            None
        }
        None => addrs.first().map(|net| {
            let name = iface.clone().unwrap_or_default();
            c.derived("server-ip", format!("IPv4 address of {name}"), net.addr())
        }),
    };

    let subnet = match subnet {
        Some(net) => Some(net),
        None if bad_subnet => None,
        None => {
            let from_iface = server_ip.and_then(|ip| addrs.iter().find(|n| n.contains(&ip)).map(|n| n.trunc()));
            match (from_iface, server_ip) {
                (Some(net), _) => {
                    let name = iface.clone().unwrap_or_default();
                    Some(c.derived("subnet", format!("subnet of {name}"), net))
                }
                (None, Some(ip)) if text(&raw.dhcp_range).is_some() => {
                    let net = Ipv4Net::new(ip, 24).map(|n| n.trunc()).ok();
                    net.map(|n| c.derived("subnet", "assumed /24 around server-ip; pass --subnet to change", n))
                }
                (None, Some(ip)) if on_host && !addrs.is_empty() => {
                    let name = iface.clone().unwrap_or_default();
                    c.fail(
                        "server-ip",
                        Some(&ip.to_string()),
                        format!("not on any subnet of {name} ({})", join(&addrs)),
                        format!(
                            "use an address of {name}, or omit --server-ip to use {}",
                            addrs[0].addr()
                        ),
                    );
                    None
                }
                (None, Some(_)) => {
                    c.fail(
                        "subnet",
                        None,
                        "unknown: the interface is not on this host",
                        "pass --subnet (e.g. 10.20.13.0/24) or --dhcp-range",
                    );
                    None
                }
                (None, None) => None,
            }
        }
    };

    if let (Some(ip), Some(net)) = (server_ip, subnet) {
        if !net.contains(&ip) {
            c.fail(
                "server-ip",
                Some(&ip.to_string()),
                format!("outside the subnet {net}"),
                "use an address inside the subnet the machines boot on",
            );
        } else if ip == net.network() || ip == net.broadcast() {
            c.fail(
                "server-ip",
                Some(&ip.to_string()),
                format!("is the network or broadcast address of {net}"),
                "use a host address",
            );
        }
    }
    (iface, server_ip, subnet)
}

fn join(nets: &[Ipv4Net]) -> String {
    nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
}
