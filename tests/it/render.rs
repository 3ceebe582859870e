//! What `render` produces for the set-ups users run, pinned by snapshots and checked by the
//! real dnsmasq binary.

use crate::support;

use cozyboot::render::{self, Rendered};
use cozyboot::settings::{net::FixedNet, Purpose, Settings};
use std::path::Path;
use std::process::Command as Process;

/// The guide's host: eth0 on 10.20.13.0/24 as 10.20.13.140.
fn guide_host() -> FixedNet {
    FixedNet(vec![("eth0".into(), vec!["10.20.13.140/24".parse().unwrap()])])
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

fn settings(flags: &[&str]) -> Settings {
    let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    support::settings::valid(&flags, &guide_host(), Purpose::Serve)
}

const GUIDE_FULL: &[&str] = &[
    "--iface=eth0",
    "--dhcp-range=10.20.13.150,10.20.13.200",
    "--gateway=10.20.13.1",
    "--dns=10.20.13.140",
];

fn snapshot(name: &str, s: &Settings) -> Rendered {
    let rendered = render::render(s);
    insta::assert_yaml_snapshot!(format!("{name}-dnsmasq-args"), rendered.dnsmasq_args);
    // JSON files as data, so the snapshot reads like the files; machine configs as text.
    let files: Vec<(String, serde_json::Value)> = rendered
        .files()
        .into_iter()
        .map(|f| {
            // U-Boot's script image: its name and text (the bytes are checked by mkimage, uboot.rs).
            if let Ok(script) = cozyboot::artifacts::uimage::read_script(&f.content) {
                let lines: Vec<&str> = script.text.lines().collect();
                return (f.path, serde_json::json!({ "name": script.name, "text": lines }));
            }
            let value = serde_json::from_slice(&f.content)
                .unwrap_or_else(|_| String::from_utf8(f.content.clone()).unwrap().into());
            (f.path, value)
        })
        .collect();
    insta::assert_yaml_snapshot!(format!("{name}-matchbox-files"), files);
    rendered
}

#[test]
fn guide_example_in_full_mode() {
    let s = settings(GUIDE_FULL);
    let r = snapshot("guide-full", &s);
    let args = r.dnsmasq_args.join("\n");
    assert!(args.contains("--dhcp-match=set:efi-arm64,option:client-arch,11"));
    assert!(!args.contains("client-arch,12"), "arch 12 is PowerPC, never ARM64");
    assert!(args.contains("--dhcp-boot=tag:ipxe,http://10.20.13.140:8080/boot.ipxe"));
}

#[test]
fn proxy_mode_beside_the_router() {
    let s = settings(&["--iface=eth0"]);
    let r = snapshot("proxy", &s);
    assert!(r
        .dnsmasq_args
        .contains(&"--dhcp-range=10.20.13.0,proxy,255.255.255.0".to_string()));
    assert!(r
        .dnsmasq_args
        .iter()
        .any(|a| a.starts_with("--pxe-service=tag:efi-arm64,tag:!ipxe,ARM64_EFI,")));
}

/// A rack that powers on at once: dnsmasq's defaults (dnsmasq(8): `--tftp-max` 50,
/// `--dhcp-lease-max` 1000) are raised to what the site can boot at once, so no machine
/// waits for a TFTP slot or finds the lease table full (`bench/run --only storm`,
/// docs/performance.md "Power-on storm").
#[test]
fn dnsmasq_limits_follow_how_many_machines_the_site_can_boot_at_once() {
    let arg = |args: &[String], name: &str| -> Option<String> {
        let prefix = format!("--{name}=");
        args.iter().find_map(|a| a.strip_prefix(&prefix).map(str::to_string))
    };
    // The guide's range: 51 addresses; below 1000 leases dnsmasq's own limit stays.
    let guide = render::render(&settings(GUIDE_FULL)).dnsmasq_args;
    assert_eq!(arg(&guide, "tftp-max").as_deref(), Some("51"));
    assert_eq!(arg(&guide, "dhcp-lease-max").as_deref(), Some("1000"));
    // A /24 range of 241 addresses (the storm benchmark's site).
    let rack = settings(&[
        "--iface=eth0",
        "--server-ip=10.20.13.140",
        "--dhcp-range=10.20.13.10,10.20.13.139",
    ]);
    let rack_args = render::render(&rack).dnsmasq_args;
    assert_eq!(arg(&rack_args, "tftp-max").as_deref(), Some("130"));
    // A /16 with 2,038 addresses in its range: more leases than dnsmasq's 1000.
    let big_host = FixedNet(vec![("eth1".into(), vec!["10.30.0.1/16".parse().unwrap()])]);
    let flags: Vec<String> = ["--iface=eth1", "--dhcp-range=10.30.0.10,10.30.7.255"]
        .iter()
        .map(|f| f.to_string())
        .collect();
    let big = render::render(&support::settings::valid(&flags, &big_host, Purpose::Serve)).dnsmasq_args;
    assert_eq!(arg(&big, "dhcp-lease-max").as_deref(), Some("2038"));
    assert_eq!(arg(&big, "tftp-max").as_deref(), Some("2038"));
    // Proxy mode leases nothing; its machines are the subnet's, capped where file
    // descriptors would run out first.
    let proxy = render::render(&support::settings::valid(
        &["--iface=eth1".to_string()],
        &big_host,
        Purpose::Serve,
    ))
    .dnsmasq_args;
    assert_eq!(arg(&proxy, "dhcp-lease-max"), None);
    assert_eq!(arg(&proxy, "tftp-max").as_deref(), Some("4096"));
}

#[test]
fn arm64_only_is_the_default_and_serves_no_x86() {
    let s = settings(&["--iface=eth0", "--dhcp-range=10.20.13.150,10.20.13.200"]);
    let r = snapshot("arm64-only", &s);
    let args = r.dnsmasq_args.join("\n");
    assert!(!args.contains("undionly.kpxe"));
    assert!(!args.contains("ipxe.efi,"));
    assert_eq!(r.tree.profiles.len(), 1);
}

#[test]
fn arm64_and_amd64() {
    let mut flags = GUIDE_FULL.to_vec();
    flags.push("--arch=amd64,arm64");
    let s = settings(&flags);
    let r = snapshot("arm64-amd64", &s);
    // BIOS clients chain through undionly.kpxe, a 32-bit iPXE that reports arch=i386.
    assert!(r
        .tree
        .groups
        .iter()
        .any(|g| g.selector.get("arch").map(String::as_str) == Some("i386")));
    assert!(r
        .dnsmasq_args
        .iter()
        .any(|a| a.contains("tag:!rpi-eeprom") && a.contains("undionly.kpxe")));
}

#[test]
fn per_node_talos_configs() {
    let default = format!("--talos-config={}", fixture("default.yaml"));
    let a = format!("--talos-nodes=DC-A6-32-00-00-0A={}", fixture("node-a.yaml"));
    let b = format!("--talos-nodes=dc:a6:32:00:00:0b={}", fixture("node-b.yaml"));
    let mut flags = GUIDE_FULL.to_vec();
    flags.extend([default.as_str(), a.as_str(), b.as_str()]);
    let s = settings(&flags);
    let r = snapshot("per-node", &s);
    let node = r
        .tree
        .groups
        .iter()
        .find(|g| g.selector.get("mac").map(String::as_str) == Some("dc:a6:32:00:00:0a"))
        .expect("a group for node a");
    assert_eq!(node.selector.get("arch").map(String::as_str), Some("arm64"));
    let profile = r.tree.profiles.iter().find(|p| p.id == node.profile).unwrap();
    let config_arg = profile
        .boot
        .args
        .iter()
        .find(|a| a.starts_with("talos.config="))
        .unwrap();
    // The config URL carries every label the node's group selects on.
    assert!(config_arg.contains("/generic?") && config_arg.contains("arch=") && config_arg.contains("mac="));
}

#[test]
fn maintenance_mode_has_no_talos_config_url() {
    let s = settings(GUIDE_FULL);
    let r = render::render(&s);
    for p in &r.tree.profiles {
        assert!(p.boot.args.iter().all(|a| !a.starts_with("talos.config")));
        assert!(p.boot.args.contains(&"initrd=initramfs.xz".to_string()));
        assert!(p.boot.args.contains(&"talos.platform=metal".to_string()));
    }
}

/// The kernel line is Cozystack's own (`initrd=initramfs.xz init_on_alloc=1 slab_nomerge
/// pti=on console=tty0 console=ttyS0 printk.devkmsg=on talos.platform=metal`), in that order,
/// with the architecture's serial console as the last `console=` (it becomes /dev/console),
/// then `talos.config`, then the user's `--kernel-args`.
#[test]
fn kernel_args_are_cozystacks_with_the_serial_console_last() {
    let config = format!("--talos-config={}", fixture("default.yaml"));
    let mut flags = GUIDE_FULL.to_vec();
    flags.extend([
        "--arch=arm64,amd64",
        config.as_str(),
        "--kernel-args=talos.halt_if_installed=1",
        "--kernel-args=console=tty1",
    ]);
    let r = render::render(&settings(&flags));
    let config_url = "talos.config=http://10.20.13.140:8080/generic?arch=${buildarch:uristring}&mac=${mac:hexhyp}";
    for (arch, serial) in [("arm64", "console=ttyAMA0,115200"), ("amd64", "console=ttyS0")] {
        let kernel = format!("/assets/talos/{arch}/vmlinuz{}", cozyboot::render::matchbox::MAC_QUERY);
        let profiles: Vec<_> = r.tree.profiles.iter().filter(|p| p.boot.kernel == kernel).collect();
        assert!(!profiles.is_empty(), "no {arch} profile");
        for p in profiles {
            let want = [
                "initrd=initramfs.xz",
                "init_on_alloc=1",
                "slab_nomerge",
                "pti=on",
                "console=tty0",
                serial,
                "printk.devkmsg=on",
                "talos.platform=metal",
                config_url,
                "talos.halt_if_installed=1",
                "console=tty1",
            ];
            assert_eq!(p.boot.args, want, "{arch} profile {}", p.id);
        }
    }
}

/// Every rendered argv must be accepted by the real dnsmasq (`--test` parses and exits).
#[test]
fn every_rendered_argv_passes_dnsmasq_test() {
    let dnsmasq = Path::new("/usr/sbin/dnsmasq");
    assert!(
        dnsmasq.exists(),
        "dnsmasq is not installed: run scripts/install-test-deps (Debian package dnsmasq-base)"
    );
    let default = format!("--talos-config={}", fixture("default.yaml"));
    let mut both = GUIDE_FULL.to_vec();
    both.push("--arch=arm64,amd64");
    let mut proxy_both = vec!["--iface=eth0", "--arch=arm64,amd64"];
    proxy_both.push(default.as_str());
    for flags in [GUIDE_FULL.to_vec(), vec!["--iface=eth0"], both, proxy_both] {
        let args = render::render(&settings(&flags)).dnsmasq_args;
        let out = Process::new(dnsmasq)
            .arg("--test")
            .args(&args)
            .output()
            .expect("dnsmasq runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.contains("syntax check OK"),
            "dnsmasq rejected {args:?}: {stderr}"
        );
    }
}

/// matchbox logs no client address: the kernel and initramfs URLs carry the MAC (iPXE expands
/// it) so that `cozyboot nodes` can tell whose download each was, and the initramfs keeps the
/// name `initrd=initramfs.xz` refers to.
#[test]
fn asset_urls_carry_the_mac_and_the_initramfs_keeps_its_name() {
    let r = render::render(&settings(&[GUIDE_FULL, &["--arch=arm64,amd64"]].concat()));
    assert!(!r.tree.profiles.is_empty());
    for p in &r.tree.profiles {
        assert!(
            p.boot.kernel.ends_with("/vmlinuz?mac=${mac:hexhyp}"),
            "{}",
            p.boot.kernel
        );
        assert_eq!(p.boot.initrd.len(), 1);
        let words: Vec<&str> = p.boot.initrd[0].split(' ').collect();
        assert_eq!(words[..2], ["--name", "initramfs.xz"], "{:?}", p.boot.initrd);
        assert!(
            words[2].ends_with("/initramfs.xz?mac=${mac:hexhyp}"),
            "{:?}",
            p.boot.initrd
        );
        assert!(p.boot.args.iter().any(|a| a == "initrd=initramfs.xz"));
    }
}
