//! Host-side pieces for engine tests that need more than a Docker network: veth pairs the
//! test makes in the host namespace (nothing else attached), a network namespace with no
//! route out of it, and a throwaway user. Each is removed on drop, also when the test fails.
//!
//! Everything needs root and iproute2. Without them [`require_root`] prints `skipped: ...`
//! and returns false; under CI (`CI=true`) it panics instead, so a test cannot pass there
//! without running.

use assert_cmd::Command as Bin;
use serde_json::Value;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long one cozyboot run in a test may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// True when this process is root and `ip` works; otherwise says why and returns false
/// (panics under `CI=true`).
pub fn require_root(what: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let missing = if unsafe { libc::geteuid() } != 0 {
        Some(format!("{what} needs root"))
    } else if !Command::new("ip")
        .args(["netns", "list"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        Some(format!("{what} needs iproute2 (`ip netns`)"))
    } else {
        None
    };
    match missing {
        None => true,
        Some(why) => {
            super::guard::skip::<()>(Some("COZYBOOT_REQUIRE_NETNS"), &why);
            false
        }
    }
}

/// `ip <args>`, which must succeed.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("iproute2 runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `program args` ignoring the outcome (cleanup).
pub fn quiet(program: &str, args: &[&str]) {
    let _ = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A veth pair in the host namespace, made by the test; deleting one end deletes both.
pub struct Veth {
    pub host: String,
    pub peer: String,
}

impl Veth {
    /// Creates `host`/`peer`, both up, without addresses. A leftover of a killed run with the
    /// same names is removed first (the names are the test's own).
    pub fn new(host: &str, peer: &str) -> Veth {
        quiet("ip", &["link", "del", host]);
        ip(&["link", "add", host, "type", "veth", "peer", "name", peer]);
        let veth = Veth {
            host: host.into(),
            peer: peer.into(),
        };
        ip(&["link", "set", host, "up"]);
        veth
    }

    /// Gives the host end `cidr` (e.g. `10.218.1.1/24`).
    pub fn address(&self, cidr: &str) {
        ip(&["addr", "add", cidr, "dev", &self.host]);
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        quiet("ip", &["link", "del", &self.host]);
    }
}

/// A network namespace the test made, with nothing in it but loopback and the links the
/// test moves in, and no route out: a probe to anything else fails with "network is
/// unreachable" instead of leaving the machine.
pub struct Ns {
    pub name: String,
}

impl Ns {
    pub fn new(name: &str) -> Ns {
        quiet("ip", &["netns", "del", name]);
        ip(&["netns", "add", name]);
        let ns = Ns { name: name.into() };
        ip(&["-n", name, "link", "set", "lo", "up"]);
        ns
    }

    /// Moves `iface` into the namespace and brings it up, without an address.
    pub fn take(&self, iface: &str) {
        ip(&["link", "set", iface, "netns", &self.name]);
        ip(&["-n", &self.name, "link", "set", iface, "up"]);
    }

    /// Every IPv4 route of the namespace (`ip route show table all`, local table included).
    pub fn routes(&self) -> String {
        ip(&["-n", &self.name, "-4", "route", "show", "table", "all"])
    }

    /// Panics unless no route in the namespace leads anywhere but loopback.
    pub fn assert_no_way_out(&self) {
        let routes = self.routes();
        for line in routes.lines() {
            assert!(
                line.contains(" dev lo ") || line.ends_with(" dev lo"),
                "namespace {} has a route out: {line}\nall routes:\n{routes}",
                self.name
            );
        }
    }

    /// `ip netns exec <ns> <program>`.
    pub fn command(&self, program: &str) -> Bin {
        let mut c = Bin::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c.timeout(COMMAND_TIMEOUT);
        c
    }

    /// Runs `f` on a thread of its own inside the namespace (no other thread switches).
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let ns = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
                    // SAFETY: `ns` is an open namespace file for the duration of the call.
                    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
                    f()
                })
                .join()
        })
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                quiet("kill", &["-KILL", pid]);
            }
        }
        quiet("ip", &["netns", "del", &self.name]);
    }
}

/// A throwaway user in the `docker` group, without a home or a login shell; deleted on drop.
pub struct User {
    pub name: String,
}

impl User {
    pub fn new(name: &str) -> User {
        quiet("userdel", &[name]);
        let out = Command::new("useradd")
            .args(["--no-create-home", "--no-user-group", "--groups", "docker"])
            .args(["--shell", "/usr/sbin/nologin", name])
            .output()
            .expect("useradd runs");
        assert!(
            out.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        User { name: name.into() }
    }

    /// `runuser -u <user> -- <program>`, run as root.
    pub fn command(&self, program: &str) -> Bin {
        let mut c = Bin::new("runuser");
        c.args(["-u", &self.name, "--", program]);
        c.timeout(COMMAND_TIMEOUT);
        c
    }
}

impl Drop for User {
    fn drop(&mut self) {
        quiet("userdel", &[&self.name]);
    }
}

/// `cozyboot <args> --json` in the host namespace (the sites use the host network, and the
/// port preflight looks at the host's sockets), as root or as `user`.
pub fn cozyboot(args: &[String], dir: &Path, user: Option<&User>) -> (i32, Value, String) {
    let exe = env!("CARGO_BIN_EXE_cozyboot");
    let mut cmd = match user {
        Some(user) => user.command(exe),
        None => {
            let mut c = assert_cmd::Command::new(exe);
            c.timeout(COMMAND_TIMEOUT);
            c
        }
    };
    let out = cmd
        .args(&args[..1])
        .arg("--json")
        .args(&args[1..])
        .current_dir(dir)
        .env("HOME", dir)
        .env("COZYBOOT_SITES_DIR", dir.join("sites"))
        .env("COZYBOOT_TEST_HOST_IPXE_ARM64", dir.join("no-host-package"))
        .env_remove("COZYBOOT_IPXE_ARM64_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
