//! `render --kubernetes`: the manifests are pinned by snapshots, carry exactly what `render`
//! (and so `up`) renders for the same settings, pass `kubernetes-validate --strict` (the
//! Kubernetes OpenAPI schemas, bundled with the PyPI package, offline) for the oldest and the
//! newest Kubernetes the docs name, and their asset script takes the kernel and initramfs out
//! of each image layout under the busybox the init container runs it with.

use crate::support::{guard, images};

use cozyboot::artifacts::arch::Arch;
use cozyboot::artifacts::uki;
use cozyboot::render::kubernetes::{layouts, APPLETS};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

/// The oldest Kubernetes docs/fleet.md claims for the init-container manifests, the first
/// with image volumes (alpha), and the newest the pinned kubernetes-validate bundles.
const OLDEST: &str = "1.25.0";
const IMAGE_VOLUME_ALPHA: &str = "1.31.0";
const NEWEST: &str = "1.37.0";

/// A node on the LAN as the operator would describe it: its interface and address there.
const NODE: &[&str] = &["--iface=eth0", "--server-ip=10.20.13.21", "--subnet=10.20.13.0/24"];

struct Site {
    dir: TempDir,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        // A stand-in arm64 iPXE: a PE32+ whose machine is arm64 (0xAA64), as the real one.
        let ipxe = uki::build_for_tests(0xAA64, &[(".text", b"ipxe arm64 stand-in")]);
        fs::write(dir.path().join("ipxe-arm64.efi"), ipxe).unwrap();
        fs::create_dir_all(dir.path().join("sites")).unwrap();
        Site { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `cozyboot render` with no recorded site, config file or environment settings.
    fn render(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cozyboot"));
        cmd.arg("render")
            .args(args)
            .arg(format!("--data-dir={}", self.path("data").display()))
            .current_dir(self.dir.path())
            .env("COZYBOOT_SITES_DIR", self.path("sites"));
        for (key, _) in std::env::vars() {
            if key.starts_with("COZYBOOT_") && key != "COZYBOOT_REQUIRE" {
                cmd.env_remove(key);
            }
        }
        cmd.output().unwrap()
    }

    fn kubernetes(&self, out: &str, extra: &[&str]) -> (PathBuf, String) {
        let dir = self.path(out);
        let ipxe = format!("--ipxe-arm64={}", self.path("ipxe-arm64.efi").display());
        let mut args = vec!["--kubernetes", dir.to_str().unwrap(), ipxe.as_str()];
        args.extend(NODE);
        args.extend(extra);
        let out = self.render(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "render --kubernetes failed: {stderr}");
        (dir, stderr)
    }

    /// What plain `render --json` says for the same settings.
    fn plain(&self, extra: &[&str]) -> Value {
        let tree = self.path("tree");
        let mut args = vec!["--json", "--output", tree.to_str().unwrap()];
        args.extend(NODE);
        args.extend(extra);
        let out = self.render(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn files(dir: &Path) -> Vec<(String, String)> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let text = fs::read_to_string(dir.join(&n)).unwrap();
            (n, text)
        })
        .collect()
}

fn object(dir: &Path, kind: &str, name: &str) -> Value {
    files(dir)
        .into_iter()
        .map(|(_, text)| serde_yaml_ng::from_str::<Value>(&text).unwrap())
        .find(|v| v["kind"] == kind && v["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {}", dir.display()))
}

fn all_files_snapshot(dir: &Path) -> String {
    files(dir)
        .into_iter()
        .map(|(name, text)| format!("--- {name}\n{text}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn pod_spec(v: &Value) -> &Value {
    &v["spec"]["template"]["spec"]
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// `kubernetes-validate --strict` from the venv scripts/install-test-deps makes.
fn validator() -> Option<PathBuf> {
    let exe = images::state_dir().join("kubernetes-validate-venv/bin/kubernetes-validate");
    if !exe.is_file() {
        return guard::skip(
            None,
            &format!("{} is missing: run scripts/install-test-deps", exe.display()),
        );
    }
    Some(exe)
}

fn validate(exe: &Path, version: &str, dir: &Path) -> Output {
    let paths: Vec<PathBuf> = files(dir).into_iter().map(|(n, _)| dir.join(n)).collect();
    Command::new(exe)
        .args(["--strict", "-k", version])
        .args(&paths)
        .output()
        .unwrap()
}

fn assert_valid(exe: &Path, version: &str, dir: &Path) {
    let out = validate(exe, version, dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubernetes-validate --strict -k {version}:\n{text}"
    );
    let minor = version.trim_end_matches(".0");
    let passed = format!("against version {minor}");
    let count = files(dir).len();
    assert_eq!(
        text.matches(&passed).count(),
        count,
        "every file is checked against {minor}:\n{text}"
    );
}

const PROXY_BOTH: &[&str] = &["--arch=arm64,amd64"];
const FULL_ARM64: &[&str] = &[
    "--dhcp-range=10.20.13.150,10.20.13.200",
    "--gateway=10.20.13.1",
    "--dns=10.20.13.1",
];

#[test]
fn proxy_site_for_both_arches_is_what_render_renders_and_passes_the_schemas() {
    let site = Site::new();
    let talos = format!(
        "--talos-config={}",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/default.yaml")
            .display()
    );
    let mut extra = PROXY_BOTH.to_vec();
    extra.extend(["--node-arch=arm64", talos.as_str()]);
    let (dir, stderr) = site.kubernetes("k8s", &extra);
    insta::assert_snapshot!("kubernetes-proxy-both-arches", all_files_snapshot(&dir));

    // The same argv, args and tree `render` (so `up`) uses: nothing worked out twice; but
    // for the Pi EEPROM's stage and U-Boot's script, whose files the manifests do not carry,
    // and which is said.
    let plain = site.plain(
        &[
            PROXY_BOTH,
            &[talos.as_str(), "--rpi-netboot=off", "--uboot-netboot=off"],
        ]
        .concat(),
    );
    for left_out in [
        "the Raspberry Pi EEPROM's network boot (option 43 and the Pi UEFI firmware) is not in these manifests",
        "U-Boot's own network boot (boot.scr.uimg, with the Talos kernel and initramfs over TFTP) is not in these manifests",
    ] {
        assert!(stderr.contains(left_out), "{stderr}");
    }
    let dnsmasq = object(&dir, "DaemonSet", "dnsmasq");
    let container = &pod_spec(&dnsmasq)["containers"][0];
    assert_eq!(container["args"], plain["dnsmasq"]["args"]);
    assert_eq!(
        container["image"], "quay.io/poseidon/dnsmasq:v0.5.0-32-g4327d60-arm64",
        "the image of the node's arch"
    );
    assert_eq!(
        strings(&container["securityContext"]["capabilities"]["add"]),
        ["NET_ADMIN", "NET_RAW"]
    );
    assert_eq!(pod_spec(&dnsmasq)["hostNetwork"], true);
    assert_eq!(
        pod_spec(&dnsmasq)["nodeSelector"]["cozyboot.io/boot-lan"],
        "10.20.13.0_24"
    );
    let matchbox = object(&dir, "Deployment", "matchbox");
    assert_eq!(pod_spec(&matchbox)["containers"][0]["args"], plain["matchbox"]["args"]);
    assert_eq!(pod_spec(&matchbox)["nodeSelector"], pod_spec(&dnsmasq)["nodeSelector"]);
    for (kind, name, dir_name) in [
        ("ConfigMap", "matchbox-profiles", "profiles"),
        ("ConfigMap", "matchbox-groups", "groups"),
        ("Secret", "matchbox-generic", "generic"),
    ] {
        let data = object(&dir, kind, name);
        let data = if kind == "Secret" {
            &data["stringData"]
        } else {
            &data["data"]
        };
        let on_disk = files(&site.path("tree").join(dir_name));
        assert_eq!(data.as_object().unwrap().len(), on_disk.len(), "{name}");
        for (file, text) in on_disk {
            assert_eq!(data[&file], text.as_str(), "{name}/{file} as `render` writes it");
        }
    }
    // The Talos configs hold the cluster's keys: owner-only on disk, a Secret in the cluster.
    let secret = files(&dir).into_iter().find(|(n, _)| n.contains("secret")).unwrap().0;
    let mode = fs::metadata(dir.join(secret)).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);

    for step in [
        "kubectl label node NODE cozyboot.io/boot-lan=10.20.13.0_24",
        "kubectl apply --server-side -f",
        "get pods",
        "validate --probe-dhcp",
        "cozyboot down --data-dir",
    ] {
        assert!(stderr.contains(step), "next steps name `{step}`:\n{stderr}");
    }

    let Some(exe) = validator() else { return };
    assert_valid(&exe, OLDEST, &dir);
    assert_valid(&exe, NEWEST, &dir);
}

#[test]
fn full_mode_site_with_an_image_volume_needs_kubernetes_1_31() {
    let site = Site::new();
    let mut extra = FULL_ARM64.to_vec();
    extra.extend(["--node-arch=arm64", "--namespace=boot-lan-a", "--image-volume"]);
    let (dir, _) = site.kubernetes("k8s", &extra);
    insta::assert_snapshot!("kubernetes-full-image-volume", all_files_snapshot(&dir));
    let matchbox = object(&dir, "Deployment", "matchbox");
    let volumes = pod_spec(&matchbox)["volumes"].as_array().unwrap();
    let image = volumes
        .iter()
        .find(|v| v["name"] == "talos-image")
        .expect("an image volume");
    assert_eq!(
        image["image"]["reference"],
        "ghcr.io/urmanac/cozystack-assets/talos/cozystack-spin-only/talos:latest"
    );
    // `render` of the same site without the Pi EEPROM's stage and U-Boot's script, which the
    // manifests leave out (and say so).
    let plain = site.plain(&[FULL_ARM64, &["--rpi-netboot=off", "--uboot-netboot=off"]].concat());
    assert_eq!(
        pod_spec(&object(&dir, "DaemonSet", "dnsmasq"))["containers"][0]["args"],
        plain["dnsmasq"]["args"]
    );

    let Some(exe) = validator() else { return };
    assert_valid(&exe, IMAGE_VOLUME_ALPHA, &dir);
    assert_valid(&exe, NEWEST, &dir);
    // The schemas do check: 1.30 has no image volumes.
    let out = validate(&exe, "1.30.0", &dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("image"), "{text}");
}

#[test]
fn a_second_render_removes_the_files_it_no_longer_writes() {
    let site = Site::new();
    let talos = format!(
        "--talos-config={}",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/default.yaml")
            .display()
    );
    let (dir, _) = site.kubernetes("k8s", &[talos.as_str()]);
    assert!(files(&dir).iter().any(|(n, _)| n.contains("secret-matchbox-generic")));
    fs::write(dir.join("mine.yaml"), "kind: ConfigMap\n").unwrap();
    site.kubernetes("k8s", &[]);
    let names: Vec<String> = files(&dir).into_iter().map(|(n, _)| n).collect();
    assert!(!names.iter().any(|n| n.contains("secret")), "{names:?}");
    assert!(
        names.contains(&"mine.yaml".to_string()),
        "a file cozyboot did not write stays"
    );
}

#[test]
fn a_docker_network_or_a_non_arm64_ipxe_is_refused_with_exit_2() {
    let site = Site::new();
    let dir = site.path("k8s");
    let out = site.render(&[
        "--kubernetes",
        dir.to_str().unwrap(),
        "--network=bootnet",
        "--server-ip=10.20.13.21",
        "--subnet=10.20.13.0/24",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("network = 'bootnet'") && err.contains("host network"),
        "{err}"
    );

    let x86 = site.path("x86.efi");
    fs::write(&x86, uki::build_for_tests(0x8664, &[(".text", b"x")])).unwrap();
    let mut args = vec!["--kubernetes", dir.to_str().unwrap()];
    let ipxe = format!("--ipxe-arm64={}", x86.display());
    args.push(&ipxe);
    args.extend(NODE);
    let out = site.render(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("not an arm64 EFI binary") && err.contains("x86_64"),
        "{err}"
    );
    assert!(!dir.exists(), "nothing written");

    let out = site.render(&["--kubernetes", dir.to_str().unwrap(), "--namespace=Boot_LAN"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a Kubernetes namespace name"));
}

/// The script the init containers run, under busybox as they run it (applets linked beside
/// a copy of the binary, PATH set to them), against each image layout `up` knows.
mod fetch_assets {
    use super::*;

    const SCRIPT: &str = include_str!("../../src/render/kubernetes/fetch-assets.sh");
    const BUSYBOX: &str = "/bin/busybox";

    fn tools(dir: &Path) -> Option<PathBuf> {
        if !Path::new(BUSYBOX).is_file() {
            return guard::skip(None, "/bin/busybox is missing (apt-get install busybox-static)");
        }
        let tools = dir.join("tools");
        fs::create_dir_all(&tools).unwrap();
        fs::copy(BUSYBOX, tools.join("busybox")).unwrap();
        for applet in APPLETS {
            symlink("busybox", tools.join(applet)).unwrap();
        }
        Some(tools)
    }

    fn run(tools: &Path, root: &Path, out: &Path) -> Output {
        let script = root.parent().unwrap().join("fetch-assets.sh");
        fs::write(&script, SCRIPT).unwrap();
        Command::new(tools.join("sh"))
            .arg(&script)
            .arg(root)
            .arg("arm64")
            .arg(out)
            .env_clear()
            .env("PATH", tools)
            .env("LAYOUTS", layouts(Arch::Arm64))
            .output()
            .unwrap()
    }

    fn put(root: &Path, path: &str, bytes: &[u8]) {
        let p = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }

    fn sha(bytes: &[u8]) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(bytes))
    }

    #[test]
    fn a_uki_is_split_into_the_kernel_and_initramfs_sections() {
        let tmp = tempfile::tempdir().unwrap();
        let Some(tools) = tools(tmp.path()) else { return };
        let kernel: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let initrd: Vec<u8> = (0..33_333u32).map(|i| (i % 13) as u8 + 1).collect();
        // Sections as ukify orders them (siderolabs/talos internal/pkg/uki reads them by name).
        let pe = uki::build_for_tests(
            0xAA64,
            &[
                (".osrel", b"ID=talos\n"),
                (".cmdline", b"talos.platform=metal"),
                (".linux", &kernel),
                (".initrd", &initrd),
            ],
        );
        let root = tmp.path().join("image");
        put(&root, "/usr/install/arm64/vmlinuz.efi", &pe);
        let out = tmp.path().join("out");
        let result = run(&tools, &root, &out);
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
        assert!(result.status.success(), "{log}");
        assert!(log.contains("layout installer-uki"), "{log}");
        assert_eq!(fs::read(out.join("vmlinuz")).unwrap(), kernel);
        assert_eq!(fs::read(out.join("initramfs.xz")).unwrap(), initrd);
    }

    #[test]
    fn the_asset_containers_checksums_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let Some(tools) = tools(tmp.path()) else { return };
        let root = tmp.path().join("image");
        // The ARM64 fork's asset container: boot/ files, checksums one level up (./boot/ names).
        put(&root, "/assets/talos/arm64/boot/vmlinuz", b"kernel");
        put(&root, "/assets/talos/arm64/boot/initramfs.xz", b"initramfs");
        let sums = format!(
            "{}  ./boot/vmlinuz\n{}  ./boot/initramfs.xz\n",
            sha(b"kernel"),
            sha(b"initramfs")
        );
        put(&root, "/assets/talos/arm64/checksums.sha256", sums.as_bytes());
        let out = tmp.path().join("out");
        let result = run(&tools, &root, &out);
        assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
        assert_eq!(fs::read(out.join("initramfs.xz")).unwrap(), b"initramfs");

        put(&root, "/assets/talos/arm64/boot/initramfs.xz", b"tampered");
        let result = run(&tools, &root, &tmp.path().join("out2"));
        let err = String::from_utf8_lossy(&result.stderr);
        assert!(!result.status.success() && err.contains("does not match"), "{err}");
        assert!(!tmp.path().join("out2/initramfs.xz").exists());
    }

    #[test]
    fn an_image_without_any_layout_is_an_error_listing_them() {
        let tmp = tempfile::tempdir().unwrap();
        let Some(tools) = tools(tmp.path()) else { return };
        let root = tmp.path().join("image");
        put(&root, "/usr/install/arm64/systemd-boot.efi", b"MZ");
        let result = run(&tools, &root, &tmp.path().join("out"));
        let err = String::from_utf8_lossy(&result.stderr);
        assert!(!result.status.success(), "{err}");
        assert!(
            err.contains("no layout of the image holds the arm64 kernel") && err.contains("installer-uki"),
            "{err}"
        );
    }
}

#[test]
fn rpc_mounts_the_certificates_the_next_steps_make_into_a_secret() {
    let site = Site::new();
    let (dir, stderr) = site.kubernetes("k8s", &["--rpc"]);
    let matchbox = object(&dir, "Deployment", "matchbox");
    let plain = site.plain(&["--rpc"]);
    let container = &pod_spec(&matchbox)["containers"][0];
    assert_eq!(container["args"], plain["matchbox"]["args"]);
    assert!(strings(&container["args"]).contains(&"-rpc-address=10.20.13.21:8081".to_string()));
    let tls = pod_spec(&matchbox)["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tls")
        .expect("a tls volume");
    assert_eq!(tls["secret"]["secretName"], "matchbox-tls");
    let service = object(&dir, "Service", "matchbox");
    assert_eq!(service["spec"]["ports"][1]["port"], 8081);
    let data_dir = site.path("data");
    let made = format!(
        "create secret generic matchbox-tls --from-file={}/tls/ca.crt",
        data_dir.display()
    );
    assert!(stderr.contains(&made), "{stderr}");
    let Some(exe) = validator() else { return };
    assert_valid(&exe, OLDEST, &dir);
}
