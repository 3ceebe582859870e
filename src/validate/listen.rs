//! `config.matchbox-listen`: which addresses the running matchbox listens on, read from the
//! argv it was started with. Bound to every interface, it hands what it serves (Talos
//! configs included) to every network of the host, not just the boot network.

use super::containers::Seen;
use super::Check;
use crate::settings::{MatchboxListen, Settings};
use std::net::Ipv4Addr;

pub const ID: &str = "config.matchbox-listen";

/// matchbox v0.11.0's `-address` default: loopback only.
const MATCHBOX_DEFAULT_ADDRESS: &str = "127.0.0.1:8080";

pub fn check(s: &Settings, seen: &Seen) -> Check {
    let Some(matchbox) = &seen.matchbox else {
        return Check::skip(ID, "no matchbox container to read (see containers.matchbox.running)");
    };
    let http = flag(&matchbox.cmd, "address");
    let rpc = flag(&matchbox.cmd, "rpc-address");
    let evidence: Vec<String> = [("-address", &http), ("-rpc-address", &rpc)]
        .into_iter()
        .filter_map(|(name, v)| Some(format!("{}'s argv: {name}={}", matchbox.name, v.as_deref()?)))
        .collect();
    let http = http.unwrap_or_else(|| MATCHBOX_DEFAULT_ADDRESS.to_string());
    let listeners: Vec<&str> = std::iter::once(http.as_str()).chain(rpc.as_deref()).collect();
    let hosts: Vec<Option<Ipv4Addr>> = listeners.iter().map(|a| host(a)).collect();
    let shown = listeners.join(" and ");

    let check = if hosts.iter().any(|h| *h == Some(Ipv4Addr::UNSPECIFIED)) {
        let why = if s.matchbox_listen == MatchboxListen::All {
            "as `matchbox-listen: all` asks"
        } else {
            "although the settings say `matchbox-listen: server`: the container predates them"
        };
        Check::warn(
            ID,
            format!(
                "matchbox listens on every interface ({shown}), {why}: what it serves answers on the host's other networks too"
            ),
        )
        .fix("set matchbox-listen to `server` (the default) and run `cozyboot up`; keep `all` only when clients reach matchbox by another address")
    } else if hosts.iter().all(|h| *h == Some(s.server_ip)) {
        Check::pass(ID, format!("matchbox listens on the server address only ({shown})"))
    } else {
        Check::fail(
            ID,
            format!(
                "matchbox listens on {shown}, not on the server address {}: machines get no answer",
                s.server_ip
            ),
        )
        .fix("run `cozyboot up` to start matchbox with the settings' address")
    };
    check.evidence_all(evidence)
}

/// A Go flag's value: `-name=v`, `--name=v`, or `-name v`.
fn flag(argv: &[String], name: &str) -> Option<String> {
    let mut args = argv.iter();
    while let Some(arg) = args.next() {
        let Some(rest) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            continue;
        };
        if let Some(value) = rest.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            return Some(value.to_string());
        }
        if rest == name {
            return args.next().cloned();
        }
    }
    None
}

/// The address part of `host:port`; an empty host is Go's "every address".
fn host(listener: &str) -> Option<Ipv4Addr> {
    let (host, _) = listener.rsplit_once(':')?;
    if host.is_empty() {
        return Some(Ipv4Addr::UNSPECIFIED);
    }
    host.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn go_flag_spellings_are_read() {
        let a = argv(&[
            "-address=10.0.0.1:8080",
            "--rpc-address",
            "0.0.0.0:8081",
            "-log-level=info",
        ]);
        assert_eq!(flag(&a, "address").as_deref(), Some("10.0.0.1:8080"));
        assert_eq!(flag(&a, "rpc-address").as_deref(), Some("0.0.0.0:8081"));
        assert_eq!(flag(&a, "data-path"), None);
        assert_eq!(host(":8080"), Some(Ipv4Addr::UNSPECIFIED));
        assert_eq!(host("10.0.0.1:8080"), Some(Ipv4Addr::new(10, 0, 0, 1)));
    }
}
