//! `up` and `validate` on a macvlan network, where the host cannot reach its own containers.
//!
//! The site: a veth pair made by the test in the host namespace, `cbmv-p` (the macvlan
//! parent, no address) and `cbmv-q` (moved, without an address, into a namespace the test
//! made); an `--internal` Docker macvlan network on `cbmv-p`. cozyboot runs inside that
//! namespace, which has no route anywhere: matchbox's address is not reachable from there,
//! so a probe sent from there would fail with "network is unreachable" rather than leave
//! the machine. `up` and `validate` must check matchbox from inside its container's network
//! namespace instead, and say so.

use crate::support;

use cozyboot::host::reach::route::{self, Route};
use serde_json::Value;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use support::docker::macvlan_network;
use support::hostnet::{self, quiet, Ns, User, Veth};
use support::{images, pe::pe};

struct MacvlanSite {
    // Dropped in this order after `Drop::drop` removed containers and network.
    ns: Ns,
    veth: Veth,
    net: String,
    subnet: u8,
    dir: tempfile::TempDir,
    matchbox: String,
    dnsmasq: String,
    arm64_efi: PathBuf,
}

impl MacvlanSite {
    fn new() -> Option<MacvlanSite> {
        if !images::require_docker() || !hostnet::require_root("the macvlan test") {
            return None;
        }
        images::ensure().unwrap();
        let pid = std::process::id();
        let veth = Veth::new("cbmv-p", "cbmv-q");
        let ns = Ns::new(&format!("cbmv-{pid}"));
        ns.take(&veth.peer);
        let dir = tempfile::tempdir().unwrap();
        // Readable by the throwaway user too (settings read --ipxe-arm64).
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let arm64_efi = dir.path().join("ipxe-arm64.efi");
        fs::write(&arm64_efi, pe(0xAA64)).unwrap();
        fs::set_permissions(&arm64_efi, fs::Permissions::from_mode(0o644)).unwrap();
        let mut site = MacvlanSite {
            ns,
            veth,
            net: format!("cbmv-{pid}"),
            subnet: 0,
            dir,
            matchbox: format!("cbmv-{pid}-mb"),
            dnsmasq: format!("cbmv-{pid}-dm"),
            arm64_efi,
        };
        site.subnet = site.network(pid);
        Some(site)
    }

    /// Creates the macvlan network on a free 10.217.X.0/24; returns X.
    fn network(&self, seed: u32) -> u8 {
        macvlan_network(&self.net, &self.veth.host, 217, seed, "io.cozyboot.test=macvlan")
    }

    fn server_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 217, self.subnet, 10)
    }

    fn settings(&self) -> Vec<String> {
        let x = self.subnet;
        let mut args = images::registry_flags().to_vec();
        args.extend([
            "--tag=latest".into(),
            format!("--network={}", self.net),
            format!("--server-ip={}", self.server_ip()),
            format!("--subnet=10.217.{x}.0/24"),
            format!("--dhcp-range=10.217.{x}.100,10.217.{x}.150"),
            format!("--data-dir={}", self.dir.path().join("data").display()),
            format!("--ipxe-arm64={}", self.arm64_efi.display()),
            format!("--matchbox-name={}", self.matchbox),
            format!("--dnsmasq-name={}", self.dnsmasq),
            "--rpi-netboot=off".into(),
            "--arch=arm64".into(),
        ]);
        args
    }

    /// `cozyboot <command> --json <settings>` inside the namespace, as root or as `user`.
    fn cozyboot(&self, command: &str, user: Option<&User>) -> (i32, Value, String) {
        let exe = env!("CARGO_BIN_EXE_cozyboot");
        let mut cmd = self.ns.command(if user.is_some() { "runuser" } else { exe });
        if let Some(user) = user {
            cmd.args(["-u", &user.name, "--", exe]);
        }
        let out = cmd
            .arg(command)
            .arg("--json")
            .args(self.settings())
            .current_dir(self.dir.path())
            .env("COZYBOOT_SITES_DIR", self.dir.path().join("sites"))
            .env("COZYBOOT_TEST_HOST_IPXE_ARM64", self.dir.path().join("no-host-package"))
            .env_remove("COZYBOOT_IPXE_ARM64_URL")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for MacvlanSite {
    fn drop(&mut self) {
        for name in [&self.dnsmasq, &self.matchbox] {
            for suffix in ["", "-cozyboot-new", "-cozyboot-old"] {
                quiet("docker", &["rm", "-f", &format!("{name}{suffix}")]);
            }
        }
        quiet("docker", &["network", "rm", &self.net]);
    }
}

fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("no check {id} in {report:#}"))
}

/// Signs that a probe was sent where it must not go, or that a stranger answered.
fn assert_nothing_went_astray(what: &str, text: &str) {
    // Phrases, not bare codes: digests in the output may hold "404".
    for sign in ["error sending request", "not sent:", "HTTP 404", "→ 404"] {
        assert!(!text.contains(sign), "{what} shows `{sign}`:\n{text}");
    }
}

#[test]
fn up_and_validate_check_matchbox_from_inside_its_namespace_on_macvlan() {
    let Some(site) = MacvlanSite::new() else { return };
    // Before cozyboot runs: nothing in its namespace leads anywhere, and the kernel there
    // has no route to matchbox's address.
    site.ns.assert_no_way_out();
    let ip = site.server_ip();
    let seen = site.ns.run_in(|| route::route_to(ip));
    assert!(matches!(seen, Route::NoRoute(_)), "{ip} from the namespace: {seen:?}");

    let (code, up, stderr) = site.cozyboot("up", None);
    assert_eq!(code, 0, "up failed:\n{stderr}\n{up:#}");
    let done = up["done"].to_string();
    assert!(
        done.contains(&format!(
            "started {} (health checked from inside its network namespace",
            site.matchbox
        )),
        "up says how matchbox was checked: {done}"
    );
    assert_nothing_went_astray("up", &format!("{up}\n{stderr}"));

    let (_, report, stderr) = site.cozyboot("validate", None);
    let health = check(&report, "matchbox.health");
    assert_eq!(health["status"], "pass", "{health:#}\n{stderr}");
    assert!(
        health["evidence"][0].as_str().is_some_and(|e| e.starts_with(&format!(
            "checked from inside the network namespace of container {}",
            site.matchbox
        ))),
        "{health:#}"
    );
    for id in ["matchbox.boot-ipxe", "matchbox.ipxe.arm64", "matchbox.files.arm64"] {
        assert_eq!(check(&report, id)["status"], "pass", "{:#}", check(&report, id));
    }
    let matchbox_checks: Vec<&Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["family"] == "matchbox")
        .collect();
    assert_nothing_went_astray("validate's matchbox checks", &format!("{matchbox_checks:?}"));

    // A user who may use Docker but not enter namespaces is told why matchbox was not asked
    // and how to check, never shown a guess.
    let user = User::new(&format!("cbmv{}", std::process::id() % 100_000));
    let (_, report, stderr) = site.cozyboot("validate", Some(&user));
    let health = check(&report, "matchbox.health");
    assert_eq!(health["status"], "warn", "{health:#}\n{stderr}");
    let finding = health["finding"].as_str().unwrap_or_default();
    assert!(finding.contains("only root can check from inside"), "{health:#}");
    assert!(
        health["fix"]
            .as_str()
            .is_some_and(|f| f.contains("run cozyboot as root")),
        "{health:#}"
    );
    assert_eq!(check(&report, "matchbox.boot-ipxe")["status"], "skip");
}
