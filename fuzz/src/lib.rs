//! The properties cozyboot's fuzz targets check, one function per target.
//!
//! Each function takes the raw fuzz input and panics when a property does not hold; an input
//! that a function ignores (see the notes on each) is simply not interesting. The same file
//! is compiled into the main crate's `tests/it/reliability.rs` (`#[path]`), which replays the
//! seeds and every saved crash input (`fuzz/seeds/`, `fuzz/regressions/`) on each
//! `cargo test`, so a fixed finding stays fixed without a nightly-style build.
//!
//! Nothing here touches anything outside a temporary directory it creates.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use cozyboot::engine::extract::{extract, ExtractError, Limits};
use cozyboot::error::Error;
use cozyboot::settings::net::FixedNet;
use cozyboot::settings::raw::{self, NodeEntry};
use cozyboot::settings::{self, Purpose, Raw};

// ---- the tar extractor ---------------------------------------------------------------------

/// `extract` on arbitrary bytes: it must never panic, only ever leave regular files and
/// directories under the destination, write nothing beside it, and report exactly what it
/// wrote.
///
/// The first byte picks the prefix to strip and the limits (so the limit paths are fuzzed
/// too); the rest is the archive.
pub fn check_extract(data: &[u8]) {
    let Some((&mode, archive)) = data.split_first() else {
        return;
    };
    let prefix = ["", "arm64", "assets", "a/b"][usize::from(mode & 3)];
    let limits = match (mode >> 2) & 3 {
        0 => Limits::default(),
        1 => Limits {
            max_entries: 4,
            ..Limits::default()
        },
        2 => Limits {
            max_file_bytes: 100,
            ..Limits::default()
        },
        _ => Limits {
            max_total_bytes: 1000,
            max_entries: 64,
            max_file_bytes: 1000,
        },
    };
    let root_before = root_listing();

    // Three levels of directories that belong to nothing: a `..` that got through would
    // land in one of them, where the walk below finds it.
    let sandbox = tempfile::tempdir().expect("temporary directory");
    let dest = sandbox.path().join("a/b/c/staging");
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let result = extract(archive, &dest, prefix, &limits);

    for path in walk(sandbox.path()) {
        let rel = path.strip_prefix(sandbox.path()).unwrap();
        let allowed = ["a", "a/b", "a/b/c"].iter().any(|p| rel == Path::new(p)) || path.starts_with(&dest);
        assert!(allowed, "wrote outside the destination: {}", rel.display());
        let kind = path.symlink_metadata().unwrap().file_type();
        assert!(
            kind.is_file() || kind.is_dir(),
            "materialised a {kind:?} at {}",
            rel.display()
        );
    }
    assert_eq!(root_listing(), root_before, "the root directory changed");

    match result {
        Ok(report) => {
            let mut reported = BTreeSet::new();
            for file in &report.files {
                assert!(
                    is_plain_relative(&file.path),
                    "reported path {} is not plain",
                    file.path.display()
                );
                let meta = fs::symlink_metadata(dest.join(&file.path)).expect("a reported file exists");
                assert!(
                    meta.is_file() && meta.len() == file.size,
                    "{} differs from its report",
                    file.path.display()
                );
                assert!(
                    file.size <= limits.max_file_bytes,
                    "{} is over the file limit",
                    file.path.display()
                );
                reported.insert(file.path.clone());
            }
            assert!(report.total_bytes <= limits.max_total_bytes, "over the total limit");
            assert_eq!(report.total_bytes, report.files.iter().map(|f| f.size).sum::<u64>());
            // Every file under dest was reported (directories may come from file parents).
            for path in walk(&dest) {
                if path.symlink_metadata().unwrap().is_file() {
                    let rel = path.strip_prefix(&dest).unwrap().to_path_buf();
                    assert!(
                        reported.contains(&rel),
                        "{} was written but not reported",
                        rel.display()
                    );
                }
            }
        }
        Err(ExtractError::Refused { entry: _, rule }) => {
            // The message must render (Display must not panic either).
            let _ = rule.to_string();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fn is_plain_relative(path: &Path) -> bool {
    !path.as_os_str().is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Names in `/`: an absolute path that slipped through would most likely create one.
fn root_listing() -> BTreeSet<String> {
    fs::read_dir("/")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every path below `dir` (not following symlinks).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.symlink_metadata().map(|m| m.is_dir()).unwrap_or(false) {
                todo.push(path.clone());
            }
            out.push(path);
        }
    }
    out
}

// ---- settings --------------------------------------------------------------------------------

/// A directory with a few Talos machine configs for fuzzed settings to point at. Settings
/// resolution reads the files that `talos-config` and `talos-nodes` name; inputs naming a
/// file outside this directory are skipped, so that a fuzzer never reads `/dev/zero` or a
/// fifo (which would hang it, and prove nothing about cozyboot).
struct Sandbox {
    dir: PathBuf,
    empty_config: PathBuf,
}

fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        // One per process, kept for its life; those of processes that are gone are removed.
        let tmp = std::env::temp_dir();
        for entry in fs::read_dir(&tmp).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("cozyboot-fuzz-sandbox-") {
                if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = tmp.join(format!("cozyboot-fuzz-sandbox-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("sandbox directory");
        let image = "ghcr.io/urmanac/cozystack-assets/talos/cozystack-spin-only/talos:latest";
        let files = [
            (
                "cp.yaml",
                format!("version: v1alpha1\nmachine:\n  type: controlplane\n  install:\n    image: {image}\n"),
            ),
            (
                "w.yaml",
                format!("machine:\n  install:\n    disk: /dev/sda\n    image: {image}\n"),
            ),
            (
                "other.yaml",
                "machine:\n  install:\n    image: ghcr.io/x/y:v1\n".to_string(),
            ),
            ("noimage.yaml", "machine:\n  type: worker\n".to_string()),
            (
                "braces.yaml",
                "machine:\n  install:\n    image: '{{ .Image }}'\n".to_string(),
            ),
            ("bad.yaml", "machine: [\n".to_string()),
            ("empty.yaml", String::new()),
        ];
        for (name, text) in files {
            fs::write(dir.join(name), text).unwrap();
        }
        fs::create_dir_all(dir.join("sub")).unwrap();
        Sandbox {
            empty_config: dir.join("empty.yaml"),
            dir,
        }
    })
}

/// eth0 as in the guide, an interface without IPv4, and one with two addresses.
fn host() -> FixedNet {
    FixedNet(vec![
        ("eth0".into(), vec!["10.20.13.140/24".parse().unwrap()]),
        ("bare0".into(), vec![]),
        (
            "br0".into(),
            vec!["192.168.1.2/24".parse().unwrap(), "172.16.0.1/12".parse().unwrap()],
        ),
    ])
}

/// True when every file the layer would make settings resolution read lies inside the
/// sandbox (no `..`, nothing elsewhere).
fn reads_only_sandbox(raw: &Raw) -> bool {
    let inside = |p: &Path| p.starts_with(&sandbox().dir) && !p.components().any(|c| matches!(c, Component::ParentDir));
    let config_ok = raw.talos_config.as_deref().is_none_or(inside);
    let nodes_ok = raw.talos_nodes.iter().flatten().all(|node| match node {
        NodeEntry::Long { config, .. } => inside(config),
        // `MAC=PATH` or `MAC@ARCH=PATH`; without `=` nothing is read.
        NodeEntry::Short(s) => s.split_once('=').is_none_or(|(_, path)| inside(Path::new(path))),
    });
    config_ok && nodes_ok
}

/// Resolution must end in settings (which then render without panicking) or in a clean
/// configuration error: exit code 2 and a fix for every problem.
fn resolve_and_check(flags: Raw, env: &dyn Fn(&str) -> Option<String>) {
    for purpose in [Purpose::Serve, Purpose::Render] {
        let result = settings::resolve(settings::Inputs {
            // An empty file: the working directory's cozyboot.yaml must never be read.
            config_file: Some(sandbox().empty_config.clone()),
            env,
            flags: flags.clone(),
            host: &host(),
            purpose,
            site: &settings::no_site,
        });
        match result {
            Ok(resolved) => {
                let s = &resolved.settings;
                let rendered = cozyboot::render::render(s);
                let _ = rendered.files();
                let _ = cozyboot::render::containers::specs(s, &rendered, &s.dnsmasq_image_for("arm64"));
                let _ = s.describe();
                let _ = serde_json::to_string(&resolved).expect("resolved settings serialize");
            }
            Err(e) => check_clean_error(&e),
        }
    }
}

fn check_clean_error(e: &Error) {
    let message = e.to_string();
    match e {
        Error::Config(problems) => {
            assert!(!problems.is_empty(), "a config error without problems");
            for p in problems {
                assert!(
                    !p.field.is_empty() && !p.problem.is_empty() && !p.fix.is_empty(),
                    "incomplete problem: {p:?}"
                );
            }
            assert!(message.contains("fix:"), "no fix in: {message}");
            assert_eq!(e.exit_code(), cozyboot::error::exit::CONFIG);
        }
        other => panic!(
            "settings resolution failed with a non-config error ({}): {message}",
            other.kind()
        ),
    }
}

/// Arbitrary text as a config file (`--config`): parsing and validation must never panic,
/// and every refusal is a clean configuration error.
pub fn check_settings_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // A file of its own per call: the regression tests call this from several threads.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = sandbox().dir.join(format!("input-{n}.yaml"));
    fs::write(&path, text).unwrap();
    let parsed = raw::from_file(&path);
    let layer = match parsed {
        Ok(layer) => layer,
        Err(problem) => {
            assert_eq!(problem.field, "config");
            assert!(!problem.problem.is_empty() && !problem.fix.is_empty(), "{problem:?}");
            // The same text through `resolve` must fail the same way.
            let e = settings::resolve(settings::Inputs {
                config_file: Some(path.clone()),
                env: &|_| None,
                flags: Raw::default(),
                host: &host(),
                purpose: Purpose::Serve,
                site: &settings::no_site,
            })
            .expect_err("a file that does not parse cannot resolve");
            let _ = fs::remove_file(&path);
            check_clean_error(&e);
            return;
        }
    };
    let _ = fs::remove_file(&path);
    if !reads_only_sandbox(&layer) {
        return;
    }
    resolve_and_check(layer, &|_| None);
}

/// Arbitrary command lines and environments: each line of the input is one argument to
/// `cozyboot render`, or, when it looks like `COZYBOOT_KEY=value`, an environment variable.
/// What clap accepts must resolve to settings or to a clean configuration error.
///
/// `COZYBOOT_TALOS_CONFIG`, `COZYBOOT_TALOS_NODES` and `COZYBOOT_CONFIG` are not taken from
/// the input (they would read files outside the sandbox); the flags are, when they point
/// into it.
pub fn check_settings_cli(data: &[u8]) {
    use clap::Parser;
    use cozyboot::cli::{Cli, Command};
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut argv = vec!["cozyboot".to_string(), "render".to_string()];
    let mut env: Vec<(String, String)> = Vec::new();
    for line in text.lines().take(64) {
        match line.split_once('=') {
            Some((key, value)) if key.starts_with("COZYBOOT_") => {
                if !matches!(
                    key,
                    "COZYBOOT_TALOS_CONFIG" | "COZYBOOT_TALOS_NODES" | "COZYBOOT_CONFIG"
                ) {
                    env.push((key.to_string(), value.to_string()));
                }
            }
            _ => argv.push(line.to_string()),
        }
    }
    let Ok(cli) = Cli::try_parse_from(&argv) else { return };
    let Command::Render(args) = cli.command else { return };
    let mut flags = args.settings.to_raw();
    // Relative paths on the command line are relative to the working directory: put the
    // fuzzer's in the sandbox.
    let base = sandbox().dir.clone();
    if let Some(p) = flags.talos_config.as_mut() {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    for node in flags.talos_nodes.iter_mut().flatten() {
        match node {
            NodeEntry::Long { config, .. } if config.is_relative() => *config = base.join(&*config),
            NodeEntry::Short(s) => {
                if let Some((lhs, path)) = s.split_once('=') {
                    if Path::new(path).is_relative() {
                        *s = format!("{lhs}={}", base.join(path).display());
                    }
                }
            }
            NodeEntry::Long { .. } => {}
        }
    }
    if !reads_only_sandbox(&flags) {
        return;
    }
    let lookup = move |key: &str| env.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    resolve_and_check(flags, &lookup);
}
