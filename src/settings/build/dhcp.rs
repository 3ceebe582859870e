//! The DHCP mode (full or proxy) and what each needs: the range, the router, DNS, the lease
//! time.

use super::{text, Checker};
use crate::settings::raw::{Raw, Text};
use crate::settings::DhcpMode;
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

const DEFAULT_LEASE_TIME: &str = "12h";

pub(super) fn dhcp_mode(
    c: &mut Checker<'_>,
    raw: &Raw,
    server_ip: Option<Ipv4Addr>,
    subnet: Option<Ipv4Net>,
) -> Option<DhcpMode> {
    let Some(range) = text(&raw.dhcp_range) else {
        for (field, set) in [
            ("gateway", raw.gateway.is_some()),
            ("dns", raw.dns.is_some()),
            ("lease-time", raw.lease_time.is_some()),
        ] {
            if set {
                c.fail(
                    field,
                    None,
                    "only applies to full DHCP mode, and no dhcp-range is given",
                    "add --dhcp-range START,END for full mode, or drop this setting for proxy mode",
                );
            }
        }
        c.derived(
            "dhcp-mode",
            "proxy: no dhcp-range given, an existing DHCP server hands out addresses",
            (),
        );
        return Some(DhcpMode::Proxy);
    };
    c.derived("dhcp-mode", "full: dhcp-range is given", ());

    let Some((start, end)) = range.split_once(',') else {
        c.fail(
            "dhcp-range",
            Some(range),
            "not a range",
            "write START,END, e.g. 10.20.13.150,10.20.13.200",
        );
        return None;
    };
    let start = c.ip("dhcp-range", start);
    let end = c.ip("dhcp-range", end);
    let gateway = text(&raw.gateway).and_then(|g| c.ip("gateway", g));
    let dns: Vec<Ipv4Addr> = raw.dns.iter().flatten().filter_map(|Text(d)| c.ip("dns", d)).collect();
    let lease_time = match text(&raw.lease_time) {
        None => c.default("lease-time", DEFAULT_LEASE_TIME.to_string()),
        Some(l) => {
            if !valid_lease_time(l) {
                c.fail(
                    "lease-time",
                    Some(l),
                    "not a dnsmasq lease time",
                    "use seconds, or a number with m, h, d or w (e.g. 12h), or 'infinite'",
                );
            }
            l.to_string()
        }
    };
    let (start, end) = (start?, end?);
    if u32::from(start) > u32::from(end) {
        c.fail(
            "dhcp-range",
            Some(range),
            "the start address is after the end address",
            format!("swap them: {end},{start}"),
        );
    }
    if let Some(net) = subnet {
        for ip in [start, end] {
            if !net.contains(&ip) {
                c.fail(
                    "dhcp-range",
                    Some(range),
                    format!("{ip} is outside the subnet {net}"),
                    format!("pick addresses inside {net}"),
                );
            }
        }
        if let Some(gw) = gateway {
            if !net.contains(&gw) {
                c.fail(
                    "gateway",
                    Some(&gw.to_string()),
                    format!("outside the subnet {net}"),
                    format!("use the router's address on {net}"),
                );
            }
        }
    }
    if let Some(ip) = server_ip {
        if u32::from(start) <= u32::from(ip) && u32::from(ip) <= u32::from(end) {
            c.fail(
                "server-ip",
                Some(&ip.to_string()),
                format!("inside the DHCP range {range}, so it could be leased to a node"),
                "move the DHCP range so it does not include the server's address",
            );
        }
    }
    if let Some(gw) = gateway {
        if u32::from(start) <= u32::from(gw) && u32::from(gw) <= u32::from(end) {
            c.fail(
                "gateway",
                Some(&gw.to_string()),
                format!("inside the DHCP range {range}"),
                "move the DHCP range so it does not include the gateway",
            );
        }
    }
    Some(DhcpMode::Full {
        range_start: start,
        range_end: end,
        gateway,
        dns,
        lease_time,
    })
}

fn valid_lease_time(l: &str) -> bool {
    if l == "infinite" {
        return true;
    }
    let digits = l.trim_end_matches(['m', 'h', 'd', 'w']);
    let suffixes = l.len() - digits.len();
    suffixes <= 1 && !digits.is_empty() && digits.chars().all(|ch| ch.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_times() {
        for ok in ["12h", "3600", "infinite", "1w"] {
            assert!(valid_lease_time(ok), "{ok}");
        }
        for bad in ["", "h", "12hh", "twelve"] {
            assert!(!valid_lease_time(bad), "{bad}");
        }
    }
}
