use super::*;
use crate::journey::event::{Event, What};
use crate::journey::model;
use crate::settings::{self, net::FixedNet, Inputs, Purpose, Raw};

fn settings(extra: serde_json::Value) -> Settings {
    let mut flags = serde_json::json!({ "iface": "bb0" });
    flags
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let flags: Raw = serde_json::from_value(flags).unwrap();
    settings::resolve(Inputs {
        config_file: None,
        env: &|_| None,
        flags,
        host: &FixedNet(vec![("bb0".into(), vec!["10.247.3.1/24".parse().unwrap()])]),
        purpose: Purpose::Serve,
        site: &settings::no_site,
    })
    .unwrap()
    .settings
}

fn full() -> Settings {
    settings(serde_json::json!({
        "dhcp-range": "10.247.3.100,10.247.3.150",
        "gateway": "10.247.3.254",
        "dns": ["10.247.3.53", "1.1.1.1"],
        "lease-time": "1h",
    }))
}

/// What dnsmasq's log tells of a firmware of `client_arch` being offered `ip`.
fn booted(at: i64, mac: &str, client_arch: u16, ip: &str) -> Vec<Event> {
    vec![
        Event {
            at: Some(at),
            what: What::DhcpRequest {
                mac: mac.into(),
                client_arch: Some(client_arch),
                ipxe: false,
                proxy: false,
            },
        },
        Event {
            at: Some(at),
            what: What::DhcpOffer {
                mac: mac.into(),
                ip: Some(ip.parse().unwrap()),
                proxy: false,
            },
        },
        Event {
            at: Some(at),
            what: What::BootFile {
                mac: mac.into(),
                file: "ipxe.efi".into(),
                ipxe: false,
            },
        },
    ]
}

/// A UEFI amd64, a BIOS amd64, an arm64, and a machine that only asked (never offered an address).
fn fleet() -> BTreeMap<String, Journey> {
    let mut events = Vec::new();
    events.extend(booted(100, "52:54:00:00:00:01", 7, "10.247.3.101"));
    events.extend(booted(101, "52:54:00:00:00:02", 0, "10.247.3.102"));
    events.extend(booted(102, "52:54:00:00:00:03", 11, "10.247.3.103"));
    events.push(Event {
        at: Some(103),
        what: What::DhcpRequest {
            mac: "52:54:00:00:00:04".into(),
            client_arch: Some(7),
            ipxe: false,
            proxy: false,
        },
    });
    model::fold(events)
}

#[test]
fn full_mode_takes_the_lan_from_the_sites_dhcp_settings() {
    let lan = Lan::of(&full(), None, None).unwrap();
    assert_eq!(
        lan,
        Lan {
            netmask: "255.255.255.0".parse().unwrap(),
            gateway: "10.247.3.254".parse().unwrap(),
            lease_seconds: 3600,
            name_servers: vec!["10.247.3.53".parse().unwrap(), "1.1.1.1".parse().unwrap()],
        }
    );
    // No gateway set: dnsmasq sends itself as the router.
    let bare = settings(serde_json::json!({ "dhcp-range": "10.247.3.100,10.247.3.150" }));
    let lan = Lan::of(&bare, None, None).unwrap();
    assert_eq!(lan.gateway, "10.247.3.1".parse::<Ipv4Addr>().unwrap());
    assert_eq!(lan.lease_seconds, 12 * 3600);
    assert!(lan.name_servers.is_empty());
}

#[test]
fn proxy_mode_needs_the_routers_gateway_and_lease_time_given() {
    let proxy = settings(serde_json::json!({}));
    assert_eq!(
        Lan::of(&proxy, None, None).unwrap_err().missing,
        vec!["--gateway", "--lease-time"]
    );
    assert_eq!(
        Lan::of(&proxy, Some("10.247.3.254".parse().unwrap()), None)
            .unwrap_err()
            .missing,
        vec!["--lease-time"]
    );
    let lan = Lan::of(&proxy, Some("10.247.3.254".parse().unwrap()), Some(600)).unwrap();
    assert_eq!(
        (lan.gateway.to_string(), lan.lease_seconds),
        ("10.247.3.254".into(), 600)
    );
}

#[test]
fn lease_times_are_seconds() {
    for (l, s) in [
        ("3600", 3600),
        ("45m", 2700),
        ("12h", 43_200),
        ("1d", 86_400),
        ("1w", 604_800),
    ] {
        assert_eq!(lease_seconds_of(l), s, "{l}");
    }
    assert_eq!(lease_seconds_of("infinite"), 0xffff_ffff);
}

#[test]
fn arm64_is_left_out_with_the_reason_and_forced_in() {
    let lan = Lan::of(&full(), None, None).unwrap();
    let out = export(&fleet(), &lan, false);
    let macs: Vec<&str> = out.machines.iter().map(|m| m.mac[0].as_str()).collect();
    assert_eq!(macs, ["52:54:00:00:00:01", "52:54:00:00:00:02"]);
    assert_eq!(out.left_out.len(), 1);
    assert_eq!(out.left_out[0].mac, "52:54:00:00:00:03");
    assert!(
        out.left_out[0].reason.contains("amd64 only"),
        "{}",
        out.left_out[0].reason
    );

    let forced = export(&fleet(), &lan, true);
    assert!(forced.left_out.is_empty());
    let arm = &forced.machines[2];
    assert_eq!(
        (arm.arch.as_str(), arm.uefi, arm.ip.address.as_str()),
        ("aarch64", true, "10.247.3.103")
    );
}

#[test]
fn bios_is_not_uefi_and_the_hostname_comes_from_the_mac() {
    let lan = Lan::of(&full(), None, None).unwrap();
    let out = export(&fleet(), &lan, false);
    assert_eq!((out.machines[0].uefi, out.machines[1].uefi), (true, false));
    assert_eq!(out.machines[1].hostname, "node-525400000002");
}

#[test]
fn the_values_are_bootboxs_keys_only() {
    let lan = Lan::of(&full(), None, None).unwrap();
    let out = export(&fleet(), &lan, true);
    insta::assert_snapshot!(values_yaml(&out.machines));
}

#[test]
fn check_says_what_was_added_removed_and_changed_per_mac() {
    let lan = Lan::of(&full(), None, None).unwrap();
    let wanted = export(&fleet(), &lan, false).machines;
    assert!(check(&values_yaml(&wanted), &wanted).unwrap().is_empty());

    // Another order of keys, upper-case MAC, and BootBox's other values: still equal.
    let by_hand = "whitelistHTTP: true\nmachines:\n- mac: ['52:54:00:00:00:01']\n  uefi: true\n  hostname: node-525400000001\n  arch: x86_64\n  leaseTime: 3600\n  nameServers: [10.247.3.53, 1.1.1.1]\n  ip: {netmask: 255.255.255.0, address: 10.247.3.101, gateway: 10.247.3.254}\n";
    let diff = check(by_hand, &wanted[..1]).unwrap();
    assert!(diff.is_empty(), "{diff:?}");

    let mut old = wanted.clone();
    old.remove(1);
    old[0].ip.address = "10.247.3.199".into();
    old[0].lease_time = 60;
    old.push(Machine {
        hostname: "gone".into(),
        mac: vec!["52:54:00:00:00:09".into()],
        ..wanted[0].clone()
    });
    let diff = check(&values_yaml(&old), &wanted).unwrap();
    assert_eq!(diff.added, ["52:54:00:00:00:02"]);
    assert_eq!(diff.removed, ["52:54:00:00:00:09"]);
    assert_eq!(
        diff.changed,
        [(
            "52:54:00:00:00:01".to_string(),
            vec!["ip".to_string(), "leaseTime".to_string()]
        )]
    );
    assert!(diff.to_human().contains("changed  52:54:00:00:00:01  ip, leaseTime"));

    assert!(check("machines: {a: 1}", &wanted).unwrap_err().contains("not a list"));
    assert!(check(": : [", &wanted).unwrap_err().contains("not YAML"));
}

#[test]
fn a_machine_of_unknown_firmware_is_left_out_with_the_reason() {
    let mut events = booted(100, "52:54:00:00:00:05", 6, "10.247.3.105");
    events.push(Event {
        at: Some(101),
        what: What::DhcpOffer {
            mac: "52:54:00:00:00:06".into(),
            ip: Some("10.247.3.106".parse().unwrap()),
            proxy: false,
        },
    });
    let lan = Lan::of(&full(), None, None).unwrap();
    let out = export(&model::fold(events), &lan, true);
    assert!(out.machines.is_empty(), "{:?}", out.machines);
    let reasons: Vec<(&str, &str)> = out
        .left_out
        .iter()
        .map(|l| (l.mac.as_str(), l.reason.as_str()))
        .collect();
    assert!(
        reasons[0].0 == "52:54:00:00:00:05" && reasons[0].1.contains("client architecture 6"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].0 == "52:54:00:00:00:06" && reasons[1].1.contains("UEFI or BIOS is unknown"),
        "{reasons:?}"
    );
}
