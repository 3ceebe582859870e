//! Facts about the host's network interfaces, behind a trait so validation stays testable.

use ipnet::Ipv4Net;
use std::path::Path;

/// What settings validation needs to know about the host's interfaces.
pub trait HostNet {
    /// `None` when the interface does not exist; otherwise its IPv4 addresses (maybe none).
    fn ipv4(&self, iface: &str) -> Option<Vec<Ipv4Net>>;
    /// Names of interfaces that have an IPv4 address, for "did you mean" hints.
    fn candidates(&self) -> Vec<String>;
}

/// The real host, read through getifaddrs(3).
pub struct SystemNet;

impl HostNet for SystemNet {
    fn ipv4(&self, iface: &str) -> Option<Vec<Ipv4Net>> {
        let addrs: Vec<Ipv4Net> = if_addrs::get_if_addrs()
            .unwrap_or_default()
            .into_iter()
            .filter(|i| i.name == iface)
            .filter_map(|i| match i.addr {
                if_addrs::IfAddr::V4(v4) => Ipv4Net::new(v4.ip, v4.prefixlen).ok(),
                if_addrs::IfAddr::V6(_) => None,
            })
            .collect();
        // getifaddrs lists only interfaces with an address; sysfs also knows the bare ones.
        let exists = !addrs.is_empty() || Path::new("/sys/class/net").join(iface).exists();
        exists.then_some(addrs)
    }

    fn candidates(&self) -> Vec<String> {
        let mut names: Vec<String> = if_addrs::get_if_addrs()
            .unwrap_or_default()
            .into_iter()
            .filter(|i| matches!(i.addr, if_addrs::IfAddr::V4(_)) && !i.is_loopback())
            .map(|i| i.name)
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// A fixed table of interfaces, for tests and for rendering on behalf of another host.
#[derive(Debug, Default, Clone)]
pub struct FixedNet(pub Vec<(String, Vec<Ipv4Net>)>);

impl HostNet for FixedNet {
    fn ipv4(&self, iface: &str) -> Option<Vec<Ipv4Net>> {
        self.0
            .iter()
            .find(|(name, _)| name == iface)
            .map(|(_, addrs)| addrs.clone())
    }

    fn candidates(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|(_, a)| !a.is_empty())
            .map(|(n, _)| n.clone())
            .collect()
    }
}
