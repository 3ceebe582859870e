//! Several boot sites on one host, on the host network, each bound to its own interface.
//!
//! Two veth pairs made by the test in the host namespace (`cbs1-h`/`cbs1-p`,
//! `cbs2-h`/`cbs2-p`); the host ends carry 10.218.1.1/24 and 10.218.2.1/24, the peers sit
//! without addresses in a namespace the test made. Each site's dnsmasq (proxy DHCP) is bound
//! to its own host end only, which the test checks in the rendered argv before each `up`.
//! Site 1 is started by a throwaway non-root user in the `docker` group: the port preflight
//! cannot bind 67/69 without root and must say "cannot be checked", never "in use". Site 2
//! is started by root and must be told that udp/67 is shared with site 1's dnsmasq on
//! `cbs1-h`. Then `status` lists both, and `down` of site 1 leaves site 2 serving.

use crate::support;

use serde_json::Value;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use support::hostnet::{self, cozyboot, quiet, Ns, User, Veth};
use support::{images, pe::pe};

struct Site {
    n: u8,
    veth: Veth,
    dir: tempfile::TempDir,
    http_port: u16,
    matchbox: String,
    dnsmasq: String,
}

impl Site {
    fn new(n: u8, ns: &Ns) -> Site {
        let veth = Veth::new(&format!("cbs{n}-h"), &format!("cbs{n}-p"));
        veth.address(&format!("10.218.{n}.1/24"));
        ns.take(&veth.peer);
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("ipxe-arm64.efi"), pe(0xAA64)).unwrap();
        let pid = std::process::id();
        Site {
            n,
            veth,
            dir,
            http_port: free_port(),
            matchbox: format!("cbs{n}-{pid}-mb"),
            dnsmasq: format!("cbs{n}-{pid}-dm"),
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn settings(&self) -> Vec<String> {
        let mut args = images::registry_flags().to_vec();
        args.extend([
            "--tag=latest".into(),
            "--network=host".into(),
            format!("--iface={}", self.veth.host),
            format!("--data-dir={}", self.data().display()),
            format!("--http-port={}", self.http_port),
            format!("--ipxe-arm64={}", self.dir.path().join("ipxe-arm64.efi").display()),
            format!("--matchbox-name={}", self.matchbox),
            format!("--dnsmasq-name={}", self.dnsmasq),
            "--rpi-netboot=off".into(),
            "--arch=arm64".into(),
        ]);
        args
    }

    /// The dnsmasq argv `render` shows for this site, which `up` will run.
    fn rendered_dnsmasq_argv(&self) -> Vec<String> {
        let out_dir = self.dir.path().join("rendered");
        let mut args = vec!["render".to_string(), format!("--output={}", out_dir.display())];
        args.extend(self.settings());
        let (code, json, stderr) = cozyboot(&args, self.dir.path(), None);
        assert_eq!(code, 0, "render failed: {stderr}");
        serde_json::from_value(json["dnsmasq"]["args"].clone()).unwrap()
    }

    /// Panics unless this site's dnsmasq would answer on its own veth only.
    fn assert_bound_to_its_veth(&self) {
        let argv = self.rendered_dnsmasq_argv();
        let iface = format!("--interface={}", self.veth.host);
        assert!(
            argv.contains(&iface),
            "site {} dnsmasq argv lacks {iface}: {argv:?}",
            self.n
        );
        assert!(
            argv.iter().any(|a| a == "--bind-interfaces"),
            "site {} dnsmasq argv lacks --bind-interfaces: {argv:?}",
            self.n
        );
        let other_ifaces: Vec<&String> = argv
            .iter()
            .filter(|a| a.starts_with("--interface=") && **a != iface)
            .collect();
        assert!(other_ifaces.is_empty(), "site {} binds more: {other_ifaces:?}", self.n);
    }

    fn up(&self, user: Option<&User>) -> Value {
        let mut args = vec!["up".to_string()];
        args.extend(self.settings());
        let (code, json, stderr) = cozyboot(&args, self.dir.path(), user);
        assert_eq!(code, 0, "up of site {} failed:\n{stderr}\n{json:#}", self.n);
        json
    }

    fn warnings(report: &Value) -> Vec<String> {
        serde_json::from_value(report["warnings"].clone()).unwrap_or_default()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        for name in [&self.dnsmasq, &self.matchbox] {
            for suffix in ["", "-cozyboot-new", "-cozyboot-old"] {
                quiet("docker", &["rm", "-f", &format!("{name}{suffix}")]);
            }
        }
    }
}

/// A high TCP port nothing holds right now.
fn free_port() -> u16 {
    TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port()
}

fn inspect(name: &str, format: &str) -> Option<String> {
    let out = Command::new("docker")
        .args(["inspect", "-f", format, name])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn two_sites_on_two_interfaces_share_the_dhcp_port_and_live_apart() {
    if !images::require_docker() || !hostnet::require_root("the two-sites test") {
        return;
    }
    images::ensure().unwrap();
    let pid = std::process::id();
    let ns = Ns::new(&format!("cbs-{pid}"));
    // Dropped before `ns` (declared later): containers first, then veths, then the namespace.
    let site1 = Site::new(1, &ns);
    let site2 = Site::new(2, &ns);
    let user = User::new(&format!("cbs{}", pid % 100_000));
    // Site 1 belongs to the non-root user: its dir must be theirs.
    let chown = Command::new("chown")
        .args(["-R", &user.name])
        .arg(site1.dir.path())
        .status()
        .unwrap();
    assert!(chown.success());
    fs::set_permissions(site1.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();

    // Site 1, by a user in the docker group: 67/69 cannot be bound to check, which is no clash.
    site1.assert_bound_to_its_veth();
    let up1 = site1.up(Some(&user));
    let warnings1 = Site::warnings(&up1);
    for port in ["udp/67", "udp/69"] {
        assert!(
            warnings1
                .iter()
                .any(|w| w.contains(&format!("{port} cannot be checked without root"))),
            "site 1 (non-root) warns that {port} could not be checked: {warnings1:#?}"
        );
    }
    assert!(!warnings1.iter().any(|w| w.contains("in use")), "{warnings1:#?}");

    // Site 2, by root: udp/67 is shared with site 1's dnsmasq, bound to cbs1-h.
    site2.assert_bound_to_its_veth();
    let up2 = site2.up(None);
    let warnings2 = Site::warnings(&up2);
    assert!(
        warnings2
            .iter()
            .any(|w| w.contains("udp/67 is shared with") && w.contains("bound to interface cbs1-h")),
        "site 2 is told it shares udp/67 with site 1: {warnings2:#?}"
    );
    for site in [&site1, &site2] {
        for name in [&site.matchbox, &site.dnsmasq] {
            assert_eq!(
                inspect(name, "{{.State.Running}}").as_deref(),
                Some("true"),
                "{name} runs"
            );
        }
    }

    // `status` without --data-dir lists every site's containers.
    let (code, status, stderr) = cozyboot(&["status".into()], site2.dir.path(), None);
    assert_eq!(code, 0, "status failed: {stderr}");
    let listed: Vec<&str> = status["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for name in [&site1.matchbox, &site1.dnsmasq, &site2.matchbox, &site2.dnsmasq] {
        assert!(listed.contains(&name.as_str()), "status lists {name}: {listed:?}");
    }

    // `down` of site 1 leaves site 2 serving.
    let down = vec!["down".to_string(), format!("--data-dir={}", site1.data().display())];
    let (code, _, stderr) = cozyboot(&down, site2.dir.path(), None);
    assert_eq!(code, 0, "down of site 1 failed: {stderr}");
    for name in [&site1.matchbox, &site1.dnsmasq] {
        assert_eq!(inspect(name, "{{.Id}}"), None, "{name} was removed");
    }
    let (status, body) = support::http::get(&format!("http://10.218.2.1:{}/", site2.http_port));
    let body = String::from_utf8_lossy(&body);
    assert_eq!((status, body.trim()), (200, "matchbox"), "site 2's matchbox answers");
    assert_eq!(
        inspect(&site2.dnsmasq, "{{.State.Running}}").as_deref(),
        Some("true"),
        "site 2's dnsmasq runs"
    );
}
