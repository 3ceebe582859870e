//! Where `up` gets the arm64 iPXE binary when `--ipxe-arm64` is not given, against the real
//! Docker Engine and the local registry (see tests/it/support/site.rs). A tiny HTTP server on
//! 127.0.0.1 stands in for `ipxe-arm64-url` (boot.ipxe.org) and counts its requests; the
//! host's `/usr/lib/ipxe/ipxe-arm64.efi` is replaced by a path in the test's own directory.

use crate::support;

use assert_cmd::Command as Bin;
use serde_json::Value;
use sha2::Digest;
use std::fs;
use std::path::{Path, PathBuf};
use support::http::{closed_url, FileServer};
use support::pe::{pe, pe_sized};
use support::site::{actions, docker, Site, TAG};

const PATH: &str = "/arm64-efi/ipxe.efi";

/// Debian trixie's real arm64 iPXE when scripts/firmware-artifacts has laid it out, else a
/// stand-in arm64 PE of the same order of size.
fn arm64_ipxe() -> Vec<u8> {
    let dir = std::env::var_os("COZYBOOT_FIRMWARE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(support::firmware::DEFAULT_ARTIFACTS));
    fs::read(dir.join("ipxe/ipxe-arm64.efi")).unwrap_or_else(|_| pe_sized(0xAA64, 1 << 20, 0x5A))
}

/// A site whose `up` has no `--ipxe-arm64`, no host package, and `url` as `ipxe-arm64-url`.
fn site() -> Option<Site> {
    let mut site = Site::new()?;
    site.explicit_ipxe_arm64 = false;
    Some(site)
}

fn url_flag(url: &str) -> String {
    format!("--ipxe-arm64-url={url}")
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

fn installs(report: &Value) -> Vec<Value> {
    actions(report, "install-arm64-bootloader")
}

fn error_message(json: &Value) -> String {
    json["error"]["message"].as_str().unwrap_or_default().to_string()
}

/// Nothing of the site exists: no data dir, no container.
fn assert_untouched(site: &Site) {
    assert!(!site.data().exists(), "refused before anything was written");
    for name in [&site.matchbox, &site.dnsmasq] {
        assert_eq!(
            docker(&["ps", "-aq", "--filter", &format!("name=^{name}$")]),
            "",
            "{name} was not created"
        );
    }
}

#[test]
fn without_ipxe_arm64_the_binary_is_downloaded_once_and_recorded() {
    let Some(site) = site() else { return };
    let binary = arm64_ipxe();
    let server = FileServer::serve(PATH, binary.clone());
    let url = server.url(PATH);

    let first = site.up_ok(TAG, &[&url_flag(&url)]);
    assert_eq!(server.requests(), 1, "downloaded once: {first:#}");
    let install = installs(&first);
    assert_eq!(install.len(), 1, "{first:#}");
    assert_eq!(
        (install[0]["kind"].as_str(), install[0]["source"].as_str()),
        (Some("download"), Some(url.as_str()))
    );
    let assets = site.data().join("assets");
    assert_eq!(
        fs::read(assets.join("bootaa64.efi")).unwrap(),
        binary,
        "served as bootaa64.efi"
    );
    let state: Value = serde_json::from_slice(&fs::read(site.data().join(".cozyboot/state.json")).unwrap()).unwrap();
    let record = &state["arm64_bootloader"];
    assert_eq!(record["source_kind"], "download", "{state:#}");
    assert_eq!(record["source"], url.as_str());
    assert_eq!(record["sha256"], sha256(&binary));
    assert_eq!(record["size"], binary.len() as u64);

    // A second up changes nothing and asks the server nothing.
    let second = site.up_ok(TAG, &[&url_flag(&url)]);
    assert_eq!(server.requests(), 1, "no new request: {second:#}");
    assert!(installs(&second).is_empty(), "{second:#}");
    assert_eq!(actions(&second, "keep").len(), 2);

    // status shows where it came from.
    let out = Bin::cargo_bin("cozyboot")
        .unwrap()
        .args(["status", "--json", &format!("--data-dir={}", site.data().display())])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let shown = &status["bootloaders"][0];
    assert_eq!(
        (&shown["source_kind"], &shown["source"], &shown["sha256"]),
        (
            &Value::from("download"),
            &Value::from(url.as_str()),
            &Value::from(sha256(&binary))
        ),
        "{status:#}"
    );

    // Lost from the assets dir: put back from the cache, still without a request.
    fs::remove_file(assets.join("bootaa64.efi")).unwrap();
    let third = site.up_ok(TAG, &[&url_flag(&url)]);
    assert_eq!(server.requests(), 1, "installed from the cached copy: {third:#}");
    let install = installs(&third);
    assert_eq!(install.len(), 1, "{third:#}");
    assert!(
        install[0]["cached"]
            .as_str()
            .is_some_and(|c| c.contains(".cozyboot/cache")),
        "{third:#}"
    );
    assert_eq!(fs::read(assets.join("bootaa64.efi")).unwrap(), binary);
}

#[test]
fn an_x86_binary_at_the_download_url_is_refused_and_nothing_is_changed() {
    let Some(site) = site() else { return };
    let server = FileServer::serve(PATH, pe(0x8664));
    let (code, json, stderr) = site.up(TAG, &[&url_flag(&server.url(PATH))]);
    assert_eq!(code, 1, "{stderr}");
    let message = error_message(&json);
    assert!(message.contains(&server.url(PATH)), "names the URL: {message}");
    assert!(message.contains("X86_64") && message.contains("arm64"), "{message}");
    assert!(message.contains("nothing was changed"), "{message}");
    assert_eq!(server.requests(), 1);
    assert_untouched(&site);
}

#[test]
fn offline_without_any_source_fails_listing_every_way_and_changes_nothing() {
    let Some(site) = site() else { return };
    let url = closed_url(PATH);
    let (code, json, stderr) = site.up(TAG, &[&url_flag(&url)]);
    assert_eq!(code, 1, "{stderr}");
    let message = error_message(&json);
    for way in [
        "no arm64 iPXE binary",
        &url,
        "nothing was changed",
        "`ipxe` package",
        "/usr/lib/ipxe/ipxe-arm64.efi",
        "--ipxe-arm64 PATH|URL",
        "--ipxe-arm64-url",
        &format!("{}/assets/bootaa64.efi", site.data().display()),
    ] {
        assert!(message.contains(way), "the message lacks {way:?}:\n{message}");
    }
    assert_untouched(&site);
}

#[test]
fn dry_run_offline_succeeds_and_names_the_download() {
    let Some(site) = site() else { return };
    let url = closed_url(PATH);
    let report = site.up_ok(TAG, &["--dry-run", &url_flag(&url)]);
    let install = installs(&report);
    assert_eq!(install.len(), 1, "{report:#}");
    assert_eq!(
        (install[0]["kind"].as_str(), install[0]["source"].as_str()),
        (Some("download"), Some(url.as_str()))
    );
    assert_eq!(install[0]["reason"], "not installed yet");
    assert_untouched(&site);

    // The human plan says the same.
    let out = Bin::cargo_bin("cozyboot")
        .unwrap()
        .env("COZYBOOT_TEST_HOST_IPXE_ARM64", &site.host_ipxe_arm64)
        .arg("up")
        .arg("--dry-run")
        .args(site.args(TAG))
        .arg(url_flag(&url))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains(&format!(
            "install the arm64 iPXE binary from {url} (download; not installed yet)"
        )),
        "{text}"
    );
}

#[test]
fn the_host_package_wins_over_a_download_and_an_explicit_path_over_both() {
    let Some(mut site) = site() else { return };
    let server = FileServer::serve(PATH, arm64_ipxe());
    let host: &Path = &site.dir.path().join("usr/lib/ipxe/ipxe-arm64.efi");
    fs::create_dir_all(host.parent().unwrap()).unwrap();
    fs::write(host, pe_sized(0xAA64, 4096, 1)).unwrap();
    site.host_ipxe_arm64 = host.to_path_buf();
    let report = site.up_ok(TAG, &["--dry-run", &url_flag(&server.url(PATH))]);
    let install = installs(&report);
    assert_eq!(
        (install[0]["kind"].as_str(), install[0]["source"].as_str()),
        (Some("host-package"), host.to_str()),
        "{report:#}"
    );

    fs::write(&site.arm64_efi, pe(0xAA64)).unwrap();
    site.explicit_ipxe_arm64 = true;
    let report = site.up_ok(TAG, &["--dry-run", &url_flag(&server.url(PATH))]);
    let install = installs(&report);
    assert_eq!(
        (install[0]["kind"].as_str(), install[0]["source"].as_str()),
        (Some("explicit"), site.arm64_efi.to_str()),
        "{report:#}"
    );
    assert_eq!(server.requests(), 0, "a dry run downloads nothing");
    assert!(!site.data().exists());
}

#[test]
fn a_binary_placed_in_the_assets_dir_is_kept_recorded_and_not_purged() {
    let Some(mut site) = site() else { return };
    let server = FileServer::serve(PATH, arm64_ipxe());
    // Even with a host package there, the file the user put in place is the one served.
    let host = site.dir.path().join("host-ipxe-arm64.efi");
    fs::write(&host, pe_sized(0xAA64, 4096, 1)).unwrap();
    site.host_ipxe_arm64 = host;
    let placed = site.data().join("assets/bootaa64.efi");
    fs::create_dir_all(placed.parent().unwrap()).unwrap();
    let mine = pe_sized(0xAA64, 2048, 9);
    fs::write(&placed, &mine).unwrap();

    let first = site.up_ok(TAG, &[&url_flag(&server.url(PATH))]);
    let install = installs(&first);
    assert_eq!(
        (install[0]["kind"].as_str(), install[0]["source"].as_str()),
        (Some("placed"), placed.to_str()),
        "{first:#}"
    );
    assert_eq!(fs::read(&placed).unwrap(), mine, "the placed file is served as it is");
    let second = site.up_ok(TAG, &[&url_flag(&server.url(PATH))]);
    assert!(installs(&second).is_empty(), "{second:#}");
    assert_eq!(server.requests(), 0);

    let out = Bin::cargo_bin("cozyboot")
        .unwrap()
        .args(["down", "--purge", &format!("--data-dir={}", site.data().display())])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read(&placed).unwrap(), mine, "down --purge leaves the user's file");
    assert!(!site.data().join(".cozyboot").exists());
}
