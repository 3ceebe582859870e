//! `up`'s port preflight against the real dnsmasq, inside a throwaway network namespace:
//! a second boot site on another interface shares udp/67 and is allowed; one on the same
//! interface, or beside a DHCP server that answers everywhere, is refused.

use crate::support;

use cozyboot::host::ports::{check, Binding, Proto, Verdict};
use std::net::Ipv4Addr;
use support::netns::{DnsmasqProc, TestNet};

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
