//! The PXE probe against the real dnsmasq, inside throwaway network namespaces.
//!
//! The dnsmasq arguments are written out by hand, so these tests pin what dnsmasq itself does
//! with them, independently of cozyboot's renderer.

use crate::support;

use std::fs;
use std::time::Duration;

use cozyboot::host::pxe_client::{self as probe, DiscoverSpec, ProbeError};
use support::netns::{DnsmasqProc, TestNet};
use tempfile::TempDir;

/// Bound for each DHCP or TFTP wait.
const WAIT: Duration = Duration::from_secs(3);
const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xc0, 0x2b, 0x01];
const ARCH_X86_BIOS: u16 = 0;
const ARCH_ARM64_UEFI: u16 = 11;

/// A stand-in EFI binary spanning several TFTP blocks, with a PE "MZ" header.
fn fake_efi() -> Vec<u8> {
    let mut bytes = b"MZ".to_vec();
    bytes.extend((0..5000u32).map(|i| (i % 251) as u8));
    bytes
}

fn tftp_root(files: &[(&str, &[u8])]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        fs::write(dir.path().join(name), content).unwrap();
    }
    dir
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|arg| arg.to_string()).collect()
}

fn common_args(net: &TestNet) -> Vec<String> {
    let mut argv = args(&["-d", "-p0", "--log-dhcp", "--bind-interfaces"]);
    argv.push(format!("--interface={}", net.server_if));
    argv
}

fn ipxe_script_url(net: &TestNet) -> String {
    format!("http://{}:8080/boot.ipxe", net.server_ip())
}

/// Full DHCP mode as cozyboot configures it, with `arm64_arch` as the client-arch rule.
fn full_mode_args(net: &TestNet, arm64_arch: u16) -> Vec<String> {
    let x = net.subnet;
    let mut argv = common_args(net);
    argv.extend([
        format!("--dhcp-range=10.213.{x}.100,10.213.{x}.150"),
        // The probes here wait WAIT (3 s) once; dnsmasq's ping of a new address before its
        // first offer takes up to as long (PING_WAIT), so under load the offer came too late.
        // `validate --probe-dhcp` waits for the ping itself (validate::probe FIRST_OFFER_PING).
        "--no-ping".into(),
        format!("--dhcp-match=set:efi-arm64,option:client-arch,{arm64_arch}"),
        "--dhcp-boot=tag:efi-arm64,tag:!ipxe,bootaa64.efi".into(),
        "--dhcp-match=set:ipxe,175".into(),
        "--dhcp-userclass=set:ipxe,iPXE".into(),
        format!("--dhcp-boot=tag:ipxe,{}", ipxe_script_url(net)),
        "--enable-tftp".into(),
    ]);
    argv
}

/// A "home router": addresses only, no boot files. Without `--no-ping` it offers only after
/// pinging the address (up to 3 s, dnsmasq's PING_WAIT), the probe's whole window: under load
/// its offer came too late.
fn router_args(net: &TestNet) -> Vec<String> {
    let x = net.subnet;
    let mut argv = common_args(net);
    argv.push(format!("--dhcp-range=10.213.{x}.100,10.213.{x}.150"));
    argv.push("--no-ping".to_string());
    argv
}

/// Proxy DHCP mode: another server hands out addresses, dnsmasq only says what to boot.
fn proxy_mode_args(net: &TestNet) -> Vec<String> {
    let mut argv = common_args(net);
    argv.extend([
        format!("--dhcp-range=10.213.{}.0,proxy", net.subnet),
        "--dhcp-match=set:ipxe,175".into(),
        "--dhcp-userclass=set:ipxe,iPXE".into(),
        // Passed as argv, not through a shell or config file: quotes would reach the menu text.
        "--pxe-service=tag:!ipxe,ARM64_EFI,cozyboot arm64,bootaa64.efi".into(),
        format!("--pxe-service=tag:ipxe,ARM64_EFI,iPXE,{}", ipxe_script_url(net)),
        "--pxe-service=tag:!ipxe,x86PC,BIOS,undionly.kpxe".into(),
        "--enable-tftp".into(),
    ]);
    argv
}

#[test]
fn full_mode_arm64_firmware_gets_bootaa64_and_tftp_serves_it() {
    let Some(net) = TestNet::new() else { return };
    let efi = fake_efi();
    let root = tftp_root(&[("bootaa64.efi", &efi)]);
    let Some(dnsmasq) = DnsmasqProc::start(&net, full_mode_args(&net, 11), root.path()) else {
        return;
    };
    let spec = DiscoverSpec::firmware(ARCH_ARM64_UEFI, MAC);
    let (answer, fetched) = net.run_in_client(|| {
        let answer = probe::boot_file_for(&net.client_if, &spec, WAIT).unwrap();
        let file = answer.boot_file.clone().expect("a boot file");
        let fetched = probe::fetch(answer.tftp_server.unwrap(), &file, WAIT);
        (answer, fetched)
    });
    let log = dnsmasq.log();
    assert_eq!(answer.boot_file.as_deref(), Some("bootaa64.efi"), "{log}");
    assert!(!answer.via_pxe_port);
    assert_eq!(answer.tftp_server, Some(net.server_ip()));
    assert_eq!(answer.offers.len(), 1, "{answer:?}");
    let offer = &answer.offers[0];
    assert!(!offer.proxy);
    assert_eq!(offer.server_id, net.server_ip());
    assert_eq!(offer.yiaddr.octets()[..3], [10, 213, net.subnet]);
    assert_eq!(fetched.unwrap(), efi, "{log}");
}

/// What `bench/run --only storm` makes each simulated machine do: take the lease (REQUEST the
/// offered address, ACKed by the real dnsmasq), then, from that address, the size request EDK2
/// aborts with error 8 and the download, as dnsmasq logs them for a real AAVMF boot
/// (`tests/fixtures/journey/arm64-full.dnsmasq.log`).
#[test]
fn a_firmware_lease_then_tftp_from_the_leased_address_as_edk2_does() {
    let Some(net) = TestNet::new() else { return };
    let efi = fake_efi();
    let root = tftp_root(&[("bootaa64.efi", &efi)]);
    let Some(dnsmasq) = DnsmasqProc::start(&net, full_mode_args(&net, 11), root.path()) else {
        return;
    };
    let spec = DiscoverSpec::firmware(ARCH_ARM64_UEFI, MAC);
    // A firmware's retransmission schedule (full_mode_args turns dnsmasq's ping off).
    let waits = [WAIT, WAIT];
    let ack = net
        .run_in_client(|| probe::lease(&net.client_if, &spec, &waits))
        .unwrap_or_else(|e| panic!("no lease: {e}\n{}", dnsmasq.log()));
    assert_eq!(ack.yiaddr.octets()[..3], [10, 213, net.subnet]);
    assert_eq!(ack.boot_file.as_deref(), Some("bootaa64.efi"));
    let mac = "52:54:00:c0:2b:01";
    let acked = format!("DHCPACK({}) {} {mac}", net.server_if, ack.yiaddr);
    assert!(dnsmasq.wait_for_log(&acked, WAIT), "{}", dnsmasq.log());

    let address = format!("{}/32", ack.yiaddr);
    let added = std::process::Command::new("ip")
        .args(["-n", &net.client_ns, "addr", "add", &address, "dev", &net.client_if])
        .status()
        .unwrap();
    assert!(added.success());
    let (ip, server) = (ack.yiaddr, ack.tftp_server());
    let (size, fetched) = net.run_in_client(|| {
        (
            probe::tftp::size_as(ip, server, "bootaa64.efi", WAIT),
            probe::fetch_as(ip, server, "bootaa64.efi", WAIT),
        )
    });
    assert_eq!(size.unwrap(), Some(efi.len()), "{}", dnsmasq.log());
    assert_eq!(fetched.unwrap(), efi);
    let aborted = format!("error 8 User aborted the transfer received from {ip}");
    assert!(dnsmasq.wait_for_log(&aborted, WAIT), "{}", dnsmasq.log());
    assert!(
        dnsmasq.wait_for_log(&format!("sent {}/bootaa64.efi to {ip}", root.path().display()), WAIT),
        "{}",
        dnsmasq.log()
    );
}

#[test]
fn full_mode_missing_file_is_a_tftp_error_with_the_servers_message() {
    let Some(net) = TestNet::new() else { return };
    let root = tftp_root(&[]);
    let Some(dnsmasq) = DnsmasqProc::start(&net, full_mode_args(&net, 11), root.path()) else {
        return;
    };
    let server = net.server_ip();
    let err = net
        .run_in_client(|| probe::fetch(server, "bootaa64.efi", WAIT))
        .unwrap_err();
    match &err {
        ProbeError::TftpRefused { message, .. } => {
            assert!(message.contains("not found"), "{err}\n{}", dnsmasq.log())
        }
        other => panic!("expected a TFTP error, got {other:?}\n{}", dnsmasq.log()),
    }
}

#[test]
fn full_mode_ipxe_gets_the_boot_script_url() {
    let Some(net) = TestNet::new() else { return };
    let root = tftp_root(&[]);
    let Some(dnsmasq) = DnsmasqProc::start(&net, full_mode_args(&net, 11), root.path()) else {
        return;
    };
    let spec = DiscoverSpec::ipxe(ARCH_ARM64_UEFI, MAC);
    let offers = net
        .run_in_client(|| probe::discover(&net.client_if, &spec, WAIT))
        .unwrap();
    assert_eq!(offers.len(), 1);
    let url = ipxe_script_url(&net);
    assert_eq!(offers[0].boot_file.as_deref(), Some(url.as_str()), "{}", dnsmasq.log());
}

#[test]
fn guide_rule_client_arch_12_leaves_arm64_firmware_without_boot_file() {
    let Some(net) = TestNet::new() else { return };
    let root = tftp_root(&[("bootaa64.efi", b"MZ")]);
    let Some(dnsmasq) = DnsmasqProc::start(&net, full_mode_args(&net, 12), root.path()) else {
        return;
    };
    let spec = DiscoverSpec::firmware(ARCH_ARM64_UEFI, MAC);
    let answer = net
        .run_in_client(|| probe::boot_file_for(&net.client_if, &spec, WAIT))
        .unwrap();
    // An address, but nothing to boot: the symptom the guide's rule produces on real boards.
    assert_eq!(answer.boot_file, None, "{}", dnsmasq.log());
    assert_eq!(answer.offers.len(), 1);
    assert!(!answer.offers[0].proxy);
}

#[test]
fn proxy_mode_arm64_firmware_is_sent_to_4011_and_gets_bootaa64() {
    let Some(net) = TestNet::new() else { return };
    let efi = fake_efi();
    let root = tftp_root(&[("bootaa64.efi", &efi)]);
    let Some(dnsmasq) = DnsmasqProc::start(&net, proxy_mode_args(&net), root.path()) else {
        return;
    };
    let spec = DiscoverSpec::firmware(ARCH_ARM64_UEFI, MAC);
    let (offers, answer, fetched) = net.run_in_client(|| {
        let offers = probe::discover(&net.client_if, &spec, WAIT).unwrap();
        let answer = probe::boot_file_for(&net.client_if, &spec, WAIT).unwrap();
        let file = answer.boot_file.clone().expect("a boot file");
        let fetched = probe::fetch(answer.tftp_server.unwrap(), &file, WAIT);
        (offers, answer, fetched)
    });
    let log = dnsmasq.log();
    // dnsmasq's port-67 answer to a UEFI client: no address, no file, no menu.
    assert_eq!(offers.len(), 1, "{log}");
    let offer = &offers[0];
    assert!(offer.proxy && offer.is_pxe(), "{offer:?}");
    assert_eq!(offer.boot_file, None);
    assert_eq!(offer.pxe_options, None);
    assert_eq!(offer.siaddr, net.server_ip());

    assert!(answer.via_pxe_port);
    assert_eq!(answer.boot_file.as_deref(), Some("bootaa64.efi"), "{log}");
    assert_eq!(answer.tftp_server, Some(net.server_ip()));
    assert_eq!(fetched.unwrap(), efi, "{log}");
}

#[test]
fn proxy_mode_bios_client_picks_the_menu_item_and_gets_undionly() {
    let Some(net) = TestNet::new() else { return };
    let root = tftp_root(&[("undionly.kpxe", b"undi")]);
    let Some(dnsmasq) = DnsmasqProc::start(&net, proxy_mode_args(&net), root.path()) else {
        return;
    };
    let spec = DiscoverSpec::firmware(ARCH_X86_BIOS, MAC);
    let answer = net
        .run_in_client(|| probe::boot_file_for(&net.client_if, &spec, WAIT))
        .unwrap();
    let log = dnsmasq.log();
    // A BIOS client gets the menu on port 67 and names its choice on 4011.
    let menu = answer.offers[0].pxe_menu();
    assert_eq!(menu.len(), 1, "{answer:?}");
    assert_eq!(menu[0].description, "BIOS");
    assert!(answer.via_pxe_port);
    assert_eq!(answer.boot_file.as_deref(), Some("undionly.kpxe"), "{log}");
    assert_eq!(answer.tftp_server, Some(net.server_ip()));
}

#[test]
fn proxy_mode_ipxe_gets_the_boot_script_url() {
    let Some(net) = TestNet::new() else { return };
    let root = tftp_root(&[]);
    let Some(dnsmasq) = DnsmasqProc::start(&net, proxy_mode_args(&net), root.path()) else {
        return;
    };
    let spec = DiscoverSpec::ipxe(ARCH_ARM64_UEFI, MAC);
    let answer = net
        .run_in_client(|| probe::boot_file_for(&net.client_if, &spec, WAIT))
        .unwrap();
    let url = ipxe_script_url(&net);
    assert_eq!(answer.boot_file.as_deref(), Some(url.as_str()), "{}", dnsmasq.log());
}

#[test]
fn proxy_next_to_another_dhcp_server_reports_both_and_boots_from_the_proxy() {
    let Some(net) = TestNet::new() else { return };
    let efi = fake_efi();
    let root = tftp_root(&[("bootaa64.efi", &efi)]);
    // The "home router": addresses only. Both bind port 67 (dnsmasq sets SO_REUSEPORT with
    // --bind-interfaces), and the kernel hands each a copy of the broadcast.
    let Some(router) = DnsmasqProc::start(&net, router_args(&net), root.path()) else {
        return;
    };
    let Some(proxy) = DnsmasqProc::start(&net, proxy_mode_args(&net), root.path()) else {
        return;
    };
    let spec = DiscoverSpec::firmware(ARCH_ARM64_UEFI, MAC);
    let answer = net
        .run_in_client(|| probe::boot_file_for(&net.client_if, &spec, WAIT))
        .unwrap();
    let logs = format!("router:\n{}\nproxy:\n{}", router.log(), proxy.log());
    assert_eq!(answer.offers.len(), 2, "{answer:?}\n{logs}");
    assert_eq!(answer.offers.iter().filter(|o| o.proxy).count(), 1);
    assert_eq!(answer.boot_file.as_deref(), Some("bootaa64.efi"), "{logs}");
    assert!(answer.via_pxe_port);
}

#[test]
fn no_server_is_the_no_answer_error() {
    let Some(net) = TestNet::new() else { return };
    let spec = DiscoverSpec::firmware(ARCH_ARM64_UEFI, MAC);
    let err = net
        .run_in_client(|| probe::discover(&net.client_if, &spec, Duration::from_secs(1)))
        .unwrap_err();
    assert!(
        matches!(&err, ProbeError::NoAnswer { iface, waited_ms: 1000 } if iface == "cb-cli"),
        "{err:?}"
    );
    assert!(err.to_string().contains("no DHCP server on that segment"));
}

#[test]
fn unknown_interface_is_reported_by_name() {
    let Some(net) = TestNet::new() else { return };
    let spec = DiscoverSpec::firmware(ARCH_ARM64_UEFI, MAC);
    let err = net
        .run_in_client(|| probe::discover("cb-nope", &spec, Duration::from_millis(100)))
        .unwrap_err();
    assert!(
        matches!(&err, ProbeError::NoSuchInterface { iface } if iface == "cb-nope"),
        "{err:?}"
    );
}

#[test]
fn proxy_mode_with_two_arm64_services_answers_a_menu_and_the_first_item_boots() {
    let Some(net) = TestNet::new() else { return };
    let root = tftp_root(&[]);
    let mut argv = common_args(&net);
    argv.extend([
        format!("--dhcp-range=10.213.{}.0,proxy", net.subnet),
        "--pxe-service=ARM64_EFI,first,first.efi".into(),
        "--pxe-service=ARM64_EFI,second,second.efi".into(),
    ]);
    let Some(dnsmasq) = DnsmasqProc::start(&net, argv, root.path()) else {
        return;
    };
    let spec = DiscoverSpec::firmware(ARCH_ARM64_UEFI, MAC);
    let answer = net
        .run_in_client(|| probe::boot_file_for(&net.client_if, &spec, WAIT))
        .unwrap();
    // With two candidates dnsmasq's 4011 answer is a menu; the probe then names item one.
    assert!(answer.via_pxe_port);
    assert_eq!(answer.boot_file.as_deref(), Some("first.efi"), "{}", dnsmasq.log());
}

/// Two boot sites on one LAN, as while the cluster's site (`render --kubernetes`) runs beside
/// the host's before `cozyboot down`: both proxy DHCP beside the router. The second one sits
/// on a macvlan of the server's end of the veth, in bridge mode, so it has an address (.3) and
/// a MAC of its own on the same segment and hears the same broadcasts.
#[test]
fn a_second_boot_server_on_the_lan_is_named_with_what_it_offers() {
    let Some(net) = TestNet::new() else { return };
    let efi = fake_efi();
    let root = tftp_root(&[("bootaa64.efi", &efi)]);
    let srv = net.server_ns.as_str();
    let other_if = "cb-oth";
    let other_ip = net.ip(3);
    support::netns::ip_in(
        srv,
        &[
            "link",
            "add",
            other_if,
            "link",
            &net.server_if,
            "type",
            "macvlan",
            "mode",
            "bridge",
        ],
    );
    support::netns::ip_in(srv, &["addr", "add", &format!("{other_ip}/24"), "dev", other_if]);
    support::netns::ip_in(srv, &["link", "set", other_if, "up"]);
    // Each interface answers ARP only for its own address, as two hosts would.
    let sysctl = net
        .server_command("sysctl")
        .args(["-qw", "net.ipv4.conf.all.arp_ignore=1"])
        .status()
        .unwrap();
    assert!(sysctl.success());

    let Some(router) = DnsmasqProc::start(&net, router_args(&net), root.path()) else {
        return;
    };
    let Some(host_site) = DnsmasqProc::start(&net, proxy_mode_args(&net), root.path()) else {
        return;
    };
    let cluster_args: Vec<String> = proxy_mode_args(&net)
        .into_iter()
        .map(|a| {
            a.replace(
                &format!("--interface={}", net.server_if),
                &format!("--interface={other_if}"),
            )
        })
        .map(|a| a.replace(&net.server_ip().to_string(), &other_ip.to_string()))
        .collect();
    let Some(cluster_site) = DnsmasqProc::start(&net, cluster_args, root.path()) else {
        return;
    };

    let spec = DiscoverSpec::firmware(ARCH_ARM64_UEFI, MAC);
    let own = net.server_ip();
    let started = std::time::Instant::now();
    let (answer, others) = net.run_in_client(|| {
        let answer = probe::boot_file_for(&net.client_if, &spec, WAIT).unwrap();
        let others = cozyboot::validate::probe::other_boot_files(&net.client_if, &spec, &answer, own, WAIT);
        (answer, others)
    });
    let logs = format!(
        "router:\n{}\nhost site:\n{}\ncluster site:\n{}",
        router.log(),
        host_site.log(),
        cluster_site.log()
    );
    // Every offer within the window: the router's, and both proxies'.
    assert_eq!(answer.offers.len(), 3, "{answer:?}\n{logs}");
    assert_eq!(others, [(other_ip, "bootaa64.efi".to_string())], "{logs}");

    let check = cozyboot::validate::probe::servers(own, true, &answer.offers, &others);
    assert_eq!(check.status, cozyboot::validate::Status::Warn, "{check:?}");
    assert!(
        check.finding.contains(&format!(
            "a second boot server, {other_ip} (proxy DHCP), offers bootaa64.efi"
        )),
        "{check:?}"
    );
    assert!(
        check.fix.as_deref().unwrap_or_default().contains("cozyboot down"),
        "{check:?}"
    );
    // The router alone is no second boot server: it only hands out addresses.
    let router_ip = answer.offers.iter().find(|o| !o.proxy).unwrap().server_id;
    assert!(
        !check.finding.contains(&router_ip.to_string()) || router_ip == own,
        "{check:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "bounded: {:?}",
        started.elapsed()
    );
}
