//! `cozyboot smoke` as a user runs it: real AAVMF, OVMF, SeaBIOS and U-Boot firmware under QEMU,
//! booting through the site smoke starts from a UKI-only talos image in the local test
//! registry (the artifacts' Debian kernels and marker initramfs, see
//! `support::firmware::uki_image`), in full and proxy DHCP mode; seeded faults fail with the
//! diagnosis `cozyboot nodes` would give. After every run nothing smoke made may be left:
//! no namespace, no link, no container.
//!
//! The "talos" stage is the marker initramfs's listener on TCP 50000
//! (`--kernel-args cozyboot.listen=50000`).
//!
//! Needs root, Docker, the local test registry and the firmware artifacts; in CI (or with
//! `COZYBOOT_REQUIRE_FIRMWARE=1`) a missing one fails the test, otherwise it is skipped.

use crate::support;

use assert_cmd::Command as Bin;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use support::firmware::{self, one_boot_at_a_time, Artifacts};
use support::images;
use support::validate_lab::docker;

/// One run may take the default TCG timeout and the site's start on top.
const RUN_TIMEOUT: Duration = Duration::from_secs(900);

/// A UKI-only variant image under a tag of the test's own, removed on drop.
struct TestImages {
    tag: String,
    refs: Vec<String>,
    artifacts: Artifacts,
    _work: tempfile::TempDir,
}

impl Drop for TestImages {
    fn drop(&mut self) {
        for r in &self.refs {
            docker(&["rmi", r]);
        }
    }
}

fn setup(name: &str) -> Option<TestImages> {
    let artifacts = Artifacts::find()?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return firmware::skip("smoke needs root (namespaces, links, a tap)");
    }
    if !images::require_docker() {
        return None;
    }
    images::ensure().unwrap();
    let tag = format!("smoke-{}-{name}", std::process::id());
    let prefix = images::registry_prefix();
    let talos = format!("{prefix}/talos/cozystack-spin-only/talos:{tag}");
    let matchbox = format!("{prefix}/talos/cozystack-spin-only/matchbox:{tag}");
    let work = tempfile::tempdir().unwrap();
    let made = TestImages {
        tag,
        refs: vec![talos.clone(), matchbox.clone()],
        artifacts,
        _work: work,
    };
    firmware::uki_image(&made.artifacts, &talos, made._work.path());
    let stock = format!("{prefix}/talos/cozystack-spin-only/matchbox:v1.0.0");
    for args in [vec!["pull", "-q", stock.as_str()], vec!["tag", &stock, &matchbox]] {
        let (ok, out) = docker(&args);
        assert!(ok, "docker {args:?}: {out}");
    }
    Some(made)
}

/// Whether the artifacts' initramfs opens TCP 50000 when asked (`cozyboot.listen=50000`).
fn has_listener(a: &Artifacts) -> bool {
    std::fs::read_to_string(a.path("manifest.txt")).is_ok_and(|m| m.contains("cozyboot.listen"))
}

struct Run {
    code: i32,
    doc: Value,
    stderr: String,
    took: Duration,
}

/// `cozyboot smoke --json` with the test images, then the check that it left nothing behind.
fn smoke(images: &TestImages, args: &[&str]) -> Run {
    let _one = one_boot_at_a_time();
    let mut all: Vec<String> = images::registry_flags().to_vec();
    all.extend([
        format!("--tag={}", images.tag),
        format!(
            "--ipxe-arm64={}",
            images.artifacts.path("ipxe/ipxe-arm64.efi").display()
        ),
        "--json".into(),
    ]);
    all.extend(args.iter().map(|a| a.to_string()));
    let t0 = Instant::now();
    let out = Bin::cargo_bin("cozyboot")
        .unwrap()
        .arg("smoke")
        .args(&all)
        .timeout(RUN_TIMEOUT)
        .output()
        .unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        doc: serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: t0.elapsed(),
    };
    println!(
        "smoke {}: exit {} in {:.1?}, reached {}, stages {}",
        args.join(" "),
        run.code,
        run.took,
        run.doc["reached"],
        run.doc["stages_seconds"]
    );
    assert_nothing_left(&run);
    run
}

/// The namespace, the host's veth and the containers of the run are gone.
fn assert_nothing_left(run: &Run) {
    let net = &run.doc["network"];
    let (Some(ns), Some(veth)) = (net["netns"].as_str(), net["veth"].as_str()) else {
        panic!(
            "no network in the report (exit {}):\n{}\n{}",
            run.code, run.doc, run.stderr
        );
    };
    assert!(!Path::new("/run/netns").join(ns).exists(), "namespace {ns} left behind");
    assert!(
        !Path::new("/sys/class/net").join(veth).exists(),
        "link {veth} left behind"
    );
    let pid = ns.trim_start_matches("cozysmoke-");
    let names = run_containers(pid);
    assert!(names.is_empty(), "containers left behind: {names}");
}

/// The containers of smoke run `pid` (its site's two), by name.
fn run_containers(pid: &str) -> String {
    let (ok, names) = docker(&[
        "ps",
        "-a",
        "--format",
        "{{.Names}}",
        "--filter",
        &format!("name=cozyboot-smoke-{pid}-"),
    ]);
    assert!(ok, "docker ps: {names}");
    names
}

fn stages(doc: &Value) -> Vec<String> {
    doc["journey"]["stages"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s["stage"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Passes, reaches the goal, and its journey is the whole way there.
fn boots(args: &[&str], name: &str, firmware_has_tftp: bool) -> Option<Run> {
    let images = setup(name)?;
    assert!(
        has_listener(&images.artifacts),
        "the firmware artifacts' initramfs has no TCP 50000 listener: run scripts/firmware-artifacts"
    );
    let mut all = args.to_vec();
    all.extend(["--until", "talos", "--kernel-args", firmware::LISTEN_ARG]);
    let run = smoke(&images, &all);
    let d = &run.doc;
    assert_eq!(run.code, 0, "smoke failed:\n{d:#}\n{}", run.stderr);
    assert_eq!(d["schema"], "cozyboot.smoke/v1");
    assert_eq!(d["ok"], true);
    assert_eq!(d["reached"], "talos", "{d:#}");
    let mut want = vec!["dhcp"];
    if firmware_has_tftp {
        want.push("tftp");
    }
    // U-Boot's boot script reads the kernel and initramfs itself: no iPXE, no profile.
    if !args.windows(2).any(|w| w == ["--firmware", "uboot"]) {
        want.extend(["boot-ipxe", "profile"]);
    }
    want.extend(["kernel", "initramfs", "talos"]);
    assert_eq!(stages(d), want, "{d:#}");
    assert!(d["machine"]["ip"].is_string(), "{d:#}");
    assert!(d["stages_seconds"]["talos"].as_f64().is_some(), "{d:#}");
    Some(run)
}

#[test]
fn arm64_uefi_with_full_dhcp_boots_and_keeps_its_logs() {
    let keep = tempfile::tempdir().unwrap();
    let dir = keep.path().join("logs");
    let keep_arg = dir.display().to_string();
    let Some(run) = boots(
        &[
            "--arch",
            "arm64",
            "--firmware",
            "uefi",
            "--dhcp",
            "full",
            "--keep",
            &keep_arg,
        ],
        "arm64-full",
        true,
    ) else {
        return;
    };
    let d = &run.doc;
    assert_eq!(d["machine"]["arch"], "arm64");
    assert_eq!(d["journey"]["arch"]["client_arch"], 11, "{d:#}");
    for (name, file, needle) in [
        ("serial", "serial.log", "EFI stub"),
        ("dnsmasq", "dnsmasq.log", "DHCPACK"),
        ("matchbox", "matchbox.log", "/assets/talos/arm64/initramfs.xz"),
        ("qemu", "qemu.log", ""),
    ] {
        let path = dir.join(file);
        assert_eq!(d["logs"][name], path.display().to_string(), "{d:#}");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(text.contains(needle), "{file} lacks {needle}");
    }
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("smoke.json")).unwrap()).unwrap();
    assert_eq!(saved["ok"], true);
}

#[test]
fn arm64_uefi_with_proxy_dhcp_beside_a_router_boots() {
    let Some(run) = boots(&["--arch", "arm64", "--dhcp", "proxy"], "arm64-proxy", true) else {
        return;
    };
    assert_eq!(run.doc["dhcp"], "proxy");
    assert_eq!(run.doc["journey"]["proxy_dhcp"], true, "{:#}", run.doc);
}

#[test]
fn x64_uefi_with_full_dhcp_boots() {
    let Some(run) = boots(&["--arch", "amd64", "--firmware", "uefi"], "x64-full", true) else {
        return;
    };
    assert_eq!(run.doc["journey"]["arch"]["client_arch"], 7, "{:#}", run.doc);
}

#[test]
fn x64_uefi_with_proxy_dhcp_beside_a_router_boots() {
    let Some(run) = boots(&["--arch", "amd64", "--dhcp", "proxy"], "x64-proxy", true) else {
        return;
    };
    assert_eq!(run.doc["journey"]["proxy_dhcp"], true, "{:#}", run.doc);
    assert_eq!(run.doc["journey"]["arch"]["client_arch"], 7, "{:#}", run.doc);
}

/// `--firmware uboot`: Debian's U-Boot for QEMU arm64, beside a router that names the site's
/// server for U-Boot (U-Boot ignores proxy DHCP; the router is configured as
/// docs/raspberry-pi.md asks of a site's DHCP server).
#[test]
fn u_boot_with_proxy_dhcp_beside_a_router_boots() {
    let Some(run) = boots(
        &["--arch", "arm64", "--firmware", "uboot", "--dhcp", "proxy"],
        "uboot-proxy",
        true,
    ) else {
        return;
    };
    let d = &run.doc;
    assert_eq!(d["machine"]["firmware"], "uboot", "{d:#}");
    assert_eq!(d["journey"]["arch"]["client_arch"], 22, "{d:#}");
    let tftp = d["journey"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "tftp");
    assert_eq!(tftp.map(|s| &s["detail"]), Some(&Value::from("boot.scr.uimg")), "{d:#}");
}

#[test]
fn bios_with_full_dhcp_boots() {
    let Some(run) = boots(&["--arch", "amd64", "--firmware", "bios"], "bios-full", false) else {
        return;
    };
    assert_eq!(run.doc["journey"]["arch"]["ipxe"], "i386", "{:#}", run.doc);
}

#[test]
fn bios_with_proxy_dhcp_beside_a_router_boots() {
    let Some(run) = boots(
        &["--arch", "amd64", "--firmware", "bios", "--dhcp", "proxy"],
        "bios-proxy",
        false,
    ) else {
        return;
    };
    assert_eq!(run.doc["journey"]["proxy_dhcp"], true, "{:#}", run.doc);
    assert_eq!(run.doc["journey"]["arch"]["ipxe"], "i386", "{:#}", run.doc);
}

#[test]
fn a_machine_of_an_architecture_the_site_does_not_serve_fails_with_that_diagnosis() {
    let Some(images) = setup("not-served") else {
        return;
    };
    let run = smoke(
        &images,
        &[
            "--arch",
            "amd64",
            "--serve-arch",
            "arm64",
            "--until",
            "kernel",
            "--timeout",
            "240",
        ],
    );
    let d = &run.doc;
    assert_eq!(run.code, 1, "{d:#}\n{}", run.stderr);
    assert_eq!(d["ok"], false);
    assert_eq!(d["diagnosis"]["stopped_before"], "dhcp", "{d:#}");
    let finding = d["diagnosis"]["finding"].as_str().unwrap_or_default();
    assert!(finding.contains("serves only arm64"), "{d:#}");
    assert!(d["serial_tail"].as_array().is_some_and(|t| !t.is_empty()), "{d:#}");
    assert!(
        run.took < Duration::from_secs(200),
        "a hopeless boot gives up early, not at the timeout: {:?}",
        run.took
    );
}

#[test]
fn a_system_that_never_opens_talos_port_fails_after_its_initramfs() {
    let Some(images) = setup("no-talos") else {
        return;
    };
    // Without `cozyboot.listen` the marker initramfs powers off instead of listening.
    let run = smoke(&images, &["--arch", "amd64", "--until", "talos", "--timeout", "240"]);
    let d = &run.doc;
    assert_eq!(run.code, 1, "{d:#}\n{}", run.stderr);
    assert_eq!(d["reached"], "initramfs", "{d:#}");
    assert_eq!(d["diagnosis"]["stopped_before"], "talos", "{d:#}");
    assert!(
        d["stopped"].as_str().unwrap_or_default().contains("QEMU exited"),
        "{d:#}"
    );
    let tail = d["serial_tail"].to_string();
    assert!(
        tail.contains(firmware::MARKER),
        "the serial tail shows the last words: {tail}"
    );
}

#[test]
fn a_tag_without_the_machines_assets_fails_before_booting_and_leaves_nothing() {
    let Some(images) = setup("no-tag") else {
        return;
    };
    let _one = one_boot_at_a_time();
    let out = Bin::cargo_bin("cozyboot")
        .unwrap()
        .arg("smoke")
        .args(images::registry_flags())
        .args(["--tag=no-such-tag-for-smoke", "--pull=always", "--until=dhcp"])
        .arg(format!(
            "--ipxe-arm64={}",
            images.artifacts.path("ipxe/ipxe-arm64.efi").display()
        ))
        .timeout(RUN_TIMEOUT)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no-such-tag-for-smoke"), "{stderr}");
    let (_, left) = docker(&["ps", "-a", "--format", "{{.Names}}", "--filter", "name=cozyboot-smoke-"]);
    assert!(left.is_empty(), "containers left behind: {left}");
    let netns = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    assert!(!netns.iter().any(|n| n.starts_with("cozysmoke-")), "{netns:?}");
}

#[test]
fn ctrl_c_in_the_middle_of_a_boot_removes_everything() {
    let Some(images) = setup("sigint") else {
        return;
    };
    let _one = one_boot_at_a_time();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("cozyboot"))
        .arg("smoke")
        .args(images::registry_flags())
        .arg(format!("--tag={}", images.tag))
        .arg(format!(
            "--ipxe-arm64={}",
            images.artifacts.path("ipxe/ipxe-arm64.efi").display()
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let ns = Path::new("/run/netns").join(format!("cozysmoke-{pid}"));
    // Interrupted once smoke says the VM boots (bounded: the site starts in seconds).
    let (booting_tx, booting) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            if line.starts_with("booting ") {
                let _ = booting_tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let booted = booting.recv_timeout(Duration::from_secs(180)).is_ok();
    // SAFETY: kill has no memory-safety preconditions; `pid` is our own child.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let stderr = reader.join().unwrap();
    assert!(booted, "smoke never started the VM: {stderr}");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");
    assert!(!ns.exists(), "namespace left behind");
    assert!(
        !Path::new("/sys/class/net").join(format!("csm{pid}")).exists(),
        "veth left behind"
    );
    let left = run_containers(&pid.to_string());
    assert!(left.is_empty(), "containers left behind: {left}");
}
