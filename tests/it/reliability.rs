//! Faults that `cozyboot up` must survive, against the real Docker Engine, and the replay of
//! the fuzz targets' seeds and saved findings. docs/reliability.md lists every fault test in
//! the project and what each one guarantees.
//!
//! Every container runs on the `--internal` Docker network of a `support::site::Site`
//! (10.215.X.0/24), so the DHCP server can never answer on a real interface.

use crate::support;

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzz_checks;

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::docker::docker;
use support::images;

const TAG: &str = support::site::TAG;
/// Big enough that streaming it takes a second or more (about 3 s in a debug build here).
const BIG_INITRAMFS: u64 = 192 * 1024 * 1024 + 12_345;
const BIG_KERNEL: u64 = 4 * 1024 * 1024 + 321;
/// Marks the images the tests here build, so that nothing else mistakes them for its own.
const LABEL: &str = "io.cozyboot.reliability";

fn sha256_file(path: &Path) -> String {
    let mut file = fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).unwrap();
    hex::encode(hasher.finalize())
}

/// Name → sha256 of every file in a directory (not recursive: the asset dirs are flat).
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), sha256_file(&e.path())))
        .collect()
}

/// The shared test site (`support::site::Site`: an internal network, a data dir, container
/// names, one test at a time), plus the images built for it and the processes killed in it;
/// all removed on drop, also when the test fails.
struct Site {
    base: support::site::Site,
    /// Images to `docker rmi` on drop.
    images: Vec<String>,
    /// Processes whose temporary extraction containers may be left over (killed ones).
    killed: Vec<u32>,
}

impl std::ops::Deref for Site {
    type Target = support::site::Site;
    fn deref(&self) -> &support::site::Site {
        &self.base
    }
}

impl Site {
    fn new() -> Option<Site> {
        Some(Site {
            base: support::site::Site::new()?,
            images: Vec::new(),
            killed: Vec::new(),
        })
    }

    fn arm64_assets(&self) -> PathBuf {
        self.data().join("assets/talos/arm64")
    }

    fn staging(&self) -> PathBuf {
        self.data().join(".cozyboot/staging-assets-arm64")
    }

    /// `cozyboot up --json` as a process of its own, to be waited for or killed.
    fn command(&self, tag: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cozyboot"));
        cmd.current_dir(self.dir.path())
            .env("COZYBOOT_SITES_DIR", self.sites_dir())
            .env("COZYBOOT_TEST_HOST_IPXE_ARM64", &self.host_ipxe_arm64)
            .args(["up", "--json"])
            .args(self.args(tag));
        cmd
    }

    /// Runs `up` to the end (bounded): exit code, JSON report, stderr.
    fn up(&self, tag: &str) -> (i32, Value, String) {
        let child = self
            .command(tag)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = wait_bounded(child, Duration::from_secs(300));
        let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (
            out.status.code().unwrap_or(-1),
            json,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn up_ok(&self, tag: &str) -> Value {
        let (code, json, stderr) = self.up(tag);
        assert_eq!(code, 0, "up failed: {stderr}\n{json:#}");
        json
    }

    /// Temporary extraction containers a process of this site created.
    fn temporaries_of(&self, pid: u32) -> Vec<String> {
        let (_, out) = docker(&[
            "ps",
            "-a",
            "--filter",
            "label=io.cozyboot.temporary",
            "--filter",
            &format!("name=cozyboot-extract-{pid}-"),
            "--format",
            "{{.Names}}",
        ]);
        out.lines().map(str::to_string).filter(|l| !l.is_empty()).collect()
    }

    /// Builds a Talos-like image with a big initramfs, local to the engine (never pushed),
    /// and tags the site's matchbox image to go with it. Returns (tag, sha256 by file name).
    fn big_image(&mut self) -> (String, BTreeMap<String, String>) {
        let tag = format!("reliability-big-{}", self.net);
        let talos = images::variant_image(images::SPIN_ONLY, &tag);
        let tar_path = self.dir.path().join("big.tar");
        let mut hashes = BTreeMap::new();
        {
            let file = io::BufWriter::new(fs::File::create(&tar_path).unwrap());
            let mut builder = tar::Builder::new(file);
            for dir in ["assets/", "assets/talos/", "assets/talos/arm64/"] {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                builder.append_data(&mut h, dir, io::empty()).unwrap();
            }
            for (name, size) in [("vmlinuz", BIG_KERNEL), ("initramfs.xz", BIG_INITRAMFS)] {
                let mut h = tar::Header::new_gnu();
                h.set_mode(0o644);
                h.set_size(size);
                let mut reader = Pattern::new(name, size);
                builder
                    .append_data(&mut h, format!("assets/talos/arm64/{name}"), &mut reader)
                    .unwrap();
                hashes.insert(name.to_string(), hex::encode(reader.hasher.finalize()));
            }
            builder.into_inner().unwrap();
        }
        self.images.push(talos.clone());
        let (ok, out) = docker(&[
            "import",
            "--change",
            &format!("LABEL {LABEL}=1"),
            tar_path.to_str().unwrap(),
            &talos,
        ]);
        assert!(ok, "docker import: {out}");
        fs::remove_file(&tar_path).unwrap();
        let matchbox = images::matchbox_image(images::SPIN_ONLY, &tag);
        self.images.push(matchbox.clone());
        let (ok, out) = docker(&["tag", &images::matchbox_image(images::SPIN_ONLY, TAG), &matchbox]);
        assert!(ok, "docker tag: {out}");
        (tag, hashes)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        // The containers first: an image a container uses cannot be removed.
        self.base.remove_containers();
        for pid in self.killed.clone() {
            for name in self.temporaries_of(pid) {
                docker(&["rm", "-f", &name]);
            }
        }
        for image in &self.images {
            docker(&["rmi", image]);
        }
    }
}

/// Deterministic bytes (not zeros, so a mix-up shows), hashed as they are read.
struct Pattern {
    left: u64,
    counter: u64,
    seed: u8,
    hasher: Sha256,
}

impl Pattern {
    fn new(name: &str, size: u64) -> Pattern {
        Pattern {
            left: size,
            counter: 0,
            seed: name.len() as u8,
            hasher: Sha256::new(),
        }
    }
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        for b in &mut buf[..n] {
            self.counter += 1;
            *b = (self.counter.wrapping_mul(0x9E37_79B9) >> 11) as u8 ^ self.seed;
        }
        self.hasher.update(&buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

/// Waits for a child with piped output, killing it after `limit`.
fn wait_bounded(child: std::process::Child, limit: Duration) -> std::process::Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if rx.recv_timeout(limit).is_err() {
            // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    let out = child.wait_with_output().unwrap();
    let _ = tx.send(());
    out
}

fn actions(report: &Value, kind: &str) -> usize {
    report["actions"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|a| a["action"] == kind).count())
}

/// `up` is killed (SIGKILL: no cleanup code runs) while it streams a large asset into its
/// staging directory. The assets of the previous good `up` must be untouched, the site must
/// keep running, and the next `up` must finish the job.
#[test]
fn sigkill_during_extraction_keeps_the_previous_assets_and_the_next_up_completes() {
    let Some(mut site) = Site::new() else { return };
    site.up_ok(TAG);
    let before = snapshot(&site.arm64_assets());
    for name in ["vmlinuz", "initramfs.xz"] {
        let image = images::variant_image(images::SPIN_ONLY, TAG);
        let (_, sha) = images::expected_file(&image, &format!("/assets/talos/arm64/{name}")).expect("manifest");
        assert_eq!(before[name], sha, "the first up extracted {name} of {TAG}");
    }
    let state_before = fs::read(site.data().join(".cozyboot/state.json")).unwrap();
    let containers_before = (site.container(&site.matchbox), site.container(&site.dnsmasq));
    let (big_tag, big_hashes) = site.big_image();

    let mut child = site
        .command(&big_tag)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    site.killed.push(child.id());
    let deadline = Instant::now() + Duration::from_secs(120);
    let streamed = loop {
        // Killed once a file in staging has bytes: the extractor is mid-stream.
        let partial = fs::read_dir(site.staging())
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum::<u64>()
            })
            .unwrap_or(0);
        if partial > 0 {
            break partial;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
            panic!(
                "up ended ({status}) before it was seen streaming into {}:\n{stderr}",
                site.staging().display()
            );
        }
        assert!(
            Instant::now() < deadline,
            "up never started streaming into {}",
            site.staging().display()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "up was killed, not finished: {status}"
    );
    let total = BIG_KERNEL + BIG_INITRAMFS;
    eprintln!("killed up after {streamed} of {total} bytes were in staging");
    assert!(
        streamed < total,
        "the kill came after the extraction finished; the test proves nothing"
    );

    assert_eq!(
        snapshot(&site.arm64_assets()),
        before,
        "the previous assets are byte-identical"
    );
    assert_eq!(
        fs::read(site.data().join(".cozyboot/state.json")).unwrap(),
        state_before,
        "state untouched"
    );
    assert_eq!(
        (site.container(&site.matchbox), site.container(&site.dnsmasq)),
        containers_before
    );
    let (status, body) = site.http_get("/assets/talos/arm64/vmlinuz");
    assert_eq!(status, 200);
    assert_eq!(
        hex::encode(Sha256::digest(&body)),
        before["vmlinuz"],
        "matchbox still serves the previous kernel"
    );

    let report = site.up_ok(&big_tag);
    assert_eq!(actions(&report, "extract-assets"), 1, "{report:#}");
    assert_eq!(
        snapshot(&site.arm64_assets()),
        big_hashes,
        "the next up extracted the new assets"
    );
    assert!(!site.staging().exists(), "the killed run's staging dir was cleared");
    let (status, body) = site.http_get("/assets/talos/arm64/vmlinuz");
    assert_eq!(
        (status, hex::encode(Sha256::digest(&body))),
        (200, big_hashes["vmlinuz"].clone())
    );
    assert!(
        site.container(&site.matchbox).2 && site.container(&site.dnsmasq).2,
        "both containers run"
    );
    // SIGKILL gives the process no chance to remove its temporary container; the next `up`
    // on this data dir, holding the lock, removes it.
    let leftover = site.temporaries_of(site.killed[0]);
    assert!(
        leftover.is_empty(),
        "the next up removed the killed run's temporary container: {leftover:?}"
    );
}

/// Two `up`s started together on one data dir: the lock lets one work; the other either
/// waits out nothing (it fails at once, naming the lock) or, if it reaches the lock after the
/// first finished, finds nothing to do. Either way one consistent site results.
#[test]
fn two_concurrent_ups_on_one_data_dir_leave_one_consistent_site() {
    let Some(site) = Site::new() else { return };
    let spawn = || {
        site.command(TAG)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let results: Vec<(i32, Value, String)> = [a, b]
        .into_iter()
        .map(|child| {
            let out = wait_bounded(child, Duration::from_secs(300));
            let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            (
                out.status.code().unwrap_or(-1),
                json,
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .collect();
    let ok = results.iter().filter(|r| r.0 == 0).count();
    assert!(ok >= 1, "at least one up succeeds: {results:#?}");
    for (code, json, stderr) in results.iter().filter(|r| r.0 != 0) {
        assert_eq!(*code, 1, "{stderr}");
        let message = json["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("another `cozyboot up`"),
            "the loser names the lock: {message}\n{stderr}"
        );
    }
    let image = images::variant_image(images::SPIN_ONLY, TAG);
    for (name, sha) in snapshot(&site.arm64_assets()) {
        let (_, want) = images::expected_file(&image, &format!("/assets/talos/arm64/{name}")).expect("manifest");
        assert_eq!(sha, want, "{name}");
    }
    assert!(
        site.container(&site.matchbox).2 && site.container(&site.dnsmasq).2,
        "both containers run"
    );
    let again = site.up_ok(TAG);
    assert_eq!(actions(&again, "keep"), 2, "a third up finds nothing to do: {again:#}");
    assert_eq!(again["actions"].as_array().unwrap().len(), 2, "{again:#}");
}

// ---- fuzz regressions --------------------------------------------------------------------------

type Check = fn(&[u8]);

const FUZZ_TARGETS: [(&str, Check); 3] = [
    ("extract", fuzz_checks::check_extract),
    ("settings_yaml", fuzz_checks::check_settings_yaml),
    ("settings_cli", fuzz_checks::check_settings_cli),
];

fn fuzz_inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    files.into_iter().map(|p| (p.clone(), fs::read(&p).unwrap())).collect()
}

/// Every seed and every saved crash input (`fuzz/regressions/<target>/`) of every fuzz
/// target holds the target's properties: what libFuzzer found once stays fixed.
#[test]
fn fuzz_seeds_and_saved_findings_replay_cleanly() {
    let mut failures = Vec::new();
    let mut count = 0;
    for (target, check) in FUZZ_TARGETS {
        let seeds = fuzz_inputs("seeds", target);
        assert!(!seeds.is_empty(), "fuzz/seeds/{target} has seeds");
        for (path, data) in seeds.into_iter().chain(fuzz_inputs("regressions", target)) {
            count += 1;
            if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{}: {why}", path.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{count} inputs, failing:\n{}", failures.join("\n"));
}

/// A few seconds of fuzzing without libFuzzer, so `cargo test` on stable exercises the same
/// properties on inputs nobody wrote: deterministic mutations (byte flips, truncations,
/// splices) of the seeds.
#[test]
fn mutated_seeds_hold_the_fuzz_properties() {
    const PER_TARGET: usize = 300;
    let mut state: u64 = 0x5eed_c0de;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for (target, check) in FUZZ_TARGETS {
        let seeds: Vec<Vec<u8>> = fuzz_inputs("seeds", target).into_iter().map(|(_, d)| d).collect();
        for i in 0..PER_TARGET {
            let mut data = seeds[i % seeds.len()].clone();
            let other = &seeds[next() as usize % seeds.len()];
            for _ in 0..1 + next() % 8 {
                if data.is_empty() {
                    break;
                }
                let at = next() as usize % data.len();
                match next() % 5 {
                    0 => data[at] ^= 1 << (next() % 8),
                    1 => data[at] = next() as u8,
                    2 => data.truncate(at),
                    3 => {
                        let from = next() as usize % other.len().max(1);
                        data.splice(at..at, other[from..].iter().take(64).copied());
                    }
                    _ => data[at] = b"/.\\0\n=:-@{[\"'"[next() as usize % 13],
                }
            }
            let result = std::panic::catch_unwind(|| check(&data));
            assert!(
                result.is_ok(),
                "{target}: mutation {i} broke a property; input (hex): {}",
                hex::encode(&data)
            );
        }
    }
}
