//! `cozyboot nodes` end to end, from a journal: the machines a replaced container saw are
//! still known, `--json` is one document and `--wait` gates on a stage. Needs the Docker
//! Engine only to find that this data dir has no containers; touches none.

use crate::support;

use crate::support::journey_log;
use assert_cmd::Command as Bin;
use cozyboot::journey::dnsmasq_log;
use cozyboot::journey::event::Source;
use cozyboot::journey::journal::{Entry, Journal};
use serde_json::Value;
use std::path::Path;

/// A data dir whose journal holds a real arm64 boot (through the initramfs) and a real
/// arch-12 failure of another machine, as if their containers were gone.
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    support::save_journal(
        dir.path(),
        &[
            (Source::Dnsmasq, journey_log("arm64-full.dnsmasq.log")),
            (
                Source::Dnsmasq,
                journey_log("arch-12.dnsmasq.log").replace("52:54:00:c0:0b:11", "52:54:00:c0:0b:12"),
            ),
            (Source::Matchbox, journey_log("arm64-full-mac-urls.matchbox.log")),
        ],
    );
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
        unreachable_engine(&text);
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

/// The journal of [`data_dir`] with a third machine: a real x86 BIOS boot (proxy mode).
fn add_bios_machine(dir: &Path) {
    let mut journal = Journal::load(dir).unwrap();
    let bios = dnsmasq_log::events(&journey_log("bios-proxy.dnsmasq.log"));
    journal.events.extend(bios.into_iter().map(|event| Entry {
        source: Some(Source::Dnsmasq),
        event,
    }));
    journal.save(dir).unwrap();
}

const BIOS_MAC: &str = "52:54:00:c0:0b:00";

/// On a terminal `--watch` clears the screen and draws the table again every 2 s, and stops
/// by itself at `--timeout`. Run under `script`, which gives it a pseudo-terminal.
#[test]
fn watch_redraws_on_a_terminal_until_its_timeout() {
    let dir = data_dir();
    let sites = tempfile::tempdir().unwrap();
    let cmd = format!(
        "{} nodes --no-probe --watch --timeout 5 --data-dir {}",
        assert_cmd::cargo::cargo_bin("cozyboot").display(),
        dir.path().display()
    );
    let out = Bin::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .env("COZYBOOT_SITES_DIR", sites.path())
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.code() == Some(3) {
        unreachable_engine(&text);
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{text}");
    let clears = text.matches("\x1b[2J\x1b[H").count();
    assert!(clears >= 3, "{clears} redraws in 5 s:\n{text}");
    // Every redraw is a whole table: as many rows of the machine as redraws.
    assert!(text.matches("52:54:00:c0:0b:11").count() >= clears, "{text}");
}

/// `--watch` shows a machine that turns up while it runs (here: written into the journal, as a
/// container's log would bring it); on a pipe the tables follow one another, with no escape
/// codes.
#[test]
fn watch_shows_a_machine_that_turns_up_while_it_runs() {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    let dir = data_dir();
    let sites = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("cozyboot"))
        .env("COZYBOOT_SITES_DIR", sites.path())
        .args(["nodes", "--no-probe", "--watch", "--timeout", "40", "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let reader = {
        let seen = Arc::clone(&seen);
        let mut stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let wait_for = |needle: &str, within: Duration, mut each: Box<dyn FnMut() + '_>| -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if seen.lock().unwrap().contains(needle) {
                return true;
            }
            each();
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    };
    let first = wait_for("52:54:00:c0:0b:11", Duration::from_secs(20), Box::new(|| {}));
    let exited = child.try_wait().unwrap();
    if !first && exited.is_some_and(|s| s.code() == Some(3)) {
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        unreachable_engine(&err);
        return;
    }
    assert!(first, "no first table: {}", seen.lock().unwrap());
    assert!(!seen.lock().unwrap().contains(BIOS_MAC));
    // `nodes` saves the journal on every round; write the new machine until a round kept it.
    let turned_up = wait_for(
        BIOS_MAC,
        Duration::from_secs(20),
        Box::new(|| add_bios_machine(dir.path())),
    );
    let _ = child.kill();
    let _ = child.wait();
    reader.join().unwrap();
    let text = seen.lock().unwrap().clone();
    assert!(turned_up, "the new machine never showed:\n{text}");
    assert!(!text.contains('\x1b'), "escape codes on a pipe:\n{text}");
    assert!(
        text.matches("52:54:00:c0:0b:11").count() >= 2,
        "one table after another:\n{text}"
    );
}

/// Without the Docker Engine `nodes` cannot tell which containers are the site's: where tests
/// must run that fails the test, elsewhere it is reported as skipped.
fn unreachable_engine(text: &str) {
    support::guard::skip::<()>(None, &format!("the Docker Engine could not be reached: {text}"));
}

/// Machines declared in the config file: named next to their MAC, the one never seen listed as
/// such, and the stages since `power on` timed from it (docs/fleet.md "Declaring machines").
#[test]
fn declared_machines_are_named_and_timed_from_power_on() {
    let dir = data_dir();
    std::fs::write(
        dir.path().join("cozyboot.yaml"),
        format!(
            "iface: lo\ndata-dir: {}\nmachines:\n- {{hostname: node1, mac: '52:54:00:c0:0b:11'}}\n- {{hostname: spare, mac: '52:54:00:aa:00:09'}}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut record = cozyboot::journey::powered::PowerOns::default();
    let at = |t: &str| cozyboot::journey::clock::parse_rfc3339(t).unwrap();
    // The captured boot fetched /boot.ipxe at 19:22:27, its initramfs at 19:22:28.
    record.record("52:54:00:c0:0b:11", at("2026-11-29T19:21:57Z"));
    record.save(dir.path()).unwrap();
    let Some((code, text)) = nodes(dir.path(), &[]) else {
        return;
    };
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("MAC                HOSTNAME  ARCH"), "{text}");
    assert!(text.contains("52:54:00:c0:0b:11  node1     arm64"), "{text}");
    assert!(text.contains("boot-ipxe 19:22:27 (+30s) /boot.ipxe"), "{text}");
    assert!(text.contains("initramfs 19:22:28 (+31s)"), "{text}");
    assert!(
        text.contains("52:54:00:aa:00:09  spare") && text.contains("never seen"),
        "{text}"
    );
    let Some((code, text)) = nodes(dir.path(), &["--json"]) else {
        return;
    };
    assert_eq!(code, 0, "{text}");
    let doc: Value = serde_json::from_str(&text[text.find('{').unwrap()..]).unwrap();
    let machines = doc["machines"].as_array().unwrap();
    let spare = machines.iter().find(|m| m["hostname"] == "spare").unwrap();
    assert_eq!(spare["state"], "never seen");
    let node1 = machines.iter().find(|m| m["hostname"] == "node1").unwrap();
    assert_eq!(node1["powered_on"], "2026-11-29T19:21:57Z");
}
