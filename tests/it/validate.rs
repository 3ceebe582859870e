//! `cozyboot validate` against the real engine and the real dnsmasq: a healthy set-up from
//! `up` passes every check, and every seeded fault is caught by the check meant to catch it.
//!
//! Each test builds its own boot segment (see support/validate_lab.rs): an `--internal`
//! macvlan Docker network whose only wire is a veth pair into a network namespace the test
//! creates; `up`, `validate` and the DHCP probe run in that namespace.

use crate::support;

use assert_cmd::Command as Bin;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use support::images;
use support::validate_lab::{docker, pe, Lab, Setup};

const NODE_MAC: &str = "dc:a6:32:01:02:03";

fn talos_config(image: &str) -> String {
    format!("version: v1alpha1\nmachine:\n  type: worker\n  install:\n    disk: /dev/sda\n    image: {image}\ncluster:\n  clusterName: cozy\n")
}

/// The keys of a JSON document and the types of their values, for a schema snapshot.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(items) => Value::Array(items.first().map(shape).into_iter().collect()),
        Value::String(_) => "string".into(),
        Value::Number(_) => "number".into(),
        Value::Bool(_) => "bool".into(),
        Value::Null => "null".into(),
    }
}

fn statuses(json: &Value) -> Vec<String> {
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", c["status"].as_str().unwrap(), c["id"].as_str().unwrap()))
        .collect()
}

/// Full DHCP mode, both architectures, a Talos config for every node and one of a node's own:
/// everything `validate` looks at is in use and right; the served configs' exposure is its
/// one warning.
#[test]
fn healthy_full_mode_passes_every_check_and_the_probe_boots_each_arch() {
    let Some(mut lab) = Lab::new(Setup {
        arches: "arm64,amd64",
        ..Setup::default()
    }) else {
        return;
    };
    let all = lab.write("all.yaml", &talos_config(&lab.talos_image()));
    let node = lab.write(
        "node.yaml",
        &talos_config(&lab.talos_image()).replace("worker", "controlplane"),
    );
    lab.setup.extra = vec![
        format!("--talos-config={}", all.display()),
        format!("--talos-nodes={NODE_MAC}@arm64={}", node.display()),
    ];
    lab.up();

    // Configs served over plain HTTP are the one warning a healthy site that serves them
    // has (so `--strict` would fail it): `cozyboot nodes` withdraws them as machines take them.
    let out = lab.validate_probing(&[]);
    assert_eq!(out.code, 0, "{}", out.table());
    let not_passing: Vec<String> = statuses(&out.json)
        .into_iter()
        .filter(|s| !s.starts_with("pass "))
        .collect();
    assert_eq!(not_passing, ["warn config.talos-config-exposure"], "{}", out.table());
    assert_eq!(out.json["ok"], true);

    // The probe: each firmware got its bootloader's exact bytes, iPXE the script URL.
    for (id, file) in [
        ("probe.arch-11", "bootaa64.efi"),
        ("probe.arch-0", "undionly.kpxe"),
        ("probe.arch-7", "ipxe.efi"),
    ] {
        let text = out.expect(id, "pass");
        assert!(
            text.contains(&format!("is offered {file}")) && text.contains("identical to"),
            "{id}: {text}"
        );
    }
    let version = out.expect("matchbox.version", "pass");
    assert!(
        version.contains("v0.11.0") && version.contains("recorded by `cozyboot up`"),
        "{version}"
    );
    let url = format!("http://{}:8080/boot.ipxe", lab.server_ip());
    assert!(out.expect("probe.ipxe", "pass").contains(&url));
    assert!(out
        .expect(&format!("matchbox.node.{NODE_MAC}"), "pass")
        .contains("talos.config"));

    insta::assert_json_snapshot!("healthy-json-shape", shape(&out.json));
    insta::assert_yaml_snapshot!("healthy-full-mode-checks", statuses(&out.json));

    let (code, text) = lab.validate_text();
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("PASS  config.arch-11") && text.contains("— machines should boot"),
        "{text}"
    );
}

#[test]
fn healthy_proxy_mode_passes_and_arm64_is_answered_on_port_4011() {
    let Some(lab) = Lab::new(Setup {
        proxy: true,
        arches: "arm64,amd64",
        ..Setup::default()
    }) else {
        return;
    };
    lab.up();
    let out = lab.validate_probing(&[]);
    assert_eq!(out.code, 0, "{}", out.table());
    // The lab has no DHCP server of its own beside cozyboot's proxy: U-Boot, which takes only
    // offers with an address, is told nothing, and validate warns with what the LAN's server needs.
    for line in statuses(&out.json) {
        assert!(
            line.starts_with("pass ") || line == "skip config.talos-install-image" || line == "warn probe.uboot",
            "{line}\n{}",
            out.table()
        );
    }
    let uboot = out.expect("probe.uboot", "warn");
    assert!(uboot.contains("no offer with an address"), "{uboot}");
    let fix = out.check("probe.uboot")["fix"].as_str().unwrap_or_default().to_string();
    assert!(
        fix.contains("next-server") && fix.contains("U-Boot.armv8") && fix.contains("boot.scr.uimg"),
        "{fix}"
    );
    let arm64 = out.expect("probe.arch-11", "pass");
    assert!(
        arm64.contains("UDP 4011") && arm64.contains("no address (proxy DHCP)"),
        "{arm64}"
    );
    assert!(out.expect("probe.arch-0", "pass").contains("undionly.kpxe"));
    assert!(out.expect("probe.ipxe", "pass").contains("/boot.ipxe"));
}

#[test]
fn an_x86_binary_in_place_of_the_arm64_bootloader_fails_its_check() {
    let Some(lab) = Lab::new(Setup::default()) else { return };
    lab.up();
    let loader = lab.path("assets/bootaa64.efi");
    fs::write(&loader, pe(0x8664)).unwrap();
    fs::set_permissions(&loader, fs::Permissions::from_mode(0o644)).unwrap();

    let out = lab.validate(&[]);
    assert_eq!(out.code, 1, "{}", out.table());
    let text = out.expect("assets.bootloader.arm64-efi", "fail");
    assert!(
        text.contains("EFI binary for x86_64") && text.contains("arm64 clients"),
        "{text}"
    );
    assert_eq!(out.json["ok"], false);
}

#[test]
fn a_truncated_initramfs_fails_its_check() {
    let Some(lab) = Lab::new(Setup::default()) else { return };
    lab.up();
    let initramfs = lab.path("assets/talos/arm64/initramfs.xz");
    let len = fs::metadata(&initramfs).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&initramfs)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    let out = lab.validate(&[]);
    assert_eq!(out.code, 1, "{}", out.table());
    let text = out.expect("assets.talos.arm64", "fail");
    assert!(
        text.contains("truncated") && text.contains(&format!("{len} were recorded")),
        "{text}"
    );
}

#[test]
fn a_matchbox_without_arch_in_boot_ipxe_fails_with_the_reason() {
    let Some(lab) = Lab::new(Setup::default()) else { return };
    lab.up();
    let mut cmd = lab.cmd_of(&lab.matchbox);
    cmd.push("-compat-no-arch".into());
    lab.start_by_hand(&lab.matchbox, &cmd);

    let out = lab.validate(&[]);
    assert_eq!(out.code, 1, "{}", out.table());
    let text = out.expect("matchbox.boot-ipxe", "fail");
    assert!(text.contains("without `arch=`") && text.contains("v0.11.0"), "{text}");
    assert!(out.expect("config.matchbox-args", "warn").contains("- -compat-no-arch"));
}

/// The manual guide's `docker run` for dnsmasq, on the lab's segment.
fn guide_dnsmasq_args(lab: &Lab) -> Vec<String> {
    let server = lab.server_ip();
    let args = [
        "-d",
        "-q",
        "-p0",
        "--interface=eth0",
        "--bind-interfaces",
        &format!("--dhcp-range={},{}", lab.ip(100), lab.ip(150)),
        &format!("--dhcp-option=option:router,{}", lab.ip(1)),
        &format!("--dhcp-option=option:dns-server,{server}"),
        "--enable-tftp",
        "--tftp-root=/var/lib/tftpboot",
        "--dhcp-match=set:bios,option:client-arch,0",
        "--dhcp-boot=tag:bios,undionly.kpxe",
        "--dhcp-match=set:efi32,option:client-arch,6",
        "--dhcp-boot=tag:efi32,ipxe.efi",
        "--dhcp-match=set:efibc,option:client-arch,7",
        "--dhcp-boot=tag:efibc,ipxe.efi",
        "--dhcp-match=set:efi64,option:client-arch,9",
        "--dhcp-boot=tag:efi64,ipxe.efi",
        "--dhcp-match=set:efiarm64,option:client-arch,12",
        "--dhcp-boot=tag:efiarm64,bootaa64.efi",
        "--dhcp-userclass=set:ipxe,iPXE",
        &format!("--dhcp-boot=tag:ipxe,http://{server}:8080/boot.ipxe"),
        "--log-queries",
        "--log-dhcp",
    ];
    args.iter().map(|a| a.to_string()).collect()
}

#[test]
fn dnsmasq_started_by_hand_with_the_guides_arch_12_rule_is_drift_and_arm64_gets_nothing() {
    let Some(lab) = Lab::new(Setup::default()) else { return };
    lab.up();
    lab.start_by_hand(&lab.dnsmasq, &guide_dnsmasq_args(&lab));

    let out = lab.validate_probing(&[]);
    assert_eq!(out.code, 1, "{}", out.table());
    let drift = out.expect("config.dnsmasq-args", "warn");
    assert!(
        drift.contains("- --dhcp-match=set:efiarm64,option:client-arch,12"),
        "{drift}"
    );
    assert!(
        drift.contains("+ --dhcp-match=set:efi-arm64,option:client-arch,11"),
        "{drift}"
    );
    assert!(out
        .expect("config.arch-11", "fail")
        .contains("no rule maps client-arch 11"));
    assert!(out.expect("config.no-arch-12", "fail").contains("PowerPC"));
    // The line order happens to save the guide from an iPXE chainload loop; only just.
    assert!(out
        .expect("config.ipxe-guard", "warn")
        .contains("depends on line order"));
    // And the real dnsmasq agrees: the ARM64 firmware gets an address and no boot file.
    let probe = out.expect("probe.arch-11", "fail");
    assert!(probe.contains("got an address but no boot file"), "{probe}");
    out.expect("probe.ipxe", "pass");
}

#[test]
fn a_stopped_matchbox_fails_the_container_and_http_checks() {
    let Some(lab) = Lab::new(Setup::default()) else { return };
    lab.up();
    let (ok, text) = docker(&["stop", "-t", "2", &lab.matchbox]);
    assert!(ok, "{text}");

    let out = lab.validate(&[]);
    assert_eq!(out.code, 1, "{}", out.table());
    assert!(out
        .expect("containers.matchbox.running", "fail")
        .contains("is not running (status exited"));
    assert!(out.expect("matchbox.health", "fail").contains("does not answer"));
    out.expect("matchbox.boot-ipxe", "skip");
}

#[test]
fn a_served_talos_config_with_another_install_image_fails_its_check() {
    let Some(mut lab) = Lab::new(Setup::default()) else {
        return;
    };
    let config = lab.write("worker.yaml", &talos_config(&lab.talos_image()));
    lab.setup.extra = vec![format!("--talos-config={}", config.display())];
    lab.up();
    assert_eq!(lab.validate(&[]).code, 0);
    // Edited by hand after `up`, which would have refused it.
    let wrong = images::variant_image(images::SPIN_TAILSCALE, "v9.9.9");
    fs::write(lab.path("generic/cozystack-spin-only-arm64.yaml"), talos_config(&wrong)).unwrap();

    let out = lab.validate(&[]);
    assert_eq!(out.code, 1, "{}", out.table());
    let text = out.expect("config.talos-install-image", "fail");
    assert!(
        text.contains(&wrong) && text.contains(&lab.talos_image()) && text.contains("served by profiles/"),
        "{text}"
    );
    out.expect("config.matchbox-files", "warn");
}

/// Settings that resolve without touching the host's interfaces.
fn offline_settings(dir: &std::path::Path) -> Vec<String> {
    vec![
        "--network=cbv-none".into(),
        "--server-ip=10.214.0.10".into(),
        "--subnet=10.214.0.0/24".into(),
        format!("--data-dir={}", dir.display()),
    ]
}

#[test]
fn docker_unreachable_exits_3_with_a_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Bin::cargo_bin("cozyboot")
        .unwrap()
        .env("DOCKER_HOST", format!("unix://{}/no-docker.sock", dir.path().display()))
        .arg("validate")
        .arg("--json")
        .args(offline_settings(dir.path()))
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["error"]["kind"], "docker-unreachable");
}

#[test]
fn probing_a_docker_network_without_a_host_interface_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Bin::cargo_bin("cozyboot")
        .unwrap()
        .arg("validate")
        .arg("--probe-dhcp")
        .args(offline_settings(dir.path()))
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--probe-iface"));
}
