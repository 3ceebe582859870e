//! `cozyboot up` and the day-2 commands against the real Docker Engine, with images pulled
//! from a local registry. Every container runs on an `--internal` Docker network this test
//! creates, so the DHCP server can never answer on a real interface.

use crate::support;

use assert_cmd::Command as Bin;
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::Command;
use support::images;
use support::pe::pe;
use support::site::{actions, docker, Site, TAG};

/// Makes `<repo>:<to>` in the local registry a copy of `<repo>:<from>` (test fixtures only).
fn registry_alias(repo: &str, from: &str, to: &str) {
    let (src, dst) = (format!("{repo}:{from}"), format!("{repo}:{to}"));
    for args in [
        vec!["pull", "-q", src.as_str()],
        vec!["tag", &src, &dst],
        vec!["push", "-q", &dst],
    ] {
        let ok = Command::new("docker").args(&args).output().unwrap().status.success();
        assert!(ok, "docker {args:?}");
    }
    docker(&["rmi", &dst]);
}

#[test]
fn cold_up_then_a_warm_up_that_changes_nothing() {
    let Some(site) = Site::new() else { return };
    for component in ["talos", "matchbox"] {
        docker(&[
            "rmi",
            &format!(
                "{}/talos/cozystack-spin-only/{component}:{TAG}",
                images::registry_prefix()
            ),
        ]);
    }

    let cold = site.up_ok(TAG, &[]);
    let pulled: Vec<String> = actions(&cold, "pull")
        .iter()
        .map(|a| a["image"].as_str().unwrap().to_string())
        .collect();
    for component in ["talos", "matchbox"] {
        let image = format!(
            "{}/talos/cozystack-spin-only/{component}:{TAG}",
            images::registry_prefix()
        );
        assert!(pulled.contains(&image), "{image} pulled on a cold engine: {cold:#}");
    }
    assert_eq!(actions(&cold, "extract-assets").len(), 1);
    assert_eq!(actions(&cold, "create-container").len(), 2);
    let assets = site.data().join("assets");
    let vmlinuz = assets.join("talos/arm64/vmlinuz");
    let (size, sha) = images::expected_file(
        &images::variant_image(images::SPIN_ONLY, TAG),
        "/assets/talos/arm64/vmlinuz",
    )
    .expect("the test image manifest lists the kernel");
    assert_eq!(fs::metadata(&vmlinuz).unwrap().len(), size);
    use sha2::Digest;
    assert_eq!(hex::encode(sha2::Sha256::digest(fs::read(&vmlinuz).unwrap())), sha);
    assert_eq!(fs::read(assets.join("bootaa64.efi")).unwrap(), pe(0xAA64));

    // matchbox serves what was written, exactly as an iPXE client would ask for it.
    let (status, body) = site.http_get("/ipxe?arch=arm64&mac=dc-a6-32-00-00-01");
    let script = String::from_utf8(body).unwrap();
    assert_eq!(status, 200, "{script}");
    assert!(
        script.contains("kernel /assets/talos/arm64/vmlinuz") && script.contains("initrd=initramfs.xz"),
        "{script}"
    );
    let (status, body) = site.http_get("/assets/talos/arm64/vmlinuz");
    assert_eq!((status, body.len() as u64), (200, size));
    let cmd = docker(&["inspect", "-f", "{{json .Config.Cmd}}", &site.matchbox]);
    assert!(!cmd.contains("-rpc-address"), "no gRPC flag without --rpc: {cmd}");

    let before = (site.container(&site.matchbox), site.container(&site.dnsmasq));
    let warm = site.up_ok(TAG, &[]);
    assert!(
        actions(&warm, "pull").is_empty(),
        "pinned tags are not pulled again: {warm:#}"
    );
    assert!(
        actions(&warm, "extract-assets").is_empty(),
        "unchanged image, no extraction"
    );
    assert_eq!(actions(&warm, "keep").len(), 2);
    assert_eq!(
        (site.container(&site.matchbox), site.container(&site.dnsmasq)),
        before,
        "no container restarted"
    );
}

#[test]
fn changing_one_setting_replaces_only_that_container() {
    let Some(site) = Site::new() else { return };
    site.up_ok(TAG, &[]);
    let matchbox = site.container(&site.matchbox);
    let dnsmasq = site.container(&site.dnsmasq);

    let report = site.up_ok(TAG, &["--lease-time=6h"]);
    let replaced = actions(&report, "replace-container");
    assert_eq!(replaced.len(), 1, "{report:#}");
    assert_eq!(replaced[0]["name"], site.dnsmasq.as_str());
    assert_eq!(replaced[0]["reason"], "args changed");
    assert_eq!(site.container(&site.matchbox), matchbox, "matchbox untouched");
    let new = site.container(&site.dnsmasq);
    assert_ne!(new.0, dnsmasq.0);
    assert!(new.2, "the new dnsmasq runs");
    let args = docker(&["inspect", "-f", "{{json .Config.Cmd}}", &site.dnsmasq]);
    assert!(args.contains("6h"), "{args}");
}

/// The state cozyboot recorded for the site.
fn state(site: &Site) -> Value {
    serde_json::from_slice(&fs::read(site.data().join(".cozyboot/state.json")).unwrap()).unwrap()
}

/// Every path under `dir` (files, dirs and links), relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(&p, root, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `(size, sha256)` of a served asset file.
fn served(site: &Site, arch: &str, name: &str) -> (u64, String) {
    use sha2::{Digest, Sha256};
    let bytes = fs::read(site.data().join("assets/talos").join(arch).join(name)).unwrap();
    (bytes.len() as u64, hex::encode(Sha256::digest(&bytes)))
}

/// Each shape the real published images have (docs/arm64.md), with the same kernel and
/// initramfs bytes inside: `up` finds them, serves exactly the pair, and records where from.
#[test]
fn every_published_image_layout_serves_the_same_kernel_and_initramfs() {
    let Some(site) = Site::new() else { return };
    let matchbox = format!("{}/talos/cozystack-spin-only/matchbox", images::registry_prefix());
    let seed = images::variant_image(images::SPIN_ONLY, "latest");
    // (tag, arches, layout, dir in the image)
    let cases = [
        ("assets-boot", "arm64", "assets-boot", "/assets/talos/arm64/boot"),
        ("latest", "arm64,amd64", "assets", "/assets/talos/arm64"),
        ("usr-install", "arm64,amd64", "installer", "/usr/install/arm64"),
        ("uki", "arm64,amd64", "installer-uki", "/usr/install/arm64"),
    ];
    for (tag, arches, layout, dir) in cases {
        if tag != "latest" {
            registry_alias(&matchbox, TAG, tag);
        }
        let report = site.up_ok(tag, &[&format!("--arch={arches}")]);
        assert_eq!(
            actions(&report, "extract-assets").len(),
            arches.split(',').count(),
            "{tag}: {report:#}"
        );
        let st = state(&site);
        for arch in arches.split(',') {
            for name in ["vmlinuz", "initramfs.xz"] {
                let expected = images::expected_file(&seed, &format!("/assets/talos/{arch}/{name}")).unwrap();
                assert_eq!(
                    served(&site, arch, name),
                    expected,
                    "{tag}: {arch}/{name} differs from the seed's"
                );
            }
            let rec = &st["assets"][arch];
            assert_eq!(rec["layout"], layout, "{tag}: {rec:#}");
            assert_eq!(rec["source"], dir.replace("arm64", arch), "{tag}: {rec:#}");
        }
        // Only the pair is served: no dtb tree, no link, no checksum file, no UKI, no ISO.
        assert_eq!(
            tree(&site.data().join("assets/talos")),
            arches
                .split(',')
                .flat_map(|a| [a.to_string(), format!("{a}/initramfs.xz"), format!("{a}/vmlinuz")])
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>(),
            "{tag}"
        );
        let arm = &st["assets"]["arm64"];
        match tag {
            "uki" => {
                assert_eq!(arm["uki"]["path"], "/usr/install/arm64/vmlinuz.efi", "{arm:#}");
                let uki = images::expected_file(
                    &images::variant_image(images::SPIN_ONLY, tag),
                    "/usr/install/arm64/vmlinuz.efi",
                )
                .unwrap();
                assert_eq!(arm["uki"]["sha256"], uki.1.as_str());
                assert_eq!(
                    arm["uki"]["embedded_cmdline"],
                    "talos.platform=metal console=tty0 cozyboot.embedded=1"
                );
                assert_eq!(
                    arm["files"][0]["source"],
                    "/usr/install/arm64/vmlinuz.efi section .linux"
                );
            }
            "assets-boot" => {
                assert_eq!(arm["verified_by"], "/assets/talos/arm64/checksums.sha256", "{arm:#}");
                // The 256 MiB metal.raw.xz beside the assets was never read: what crossed
                // the engine's archive API is the pair plus tar headers.
                let pair: u64 = ["vmlinuz", "initramfs.xz"]
                    .iter()
                    .map(|n| served(&site, "arm64", n).0)
                    .sum();
                let read = arm["archive_bytes"].as_u64().unwrap();
                assert!(
                    read < pair + 64 * 1024,
                    "read {read} bytes for a {pair}-byte pair: {arm:#}"
                );
            }
            _ => assert!(
                arm.get("verified_by").is_none(),
                "{tag}: nothing to verify against: {arm:#}"
            ),
        }
        // Served over HTTP as matchbox serves it.
        let (status, body) = site.http_get("/assets/talos/arm64/initramfs.xz");
        assert_eq!(
            (status, body.len() as u64),
            (200, served(&site, "arm64", "initramfs.xz").0),
            "{tag}"
        );
    }
    let status = Bin::cargo_bin("cozyboot")
        .unwrap()
        .args(["status", "--json"])
        .arg(format!("--data-dir={}", site.data().display()))
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    let arm = status["assets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["arch"] == "arm64")
        .cloned();
    assert_eq!(arm.unwrap()["record"]["layout"], "installer-uki", "{status:#}");
}

#[test]
fn an_asset_that_does_not_match_the_images_checksums_fails_and_changes_nothing() {
    let Some(site) = Site::new() else { return };
    let matchbox = format!("{}/talos/cozystack-spin-only/matchbox", images::registry_prefix());
    registry_alias(&matchbox, TAG, "assets-boot");
    registry_alias(&matchbox, TAG, "bad-checksum");
    site.up_ok("assets-boot", &[]);
    let before = (
        served(&site, "arm64", "vmlinuz"),
        served(&site, "arm64", "initramfs.xz"),
        fs::read(site.data().join(".cozyboot/state.json")).unwrap(),
        site.container(&site.matchbox),
        site.container(&site.dnsmasq),
    );
    let (code, json, stderr) = site.up("bad-checksum", &[]);
    assert_eq!(code, 1, "{stderr}");
    let message = json["error"]["message"].as_str().unwrap_or_default();
    let good = images::expected_file(
        &images::variant_image(images::SPIN_ONLY, "bad-checksum"),
        "/assets/talos/arm64/boot/initramfs.xz",
    )
    .unwrap()
    .1;
    for needle in [
        "boot/initramfs.xz",
        "checksums.sha256",
        good.as_str(),
        "nothing was changed",
    ] {
        assert!(message.contains(needle), "missing {needle:?} in: {message}");
    }
    let after = (
        served(&site, "arm64", "vmlinuz"),
        served(&site, "arm64", "initramfs.xz"),
        fs::read(site.data().join(".cozyboot/state.json")).unwrap(),
        site.container(&site.matchbox),
        site.container(&site.dnsmasq),
    );
    assert!(before == after, "assets, state or containers changed");
    assert_eq!(site.temporary_containers(), "", "temporary container removed");
}

/// Links, devices and fifos BESIDE the served files are never read, so they cannot stop
/// `up`; a served file that is itself a link is refused, and nothing is written.
#[test]
fn links_beside_the_assets_are_ignored_and_linked_assets_are_refused() {
    let Some(site) = Site::new() else { return };
    let matchbox = format!("{}/talos/cozystack-spin-only/matchbox", images::registry_prefix());
    registry_alias(&matchbox, TAG, "hostile");
    registry_alias(&matchbox, TAG, "hostile-links");

    site.up_ok("hostile", &[]);
    let written = tree(&site.data().join("assets/talos"));
    assert_eq!(written, ["arm64", "arm64/initramfs.xz", "arm64/vmlinuz"]);

    let before = fs::read(site.data().join(".cozyboot/state.json")).unwrap();
    let (code, json, stderr) = site.up("hostile-links", &[]);
    assert_eq!(code, 1, "{stderr}");
    let message = json["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("symbolic links are not allowed"), "{message}");
    assert!(
        message.contains("/etc/passwd") && message.contains("vmlinuz"),
        "{message}"
    );
    assert!(message.contains("nothing was changed"), "{message}");
    assert_eq!(fs::read(site.data().join(".cozyboot/state.json")).unwrap(), before);
    assert_eq!(
        tree(&site.data().join("assets/talos")),
        written,
        "the previous assets stay"
    );
    let staging: Vec<_> = fs::read_dir(site.data().join(".cozyboot"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("staging"))
        .collect();
    assert!(staging.is_empty(), "staging removed");
    assert!(!site.dir.path().join("escape").exists() && !Path::new("/escape").exists());
    assert_eq!(site.temporary_containers(), "", "temporary container removed");
}

/// matchbox before v0.11.0 sends no `arch` label, so no group of cozyboot's could match:
/// `up` asks the image its version and refuses it before replacing anything.
#[test]
fn a_matchbox_older_than_v0_11_is_refused_before_anything_is_replaced() {
    let Some(site) = Site::new() else { return };
    let first = site.up_ok(TAG, &[]);
    assert!(first["warnings"].as_array().unwrap().is_empty(), "{first:#}");
    assert_eq!(state(&site)["matchbox_version"]["version"], "v0.11.0");
    let before = (
        site.container(&site.matchbox),
        site.container(&site.dnsmasq),
        fs::read(site.data().join(".cozyboot/state.json")).unwrap(),
    );
    let talos = format!("{}/talos/cozystack-spin-only/talos", images::registry_prefix());
    registry_alias(&talos, TAG, "old-matchbox");
    let (code, json, stderr) = site.up("old-matchbox", &[]);
    assert_eq!(code, 1, "{stderr}");
    let message = json["error"]["message"].as_str().unwrap_or_default();
    for needle in ["matchbox v0.10.0", "since v0.11.0", "fix:", "nothing was changed"] {
        assert!(message.contains(needle), "missing {needle:?} in: {message}");
    }
    let after = (
        site.container(&site.matchbox),
        site.container(&site.dnsmasq),
        fs::read(site.data().join(".cozyboot/state.json")).unwrap(),
    );
    assert!(before == after, "containers or state changed");
    assert_eq!(site.temporary_containers(), "", "the -version container was removed");
}

/// The check of one id in a `validate --json` document.
fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("no check {id} in {report:#}"))
}

/// A data dir laid out by hand from the manual guide: its `default` group selects
/// `arch: arm64` like cozyboot's arm64 group, so matchbox would pick either by accident.
#[test]
fn a_data_dir_laid_out_by_the_guide_is_explained_and_moved_aside_on_request() {
    let Some(site) = Site::new() else { return };
    let data = site.data();
    let guide_profile = r#"{"id":"cozystack-arm64","name":"CozyStack ARM64 spin-only","boot":{"kernel":"/assets/talos/arm64/vmlinuz","initrd":["/assets/talos/arm64/initramfs.xz"],"args":["talos.platform=metal","talos.config=http://10.20.13.140:8080/ignition?uuid=${uuid}","console=tty0"]}}"#;
    let guide_group =
        r#"{"id":"default","name":"Default ARM64 group","profile":"cozystack-arm64","selector":{"arch":"arm64"}}"#;
    for d in ["assets/talos/arm64", "profiles", "groups", "ignition"] {
        fs::create_dir_all(data.join(d)).unwrap();
    }
    fs::write(data.join("profiles/cozystack-arm64.json"), guide_profile).unwrap();
    fs::write(data.join("groups/default.json"), guide_group).unwrap();

    let (code, json, stderr) = site.up(TAG, &[]);
    assert_eq!(code, 1, "{stderr}");
    let message = json["error"]["message"].as_str().unwrap_or_default();
    for needle in [
        "groups/default.json selects arch=arm64",
        "accident of sorting",
        "cozyboot up --move-foreign",
        "profiles/cozystack-arm64.json",
        "nothing was changed",
    ] {
        assert!(message.contains(needle), "missing {needle:?} in: {message}");
    }
    assert_eq!(
        fs::read_to_string(data.join("groups/default.json")).unwrap(),
        guide_group
    );
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &format!("name={}", site.matchbox)]),
        ""
    );

    let (_, report, _) = site.validate(TAG, &[]);
    let foreign = check(&report, "config.foreign-groups");
    assert_eq!(foreign["status"], "fail", "{foreign:#}");
    assert!(
        foreign["evidence"].to_string().contains("accident of sorting"),
        "{foreign:#}"
    );
    assert!(foreign["fix"].as_str().unwrap().contains("--move-foreign"));

    let dry = site.up_ok(TAG, &["--move-foreign", "--dry-run"]);
    assert_eq!(actions(&dry, "move-foreign").len(), 1, "{dry:#}");
    assert!(data.join("groups/default.json").exists(), "--dry-run moves nothing");

    let report = site.up_ok(TAG, &["--move-foreign"]);
    let moved = &actions(&report, "move-foreign")[0];
    let to = Path::new(moved["to"].as_str().unwrap());
    assert_eq!(fs::read_to_string(to.join("groups/default.json")).unwrap(), guide_group);
    assert!(to.join("profiles/cozystack-arm64.json").is_file());
    assert!(!data.join("groups/default.json").exists());

    let (code, report, stderr) = site.validate(TAG, &[]);
    assert_eq!(check(&report, "config.foreign-groups")["status"], "pass", "{report:#}");
    assert_eq!(code, 0, "validate after the fix: {stderr}\n{report:#}");
}

#[test]
fn a_failing_pull_and_a_crashing_image_leave_the_old_site_running() {
    let Some(site) = Site::new() else { return };
    site.up_ok(TAG, &[]);
    let before = (site.container(&site.matchbox), site.container(&site.dnsmasq));
    let state_before = fs::read(site.data().join(".cozyboot/state.json")).unwrap();

    let (code, json, _) = site.up("no-such-tag", &[]);
    assert_eq!(code, 1);
    let message = json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("no-such-tag") && message.contains("nothing was changed"),
        "{message}"
    );
    assert_eq!((site.container(&site.matchbox), site.container(&site.dnsmasq)), before);
    assert_eq!(
        fs::read(site.data().join(".cozyboot/state.json")).unwrap(),
        state_before
    );

    // The talos image is unchanged; only the new matchbox image exits at start.
    let talos = format!("{}/talos/cozystack-spin-only/talos", images::registry_prefix());
    registry_alias(&talos, TAG, "crashing");
    let (code, json, stderr) = site.up("crashing", &[]);
    assert_eq!(code, 1, "{stderr}");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("failed to start") && message.contains("started again"),
        "{message}"
    );
    let (id, _, running) = site.container(&site.matchbox);
    assert_eq!(id, before.0 .0, "the old matchbox is back under its name");
    assert!(running, "the old matchbox runs again");
    assert!(site.container(&site.dnsmasq).2, "dnsmasq runs");
    let (status, body) = site.http_get("/");
    assert_eq!((status, String::from_utf8_lossy(&body).trim()), (200, "matchbox"));
}

#[test]
fn rpc_gets_certificates_a_client_can_use() {
    let Some(site) = Site::new() else { return };
    site.up_ok(TAG, &["--rpc"]);
    let tls = site.data().join("tls");
    let cmd = docker(&["inspect", "-f", "{{json .Config.Cmd}}", &site.matchbox]);
    assert!(
        cmd.contains(&format!("-rpc-address={}:8081", site.server_ip())),
        "{cmd}"
    );
    use std::os::unix::fs::PermissionsExt;
    for key in ["server.key", "client.key"] {
        assert_eq!(fs::metadata(tls.join(key)).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let out = Command::new("timeout")
        .args(["10", "openssl", "s_client", "-brief", "-verify_return_error"])
        .arg(format!("-connect={}:8081", site.server_ip()))
        .args(["-CAfile", tls.join("ca.crt").to_str().unwrap()])
        .args(["-cert", tls.join("client.crt").to_str().unwrap()])
        .args(["-key", tls.join("client.key").to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Verification: OK") || text.contains("Verify return code: 0"),
        "{text}"
    );
}

#[test]
fn dry_run_changes_nothing_and_docker_unreachable_exits_3() {
    let Some(site) = Site::new() else { return };
    let report = site.up_ok(TAG, &["--dry-run"]);
    assert_eq!(report["dry_run"], true);
    assert!(!actions(&report, "create-container").is_empty());
    assert!(!site.data().exists(), "dry run wrote nothing");
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &format!("name={}", site.matchbox)]),
        ""
    );

    let out = Bin::cargo_bin("cozyboot")
        .unwrap()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .arg("up")
        .args(site.args(TAG))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/docker.sock") && stderr.contains("DOCKER_HOST"),
        "{stderr}"
    );
}

#[test]
fn a_second_up_on_the_same_data_dir_fails_clearly() {
    let Some(site) = Site::new() else { return };
    let lock_dir = site.data().join(".cozyboot");
    fs::create_dir_all(&lock_dir).unwrap();
    let held = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_dir.join("lock"))
        .unwrap();
    held.lock().unwrap();
    let (code, json, _) = site.up(TAG, &[]);
    assert_eq!(code, 1);
    assert!(json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("another `cozyboot up`"));
}

#[test]
fn status_and_down_find_the_containers_by_label() {
    let Some(site) = Site::new() else { return };
    site.up_ok(TAG, &[]);
    let site_arg = format!("--data-dir={}", site.data().display());
    let out = Bin::cargo_bin("cozyboot")
        .unwrap()
        .args(["status", "--json", &site_arg])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = status["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(
        names.contains(&site.matchbox.as_str()) && names.contains(&site.dnsmasq.as_str()),
        "{status:#}"
    );
    assert!(status["assets"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["arch"] == "arm64"));

    let out = Bin::cargo_bin("cozyboot")
        .unwrap()
        .args(["logs", "dnsmasq", "--tail", "50", &site_arg])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("started, version"));

    let out = Bin::cargo_bin("cozyboot")
        .unwrap()
        .args(["down", "--purge", "--json", &site_arg])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let label = format!("label=io.cozyboot.data-dir={}", site.data().display());
    assert_eq!(docker(&["ps", "-aq", "--filter", &label]), "");
    assert!(!site.data().join("assets/talos/arm64").exists());
    assert!(!site.data().join("profiles/cozystack-spin-only-arm64.json").exists());
    assert!(!site.data().join(".cozyboot").exists());
}

#[test]
fn serving_amd64_copies_the_x86_bootloaders_and_old_layouts_still_work() {
    let Some(site) = Site::new() else { return };
    // An installer-style image keeps its kernel under /usr/install/<arch>/.
    let matchbox = format!("{}/talos/cozystack-spin-only/matchbox", images::registry_prefix());
    registry_alias(&matchbox, TAG, "usr-install");
    let report = site.up_ok("usr-install", &["--arch=arm64,amd64"]);
    let assets = site.data().join("assets");
    for arch in ["arm64", "amd64"] {
        assert!(
            fs::metadata(assets.join("talos").join(arch).join("initramfs.xz"))
                .unwrap()
                .len()
                > 0
        );
    }
    let record: Value = serde_json::from_slice(&fs::read(site.data().join(".cozyboot/state.json")).unwrap()).unwrap();
    assert_eq!(record["assets"]["arm64"]["source"], "/usr/install/arm64", "{record:#}");

    // The image's own iPXE files, hidden in the container by the TFTP mount, are copied out.
    let efi = fs::read(assets.join("ipxe.efi")).unwrap();
    assert_eq!(&efi[..2], b"MZ");
    assert_eq!(
        cozyboot::artifacts::pe::machine(&efi).unwrap(),
        cozyboot::artifacts::pe::PeMachine::X86_64
    );
    assert!(fs::metadata(assets.join("undionly.kpxe")).unwrap().len() > 0);
    assert!(actions(&report, "copy-x86-bootloaders").len() == 1);
    // BIOS clients chain through undionly.kpxe, which reports arch=i386 to matchbox.
    let (status, body) = site.http_get("/ipxe?arch=i386&mac=52-54-00-00-00-01");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("/assets/talos/amd64/vmlinuz"));
}

#[test]
fn an_x86_binary_given_as_the_arm64_bootloader_is_refused() {
    let Some(site) = Site::new() else { return };
    fs::write(&site.arm64_efi, pe(0x8664)).unwrap();
    let (code, json, _) = site.up(TAG, &[]);
    assert_eq!(code, 1);
    let message = json["error"]["message"].as_str().unwrap();
    assert!(message.contains("X86_64") || message.contains("x86"), "{message}");
    assert!(message.contains("arm64"), "{message}");
    assert!(!site.data().exists(), "refused before anything was touched");
}
