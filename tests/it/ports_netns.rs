//! `up`'s port preflight against the real dnsmasq, inside a throwaway network namespace:
//! a second boot site on another interface shares udp/67 and is allowed; one on the same
//! interface, or beside a DHCP server that answers everywhere, is refused. And through `up`
//! itself on the host network (on a veth the test made, its peer in an empty namespace):
//! a listener on matchbox's port is refused with its owner, while connections left on the
//! port by a server that is gone do not stop matchbox.

use crate::support;

use cozyboot::host::ports::{check, Binding, Proto, Verdict};
use std::fs;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};
use support::hostnet::{self, cozyboot, quiet, Ns, Veth};
use support::netns::{DnsmasqProc, TestNet};
use support::{images, pe::pe};

fn dnsmasq_on(net: &TestNet, bound: bool) -> Option<DnsmasqProc> {
    let mut argv = vec![
        format!("--interface={}", net.server_if),
        format!("--dhcp-range={},proxy", net.ip(0)),
        "--pxe-service=x86PC,Boot,undionly".to_string(),
        "--enable-tftp".to_string(),
    ];
    if bound {
        argv.push("--bind-interfaces".into());
    }
    let root = tempfile::tempdir().unwrap();
    DnsmasqProc::start(net, argv, root.path())
}

#[test]
fn a_dnsmasq_bound_to_another_interface_shares_the_dhcp_port() {
    let Some(net) = TestNet::new() else { return };
    let Some(_dnsmasq) = dnsmasq_on(&net, true) else { return };
    let server = net.server_ip();
    let (other, same, tftp, tftp_elsewhere) = net.run_in_server(|| {
        (
            check(Proto::Udp, 67, Binding::UdpShared { iface: "cb-other" }),
            check(Proto::Udp, 67, Binding::UdpShared { iface: &net.server_if }),
            check(Proto::Udp, 69, Binding::UdpOn(server)),
            check(Proto::Udp, 69, Binding::UdpOn(Ipv4Addr::new(127, 0, 0, 2))),
        )
    });
    assert!(
        matches!(&other, Verdict::Shared(m) if m.contains("dnsmasq") && m.contains(&format!("bound to interface {}", net.server_if))),
        "{other:?}"
    );
    assert!(
        matches!(&same, Verdict::Clash(m) if m.contains("same interface")),
        "{same:?}"
    );
    assert!(matches!(&tftp, Verdict::Clash(m) if m.contains("dnsmasq")), "{tftp:?}");
    // A TFTP server on another address of the host (dnsmasq binds its interface's and
    // 127.0.0.1) is no clash.
    assert!(
        matches!(&tftp_elsewhere, Verdict::Shared(m) if m.contains("another address")),
        "{tftp_elsewhere:?}"
    );
}

#[test]
fn a_dnsmasq_not_bound_to_its_interface_is_refused() {
    let Some(net) = TestNet::new() else { return };
    let Some(_dnsmasq) = dnsmasq_on(&net, false) else {
        return;
    };
    let verdict = net.run_in_server(|| check(Proto::Udp, 67, Binding::UdpShared { iface: "cb-other" }));
    assert!(
        matches!(&verdict, Verdict::Clash(m) if m.contains("dnsmasq")),
        "{verdict:?}"
    );
}

/// The containers of one `up`, removed on drop (before the veth and the namespace).
struct Containers(Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        for name in &self.0 {
            for suffix in ["", "-cozyboot-new", "-cozyboot-old"] {
                quiet("docker", &["rm", "-f", &format!("{name}{suffix}")]);
            }
        }
    }
}

fn exists(container: &str) -> bool {
    Command::new("docker")
        .args(["inspect", container])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The TCP states (hex, as /proc/net/tcp writes them) of the host's sockets on local `port`.
fn tcp_states(addr: Ipv4Addr, port: u16) -> Vec<String> {
    // /proc/net/tcp writes the local address as the hex of its bytes in host (little-endian)
    // order. Only this address's sockets: another test may listen on the same port number
    // elsewhere on the host (the run failed once on a stranger's LISTEN).
    let local = format!("{:08X}:{port:04X}", u32::from_le_bytes(addr.octets()));
    fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            (cols.get(1) == Some(&local.as_str())).then(|| cols[3].to_string())
        })
        .collect()
}

#[test]
fn up_names_a_listener_on_matchbox_port_and_starts_beside_connections_left_on_it() {
    if !images::require_docker() || !hostnet::require_root("the port preflight through `up`") {
        return;
    }
    images::ensure().unwrap();
    let pid = std::process::id();
    let ns = Ns::new(&format!("cbport-{pid}"));
    let veth = Veth::new("cbport-h", "cbport-p");
    veth.address("10.216.1.1/24");
    ns.take(&veth.peer);
    let server = Ipv4Addr::new(10, 216, 1, 1);
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("ipxe-arm64.efi"), pe(0xAA64)).unwrap();
    let containers = Containers(vec![format!("cbport-{pid}-mb"), format!("cbport-{pid}-dm")]);

    // A server listening on the port matchbox will serve on; it accepts two machines.
    let listener = TcpListener::bind((server, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut up = vec!["up".to_string()];
    up.extend(images::registry_flags());
    up.extend([
        "--tag=latest".into(),
        "--network=host".into(),
        format!("--iface={}", veth.host),
        format!("--data-dir={}", dir.path().join("data").display()),
        format!("--http-port={port}"),
        format!("--ipxe-arm64={}", dir.path().join("ipxe-arm64.efi").display()),
        format!("--matchbox-name={}", containers.0[0]),
        format!("--dnsmasq-name={}", containers.0[1]),
        "--rpi-netboot=off".into(),
        "--arch=arm64".into(),
    ]);
    let still_downloading = TcpStream::connect((server, port)).unwrap();
    let (_served_still, _) = listener.accept().unwrap();
    let _powered_off = TcpStream::connect((server, port)).unwrap();
    let (served_gone, _) = listener.accept().unwrap();

    // While it listens, `up` refuses the port, names the listener, and starts nothing.
    let (code, _, stderr) = cozyboot(&up, dir.path(), None);
    assert_eq!(code, 1, "a listener on tcp/{port} is refused:\n{stderr}");
    assert!(
        stderr.contains(&format!("matchbox needs tcp/{port} is in use by")) && stderr.contains(&format!("(pid {pid})")),
        "the listener (this test) is named:\n{stderr}"
    );
    assert!(stderr.contains("nothing was started"), "{stderr}");
    for name in &containers.0 {
        assert!(!exists(name), "{name} was not created");
    }

    // The server is gone: one machine still connected (ESTABLISHED), one closed on by the
    // server and silent since (FIN-WAIT-2). matchbox binds beside both, as `up` must judge.
    drop(listener);
    drop(served_gone);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let states = tcp_states(server, port);
        if states.iter().any(|s| s == "01") && states.iter().any(|s| s == "05") && !states.iter().any(|s| s == "0A") {
            break;
        }
        assert!(Instant::now() < deadline, "the connections did not settle: {states:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, report, stderr) = cozyboot(&up, dir.path(), None);
    assert_eq!(
        code, 0,
        "up beside connections left on tcp/{port} starts:\n{stderr}\n{report:#}"
    );
    let (status, body) = support::http::get(&format!("http://{server}:{port}/"));
    assert_eq!(
        (status, String::from_utf8_lossy(&body).trim()),
        (200, "matchbox"),
        "matchbox serves on the port"
    );
    drop(still_downloading);
}
