//! `cozyboot nodes` end to end, from a journal: the machines a replaced container saw are
//! still known, `--json` is one document and `--wait` gates on a stage. Needs the Docker
//! Engine only to find that this data dir has no containers; touches none.

use assert_cmd::Command as Bin;
use cozyboot::journey::event::Source;
use cozyboot::journey::journal::{Entry, Journal, SCHEMA};
use cozyboot::journey::{dnsmasq_log, matchbox_log};
use serde_json::Value;
use std::path::Path;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/journey")
            .join(name),
    )
    .unwrap()
}

/// A data dir whose journal holds a real arm64 boot (through the initramfs) and a real
/// arch-12 failure of another machine, as if their containers were gone.
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut events: Vec<Entry> = dnsmasq_log::events(&fixture("arm64-full.dnsmasq.log"))
        .into_iter()
        .chain(dnsmasq_log::events(
            &fixture("arch-12.dnsmasq.log").replace("52:54:00:c0:0b:11", "52:54:00:c0:0b:12"),
        ))
        .map(|event| Entry {
            source: Some(Source::Dnsmasq),
            event,
        })
        .collect();
    events.extend(
        matchbox_log::events(&fixture("arm64-full-mac-urls.matchbox.log"))
            .into_iter()
            .map(|event| Entry {
                source: Some(Source::Matchbox),
                event,
            }),
    );
    Journal {
        schema: SCHEMA.into(),
        events,
    }
    .save(dir.path())
    .unwrap();
    dir
}

fn nodes(dir: &Path, args: &[&str]) -> Option<(i32, String)> {
    let sites = tempfile::tempdir().unwrap();
    let out = Bin::cargo_bin("cozyboot")
        .unwrap()
        .env("COZYBOOT_SITES_DIR", sites.path())
        .current_dir(dir)
        .args(["nodes", "--no-probe", "--data-dir"])
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if code == 3 {
        eprintln!("skipped: the Docker Engine could not be reached: {text}");
        return None;
    }
    Some((code, text))
}

#[test]
fn machines_of_replaced_containers_are_still_known() {
    let dir = data_dir();
    let Some((code, text)) = nodes(dir.path(), &[]) else {
        return;
    };
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("52:54:00:c0:0b:11  arm64 (client-arch 11), iPXE arm64  10.213.167.130"),
        "{text}"
    );
    assert!(text.contains("stopped before talos"), "{text}");
    assert!(
        text.contains("52:54:00:c0:0b:12") && text.contains("client-arch,12"),
        "{text}"
    );
}

#[test]
fn json_is_one_document() {
    let dir = data_dir();
    let Some((code, text)) = nodes(dir.path(), &["--json"]) else {
        return;
    };
    assert_eq!(code, 0, "{text}");
    let start = text.find('{').unwrap();
    let doc: Value = serde_json::Deserializer::from_str(&text[start..])
        .into_iter()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(doc["schema"], "cozyboot.nodes/v1");
    assert_eq!(doc["machines"].as_array().unwrap().len(), 2);
}

#[test]
fn wait_passes_when_enough_machines_got_there_and_fails_with_the_table() {
    let dir = data_dir();
    let Some((code, text)) = nodes(dir.path(), &["--wait", "1", "--stage", "initramfs", "--timeout", "0"]) else {
        return;
    };
    assert_eq!(code, 0, "{text}");
    let Some((code, text)) = nodes(dir.path(), &["--wait", "2", "--stage", "kernel", "--timeout", "0"]) else {
        return;
    };
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("1 of 2 machine(s) reached `kernel`"), "{text}");
    assert!(text.contains("not enough machines reached the stage in time"), "{text}");
    assert!(text.contains("stopped before dhcp"), "{text}");
}
