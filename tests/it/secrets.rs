//! Secrets kept off the wire: matchbox answers on the boot network only, and a Talos machine
//! config stops being served once its machine took it and Talos answers. Every container
//! runs on `--internal` Docker networks this test creates.

use crate::support;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use support::site::{docker, Site, TAG};

/// A second network on matchbox's container, as an uplink or a VPN is on a real host.
struct Uplink {
    net: String,
    container: String,
}

impl Uplink {
    fn attach(site: &Site) -> Uplink {
        let net = format!("{}-uplink", site.net);
        docker(&["network", "rm", &net]);
        let created = std::process::Command::new("docker")
            .args(["network", "create", "--internal", "--label", "io.cozyboot.test=1"])
            .arg(format!("--subnet=10.219.{}.0/24", site.subnet))
            .arg(&net)
            .status()
            .unwrap();
        assert!(created.success(), "creating the uplink test network");
        let uplink = Uplink {
            net,
            container: site.matchbox.clone(),
        };
        uplink.connect(site);
        uplink
    }

    /// `up` replaces the container when its spec changes: the new one is attached again.
    fn connect(&self, site: &Site) {
        let ip = self.ip(site);
        let out = std::process::Command::new("docker")
            .args(["network", "connect", "--ip", &ip, &self.net, &self.container])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    fn ip(&self, site: &Site) -> String {
        format!("10.219.{}.10", site.subnet)
    }
}

impl Drop for Uplink {
    fn drop(&mut self) {
        docker(&["network", "disconnect", "-f", &self.net, &self.container]);
        docker(&["network", "rm", &self.net]);
    }
}

fn answers(ip: &str, port: u16) -> bool {
    let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    TcpStream::connect_timeout(&addr, Duration::from_secs(3)).is_ok()
}

fn check<'a>(json: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id}: {json:#}"))
}

#[test]
fn matchbox_answers_on_the_boot_network_only_unless_widened() {
    let Some(site) = Site::new() else { return };
    site.up_ok(TAG, &["--rpc"]);
    let uplink = Uplink::attach(&site);
    let other = uplink.ip(&site);

    assert!(
        answers(&site.server_ip(), 8080),
        "matchbox answers on the server address"
    );
    assert!(
        answers(&site.server_ip(), 8081),
        "the gRPC API answers on the server address"
    );
    assert!(
        !answers(&other, 8080),
        "matchbox must not answer on {other}, outside the boot network"
    );
    assert!(!answers(&other, 8081), "the gRPC API must not answer on {other}");
    let (_, json, _) = site.validate(TAG, &["--rpc"]);
    let listen = check(&json, "config.matchbox-listen");
    assert_eq!(listen["status"], "pass", "{listen:#}");
    assert!(
        listen["evidence"]
            .to_string()
            .contains(&format!("-address={}:8080", site.server_ip())),
        "{listen:#}"
    );

    // Widened on purpose: every address, and validate says so.
    site.up_ok(TAG, &["--rpc", "--matchbox-listen=all"]);
    uplink.connect(&site);
    assert!(answers(&other, 8080), "matchbox-listen: all answers on {other} too");
    let (_, json, _) = site.validate(TAG, &["--rpc", "--matchbox-listen=all"]);
    let listen = check(&json, "config.matchbox-listen");
    assert_eq!(listen["status"], "warn", "{listen:#}");
    assert!(
        listen["finding"].as_str().unwrap().contains("every interface"),
        "{listen:#}"
    );
}
