//! `up` against the in-memory engine: the container lifecycle at every failure point, and
//! the rollback rules of `lifecycle` and `undo`, judged by what a user would find afterwards
//! (which containers run under which names, the error, the files on disk).

use super::*;
use crate::artifacts::arch::Arch;
use crate::artifacts::layout::Kind;
use crate::artifacts::layout::{INITRAMFS, KERNEL};
use crate::engine::fake::{pe, FakeEngine, Op};
use crate::plan::{self, Action};
use crate::settings;
use crate::store::state;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

const MATCHBOX: &str = "matchbox";
const DNSMASQ: &str = "dnsmasq";
const NEW: &str = "-cozyboot-new";

fn fast() -> Timing {
    Timing {
        stop: Duration::from_millis(10),
        start: Duration::from_millis(200),
        first_poll: Duration::from_millis(1),
        max_poll: Duration::from_millis(5),
        settle: Duration::from_millis(1),
    }
}

struct Site {
    tmp: tempfile::TempDir,
    engine: FakeEngine,
    /// `host`, or the name of a Docker network (dnsmasq then joins matchbox's namespace).
    network: &'static str,
}

impl Site {
    fn new(network: &'static str) -> Site {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("ipxe-arm64.efi"), pe(0xAA64)).unwrap();
        let site = Site {
            tmp,
            engine: FakeEngine::new(),
            network,
        };
        site.publish("v1", "1");
        site
    }

    fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    /// The three images of tag `tag`; `generation` tells their contents and ids apart.
    fn publish(&self, tag: &str, generation: &str) {
        let s = self.settings(tag, &[]);
        let dir = Kind::Assets.dir(Arch::Arm64);
        let kernel = format!("kernel {generation}");
        let initramfs = format!("initramfs {generation}");
        self.engine.publish(
            &s.talos_image(),
            &format!("sha256:talos{generation}"),
            &[
                (&format!("{dir}/{KERNEL}"), kernel.as_bytes()),
                (&format!("{dir}/{INITRAMFS}"), initramfs.as_bytes()),
            ],
        );
        self.engine.publish(
            &s.matchbox_image(),
            &format!("sha256:matchbox{generation}"),
            &[("/matchbox", b"m")],
        );
        self.engine.publish(
            &s.dnsmasq_image_for("amd64"),
            &format!("sha256:dnsmasq{generation}"),
            &[("/usr/sbin/dnsmasq", b"d")],
        );
    }

    fn settings(&self, tag: &str, extra: &[(&str, &str)]) -> Settings {
        let data = self.data().display().to_string();
        let ipxe = self.tmp.path().join("ipxe-arm64.efi").display().to_string();
        let mut given = vec![
            ("data-dir", data.as_str()),
            ("arch", "arm64"),
            ("ipxe-arm64", ipxe.as_str()),
            // The Pi firmware has its own tests (tests/it/rpi_eeprom.rs); these never download it.
            ("rpi-netboot", "off"),
            ("tag", tag),
            ("network", self.network),
            ("http-port", "18080"),
        ];
        if self.network == "host" {
            given.push(("iface", "eth0"));
        } else {
            given.push(("server-ip", "10.20.13.5"));
            given.push(("subnet", "10.20.13.0/24"));
        }
        given.extend_from_slice(extra);
        let mut map = serde_json::Map::new();
        for (k, v) in given {
            let value = match k {
                "arch" => serde_json::json!([v]),
                _ => serde_json::Value::String(v.to_string()),
            };
            map.insert(k.to_string(), value);
        }
        settings::for_tests(serde_json::Value::Object(map))
    }

    fn up(&self, s: &Settings) -> Result<UpReport, Error> {
        self.up_with(
            s,
            UpOptions {
                dry_run: false,
                move_foreign: false,
                printer: Printer::quiet(),
            },
        )
    }

    fn up_with(&self, s: &Settings, options: UpOptions) -> Result<UpReport, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(up_timed(s, &self.engine, options, fast()))
    }

    fn up_ok(&self, s: &Settings) -> UpReport {
        self.up(s).unwrap_or_else(|e| panic!("up failed: {e}"))
    }

    fn up_err(&self, s: &Settings) -> String {
        match self.up(s) {
            Ok(report) => panic!("up succeeded: {:?}", report.done),
            Err(e) => e.to_string(),
        }
    }

    /// The site's containers as `(name, id, running)`.
    fn containers(&self) -> Vec<(String, String, bool)> {
        self.engine.containers()
    }

    fn ids(&self) -> (String, String) {
        (
            self.engine.id_of(MATCHBOX).unwrap(),
            self.engine.id_of(DNSMASQ).unwrap(),
        )
    }

    /// Both containers run under their names with these ids, dnsmasq in the namespace it
    /// joined, and nothing else is left.
    fn assert_running(&self, ids: &(String, String)) {
        assert_eq!(
            self.containers(),
            {
                let mut want = vec![
                    (MATCHBOX.to_string(), ids.0.clone(), true),
                    (DNSMASQ.to_string(), ids.1.clone(), true),
                ];
                want.sort();
                want
            },
            "calls: {:#?}",
            self.engine.calls()
        );
        assert!(self.engine.serving(MATCHBOX));
        assert!(
            self.engine.serving(DNSMASQ),
            "dnsmasq runs in the network namespace it joined; calls: {:#?}",
            self.engine.calls()
        );
    }

    /// Every file under the data dir but cozyboot's own folder, with its content.
    fn files(&self) -> BTreeMap<String, Vec<u8>> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                if rel == ".cozyboot" {
                    continue;
                }
                if path.is_dir() {
                    walk(root, &path, out);
                } else {
                    out.insert(rel, fs::read(&path).unwrap());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.data(), &self.data(), &mut out);
        out.insert(
            "state.json".into(),
            fs::read(state::file(&self.data())).unwrap_or_default(),
        );
        out
    }
}

/// A settled site on `network`, then settings that replace both containers (the HTTP port
/// is in matchbox's and dnsmasq's arguments and in the profiles).
fn settled(network: &'static str) -> (Site, (String, String), Settings) {
    let site = Site::new(network);
    site.up_ok(&site.settings("v1", &[]));
    let ids = site.ids();
    let changed = site.settings("v1", &[("http-port", "18081")]);
    (site, ids, changed)
}

fn replaced(report: &UpReport) -> Vec<String> {
    report
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::ReplaceContainer { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_cold_up_creates_both_and_the_next_one_keeps_them() {
    for network in ["host", "lan"] {
        let site = Site::new(network);
        let s = site.settings("v1", &[]);
        let report = site.up_ok(&s);
        let pulls = report
            .actions
            .iter()
            .filter(|a| matches!(a, Action::Pull { .. }))
            .count();
        assert_eq!(pulls, 3, "{network}");
        let ids = site.ids();
        site.assert_running(&ids);
        let kernel = site.data().join("assets/talos/arm64").join(KERNEL);
        assert_eq!(fs::read_to_string(kernel).unwrap(), "kernel 1");

        let again = site.up_ok(&s);
        assert!(plan::is_noop(&again.actions), "{network}: {:?}", again.actions);
        site.assert_running(&ids);
    }
}

#[test]
fn the_three_pulls_run_together_and_one_failure_changes_nothing() {
    let site = Site::new("lan");
    let s = site.settings("v1", &[]);
    site.up_ok(&s);
    let calls = site.engine.calls();
    let first_non_pull = calls.iter().position(|c| !c.starts_with("pull ")).unwrap();
    assert_eq!(
        first_non_pull, 3,
        "all pulls are asked for before anything else: {calls:#?}"
    );

    let site = Site::new("lan");
    site.engine.fail(Op::Pull, &s.matchbox_image());
    let err = site.up_err(&s);
    assert!(
        err.contains(&s.matchbox_image()) && err.contains("nothing was changed"),
        "{err}"
    );
    assert!(site.containers().is_empty());
    assert!(!site.data().join("assets/talos").exists());
}

/// The containers of a site that has none start while the Talos image is still pulled;
/// a replacement waits until the files are in place.
#[test]
fn containers_start_during_the_talos_pull_only_when_they_replace_nothing() {
    let site = Site::new("lan");
    let s = site.settings("v1", &[]);
    site.engine.slow_pull(&s.talos_image(), 10_000);
    site.up_ok(&s);
    let calls = site.engine.calls();
    let at = |call: &str| calls.iter().position(|c| c == call).expect(call);
    let talos_pulled = at(&format!("pulled {}", s.talos_image()));
    assert!(at(&format!("start {MATCHBOX}")) < talos_pulled, "{calls:#?}");
    assert!(at(&format!("start {DNSMASQ}")) < talos_pulled, "{calls:#?}");

    site.publish("v2", "2");
    let s = site.settings("v2", &[]);
    site.engine.slow_pull(&s.talos_image(), 10_000);
    site.up_ok(&s);
    let calls = site.engine.calls();
    let at = |call: &str| calls.iter().rposition(|c| c == call).expect(call);
    assert!(
        at(&format!("create {MATCHBOX}{NEW}")) > at(&format!("pulled {}", s.talos_image())),
        "{calls:#?}"
    );
}

#[test]
fn a_new_container_that_fails_at_create_start_health_or_crash_is_removed_on_a_cold_up() {
    for op in [Op::Create, Op::Start, Op::Health, Op::Crash] {
        let site = Site::new("lan");
        site.engine.fail(op, DNSMASQ);
        let err = site.up_err(&site.settings("v1", &[]));
        assert!(err.contains(DNSMASQ), "{op:?}: {err}");
        // matchbox was created by this run too: an all-or-nothing run leaves nothing.
        assert!(site.containers().is_empty(), "{op:?}: {:?}", site.containers());
        assert!(
            err.contains("created by this run, was removed"),
            "{op:?}: says what it undid: {err}"
        );
    }
}

/// Each step of matchbox's replacement that can fail, on both kinds of network: the old
/// matchbox (same id) and the old dnsmasq run again under their names, dnsmasq in the
/// namespace of the matchbox that runs, nothing else is left, and the error is the step's.
#[test]
fn every_failure_point_of_a_replacement_puts_the_old_containers_back() {
    let points = [
        (Op::Create, format!("{MATCHBOX}{NEW}"), "replacing matchbox"),
        (Op::Stop, MATCHBOX.to_string(), "replacing matchbox"),
        (Op::Rename, MATCHBOX.to_string(), "replacing matchbox"),
        (Op::Rename, format!("{MATCHBOX}{NEW}"), "replacing matchbox"),
        (Op::Start, format!("{MATCHBOX}{NEW}"), "failed to start"),
        (Op::Health, format!("{MATCHBOX}{NEW}"), "did not become healthy"),
        (Op::Crash, format!("{MATCHBOX}{NEW}"), "crashed"),
        (Op::Create, format!("{DNSMASQ}{NEW}"), "replacing dnsmasq"),
        (Op::Start, format!("{DNSMASQ}{NEW}"), "failed to start"),
        (Op::Health, format!("{DNSMASQ}{NEW}"), "did not become healthy"),
        (Op::Crash, format!("{DNSMASQ}{NEW}"), "crashed"),
    ];
    for network in ["host", "lan"] {
        for (op, target, says) in &points {
            let (site, ids, changed) = settled(network);
            // Only the first call: the old container's own restart must work.
            site.engine.fail_once(*op, target);
            let err = site.up_err(&changed);
            let case = format!("{network}, {op:?} of {target}");
            assert!(err.contains(says), "{case}: {err}");
            // A failed create comes before the old container is touched.
            let restarted = *op != Op::Create || target.starts_with(DNSMASQ);
            assert_eq!(err.contains("started again"), restarted, "{case}: {err}");
            assert!(!err.contains("failed too"), "{case}: {err}");
            site.assert_running(&ids);
        }
    }
}

#[test]
fn a_previous_container_that_cannot_be_removed_is_a_warning_once_the_new_ones_run() {
    let (site, ids, changed) = settled("lan");
    site.engine.fail_once(Op::Remove, &ids.0);
    let report = site.up_ok(&changed);
    assert_eq!(replaced(&report), [MATCHBOX, DNSMASQ]);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("could not be removed") && w.contains("-cozyboot-old")),
        "{:?}",
        report.warnings
    );
    assert!(site.engine.serving(MATCHBOX) && site.engine.serving(DNSMASQ));
    assert_ne!(site.engine.id_of(MATCHBOX).unwrap(), ids.0);
}

/// Bug: the old matchbox was removed as soon as its replacement was healthy; when dnsmasq's
/// replacement then failed, the old dnsmasq was started into the namespace of a matchbox
/// that no longer existed (Docker joins by container id), and the site had no DHCP.
#[test]
fn a_failed_dnsmasq_replacement_after_matchbox_puts_both_old_containers_back() {
    let (site, ids, changed) = settled("lan");
    site.engine.fail(Op::Start, &format!("{DNSMASQ}{NEW}"));
    let err = site.up_err(&changed);
    assert!(err.contains("the new dnsmasq failed to start"), "{err}");
    assert!(!err.contains("failed too"), "{err}");
    site.assert_running(&ids);
}

/// Bug: a rollback that could not rename the old container back left it as
/// `-cozyboot-old`, and the next `up` removed it as a leftover: the last good container.
#[test]
fn the_next_up_puts_a_container_left_as_cozyboot_old_back_instead_of_removing_it() {
    let (site, ids, changed) = settled("lan");
    site.engine.fail(Op::Start, &format!("{MATCHBOX}{NEW}"));
    site.engine.fail_once(Op::Rename, &format!("{MATCHBOX}-cozyboot-old"));
    let err = site.up_err(&changed);
    assert!(err.contains("next `cozyboot up` puts it back"), "{err}");
    assert_eq!(
        site.engine.id_of(&format!("{MATCHBOX}-cozyboot-old")),
        Some(ids.0.clone())
    );

    // The new matchbox still cannot start: the next up must fall back on the old one.
    let err = site.up_err(&changed);
    assert!(err.contains("failed to start"), "{err}");
    site.assert_running(&ids);

    site.engine.clear_faults();
    let report = site.up_ok(&changed);
    assert_eq!(replaced(&report), [MATCHBOX, DNSMASQ]);
    assert!(site.engine.serving(MATCHBOX) && site.engine.serving(DNSMASQ));
    assert_eq!(site.containers().len(), 2, "{:?}", site.containers());
}

/// Bug: when renaming the old container back failed, that error was returned and the reason
/// for the rollback (the new container's failure) was lost.
#[test]
fn a_failed_rename_back_is_added_to_the_original_error_not_put_in_its_place() {
    let (site, _, changed) = settled("host");
    site.engine.fail(Op::Crash, &format!("{MATCHBOX}{NEW}"));
    site.engine.fail_once(Op::Rename, &format!("{MATCHBOX}-cozyboot-old"));
    let err = site.up_err(&changed);
    let original = err.find("the new matchbox failed to start").expect(&err);
    let rollback = err.find("renaming matchbox-cozyboot-old back").expect(&err);
    assert!(original < rollback, "{err}");
    assert!(err.contains("crashed"), "{err}");
    assert!(err.contains("putting the previous site back failed too"), "{err}");
}

/// Bug: files written before a failed replacement stayed, so the restored matchbox served
/// the new profiles (and new assets) with the old containers. The rule: a run is all or
/// nothing; the matchbox tree, the assets and the state go back with the containers.
#[test]
fn a_failed_replacement_puts_the_config_assets_and_state_back() {
    let (site, ids, _) = settled("lan");
    let before = site.files();
    site.publish("v2", "2");
    // A new tag: new assets, new matchbox image, new profiles (the port changes too).
    let changed = site.settings("v2", &[("http-port", "18081")]);
    site.engine.fail(Op::Health, &format!("{MATCHBOX}{NEW}"));
    let err = site.up_err(&changed);
    assert!(err.contains("did not become healthy"), "{err}");
    site.assert_running(&ids);
    let after = site.files();
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "the same files"
    );
    for (path, content) in &before {
        assert!(after[path] == *content, "{path} is as it was");
    }
    assert!(!state::dir(&site.data()).join("rollback").exists());

    site.engine.clear_faults();
    site.up_ok(&changed);
    let kernel = site.data().join("assets/talos/arm64").join(KERNEL);
    assert_eq!(fs::read_to_string(kernel).unwrap(), "kernel 2");
}

/// Bug: files moved aside by `--move-foreign` stayed in `.cozyboot/moved-*` when the run
/// failed, so a failed `up` still took the hand-written groups away from matchbox.
#[test]
fn a_failed_replacement_puts_files_moved_by_move_foreign_back() {
    let (site, ids, changed) = settled("host");
    let groups = site.data().join("groups");
    fs::write(
        groups.join("by-hand.json"),
        r#"{"id":"by-hand","name":"by-hand","profile":"x"}"#,
    )
    .unwrap();
    fs::create_dir_all(site.data().join("profiles/hand")).unwrap();
    fs::write(site.data().join("profiles/hand/x.json"), "{}").unwrap();
    let before = site.files();
    site.engine.fail(Op::Health, &format!("{MATCHBOX}{NEW}"));
    let options = UpOptions {
        dry_run: false,
        move_foreign: true,
        printer: Printer::quiet(),
    };
    let err = site
        .up_with(&changed, options.clone())
        .map(|r| r.done)
        .unwrap_err()
        .to_string();
    assert!(err.contains("did not become healthy"), "{err}");
    site.assert_running(&ids);
    assert_eq!(site.files(), before, "every file is back where it was, as it was");
    let moved: Vec<_> = fs::read_dir(state::dir(&site.data()))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("moved-"))
        .collect();
    assert!(moved.is_empty(), "the moved-aside folder is gone: {moved:?}");

    site.engine.clear_faults();
    let report = site.up_with(&changed, options).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !groups.join("by-hand.json").exists(),
        "a run that succeeds moves them: {:?}",
        report.done
    );
}
