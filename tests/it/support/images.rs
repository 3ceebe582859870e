//! The offline test images, served by a local registry on 127.0.0.1:5000.
//!
//! `scripts/test-images` builds and pushes them (see docs/testing.md for what each
//! holds); [`ensure`] runs it once per test process. Tests that need the engine start
//! with:
//!
//! ```ignore
//! if !support::images::require_docker() { return; }
//! support::images::ensure().unwrap();
//! ```
//!
//! After `ensure`, no test image is in the engine's cache: a test that uses one must pull
//! it (from `127.0.0.1:5000`, which the engine treats as an insecure registry).

// Shared by several test crates, each of which uses only part of it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The local registry (Debian's docker-registry, started by scripts/test-images).
pub const REGISTRY: &str = "127.0.0.1:5000";
/// The dnsmasq tag stem; the image exists with `-amd64` and `-arm64` suffixes.
pub const DNSMASQ_TAG: &str = "v0.5.0-32-g4327d60";
/// Variants that have talos and matchbox images.
pub const SPIN_ONLY: &str = "cozystack-spin-only";
pub const SPIN_TAILSCALE: &str = "cozystack-spin-tailscale";

/// `127.0.0.1:5000/urmanac/cozystack-assets`: the stand-in for
/// `ghcr.io/urmanac/cozystack-assets`.
pub fn registry_prefix() -> String {
    format!("{REGISTRY}/urmanac/cozystack-assets")
}

/// A Talos-like variant image, e.g. `variant_image(SPIN_ONLY, "latest")`.
/// Tags: `latest` (both variants), and for spin-only also `v1.0.0` (other bytes),
/// `usr-install` (same bytes as `latest` under `/usr/install/<arch>/`), `hostile`,
/// `hostile-links`.
pub fn variant_image(variant: &str, tag: &str) -> String {
    format!("{}/talos/{variant}/talos:{tag}", registry_prefix())
}

/// The matchbox (test double) image of a variant: tags `latest` (both variants), and for
/// spin-only also `v1.0.0` (same image) and `crashing` (exits 1 at start).
pub fn matchbox_image(variant: &str, tag: &str) -> String {
    format!("{}/talos/{variant}/matchbox:{tag}", registry_prefix())
}

/// The flags that point cozyboot at the local test registry's images (`--registry`,
/// `--dnsmasq-image`); the tag is the caller's.
pub fn registry_flags() -> [String; 2] {
    [
        format!("--registry={}", registry_prefix()),
        format!("--dnsmasq-image={REGISTRY}/poseidon/dnsmasq:{DNSMASQ_TAG}-{{arch}}"),
    ]
}

/// The dnsmasq image for this host's architecture.
pub fn dnsmasq_image() -> String {
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    };
    dnsmasq_image_for(arch)
}

/// The dnsmasq image tagged for `arch` (`amd64` or `arm64`; both hold the host's
/// Debian dnsmasq).
pub fn dnsmasq_image_for(arch: &str) -> String {
    format!("{REGISTRY}/poseidon/dnsmasq:{DNSMASQ_TAG}-{arch}")
}

/// The state dir of scripts/test-images (`COZYBOOT_TEST_STATE`, default
/// `/var/tmp/cozyboot-test`).
pub fn state_dir() -> PathBuf {
    std::env::var_os("COZYBOOT_TEST_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/cozyboot-test"))
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether the Docker Engine's socket is there ([`super::docker::engine_socket`]), so the test
/// can return early when it is not (which only happens where tests may skip).
pub fn require_docker() -> bool {
    super::docker::engine_socket().is_some()
}

/// Runs `scripts/test-images` once per test process (later calls return the first
/// result). Quick when the images are already in the registry. The error carries the
/// script's output.
pub fn ensure() -> Result<(), String> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT
        .get_or_init(|| {
            let script = repo_root().join("scripts/test-images");
            let out = Command::new("bash")
                .arg(&script)
                .current_dir(repo_root())
                .output()
                .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if out.status.success() {
                Ok(())
            } else {
                Err(format!("{} failed ({}):\n{text}", script.display(), out.status))
            }
        })
        .clone()
}

/// The manifest scripts/test-images writes (`<state>/images.json`): for every image
/// reference, its kind and the path, size and sha256 of each file it holds.
pub fn manifest() -> Result<serde_json::Value, String> {
    let p = state_dir().join("images.json");
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
}

/// `(size, sha256)` of `path` (e.g. `/assets/talos/arm64/vmlinuz`) in `image`, from the
/// manifest.
pub fn expected_file(image: &str, path: &str) -> Option<(u64, String)> {
    let m = manifest().ok()?;
    let files = m["images"][image]["files"].as_array()?;
    let f = files.iter().find(|f| f["path"] == path)?;
    Some((f["size"].as_u64()?, f["sha256"].as_str()?.to_string()))
}
