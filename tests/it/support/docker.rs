//! The docker CLI as the tests use it to set up and inspect what cozyboot should find or
//! leave behind (cozyboot itself talks to the engine through bollard).

use std::path::PathBuf;
use std::process::Command;

/// The Docker Engine's unix socket the tests talk to: `DOCKER_HOST` when it names one
/// (`unix://PATH`), else `/var/run/docker.sock`. When it is absent the test fails where it
/// must run and is skipped elsewhere ([`super::guard`]).
pub fn engine_socket() -> Option<PathBuf> {
    let socket = match std::env::var("DOCKER_HOST") {
        Ok(host) if host.starts_with("unix://") => PathBuf::from(&host["unix://".len()..]),
        _ => PathBuf::from("/var/run/docker.sock"),
    };
    if socket.exists() {
        return Some(socket);
    }
    super::guard::skip(
        None,
        &format!("there is no Docker Engine socket at {}", socket.display()),
    )
}

/// Runs `docker <args>`: whether it succeeded, and its stdout and stderr, trimmed.
pub fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker").args(args).output().expect("the docker CLI runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_string())
}

/// Attempts at a free subnet before giving up.
const SUBNET_TRIES: u32 = 20;

/// Creates an `--internal` macvlan network `name` on the test-made link `parent`, on the first
/// free `10.<second>.X.0/24` (X tried from `seed`, so that parallel tests spread out), labelled
/// `label`; returns X.
pub fn macvlan_network(name: &str, parent: &str, second: u8, seed: u32, label: &str) -> u8 {
    let mut last = String::new();
    for attempt in 0..SUBNET_TRIES {
        let x = ((seed + attempt * 37) % 250 + 2) as u8;
        let (ok, out) = docker(&[
            "network",
            "create",
            "-d",
            "macvlan",
            "--internal",
            "-o",
            &format!("parent={parent}"),
            "--subnet",
            &format!("10.{second}.{x}.0/24"),
            "--label",
            label,
            name,
        ]);
        if ok {
            return x;
        }
        last = out;
    }
    panic!("no free 10.{second}.X.0/24 for the macvlan network {name}: {last}");
}
