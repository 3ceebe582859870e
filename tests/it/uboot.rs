//! The U-Boot boot script `cozyboot render` writes (`assets/boot.scr.uimg`), checked by U-Boot's
//! own tools from Debian's `u-boot-tools`: `mkimage` makes the same bytes of the same text (the
//! header and payload layout of U-Boot's `include/image.h` and `tools/mkimage.c`), and
//! `dumpimage` reads it back as an AArch64 script with its CRCs right. That U-Boot runs it is
//! shown by the boots (`firmware_up::up_on_the_host_network_boots_u_boot_*`,
//! `smoke::u_boot_with_proxy_dhcp_beside_a_router_boots`).

use crate::support::guard;

use assert_cmd::Command as Bin;
use cozyboot::artifacts::uimage;
use std::path::Path;
use std::process::Command;

const MKIMAGE: &str = "/usr/bin/mkimage";
const DUMPIMAGE: &str = "/usr/bin/dumpimage";

fn tools() -> Option<()> {
    if [MKIMAGE, DUMPIMAGE].iter().all(|t| Path::new(t).exists()) {
        return Some(());
    }
    guard::skip(
        None,
        "mkimage/dumpimage missing: run scripts/install-test-deps (u-boot-tools)",
    )
}

/// `cozyboot render` for an arm64 site in maintenance mode but for one machine with a config
/// of its own, into `out`: the script image's bytes and what `render --json` says of it.
fn render(out: &Path) -> (Vec<u8>, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.yaml");
    let image = "ghcr.io/urmanac/cozystack-assets/talos/cozystack-spin-only/talos:v1.13.0";
    let yaml = format!("version: v1alpha1\nmachine:\n  type: worker\n  install:\n    image: {image}\n");
    std::fs::write(&config, yaml).unwrap();
    let node = format!("--talos-nodes=DC-A6-32-01-02-03@arm64={}", config.display());
    let output = format!("--output={}", out.display());
    let args = [
        "render",
        "--json",
        node.as_str(),
        "--iface=lo",
        "--server-ip=127.0.0.1",
        "--subnet=127.0.0.0/8",
        "--dhcp-range=127.0.0.100,127.0.0.150",
        "--arch=arm64",
        "--tag=v1.13.0",
        "--rpi-netboot=off",
        output.as_str(),
    ];
    let o = Bin::cargo_bin("cozyboot").unwrap().args(args).output().unwrap();
    assert!(o.status.success(), "render: {}", String::from_utf8_lossy(&o.stderr));
    let file = out.join("assets").join(cozyboot::render::uboot::SCRIPT);
    let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    (
        bytes,
        serde_json::from_slice(&o.stdout).expect("render --json prints JSON"),
    )
}

#[test]
fn the_script_image_is_what_mkimage_makes_of_its_text() {
    let Some(()) = tools() else { return };
    let work = tempfile::tempdir().unwrap();
    let (ours, json) = render(&work.path().join("out"));
    let script = uimage::read_script(&ours).expect("a script image");
    assert_eq!(
        json["uboot"]["script"],
        script.text.as_str(),
        "render --json shows the script"
    );
    assert_eq!(json["uboot"]["file"], "assets/boot.scr.uimg");
    assert_eq!(script.name, "cozyboot Talos v1.13.0 arm64");
    // The machine with its own config gets its own arguments; U-Boot names it by ${ethaddr}.
    assert!(
        script
            .text
            .contains("if test \"${ethaddr}\" = \"dc:a6:32:01:02:03\"; then setenv bootargs "),
        "{}",
        script.text
    );
    assert!(
        script.text.contains("generic?arch=arm64&mac=${ethaddr}"),
        "{}",
        script.text
    );

    let text = work.path().join("boot.txt");
    std::fs::write(&text, &script.text).unwrap();
    let theirs = work.path().join("mkimage.uimg");
    let o = Command::new(MKIMAGE)
        .env("SOURCE_DATE_EPOCH", "0")
        .args(["-A", "arm64", "-O", "linux", "-T", "script", "-C", "none", "-n"])
        .arg(&script.name)
        .arg("-d")
        .arg(&text)
        .arg(&theirs)
        .output()
        .unwrap();
    assert!(o.status.success(), "mkimage: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(&theirs).unwrap(),
        ours,
        "mkimage makes other bytes of the same text"
    );

    // dumpimage checks both CRCs and names the type; then extracts the script itself.
    let rendered = work.path().join("out/assets/boot.scr.uimg");
    let o = Command::new(DUMPIMAGE).arg("-l").arg(&rendered).output().unwrap();
    let listing = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "dumpimage -l: {listing}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(listing.contains("AArch64 Linux Script (uncompressed)"), "{listing}");
    assert!(
        listing.contains("Image Name:   cozyboot Talos v1.13.0 arm64"),
        "{listing}"
    );
    let extracted = work.path().join("extracted.txt");
    let o = Command::new(DUMPIMAGE)
        .args(["-T", "script", "-p", "0", "-o"])
        .arg(&extracted)
        .arg(&rendered)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "dumpimage -p 0: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The payload: the one-entry length table, then the script.
    let payload = std::fs::read(&extracted).unwrap();
    assert_eq!(&payload[8..], script.text.as_bytes());
    let len = script.text.len();
    assert!(listing.contains(&format!("Image 0: {len} Bytes")), "{listing}");
}

/// A byte changed anywhere is refused by U-Boot's own reader, as `source` would refuse it.
#[test]
fn dumpimage_refuses_a_script_with_a_changed_byte() {
    let Some(()) = tools() else { return };
    let work = tempfile::tempdir().unwrap();
    let (mut bytes, _) = render(&work.path().join("out"));
    let last = bytes.len() - 1;
    bytes[last] ^= 0x20;
    let bad = work.path().join("bad.uimg");
    std::fs::write(&bad, &bytes).unwrap();
    let o = Command::new(DUMPIMAGE).arg("-l").arg(&bad).output().unwrap();
    // Its legacy-image reader checks the data CRC and gives it up (it then tries other kinds).
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !said.contains("AArch64 Linux Script"),
        "dumpimage took it as a script: {said}"
    );
    assert!(uimage::read_script(&bytes).unwrap_err().contains("data CRC"));
}
