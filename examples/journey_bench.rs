//! How fast `cozyboot nodes` reads logs: 100,000 real-format lines (dnsmasq 2.90
//! `--log-dhcp` and matchbox v0.11.0 logrus, with docker's time prefix) for 500 machines,
//! parsed and folded into journeys.
//!
//! ```sh
//! cargo run --release --example journey_bench
//! ```

use cozyboot::journey::{dnsmasq_log, matchbox_log, model};
use std::fmt::Write;
use std::time::Instant;

const MACHINES: usize = 500;
const LINES: usize = 100_000;

/// One machine's UEFI boot in full mode, as dnsmasq and matchbox log it (taken from a real
/// boot, `tests/fixtures/journey/arm64-full.*`), with the machine's MAC, address and times.
fn boot(i: usize, t: u64, dnsmasq: &mut String, matchbox: &mut String) {
    let mac = format!("52:54:00:{:02x}:{:02x}:{:02x}", i >> 16 & 0xff, i >> 8 & 0xff, i & 0xff);
    let hyp = mac.replace(':', "-");
    let ip = format!("10.{}.{}.{}", 20 + i / 65536, i / 256 % 256, i % 256);
    let ts = |s: u64| {
        format!(
            "2026-11-29T{:02}:{:02}:{:02}.123456789Z",
            s / 3600 % 24,
            s / 60 % 60,
            s % 60
        )
    };
    let xid = 1_000_000 + i as u64 * 7 + t;
    let d = ts(t);
    for l in [
        format!("dnsmasq-dhcp: {xid} available DHCP range: 10.20.0.100 -- 10.20.255.200"),
        format!("dnsmasq-dhcp: {xid} vendor class: PXEClient:Arch:00011:UNDI:003000"),
        format!("dnsmasq-dhcp: {xid} DHCPDISCOVER(eth0) {mac} "),
        format!("dnsmasq-dhcp: {xid} tags: efi-arm64, eth0"),
        format!("dnsmasq-dhcp: {xid} DHCPOFFER(eth0) {ip} {mac} "),
        format!("dnsmasq-dhcp: {xid} requested options: 1:netmask, 2:time-offset, 3:router, 4, 5, "),
        format!("dnsmasq-dhcp: {xid} requested options: 6:dns-server, 12:hostname, 13:boot-file-size, "),
        format!("dnsmasq-dhcp: {xid} next server: 10.20.0.1"),
        format!("dnsmasq-dhcp: {xid} sent size:  1 option: 53 message-type  2"),
        format!("dnsmasq-dhcp: {xid} sent size:  4 option: 54 server-identifier  10.20.0.1"),
        format!("dnsmasq-dhcp: {xid} sent size: 13 option: 67 bootfile-name  bootaa64.efi"),
        format!("dnsmasq-dhcp: {xid} sent size:  4 option:  1 netmask  255.255.0.0"),
        format!("dnsmasq-dhcp: {xid} available DHCP range: 10.20.0.100 -- 10.20.255.200"),
        format!("dnsmasq-dhcp: {xid} vendor class: PXEClient:Arch:00011:UNDI:003000"),
        format!("dnsmasq-dhcp: {xid} DHCPREQUEST(eth0) {ip} {mac} "),
        format!("dnsmasq-dhcp: {xid} tags: efi-arm64, eth0"),
        format!("dnsmasq-dhcp: {xid} DHCPACK(eth0) {ip} {mac} "),
        format!("dnsmasq-dhcp: {xid} sent size: 13 option: 67 bootfile-name  bootaa64.efi"),
        format!("dnsmasq-tftp: error 8 User aborted the transfer received from {ip}"),
        format!("dnsmasq-tftp: sent /var/lib/tftpboot/bootaa64.efi to {ip}"),
        format!("dnsmasq-tftp: sent /var/lib/tftpboot/bootaa64.efi to {ip}"),
        format!("dnsmasq-tftp: file /var/lib/tftpboot/autoexec.ipxe not found for {ip}"),
        format!(
            "dnsmasq-dhcp: {} available DHCP range: 10.20.0.100 -- 10.20.255.200",
            xid + 1
        ),
        format!(
            "dnsmasq-dhcp: {} vendor class: PXEClient:Arch:00011:UNDI:003010",
            xid + 1
        ),
        format!("dnsmasq-dhcp: {} user class: iPXE", xid + 1),
        format!("dnsmasq-dhcp: {} DHCPDISCOVER(eth0) {mac} ", xid + 1),
        format!("dnsmasq-dhcp: {} tags: ipxe, efi-arm64, eth0", xid + 1),
        format!("dnsmasq-dhcp: {} DHCPOFFER(eth0) {ip} {mac} ", xid + 1),
        format!(
            "dnsmasq-dhcp: {} sent size: 35 option: 67 bootfile-name  http://10.20.0.1:8080/boot.ipxe",
            xid + 1
        ),
    ] {
        let _ = writeln!(dnsmasq, "{d} {l}");
    }
    let m = ts(t + 12);
    for l in [
        "HTTP GET /boot.ipxe".to_string(),
        format!(
            "HTTP GET /ipxe?uuid=00000000-0000-0000-0000-000000000000&mac={hyp}&domain=&hostname=&serial=&arch=arm64"
        ),
        format!("HTTP GET /assets/talos/arm64/vmlinuz?mac={hyp}"),
        format!("HTTP GET /assets/talos/arm64/initramfs.xz?mac={hyp}"),
    ] {
        let _ = writeln!(matchbox, "{m} time=\"{}Z\" level=info msg=\"{l}\"", &m[..19]);
    }
}

fn main() {
    let (mut dnsmasq, mut matchbox) = (String::new(), String::new());
    let mut i = 0;
    // Machines boot one after another, 20 s apart, until the logs hold LINES lines.
    while dnsmasq.lines().count() + matchbox.lines().count() < LINES {
        for _ in 0..50 {
            boot(i % MACHINES, 36_000 + i as u64 * 20, &mut dnsmasq, &mut matchbox);
            i += 1;
        }
    }
    let lines = dnsmasq.lines().count() + matchbox.lines().count();
    let bytes = dnsmasq.len() + matchbox.len();
    let mut best = f64::MAX;
    let mut machines = 0;
    for _ in 0..5 {
        let start = Instant::now();
        let mut events = dnsmasq_log::events(&dnsmasq);
        events.extend(matchbox_log::events(&matchbox));
        let journeys = model::fold(events);
        best = best.min(start.elapsed().as_secs_f64());
        machines = journeys.len();
        assert!(journeys.values().all(|j| j.reached(model::Stage::Initramfs)));
    }
    println!(
        "{lines} lines ({:.1} MB), {i} boots of {machines} machines: parsed and folded in {:.1} ms (best of 5), {:.2} M lines/s",
        bytes as f64 / 1e6,
        best * 1e3,
        lines as f64 / best / 1e6
    );
}
