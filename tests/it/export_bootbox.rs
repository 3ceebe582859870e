//! `cozyboot export bootbox` end to end: a recorded site (on `lo`, never started) and a
//! journal of real boots (an amd64 UEFI and an arm64 one) give BootBox's values; the arm64
//! machine is left out with the reason, or included with `--force`; `--check` compares a
//! values file. Reads files only: no Docker, no traffic.

use crate::support::journey_log;
use assert_cmd::Command as Bin;
use cozyboot::journey::event::Source;
use cozyboot::settings::{self, net::SystemNet, Inputs, Purpose, Raw};
use cozyboot::site::record::{self, Record};
use serde_json::Value;
use std::path::Path;

/// A site recorded as `up` records it (full DHCP on `lo`), whose journal holds the boots.
fn site() -> tempfile::TempDir {
    site_with(serde_json::json!({
        "dhcp-range": "127.0.0.100,127.0.0.150",
        "gateway": "127.0.0.254",
        "dns": ["127.0.0.53"],
        "lease-time": "2h",
    }))
}

fn site_with(dhcp: Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut flags = serde_json::json!({ "iface": "lo", "server-ip": "127.0.0.1", "data-dir": dir.path() });
    flags.as_object_mut().unwrap().extend(dhcp.as_object().unwrap().clone());
    let flags: Raw = serde_json::from_value(flags).unwrap();
    let resolved = settings::resolve(Inputs {
        config_file: None,
        env: &|_| None,
        flags,
        host: &SystemNet,
        purpose: Purpose::Serve,
        site: &settings::no_site,
    })
    .unwrap();
    record::save(&Record::of(&resolved, dir.path())).unwrap();
    let logs: Vec<(Source, String)> = [
        (Source::Dnsmasq, "up-x64-full.dnsmasq.log"),
        (Source::Dnsmasq, "arm64-full.dnsmasq.log"),
        (Source::Matchbox, "arm64-full-mac-urls.matchbox.log"),
    ]
    .into_iter()
    .map(|(source, log)| (source, journey_log(log)))
    .collect();
    crate::support::save_journal(dir.path(), &logs);
    dir
}

fn export(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let sites = tempfile::tempdir().unwrap();
    let out = Bin::cargo_bin("cozyboot")
        .unwrap()
        .env("COZYBOOT_SITES_DIR", sites.path())
        .args(["export", "bootbox", "--data-dir"])
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_journals_amd64_machine_becomes_bootbox_values_and_arm64_is_left_out() {
    let dir = site();
    let (code, yaml, err) = export(dir.path(), &[]);
    assert_eq!(code, 0, "{yaml}{err}");
    let values: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    let machines = values["machines"].as_sequence().unwrap();
    assert_eq!(machines.len(), 1, "{yaml}");
    let m = &machines[0];
    assert_eq!(m["mac"][0].as_str(), Some("52:54:00:c0:0b:07"));
    assert_eq!(m["arch"].as_str(), Some("x86_64"));
    assert_eq!(m["uefi"].as_bool(), Some(true));
    assert_eq!(m["ip"]["address"].as_str(), Some("10.213.136.120"));
    assert_eq!(m["ip"]["gateway"].as_str(), Some("127.0.0.254"));
    assert_eq!(m["ip"]["netmask"].as_str(), Some("255.0.0.0"));
    assert_eq!(m["leaseTime"].as_u64(), Some(7200));
    assert!(
        err.contains("left out 52:54:00:c0:0b:11") && err.contains("amd64 only"),
        "{err}"
    );
    assert!(err.contains("cozyboot down --data-dir"), "the next steps: {err}");

    // --json: the values and what was left out, in one document.
    let (code, json, _) = export(dir.path(), &["--force"]);
    assert_eq!(code, 0);
    assert!(json.contains("aarch64"), "--force includes the arm64 machine: {json}");
    let sites = tempfile::tempdir().unwrap();
    let out = Bin::cargo_bin("cozyboot")
        .unwrap()
        .env("COZYBOOT_SITES_DIR", sites.path())
        .args(["--json", "export", "bootbox", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["left_out"][0]["mac"], "52:54:00:c0:0b:11", "{doc:#}");
    assert_eq!(doc["values"]["machines"][0]["mac"][0], "52:54:00:c0:0b:07");

    // --check: the file just written is equal; one missing the machine differs (exit 1).
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let (code, out, err) = export(dir.path(), &["--check", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    std::fs::write(&file, "machines: []\n").unwrap();
    let (code, out, err) = export(dir.path(), &["--check", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("added    52:54:00:c0:0b:07"), "{out}");
}

#[test]
fn bad_input_is_a_clear_error_with_exit_2() {
    let dir = site();
    let (code, _, err) = export(dir.path(), &["--check", "/nonexistent/values.yaml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read the values file"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    let (code, _, err) = export(empty.path(), &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no journal of machines"), "{err}");

    // A journal that is not one: named, with what to do, and left as it is.
    std::fs::write(dir.path().join(".cozyboot/journey.json"), "not json").unwrap();
    let (code, _, err) = export(dir.path(), &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is not a journal cozyboot can read") && err.contains("fix: move it away"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join(".cozyboot/journey.json")).unwrap(),
        "not json"
    );

    // No --data-dir and no site recorded on this host.
    let sites = tempfile::tempdir().unwrap();
    let out = Bin::cargo_bin("cozyboot")
        .unwrap()
        .env("COZYBOOT_SITES_DIR", sites.path())
        .env_remove("COZYBOOT_DATA_DIR")
        .current_dir(empty.path())
        .args(["export", "bootbox"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("there is no journal of machines to export"), "{err}");
}

#[test]
fn a_proxy_site_needs_the_routers_gateway_and_lease_time() {
    let dir = site_with(serde_json::json!({}));
    let (code, out, err) = export(dir.path(), &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("the site runs proxy DHCP") && err.contains("--gateway and --lease-time"),
        "{err}"
    );
    let (code, yaml, err) = export(dir.path(), &["--gateway", "127.0.0.254", "--lease-time", "600"]);
    assert_eq!(code, 0, "{err}");
    let values: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    let m = &values["machines"][0];
    assert_eq!(m["ip"]["gateway"].as_str(), Some("127.0.0.254"), "{yaml}");
    assert_eq!(m["leaseTime"].as_u64(), Some(600), "{yaml}");
}
