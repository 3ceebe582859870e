//! The boot site remembers itself: after `up`, the other commands need no settings. Real
//! Docker Engine, local registry, `--internal` networks (tests/it/support/site.rs); each test
//! has its own registry of sites (`COZYBOOT_SITES_DIR`), never the host's.

use crate::support;

use assert_cmd::Command as Bin;
use serde_json::Value;
use std::path::{Path, PathBuf};
use support::site::{docker, Site, TAG};

/// `cozyboot <args>` with nothing but the test's registry of sites: run from an empty
/// directory (no `./cozyboot.yaml`, no relative paths to lean on) and without any
/// `COZYBOOT_*` setting from the environment.
fn bare(site: &Site, cwd: &Path, args: &[&str]) -> (i32, Value, String) {
    let mut bin: Bin = site.cozyboot();
    bin.current_dir(cwd);
    for (key, _) in std::env::vars() {
        if key.starts_with("COZYBOOT_") && key != "COZYBOOT_SITES_DIR" && key != "COZYBOOT_TEST_HOST_IPXE_ARM64" {
            bin.env_remove(key);
        }
    }
    let out = bin.args(args).output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), json, text)
}

fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {report:#}"))
}

fn failing(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| format!("{}: {} {}", c["id"], c["finding"], c["evidence"]))
        .collect()
}

fn data_dirs(status: &Value) -> Vec<PathBuf> {
    status["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| PathBuf::from(s["data_dir"].as_str().unwrap()))
        .collect()
}

/// A second site on the first one's network: its own data dir, names and address.
struct Second {
    data: PathBuf,
    matchbox: String,
    dnsmasq: String,
}

impl Second {
    fn up(site: &Site) -> Second {
        let second = Second {
            data: site.dir.path().join("second"),
            matchbox: format!("{}-b", site.matchbox),
            dnsmasq: format!("{}-b", site.dnsmasq),
        };
        let server_ip = format!("10.215.{}.11", site.subnet);
        let args: Vec<String> = site
            .args(TAG)
            .into_iter()
            .map(|a| match a.split_once('=') {
                Some(("--data-dir", _)) => format!("--data-dir={}", second.data.display()),
                Some(("--matchbox-name", _)) => format!("--matchbox-name={}", second.matchbox),
                Some(("--dnsmasq-name", _)) => format!("--dnsmasq-name={}", second.dnsmasq),
                Some(("--server-ip", _)) => format!("--server-ip={server_ip}"),
                Some(("--dhcp-range", _)) => format!("--dhcp-range=10.215.{0}.160,10.215.{0}.190", site.subnet),
                _ => a,
            })
            .collect();
        let out = site
            .cozyboot()
            .args(["up", "--json", "--tag=latest"])
            .args(args.iter().filter(|a| !a.starts_with("--tag=")))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "second up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        second
    }
}

impl Drop for Second {
    fn drop(&mut self) {
        for name in [&self.dnsmasq, &self.matchbox] {
            docker(&["rm", "-f", name]);
        }
    }
}

#[test]
fn after_up_every_command_finds_the_site_with_no_settings() {
    let Some(site) = Site::new() else { return };
    site.up_ok(TAG, &[]);
    let a = site.data();
    let record = a.join(".cozyboot/site.json");
    assert!(record.is_file(), "up records the site's settings");
    let elsewhere = tempfile::tempdir().unwrap();
    let cwd = elsewhere.path();

    // validate: nothing given, the recorded site validated.
    let (code, report, text) = bare(&site, cwd, &["validate", "--json"]);
    assert_eq!(code, 0, "bare validate passes: {:#?}\n{text}", failing(&report));
    let recorded = check(&report, "config.site-settings");
    assert_eq!(recorded["status"], "pass", "{recorded:#}");
    assert!(recorded["evidence"][0]
        .as_str()
        .unwrap()
        .contains(&record.display().to_string()));
    assert_eq!(check(&report, "containers.matchbox.running")["status"], "pass");
    assert_eq!(check(&report, "matchbox.health")["status"], "pass");

    // Given settings win over the recorded ones, and validate says where they differ.
    let (code, report, text) = bare(&site, cwd, &["validate", "--json", "--lease-time=6h"]);
    assert_eq!(code, 0, "a warning does not fail: {text}");
    let recorded = check(&report, "config.site-settings");
    assert_eq!(recorded["status"], "warn", "{recorded:#}");
    assert_eq!(
        recorded["evidence"][0],
        "lease-time: running 12h (recorded), given 6h (flag --lease-time)"
    );

    // render --print-settings names the record as the source.
    let (code, settings, text) = bare(&site, cwd, &["render", "--print-settings", "--json"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(settings["site_file"], record.display().to_string());
    assert_eq!(settings["settings"]["server_ip"], site.server_ip());
    assert_eq!(settings["origins"]["server-ip"]["kind"], "site");
    assert_eq!(
        settings["origins"]["server-ip"]["detail"]["given"],
        serde_json::json!({"kind": "flag", "detail": "--server-ip"})
    );

    // status, logs: the site, with no flags.
    let (code, status, text) = bare(&site, cwd, &["status", "--json"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(data_dirs(&status), vec![a.clone()]);
    assert_eq!(status["sites"][0]["server_ip"], site.server_ip());
    let names: Vec<&str> = status["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(names.contains(&site.matchbox.as_str()), "{status:#}");
    let (code, _, text) = bare(&site, cwd, &["logs", "dnsmasq", "--tail=20"]);
    assert!(code == 0 && text.contains("started, version"), "{text}");

    // A second recorded site: a bare call cannot tell which is meant, and lists both.
    let second = Second::up(&site);
    let (code, error, text) = bare(&site, cwd, &["validate", "--json"]);
    assert_eq!(code, 2, "{text}");
    let message = error["error"]["message"].as_str().unwrap();
    for expected in [
        "2 boot sites are recorded on this host".to_string(),
        a.display().to_string(),
        second.data.display().to_string(),
        format!("iface eth0, spin-only {TAG}, server http://{}:8080", site.server_ip()),
        "spin-only latest".to_string(),
        "--data-dir".to_string(),
    ] {
        assert!(message.contains(&expected), "{expected:?} in:\n{message}");
    }
    let (code, _, text) = bare(&site, cwd, &["down"]);
    assert_eq!(code, 2, "a bare down with two sites acts on neither: {text}");
    assert!(site.container(&second.matchbox).2, "nothing was stopped");
    let (code, status, text) = bare(&site, cwd, &["status", "--json"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(data_dirs(&status), vec![a.clone(), second.data.clone()]);

    // --data-dir picks one.
    let b_arg = format!("--data-dir={}", second.data.display());
    let (code, report, text) = bare(&site, cwd, &["validate", "--json", &b_arg]);
    assert_eq!(code, 0, "{:#?}\n{text}", failing(&report));
    assert_eq!(check(&report, "config.site-settings")["status"], "pass");
    assert!(check(&report, "matchbox.health")["evidence"]
        .to_string()
        .contains(&format!("10.215.{}.11", site.subnet)));

    // down --purge forgets the site; the other is found again with no settings.
    let (code, down, text) = bare(&site, cwd, &["down", "--purge", "--json", &b_arg]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        down["forgotten"],
        serde_json::json!([second.data.display().to_string()])
    );
    assert!(!second.data.join(".cozyboot/site.json").exists());
    let (code, report, text) = bare(&site, cwd, &["validate", "--json"]);
    assert_eq!(code, 0, "{:#?}\n{text}", failing(&report));

    // down without --purge keeps the record: the stopped site is still found and shown.
    let (code, _, text) = bare(&site, cwd, &["down"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &format!("name=^{}$", site.matchbox)]),
        ""
    );
    assert!(record.is_file(), "down keeps the record");
    let (code, status, text) = bare(&site, cwd, &["status", "--json"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(data_dirs(&status), vec![a.clone()], "a stopped site is still listed");
    let (code, report, text) = bare(&site, cwd, &["validate", "--json"]);
    assert_eq!(
        code, 1,
        "the stopped site is validated (and fails), not unknown: {text}"
    );
    assert_eq!(check(&report, "containers.matchbox.running")["status"], "fail");
}
