//! Bad input is refused before anything is touched, with a message naming the field, the
//! value, the problem and the fix, and exit code 2.

use crate::support;

use assert_cmd::Command as Bin;
use cozyboot::error::exit;
use std::path::Path;
use support::bad_inputs::{case, cases, resolve, Case};

#[test]
fn every_bad_input_is_refused_with_field_problem_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cases = cases();
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for case in &cases {
        match resolve(case, dir.path()) {
            Ok(_) => failures.push(format!("{}: accepted", case.name)),
            Err(e) => {
                let msg = e.to_string();
                if e.exit_code() != exit::CONFIG {
                    failures.push(format!("{}: exit code {}", case.name, e.exit_code()));
                }
                for fragment in &case.expect {
                    if !msg.contains(fragment) {
                        failures.push(format!("{}: missing {fragment:?} in:\n{msg}", case.name));
                    }
                }
                // Every problem prints a `fix:` line; it must say something.
                let fixes: Vec<&str> = msg
                    .lines()
                    .filter_map(|l| l.split_once("fix:").map(|(_, f)| f.trim()))
                    .collect();
                if fixes.is_empty() || fixes.iter().any(|f| f.len() < 10) {
                    failures.push(format!("{}: a problem without a fix in:\n{msg}", case.name));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn all_problems_are_reported_at_once() {
    let case = case(
        "several",
        &[
            "--iface=eth0",
            "--tag=-x",
            "--http-port=0",
            "--dhcp-range=10.20.13.200,10.20.13.150",
        ],
        &[],
    );
    let err = resolve(&case, Path::new("/tmp")).unwrap_err().to_string();
    assert!(err.contains("3 problems"), "{err}");
    assert!(err.contains("tag") && err.contains("http-port") && err.contains("dhcp-range"));
}

#[test]
fn flags_beat_environment_beat_file_beat_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let case = Case {
        name: "layers",
        flags: vec!["--iface=eth0".into(), "--tag=v3".into()],
        env: vec![("COZYBOOT_TAG", "v2"), ("COZYBOOT_HTTP_PORT", "9090")],
        file: Some("tag: v1\nhttp-port: 8000\nvariant: spin-tailscale\n"),
        expect: vec![],
    };
    let r = resolve(&case, dir.path()).unwrap();
    assert_eq!(r.settings.tag, "v3");
    assert_eq!(r.settings.http_port, 9090);
    assert_eq!(r.settings.variant.name(), "spin-tailscale");
    assert_eq!(r.settings.data_dir, Path::new("/opt/matchbox"));
    assert_eq!(r.origins["tag"].to_string(), "flag --tag");
    assert_eq!(r.origins["http-port"].to_string(), "environment COZYBOOT_HTTP_PORT");
    assert!(r.origins["variant"].to_string().starts_with("config file"));
    assert_eq!(r.origins["data-dir"].to_string(), "default");
    assert_eq!(r.origins["server-ip"].to_string(), "derived: IPv4 address of eth0");
}

/// The process maps configuration errors to exit code 2 and, with --json, still prints one
/// JSON document listing every problem.
#[test]
fn the_binary_exits_2_and_reports_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = Bin::cargo_bin("cozyboot")
        .unwrap()
        .current_dir(dir.path())
        .env_clear()
        .env("COZYBOOT_SITES_DIR", dir.path().join("sites"))
        .args([
            "render",
            "--json",
            "--iface=nosuch0",
            "--server-ip=10.1.1.1",
            "--subnet=10.1.1.0/24",
            "--tag=-x",
        ])
        .args(["--output", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit::CONFIG));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "config");
    assert_eq!(doc["error"]["problems"][0]["field"], "tag");
    assert!(String::from_utf8_lossy(&out.stderr).contains("fix:"));
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing is written on error"
    );
}

#[test]
fn the_binary_rejects_unknown_flags_with_exit_2() {
    let out = Bin::cargo_bin("cozyboot")
        .unwrap()
        .env_clear()
        .args(["render", "--variant=spin-all"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit::CONFIG));
    assert!(String::from_utf8_lossy(&out.stderr).contains("spin-only"));
}
