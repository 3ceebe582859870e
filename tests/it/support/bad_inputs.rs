//! The bad-input table: settings that must be refused before anything is touched.
//!
//! One table for two users: `tests/it/bad_input.rs` checks that each case is refused with exit
//! code 2 and a message naming the field, the value, the problem and the fix, and
//! `tests/it/errors_doc.rs` checks that `docs/errors.md` lists exactly these cases, with the
//! message each one produces.

// Shared by several test crates, each of which uses only part of it.

use clap::Parser;
use cozyboot::cli::{Cli, Command};
use cozyboot::settings::{self, net::FixedNet, Purpose};
use std::path::Path;

pub fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// eth0 as in the guide, plus an interface that is up but has no IPv4 address.
pub fn host() -> FixedNet {
    FixedNet(vec![
        ("eth0".into(), vec!["10.20.13.140/24".parse().unwrap()]),
        ("bare0".into(), vec![]),
    ])
}

pub struct Case {
    pub name: &'static str,
    pub flags: Vec<String>,
    pub env: Vec<(&'static str, &'static str)>,
    /// The text of a config file (`--config`), written to a temporary file.
    pub file: Option<&'static str>,
    /// Every fragment must appear in the message.
    pub expect: Vec<&'static str>,
}

pub fn case(name: &'static str, flags: &[&str], expect: &[&'static str]) -> Case {
    Case {
        name,
        flags: flags.iter().map(|s| s.to_string()).collect(),
        env: vec![],
        file: None,
        expect: expect.to_vec(),
    }
}

pub const FULL: &[&str] = &["--iface=eth0", "--dhcp-range=10.20.13.150,10.20.13.200"];

pub fn with_full(extra: &[&str]) -> Vec<String> {
    FULL.iter().chain(extra).map(|s| s.to_string()).collect()
}

pub fn cases() -> Vec<Case> {
    let talos = |name: &str| format!("--talos-config={}", fixture(name));
    let mut cases = vec![
        case("malformed server ip", &["--iface=eth0", "--server-ip=10.20.13.300"], &["server-ip = '10.20.13.300'", "not an IPv4 address", "flag --server-ip", "fix:"]),
        case("malformed range", &["--iface=eth0", "--dhcp-range=10.20.13.150"], &["dhcp-range = '10.20.13.150'", "not a range", "START,END"]),
        case("range start after end", &["--iface=eth0", "--dhcp-range=10.20.13.200,10.20.13.150"], &["dhcp-range", "start address is after the end", "swap them"]),
        case("range outside subnet", &["--iface=eth0", "--dhcp-range=10.20.14.10,10.20.14.20"], &["dhcp-range", "10.20.14.10 is outside the subnet 10.20.13.0/24"]),
        case("gateway outside subnet", &with_full(&["--gateway=10.9.9.1"]).iter().map(String::as_str).collect::<Vec<_>>(), &["gateway = '10.9.9.1'", "outside the subnet"]),
        case("server ip inside range", &["--iface=eth0", "--dhcp-range=10.20.13.100,10.20.13.200"], &["server-ip = '10.20.13.140'", "inside the DHCP range", "could be leased"]),
        case("missing interface", &["--iface=nosuch0"], &["iface = 'nosuch0'", "no such network interface", "eth0"]),
        case("interface without ipv4", &["--iface=bare0"], &["iface = 'bare0'", "no IPv4 address"]),
        case("no interface at all", &[], &["iface", "no interface given", "eth0"]),
        case("server ip not on the interface", &["--iface=eth0", "--server-ip=192.168.7.7"], &["server-ip = '192.168.7.7'", "not on any subnet of eth0"]),
        case("bad tag", &["--iface=eth0", "--tag=-rc1"], &["tag = '-rc1'", "not a valid image tag"]),
        case("registry with scheme", &["--iface=eth0", "--registry=https://ghcr.io/x"], &["registry = 'https://ghcr.io/x'", "scheme"]),
        case("registry upper case", &["--iface=eth0", "--registry=ghcr.io/Urmanac"], &["registry", "lower-case"]),
        case("bad dnsmasq image", &["--iface=eth0", "--dnsmasq-image=quay.io/poseidon/dnsmasq:bad tag"], &["dnsmasq-image", "not a valid image reference"]),
        case("port out of range", &["--iface=eth0", "--http-port=99999"], &["http-port = '99999'", "not a TCP port"]),
        case("bad lease time", &with_full(&["--lease-time=12hours"]).iter().map(String::as_str).collect::<Vec<_>>(), &["lease-time = '12hours'", "not a dnsmasq lease time"]),
        case("gateway in proxy mode", &["--iface=eth0", "--gateway=10.20.13.1"], &["gateway", "only applies to full DHCP mode"]),
        case("bootloader with a directory", &["--iface=eth0", "--bootloader-arm64=../../etc/x.efi"], &["bootloader-arm64", "not a plain file name"]),
        case("arm64 bootloader named like the x86 one", &["--iface=eth0", "--bootloader-arm64=ipxe.efi"], &["bootloader-arm64 = 'ipxe.efi'", "the other's binary"]),
        case("talos config is not yaml", &["--iface=eth0", &talos("not-yaml.yaml")], &["talos-config", "not valid YAML", "line"]),
        case("talos config for another variant", &["--iface=eth0", &talos("mismatched-image.yaml")], &["talos-config", "machine.install.image is 'ghcr.io/urmanac/cozystack-assets/talos/cozystack-spin-tailscale/talos:v1.0.0'", "set machine.install.image: ghcr.io/urmanac/cozystack-assets/talos/cozystack-spin-only/talos:latest"]),
        case("talos config without install image", &["--iface=eth0", &talos("no-install-image.yaml")], &["talos-config", "machine.install.image is not set"]),
        case("talos config with template braces", &["--iface=eth0", &talos("template-braces.yaml")], &["talos-config", "Go template", "line 5"]),
        case("missing talos config", &["--iface=eth0", "--talos-config=/nonexistent/cp.yaml"], &["talos-config = '/nonexistent/cp.yaml'", "cannot read"]),
        case("talos.config pointing at /ignition", &["--iface=eth0", "--kernel-args=talos.config=http://10.20.13.140:8080/ignition?uuid=${uuid}"], &["kernel-args", "/ignition", "/generic"]),
        case("node with a bad mac", &["--iface=eth0", &format!("--talos-nodes=dc:a6:32:zz:00:01={}", fixture("node-a.yaml"))], &["talos-nodes = 'dc:a6:32:zz:00:01'", "not a MAC address"]),
        case("node arch ambiguous", &["--iface=eth0", "--arch=arm64,amd64", &format!("--talos-nodes=dc:a6:32:00:00:01={}", fixture("node-a.yaml"))], &["talos-nodes", "does not say which", "MAC@arm64=PATH"]),
        case("docker network without server ip", &["--network=bootnet"], &["server-ip", "required with a Docker network"]),
        case("same container names", &["--iface=eth0", "--matchbox-name=boot", "--dnsmasq-name=boot"], &["dnsmasq-name = 'boot'", "same as matchbox-name"]),
        case("Raspberry Pi netboot that is neither on nor off", &["--iface=eth0", "--rpi-netboot=maybe"], &["rpi-netboot = 'maybe'", "not on or off", "flag --rpi-netboot", "fix:"]),
        case("Raspberry Pi UEFI firmware URL that is not http", &["--iface=eth0", "--rpi-uefi=ftp://mirror.lan/RPi4_UEFI_Firmware_v1.41.zip"], &["rpi-uefi = 'ftp://mirror.lan/RPi4_UEFI_Firmware_v1.41.zip'", "the scheme is 'ftp'", "fix:"]),
        case("arm64 iPXE download URL that is not http", &["--iface=eth0", "--ipxe-arm64-url=ftp://mirror.lan/ipxe/arm64.efi"], &["ipxe-arm64-url = 'ftp://mirror.lan/ipxe/arm64.efi'", "not an http(s) URL", "the scheme is 'ftp'", "fix:"]),
        case("rpc on the http port", &["--iface=eth0", "--rpc", "--rpc-port=8080"], &["rpc-port = '8080'", "same port as http-port"]),
    ];
    cases.push(Case {
        name: "unknown arch from the environment",
        flags: vec!["--iface=eth0".into()],
        env: vec![("COZYBOOT_ARCH", "arm64,ppc64")],
        file: None,
        expect: vec!["arch = 'ppc64'", "environment COZYBOOT_ARCH", "unknown architecture"],
    });
    cases.push(Case {
        name: "arm64 iPXE download URL without a scheme from the environment",
        flags: vec!["--iface=eth0".into()],
        env: vec![("COZYBOOT_IPXE_ARM64_URL", "boot.ipxe.org/arm64-efi/ipxe.efi")],
        file: None,
        expect: vec![
            "ipxe-arm64-url = 'boot.ipxe.org/arm64-efi/ipxe.efi'",
            "environment COZYBOOT_IPXE_ARM64_URL",
            "not an http(s) URL",
        ],
    });
    cases.push(Case {
        name: "unknown variant in the config file",
        flags: vec!["--iface=eth0".into()],
        env: vec![],
        file: Some("variant: spin-everything\n"),
        expect: vec![
            "variant = 'spin-everything'",
            "config file",
            "use 'spin-only' or 'spin-tailscale'",
        ],
    });
    cases.push(Case {
        name: "typo in a config key",
        flags: vec!["--iface=eth0".into()],
        env: vec![],
        file: Some("variant: spin-only\nhttp-prot: 9000\n"),
        expect: vec!["unknown field `http-prot`", "line 2, column 1", "valid keys are"],
    });
    cases.push(Case {
        name: "config file that is not YAML",
        flags: vec!["--iface=eth0".into()],
        env: vec![],
        file: Some("variant: [spin-only\n"),
        expect: vec!["invalid YAML at line"],
    });
    // Cases read from a config file: Raspberry Pi boards' settings (`rpi-nodes`, the names and
    // values are the Pi UEFI firmware's: docs/raspberry-pi.md, "Each board's settings") and declared machines.
    let from_file = |name: &'static str, file: &'static str, expect: &[&'static str]| Case {
        name,
        flags: vec!["--iface=eth0".into()],
        env: vec![],
        file: Some(file),
        expect: expect.to_vec(),
    };
    cases.push(from_file(
        "pi serial that is not 8 hex digits",
        "rpi-nodes:\n  - serial: 1a2b3c\n    settings:\n      ram-above-3gb: true\n",
        &[
            "rpi-nodes = '1a2b3c'",
            "not a Raspberry Pi serial number (8 hex digits)",
            "vcgencmd otp_dump",
        ],
    ));
    cases.push(from_file(
        "pi serial listed twice",
        "rpi-nodes:\n  - serial: 1a2b3c4d\n  - serial: 1A2B3C4D\n",
        &["rpi-nodes = '1a2b3c4d'", "the same serial is listed twice"],
    ));
    cases.push(from_file(
        "pi setting the firmware does not have",
        "rpi-nodes:\n  - serial: 1a2b3c4d\n    settings:\n      ram-limit: off\n",
        &[
            "rpi-nodes = 'ram-limit: off'",
            "board 1a2b3c4d: the Pi UEFI firmware has no such setting",
            "ram-above-3gb, system-table",
        ],
    ));
    cases.push(from_file(
        "pi system table mode the firmware does not have",
        "rpi-nodes:\n  - serial: 1a2b3c4d\n    settings:\n      system-table: dt\n",
        &[
            "rpi-nodes = 'system-table: dt'",
            "not a system table mode",
            "acpi, acpi+devicetree or devicetree",
        ],
    ));
    cases.push(from_file(
        "pi clock that overclocks",
        "rpi-nodes:\n  - serial: 1a2b3c4d\n    settings:\n      cpu-clock: max\n",
        &["rpi-nodes = 'cpu-clock: max'", "2200 MHz", "write low or default"],
    ));
    cases.push(from_file(
        "pi setting outside settings",
        "rpi-nodes:\n  - serial: 1a2b3c4d\n    ram-above-3gb: true\n",
        &[
            "rpi-nodes = 'ram-above-3gb'",
            "has no key 'ram-above-3gb'",
            "under settings:",
        ],
    ));
    cases.push(Case {
        name: "pi board settings with the pi netboot off",
        flags: vec!["--iface=eth0".into(), "--rpi-netboot=off".into()],
        env: vec![],
        file: Some("rpi-nodes:\n  - serial: 1a2b3c4d\n    settings:\n      ram-above-3gb: true\n"),
        expect: vec!["rpi-nodes", "rpi-netboot is off", "drop rpi-netboot off"],
    });
    cases.push(Case {
        name: "pi boards without arm64",
        flags: vec!["--iface=eth0".into(), "--arch=amd64".into()],
        env: vec![],
        file: Some("rpi-nodes:\n  - serial: 1a2b3c4d\n"),
        expect: vec!["rpi-nodes", "arm64 is not served", "add arm64 to --arch"],
    });
    cases.extend([
        from_file(
            "machine MAC listed twice",
            "machines:\n- {hostname: node1, mac: '52:54:00:aa:00:01'}\n- {hostname: node2, mac: 52-54-00-AA-00-01}\n",
            &["machines = '52:54:00:aa:00:01'", "the same MAC address is listed twice", "config file"],
        ),
        from_file(
            "machine hostname listed twice",
            "machines:\n- {hostname: node1, mac: '52:54:00:aa:00:01'}\n- {hostname: node1, mac: '52:54:00:aa:00:02'}\n",
            &["machines = 'node1'", "the same hostname is listed twice", "a hostname of its own"],
        ),
        from_file(
            "power command with an unknown placeholder",
            "machines:\n- hostname: node1\n  mac: '52:54:00:aa:00:01'\n  power: {driver: command, on: 'plug {ip} on', off: 'plug {mac} off'}\n",
            &["machines = 'plug {ip} on'", "placeholder {ip}", "{mac}, {hostname} and {serial}"],
        ),
        from_file(
            "ipmi power driver without its settings",
            "machines:\n- hostname: srv1\n  mac: '52:54:00:aa:00:01'\n  power: {driver: ipmi, host: 10.20.13.21}\n",
            &["srv1: the ipmi driver needs `user:`", "srv1: the ipmi driver needs `password-env:`", "never the password itself"],
        ),
        from_file(
            "wake-on-LAN for a Raspberry Pi 4",
            "machines:\n- hostname: pi1\n  mac: 'dc:a6:32:00:00:01'\n  arch: arm64\n  power: {driver: wol}\n",
            &["machines = 'pi1'", "cannot wake on LAN", "Turing Pi 2 BMC", "PoE switch"],
        ),
    ]);
    cases
}

/// Resolves a case's settings the way `render` would, against [`host`]; config files go
/// into `dir`.
pub fn resolve(case: &Case, dir: &Path) -> Result<settings::Resolved, cozyboot::error::Error> {
    let argv = ["cozyboot".to_string(), "render".into()]
        .into_iter()
        .chain(case.flags.iter().cloned());
    let Command::Render(args) = Cli::try_parse_from(argv).unwrap().command else {
        unreachable!()
    };
    let config_file = case.file.map(|text| {
        let path = dir.join(format!("{}.yaml", case.name.replace(' ', "-")));
        std::fs::write(&path, text).unwrap();
        path
    });
    let env = |key: &str| case.env.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string());
    settings::resolve(settings::Inputs {
        config_file,
        env: &env,
        flags: args.settings.to_raw(),
        host: &host(),
        purpose: Purpose::Serve,
        site: &settings::no_site,
    })
}
