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

const NODE_MAC: &str = "52:54:00:cb:00:01";
const OTHER_MAC: &str = "52-54-00-cb-00-02";

fn talos_config(kind: &str) -> String {
    let image = support::images::variant_image(support::images::SPIN_ONLY, TAG);
    format!("version: v1alpha1\nmachine:\n  type: {kind}\n  token: secret-{kind}\n  install:\n    disk: /dev/sda\n    image: {image}\ncluster:\n  clusterName: cozy\n")
}

fn generic(site: &Site, mac: &str) -> (u16, String) {
    let (status, body) = site.http_get(&format!("/generic?arch=arm64&mac={mac}"));
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The machine's DHCP answer, as dnsmasq would have logged it, kept in the site's journal:
/// its address is where `cozyboot nodes` knocks on Talos's port.
fn journal_dhcp(site: &Site, ip: std::net::Ipv4Addr, at: i64) {
    use cozyboot::journey::event::{Event, Source, What};
    use cozyboot::journey::journal::{Entry, Journal};
    let entry = |what| Entry {
        source: Some(Source::Dnsmasq),
        event: Event { at: Some(at), what },
    };
    let mut journal = Journal::load(&site.data()).unwrap();
    journal.events.push(entry(What::DhcpOffer {
        mac: NODE_MAC.into(),
        ip: Some(ip),
        proxy: false,
    }));
    journal.events.push(entry(What::BootFile {
        mac: NODE_MAC.into(),
        file: "bootaa64.efi".into(),
        ipxe: false,
    }));
    journal.save(&site.data()).unwrap();
}

#[test]
fn a_talos_config_is_withdrawn_once_its_machine_took_it_and_talos_answers() {
    let Some(site) = Site::new() else { return };
    let started = cozyboot::journey::clock::now() - 1;
    let (shared, own) = (site.dir.path().join("all.yaml"), site.dir.path().join("node.yaml"));
    std::fs::write(&shared, talos_config("worker")).unwrap();
    std::fs::write(&own, talos_config("controlplane")).unwrap();
    let configs = [
        format!("--talos-config={}", shared.display()),
        format!("--talos-nodes={NODE_MAC}@arm64={}", own.display()),
    ];
    let configs: Vec<&str> = configs.iter().map(String::as_str).collect();
    let (code, up, stderr) = site.up(TAG, &configs);
    assert_eq!(code, 0, "{stderr}");
    let warnings = up["warnings"].to_string();
    assert!(
        warnings.contains("served over plain HTTP") && warnings.contains("node.yaml"),
        "up warns that configs are served to anyone: {warnings}"
    );
    assert!(
        stderr.contains("warning: the Talos config") && stderr.contains("served over plain HTTP"),
        "and says so as it starts: {stderr}"
    );

    // The machine: it gets an address, its profile, kernel, initramfs and config (real
    // requests, so matchbox logs them), and then "Talos" answers on its address.
    let ip = std::net::Ipv4Addr::new(127, 77, (std::process::id() % 250) as u8, 1);
    let talos = std::net::TcpListener::bind((ip, 50000)).expect("a stand-in for Talos's apid on loopback");
    journal_dhcp(&site, ip, started);
    let hexhyp = NODE_MAC.replace(':', "-");
    for path in [
        format!("/ipxe?uuid=&mac={hexhyp}&domain=&hostname=&serial=&arch=arm64"),
        format!("/assets/talos/arm64/vmlinuz?mac={hexhyp}"),
        format!("/assets/talos/arm64/initramfs.xz?mac={hexhyp}"),
    ] {
        assert_eq!(site.http_get(&path).0, 200, "{path}");
    }
    let (status, body) = generic(&site, &hexhyp);
    assert_eq!((status, body.contains("secret-controlplane")), (200, true), "{body}");

    let out = site
        .cozyboot()
        .args(["nodes", "--json", "--data-dir"])
        .arg(site.data())
        .output()
        .unwrap();
    drop(talos);

    // Withdrawn: matchbox answers 404 for it; the machine's profile boots maintenance mode.
    assert_eq!(
        generic(&site, &hexhyp).0,
        404,
        "the machine's config is no longer served"
    );
    let nodes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let notes = nodes["notes"].to_string();
    assert!(
        notes.contains("withdrew the Talos config") && notes.contains(&format!("{ip}:50000")),
        "nodes says it withdrew the config: {nodes:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, script) = site.http_get(&format!("/ipxe?mac={hexhyp}&arch=arm64"));
    let script = String::from_utf8_lossy(&script).into_owned();
    assert!(
        script.contains("talos.platform=metal") && !script.contains("talos.config="),
        "{script}"
    );
    // U-Boot's boot script too: the machine now has a line of its own, without the config URL.
    let uboot = std::fs::read(site.data().join("assets/boot.scr.uimg")).unwrap();
    let uboot = cozyboot::artifacts::uimage::read_script(&uboot).unwrap().text;
    let own = uboot
        .lines()
        .find(|l| l.contains(&format!("\"${{ethaddr}}\" = \"{NODE_MAC}\"")))
        .unwrap_or_else(|| panic!("no line of the machine's own in:\n{uboot}"));
    assert!(
        own.contains("talos.platform=metal") && !own.contains("talos.config="),
        "{own}"
    );
    // The shared config is another machine's business: still served, and validate says so.
    let (status, body) = generic(&site, OTHER_MAC);
    assert_eq!((status, body.contains("secret-worker")), (200, true), "{body}");
    let (code, json, stderr) = site.validate(TAG, &configs);
    assert_eq!(
        code, 0,
        "no check fails on a site with a withdrawn config: {json:#}\n{stderr}"
    );
    let node = check(&json, &format!("matchbox.node.{NODE_MAC}"));
    assert!(node["finding"].as_str().unwrap().contains("withdrawn"), "{node:#}");
    let exposure = check(&json, "config.talos-config-exposure");
    assert_eq!(exposure["status"], "warn", "{exposure:#}");
    let evidence = exposure["evidence"].to_string();
    assert!(
        evidence.contains("served: ") && evidence.contains("all.yaml"),
        "{exposure:#}"
    );
    assert!(
        evidence.contains("withdrawn: ") && evidence.contains(NODE_MAC),
        "{exposure:#}"
    );
    assert_eq!(
        check(&json, "config.matchbox-files")["status"],
        "pass",
        "the tree on disk is what the settings render less the withdrawn config: {json:#}"
    );

    // `up` does not serve it again, unless asked to.
    site.up_ok(TAG, &configs);
    assert_eq!(generic(&site, &hexhyp).0, 404, "a later up keeps it withdrawn");
    site.up_ok(TAG, &[&configs[..], &["--serve-configs-again"]].concat());
    let (status, body) = generic(&site, &hexhyp);
    assert_eq!((status, body.contains("secret-controlplane")), (200, true), "{body}");

    // The machine still runs Talos, but what it fetched is older than the config served now:
    // `nodes` leaves the new one alone until the machine takes it.
    let talos = std::net::TcpListener::bind((ip, 50000)).unwrap();
    let out = site
        .cozyboot()
        .args(["nodes", "--json", "--data-dir"])
        .arg(site.data())
        .output()
        .unwrap();
    drop(talos);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        generic(&site, &hexhyp).0,
        200,
        "a config served again is not withdrawn by an old fetch"
    );
}
