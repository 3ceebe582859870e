//! One boot site for engine tests: a Docker `--internal` network (so the DHCP server can
//! never answer on a real interface), a temporary data dir and unique container names, all
//! removed on drop; and `cozyboot up` run against the local registry with them.

// Shared by several test crates, each of which uses only part of it.

use super::images;
use super::pe::pe;
use assert_cmd::Command as Bin;
use serde_json::Value;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Tests here share the engine's image cache; one at a time keeps "cold" cold.
static SERIAL: Mutex<()> = Mutex::new(());
static NEXT: AtomicU32 = AtomicU32::new(1);
/// The variant tag most tests use.
pub const TAG: &str = "v1.0.0";

pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker CLI runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One boot site: an internal network, a data dir, container names; all removed on drop.
pub struct Site {
    _serial: MutexGuard<'static, ()>,
    pub net: String,
    pub subnet: u8,
    pub dir: tempfile::TempDir,
    pub matchbox: String,
    pub dnsmasq: String,
    /// A stand-in arm64 iPXE binary, passed as `--ipxe-arm64` while `explicit_ipxe_arm64`.
    pub arm64_efi: PathBuf,
    pub explicit_ipxe_arm64: bool,
    /// What `up` takes for the host's `/usr/lib/ipxe/ipxe-arm64.efi`
    /// (`COZYBOOT_TEST_HOST_IPXE_ARM64`); by default a path that does not exist, so tests
    /// never depend on the host's `ipxe` package.
    pub host_ipxe_arm64: PathBuf,
}

impl Site {
    pub fn new() -> Option<Site> {
        if !images::require_docker() {
            return None;
        }
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        images::ensure().unwrap();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let subnet = (200 + (pid % 20) * 2 + n % 2) as u8;
        let net = format!("cbup-{pid}-{n}");
        docker(&["network", "rm", &net]);
        let created = Command::new("docker")
            .args(["network", "create", "--internal", "--label", "io.cozyboot.test=1"])
            .arg(format!("--subnet=10.215.{subnet}.0/24"))
            .arg(&net)
            .status()
            .unwrap();
        assert!(created.success(), "creating the internal test network");
        let dir = tempfile::tempdir().unwrap();
        let arm64_efi = dir.path().join("ipxe-arm64.efi");
        fs::write(&arm64_efi, pe(0xAA64)).unwrap();
        Some(Site {
            _serial: serial,
            subnet,
            matchbox: format!("cbm-{pid}-{n}"),
            dnsmasq: format!("cbd-{pid}-{n}"),
            net,
            host_ipxe_arm64: dir.path().join("no-host-package/ipxe-arm64.efi"),
            dir,
            arm64_efi,
            explicit_ipxe_arm64: true,
        })
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn server_ip(&self) -> String {
        format!("10.215.{}.10", self.subnet)
    }

    /// The registry of recorded sites the test's commands use (`COZYBOOT_SITES_DIR`), so
    /// that no test reads or writes the host's.
    pub fn sites_dir(&self) -> PathBuf {
        self.dir.path().join("sites")
    }

    /// `cozyboot` run as the site's tests run it: in the site's dir, with its own registry
    /// of sites and the stand-in host iPXE package, talking to the local registry directly.
    pub fn cozyboot(&self) -> Bin {
        let mut bin = Bin::cargo_bin("cozyboot").unwrap();
        bin.current_dir(self.dir.path())
            .env("COZYBOOT_SITES_DIR", self.sites_dir())
            .env("COZYBOOT_TEST_HOST_IPXE_ARM64", &self.host_ipxe_arm64)
            .env_remove("COZYBOOT_IPXE_ARM64_URL")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .timeout(std::time::Duration::from_secs(300));
        bin
    }

    pub fn args(&self, tag: &str) -> Vec<String> {
        let s = self.subnet;
        images::registry_flags()
            .into_iter()
            .chain([
                format!("--tag={tag}"),
                format!("--network={}", self.net),
                format!("--server-ip={}", self.server_ip()),
                format!("--subnet=10.215.{s}.0/24"),
                format!("--dhcp-range=10.215.{s}.100,10.215.{s}.150"),
                format!("--data-dir={}", self.data().display()),
                format!("--matchbox-name={}", self.matchbox),
                format!("--dnsmasq-name={}", self.dnsmasq),
                // The Pi EEPROM's netboot has its own tests (rpi_eeprom.rs): no Pi firmware here.
                "--rpi-netboot=off".to_string(),
            ])
            .chain(
                self.explicit_ipxe_arm64
                    .then(|| format!("--ipxe-arm64={}", self.arm64_efi.display())),
            )
            .collect()
    }

    /// Runs `cozyboot up --json` with the site's settings plus `extra`.
    pub fn up(&self, tag: &str, extra: &[&str]) -> (i32, Value, String) {
        self.run("up", tag, extra)
    }

    /// Runs `cozyboot validate --json` with the site's settings plus `extra`.
    pub fn validate(&self, tag: &str, extra: &[&str]) -> (i32, Value, String) {
        self.run("validate", tag, extra)
    }

    fn run(&self, command: &str, tag: &str, extra: &[&str]) -> (i32, Value, String) {
        let out = self
            .cozyboot()
            .arg(command)
            .arg("--json")
            .args(self.args(tag))
            .args(extra)
            .output()
            .unwrap();
        let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code().unwrap_or(-1), json, stderr)
    }

    pub fn up_ok(&self, tag: &str, extra: &[&str]) -> Value {
        let (code, json, stderr) = self.up(tag, extra);
        assert_eq!(code, 0, "up failed: {stderr}\n{json:#}");
        json
    }

    /// (id, started at, running) of a container.
    pub fn container(&self, name: &str) -> (String, String, bool) {
        let out = docker(&["inspect", "-f", "{{.Id}} {{.State.StartedAt}} {{.State.Running}}", name]);
        let parts: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(parts.len(), 3, "container {name} exists: {out:?}");
        (parts[0].into(), parts[1].into(), parts[2] == "true")
    }

    /// Ids of this site's temporary containers (extraction, `-version`), which must never
    /// outlive an `up`. Scoped by the data dir: other test processes share the engine.
    pub fn temporary_containers(&self) -> String {
        docker(&[
            "ps",
            "-aq",
            "--filter",
            "label=io.cozyboot.temporary",
            "--filter",
            &format!(
                "label={}={}",
                cozyboot::render::containers::LABEL_DATA_DIR,
                self.data().display()
            ),
        ])
    }

    pub fn http_get(&self, path: &str) -> (u16, Vec<u8>) {
        super::http::get(&format!("http://{}:8080{path}", self.server_ip()))
    }
}

impl Site {
    /// Removes the site's containers, also those a failed replacement left under `up`'s
    /// temporary names.
    pub fn remove_containers(&self) {
        for name in [&self.dnsmasq, &self.matchbox] {
            for suffix in ["", "-cozyboot-new", "-cozyboot-old"] {
                docker(&["rm", "-f", &format!("{name}{suffix}")]);
            }
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.remove_containers();
        docker(&["network", "rm", &self.net]);
    }
}

/// The actions of one kind in an `up --json` report.
pub fn actions(report: &Value, kind: &str) -> Vec<Value> {
    report["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == kind)
        .cloned()
        .collect()
}
