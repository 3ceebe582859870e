//! The dnsmasq argv cozyboot renders, run by the real dnsmasq in a network namespace this test
//! creates, answers the way firmware and iPXE need — whatever the order of its boot lines.

use crate::support;

use cozyboot::host::pxe_client::{self as probe, DiscoverSpec};
use cozyboot::render;
use cozyboot::settings::{net::FixedNet, Purpose, Settings};
use std::fs;
use std::time::Duration;
use support::netns::{DnsmasqProc, TestNet};
use support::pe::pe_sized;

const WAIT: Duration = Duration::from_millis(1500);
const PC_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const PI_MAC: [u8; 6] = [0xdc, 0xa6, 0x32, 0x00, 0x00, 0x01];

fn settings_for(net: &TestNet, extra: &[String]) -> Settings {
    let mut argv = vec![
        format!("--iface={}", net.server_if),
        format!("--server-ip={}", net.server_ip()),
        format!("--subnet={}/24", net.ip(0)),
        "--arch=arm64,amd64".into(),
    ];
    argv.extend(extra.iter().cloned());
    support::settings::valid(&argv, &FixedNet::default(), Purpose::Render)
}

fn full_mode(net: &TestNet) -> Vec<String> {
    vec![format!("--dhcp-range={},{}", net.ip(100), net.ip(150))]
}

/// Reverses the lines that decide the boot file among themselves, leaving the rest in place.
fn reversed(argv: &[String]) -> Vec<String> {
    let decides = |a: &String| a.starts_with("--dhcp-boot=") || a.starts_with("--pxe-service=");
    let mut boot: Vec<String> = argv.iter().filter(|a| decides(a)).cloned().collect();
    boot.reverse();
    let mut boot = boot.into_iter();
    argv.iter()
        .map(|a| if decides(a) { boot.next().unwrap() } else { a.clone() })
        .collect()
}

/// Distinct bytes per bootloader, with PE headers for the EFI ones.
fn tftp_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("bootaa64.efi"), pe_sized(0xAA64, 3000, 0xa1)).unwrap();
    fs::write(dir.path().join("ipxe.efi"), pe_sized(0x8664, 3000, 0x86)).unwrap();
    fs::write(dir.path().join("undionly.kpxe"), vec![0x55; 1500]).unwrap();
    dir
}

struct Answers {
    arm64_file: Option<String>,
    arm64_bytes: Option<Vec<u8>>,
    ipxe_file: Option<String>,
    bios_file: Option<String>,
    /// The Pi EEPROM's answers: option 43 `Raspberry Pi Boot` offered, and any boot file.
    pi_option43: bool,
    pi_eeprom_file: Option<String>,
    x64_file: Option<String>,
}

fn ask(net: &TestNet, mut argv: Vec<String>, root: &std::path::Path) -> Answers {
    // dnsmasq pings an address for up to 3 s before offering it; that guards real networks
    // against static hosts and only slows this empty one down. It changes no boot answer.
    argv.push("--no-ping".into());
    let dnsmasq = DnsmasqProc::start(net, argv, root).expect("dnsmasq starts in the namespace");
    net.run_in_client(|| {
        let iface = net.client_if.as_str();
        let file = |spec: DiscoverSpec| {
            probe::boot_file_for(iface, &spec, WAIT).unwrap_or_else(|e| panic!("{e}\n{}", dnsmasq.log()))
        };
        let arm64 = file(DiscoverSpec::firmware(11, PC_MAC));
        let arm64_bytes = arm64
            .boot_file
            .as_ref()
            .map(|f| probe::tftp::fetch(arm64.tftp_server.unwrap(), f, WAIT).expect("TFTP fetch of the offered file"));
        // Shaped like the EEPROM (support/rpi.rs cites the sources): it reads no PXE menu and
        // asks no UDP 4011, it looks for option 43 in what port 67 sends.
        let pi = DiscoverSpec::rpi_eeprom(PI_MAC, support::rpi::PI_REVISION, support::rpi::PI_SERIAL);
        let pi_offers = probe::discover(iface, &pi, WAIT).unwrap_or_else(|e| panic!("{e}\n{}", dnsmasq.log()));
        Answers {
            pi_option43: pi_offers.iter().any(|o| o.offers_raspberry_pi_boot()),
            pi_eeprom_file: pi_offers.iter().find_map(|o| o.boot_file.clone()),
            arm64_file: arm64.boot_file,
            arm64_bytes,
            ipxe_file: file(DiscoverSpec::ipxe(11, PC_MAC)).boot_file,
            bios_file: file(DiscoverSpec::firmware(0, PC_MAC)).boot_file,
            x64_file: file(DiscoverSpec::firmware(7, PC_MAC)).boot_file,
        }
    })
}

fn check_both_orders(extra: fn(&TestNet) -> Vec<String>) {
    let Some(net) = TestNet::new() else { return };
    let s = settings_for(&net, &extra(&net));
    let argv = render::render(&s).dnsmasq_args;
    let root = tftp_root();
    let expected_arm64 = fs::read(root.path().join("bootaa64.efi")).unwrap();
    let url = format!("http://{}:8080/boot.ipxe", net.server_ip());
    for (order, args) in [("as rendered", argv.clone()), ("reversed", reversed(&argv))] {
        let a = ask(&net, args, root.path());
        assert_eq!(a.arm64_file.as_deref(), Some("bootaa64.efi"), "arch 11, {order}");
        assert_eq!(
            a.arm64_bytes.as_ref(),
            Some(&expected_arm64),
            "arm64 bytes over TFTP, {order}"
        );
        assert_eq!(a.ipxe_file.as_deref(), Some(url.as_str()), "iPXE, {order}");
        assert_eq!(a.bios_file.as_deref(), Some("undionly.kpxe"), "x86 BIOS, {order}");
        assert_eq!(a.x64_file.as_deref(), Some("ipxe.efi"), "x64 UEFI, {order}");
        // The Pi's EEPROM bootloader cannot run iPXE: it gets no boot file (not undionly.kpxe),
        // but option 43 `Raspberry Pi Boot`, and reads start4.elf from the TFTP root itself.
        assert_eq!(a.pi_eeprom_file, None, "Raspberry Pi EEPROM, {order}");
        assert!(
            a.pi_option43,
            "Raspberry Pi EEPROM gets option 43 Raspberry Pi Boot, {order}"
        );
    }
}

#[test]
fn full_mode_answers_do_not_depend_on_line_order() {
    check_both_orders(full_mode);
}

#[test]
fn proxy_mode_answers_do_not_depend_on_line_order() {
    check_both_orders(|_| Vec::new());
}

/// The guide's rule maps arch 12 to ARM64: a real ARM64 UEFI client (arch 11) gets nothing.
#[test]
fn the_guides_arch_12_rule_leaves_arm64_without_a_boot_file() {
    let Some(net) = TestNet::new() else { return };
    let s = settings_for(&net, &full_mode(&net));
    let guide: Vec<String> = render::render(&s)
        .dnsmasq_args
        .into_iter()
        .map(|a| a.replace("option:client-arch,11", "option:client-arch,12"))
        .filter(|a| !a.contains("PXEClient:Arch:00011"))
        .collect();
    let root = tftp_root();
    let a = ask(&net, guide, root.path());
    assert_eq!(a.arm64_file, None);
}
