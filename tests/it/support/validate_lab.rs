//! A boot segment made of nothing real, for running `up` and `validate` (and its DHCP probe)
//! against the real engine and the real dnsmasq.
//!
//! [`Lab`] creates a veth pair: one end (`cbv…h`) stays on the host with no address and is the
//! parent of an `--internal` macvlan Docker network on 10.214.X.0/24; the other end (`cbv…c`)
//! goes into a network namespace the lab creates, with 10.214.X.2. The containers sit on the
//! macvlan network (matchbox at 10.214.X.10, dnsmasq in its namespace), and `cozyboot` runs
//! inside the namespace, like an admin host on the boot LAN. Nothing can leave: the only
//! wire is the veth pair.
//!
//! Why not an `--internal` bridge network: with `br_netfilter` on (Docker's default), Docker's
//! isolation rules drop bridged packets from or to addresses outside the subnet, and a
//! DHCPDISCOVER goes from 0.0.0.0 to 255.255.255.255; macvlan traffic never meets them.
//!
//! Needs root, iproute2, nsenter and the Docker CLI; without them [`Lab::new`] prints
//! `skipped: ...` and returns `None`.

use super::images;
use assert_cmd::Command as Bin;
use serde_json::Value;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static NEXT: AtomicU32 = AtomicU32::new(0);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
const READY_TRIES: u32 = 100;
const READY_POLL: Duration = Duration::from_millis(100);
/// The registry tag the lab's own aliases are made from.
const SOURCE_TAG: &str = "latest";

pub use super::docker::docker;
use super::docker::macvlan_network;

use super::hostnet::quiet;

fn ip(args: &[&str]) {
    super::hostnet::ip(args);
}

/// The engine's architecture as image tags spell it (the engine runs on this host).
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    }
}

fn skip<T>(reason: &str) -> Option<T> {
    super::guard::skip(Some("COZYBOOT_REQUIRE_NETNS"), reason)
}

pub use super::pe::pe;

/// How `up` is asked to run the segment.
#[derive(Debug, Clone)]
pub struct Setup {
    pub proxy: bool,
    pub arches: &'static str,
    pub extra: Vec<String>,
    /// Serve the Raspberry Pi EEPROM's netboot from a stand-in of the Pi UEFI firmware's
    /// release zip (`--rpi-uefi`); off otherwise (`--rpi-netboot off`).
    pub rpi: bool,
    /// `--rpi-uefi` given as is (a URL), instead of the stand-in's path.
    pub rpi_uefi: Option<String>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            proxy: false,
            arches: "arm64",
            extra: Vec::new(),
            rpi: false,
            rpi_uefi: None,
        }
    }
}

/// What one `cozyboot validate --json` run printed and returned.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub json: Value,
    pub stderr: String,
}

impl Outcome {
    pub fn check(&self, id: &str) -> &Value {
        self.json["checks"]
            .as_array()
            .and_then(|checks| checks.iter().find(|c| c["id"] == id))
            .unwrap_or_else(|| panic!("no check {id} in\n{:#}", self.json))
    }

    /// Asserts `id` has `status`; returns its finding and evidence as one text.
    pub fn expect(&self, id: &str, status: &str) -> String {
        let c = self.check(id);
        assert_eq!(c["status"], status, "{id}:\n{c:#}\nall checks:\n{}", self.table());
        format!("{}\n{}", c["finding"].as_str().unwrap_or_default(), c["evidence"])
    }

    /// `status id: finding`, one line per check, for assertion messages.
    pub fn table(&self) -> String {
        let checks = self.json["checks"].as_array().cloned().unwrap_or_default();
        let mut lines: Vec<String> = checks
            .iter()
            .map(|c| format!("{} {}: {} {}", c["status"], c["id"], c["finding"], c["evidence"]))
            .collect();
        lines.push(format!("stderr: {}", self.stderr));
        lines.join("\n")
    }
}

pub struct Lab {
    pub name: String,
    pub subnet: u8,
    pub host_if: String,
    pub client_if: String,
    pub dir: tempfile::TempDir,
    pub matchbox: String,
    pub dnsmasq: String,
    pub setup: Setup,
    /// This lab's own tag of the talos, matchbox and dnsmasq images (see [`Lab::alias_images`]).
    pub tag: String,
    arm64_efi: PathBuf,
}

impl Lab {
    pub fn new(setup: Setup) -> Option<Lab> {
        if !images::require_docker() {
            return None;
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return skip("the validate lab needs root (network namespace, veth, macvlan)");
        }
        images::ensure().unwrap();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("cbv-{pid}-{n}");
        let tag = format!("{}{n}", pid % 100_000);
        let dir = tempfile::tempdir().unwrap();
        let arm64_efi = dir.path().join("ipxe-arm64.efi");
        fs::write(&arm64_efi, pe(0xAA64)).unwrap();
        let mut lab = Lab {
            tag: name.clone(),
            matchbox: format!("{name}-mb"),
            dnsmasq: format!("{name}-dm"),
            host_if: format!("cbv{tag}h"),
            client_if: format!("cbv{tag}c"),
            subnet: 0,
            name,
            dir,
            setup,
            arm64_efi,
        };
        // From here on, Drop removes whatever exists.
        lab.alias_images();
        lab.wire();
        lab.subnet = lab.network(pid.wrapping_mul(7).wrapping_add(n * 13));
        ip(&[
            "-n",
            &lab.name,
            "addr",
            "add",
            &format!("{}/24", lab.ip(2)),
            "dev",
            &lab.client_if,
        ]);
        Some(lab)
    }

    /// The three image references the lab's settings name, at `tag`.
    fn images_at(&self, tag: &str) -> [String; 3] {
        [
            images::variant_image(images::SPIN_ONLY, tag),
            images::matchbox_image(images::SPIN_ONLY, tag),
            format!("{}/poseidon/dnsmasq:{tag}-{}", images::REGISTRY, host_arch()),
        ]
    }

    /// Gives the test images a tag only this lab uses. `validate` reports a tag that moved
    /// since `up` (as it should), and other test runs rebuild and re-pull `latest` at will.
    fn alias_images(&self) {
        let dnsmasq_source = images::dnsmasq_image();
        let mut sources = self.images_at(SOURCE_TAG);
        sources[2] = dnsmasq_source;
        for (source, alias) in sources.iter().zip(self.images_at(&self.tag)) {
            for args in [
                vec!["pull", "-q", source.as_str()],
                vec!["tag", source, &alias],
                vec!["push", "-q", &alias],
            ] {
                let (ok, out) = docker(&args);
                assert!(ok, "docker {}: {out}", args.join(" "));
            }
            // `up` pulls it, as it would on a fresh host.
            docker(&["rmi", &alias]);
        }
    }

    /// The stand-in Pi UEFI firmware release this lab serves (written on first use).
    pub fn rpi_zip(&self) -> PathBuf {
        let zip = self.dir.path().join(super::rpi::ZIP_NAME);
        if !zip.exists() {
            fs::write(&zip, super::rpi::stand_in_zip()).unwrap();
        }
        zip
    }

    /// Runs `f` on a thread inside the lab's namespace, beside `cozyboot` (the boot LAN).
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        super::netns::run_in(&self.name, f)
    }

    /// dnsmasq's log so far.
    pub fn dnsmasq_log(&self) -> String {
        docker(&["logs", &self.dnsmasq]).1
    }

    /// The talos image this lab's settings boot.
    pub fn talos_image(&self) -> String {
        self.images_at(&self.tag)[0].clone()
    }

    fn wire(&self) {
        ip(&["netns", "add", &self.name]);
        ip(&[
            "link",
            "add",
            &self.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &self.client_if,
        ]);
        ip(&["link", "set", &self.client_if, "netns", &self.name]);
        ip(&["link", "set", &self.host_if, "up"]);
        ip(&["-n", &self.name, "link", "set", &self.client_if, "up"]);
        ip(&["-n", &self.name, "link", "set", "lo", "up"]);
    }

    /// Creates the macvlan network on a free 10.214.X.0/24; returns X.
    fn network(&self, seed: u32) -> u8 {
        macvlan_network(&self.name, &self.host_if, 214, seed, "io.cozyboot.test=validate")
    }

    pub fn ip(&self, host: u8) -> String {
        format!("10.214.{}.{host}", self.subnet)
    }

    pub fn server_ip(&self) -> String {
        self.ip(10)
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.data().join(relative)
    }

    /// Writes a file into the lab's temporary dir (configs the settings refer to).
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        fs::write(&p, content).unwrap();
        p
    }

    /// The settings `up` and `validate` both get.
    pub fn settings(&self) -> Vec<String> {
        let mut args = vec![
            format!("--registry={}", images::registry_prefix()),
            format!(
                "--dnsmasq-image={}/poseidon/dnsmasq:{}-{{arch}}",
                images::REGISTRY,
                self.tag
            ),
            format!("--tag={}", self.tag),
            format!("--network={}", self.name),
            format!("--server-ip={}", self.server_ip()),
            format!("--subnet=10.214.{}.0/24", self.subnet),
            format!("--data-dir={}", self.data().display()),
            format!("--ipxe-arm64={}", self.arm64_efi.display()),
            format!("--matchbox-name={}", self.matchbox),
            format!("--dnsmasq-name={}", self.dnsmasq),
            format!("--arch={}", self.setup.arches),
        ];
        if !self.setup.proxy {
            args.push(format!("--dhcp-range={},{}", self.ip(100), self.ip(150)));
        }
        if let Some(source) = &self.setup.rpi_uefi {
            args.push(format!("--rpi-uefi={source}"));
        } else if self.setup.rpi {
            args.push(format!("--rpi-uefi={}", self.rpi_zip().display()));
        } else {
            args.push("--rpi-netboot=off".into());
        }
        args.extend(self.setup.extra.iter().cloned());
        args
    }

    /// `cozyboot <args>` inside the lab's namespace.
    pub fn cozyboot(&self, args: &[String]) -> std::process::Output {
        Bin::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.name))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_cozyboot"))
            .args(args)
            .current_dir(self.dir.path())
            // The lab's own registry of sites: the host's is never read or written.
            .env("COZYBOOT_SITES_DIR", self.dir.path().join("sites"))
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .timeout(COMMAND_TIMEOUT)
            .output()
            .unwrap()
    }

    pub fn up(&self) {
        let mut args = vec!["up".to_string()];
        args.extend(self.settings());
        let out = self.cozyboot(&args);
        assert!(
            out.status.success(),
            "cozyboot up failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `cozyboot validate --json` with the lab's settings and `extra`.
    pub fn validate(&self, extra: &[&str]) -> Outcome {
        let mut args = vec!["validate".to_string(), "--json".to_string()];
        args.extend(self.settings());
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = self.cozyboot(&args);
        Outcome {
            code: out.status.code().unwrap_or(-1),
            json: serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `validate --probe-dhcp` from the namespace's end of the veth pair.
    pub fn validate_probing(&self, extra: &[&str]) -> Outcome {
        let mut args = vec!["--probe-dhcp", "--probe-iface", &self.client_if];
        args.extend_from_slice(extra);
        self.validate(&args)
    }

    /// `validate` without `--json`: the human table.
    pub fn validate_text(&self) -> (i32, String) {
        let mut args = vec!["validate".to_string()];
        args.extend(self.settings());
        let out = self.cozyboot(&args);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// Replaces container `name` by one started by hand with `cmd`, keeping its image,
    /// labels, network, mounts and capabilities, as an operator following a guide would.
    pub fn start_by_hand(&self, name: &str, cmd: &[String]) {
        let (ok, text) = docker(&["inspect", name]);
        assert!(ok, "docker inspect {name}: {text}");
        let info: Value = serde_json::from_str(&text).unwrap();
        let run = run_args(&info[0], name, cmd);
        docker(&["rm", "-f", name]);
        let args: Vec<&str> = run.iter().map(String::as_str).collect();
        let (ok, out) = docker(&args);
        assert!(ok, "docker {}: {out}", run.join(" "));
        self.wait_ready(name);
    }

    /// Waits (bounded) until dnsmasq logged its start, or matchbox accepts connections.
    fn wait_ready(&self, name: &str) {
        let probe = format!("exec 3<>/dev/tcp/{}/8080", self.server_ip());
        let ready = || {
            if name == self.dnsmasq {
                return docker(&["logs", name]).1.contains("started, version");
            }
            Command::new("nsenter")
                .args([&format!("--net=/run/netns/{}", self.name), "--", "bash", "-c", &probe])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        for _ in 0..READY_TRIES {
            if ready() {
                return;
            }
            std::thread::sleep(READY_POLL);
        }
        panic!("{name} did not come up; its log:\n{}", docker(&["logs", name]).1);
    }

    /// The command line of container `name` as it runs.
    pub fn cmd_of(&self, name: &str) -> Vec<String> {
        let (ok, text) = docker(&["inspect", "-f", "{{json .Config.Cmd}}", name]);
        assert!(ok, "{text}");
        serde_json::from_str(&text).unwrap()
    }
}

/// `docker run` arguments recreating the container `info` (from `docker inspect`) with `cmd`.
fn run_args(info: &Value, name: &str, cmd: &[String]) -> Vec<String> {
    let host = &info["HostConfig"];
    let mut run: Vec<String> = vec!["run".into(), "-d".into(), "--name".into(), name.into()];
    let mode = host["NetworkMode"].as_str().unwrap_or_default().to_string();
    run.push(format!("--network={mode}"));
    if let Some(ip) = info["NetworkSettings"]["Networks"][&mode]["IPAMConfig"]["IPv4Address"].as_str() {
        run.push(format!("--ip={ip}"));
    }
    for cap in host["CapAdd"].as_array().into_iter().flatten() {
        run.push(format!("--cap-add={}", cap.as_str().unwrap_or_default()));
    }
    for m in host["Mounts"].as_array().into_iter().flatten() {
        let ro = if m["ReadOnly"].as_bool().unwrap_or(false) {
            ",readonly"
        } else {
            ""
        };
        run.push(format!(
            "--mount=type=bind,src={},dst={}{ro}",
            m["Source"].as_str().unwrap(),
            m["Target"].as_str().unwrap()
        ));
    }
    for (k, v) in info["Config"]["Labels"].as_object().into_iter().flatten() {
        if k.starts_with("io.cozyboot.") {
            run.push(format!("--label={k}={}", v.as_str().unwrap_or_default()));
        }
    }
    run.push(info["Config"]["Image"].as_str().unwrap().to_string());
    run.extend(cmd.iter().cloned());
    run
}

impl Drop for Lab {
    fn drop(&mut self) {
        for name in [&self.dnsmasq, &self.matchbox] {
            for suffix in ["", "-cozyboot-new", "-cozyboot-old"] {
                quiet("docker", &["rm", "-f", &format!("{name}{suffix}")]);
            }
        }
        quiet("docker", &["network", "rm", &self.name]);
        for alias in self.images_at(&self.tag) {
            quiet("docker", &["rmi", &alias]);
        }
        quiet("ip", &["link", "del", &self.host_if]);
        quiet("ip", &["netns", "del", &self.name]);
    }
}
