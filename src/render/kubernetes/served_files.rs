//! The files `up` lays into the assets dir, laid into the pods' emptyDirs by init containers:
//! the Talos kernel and initramfs for matchbox, the iPXE binaries for dnsmasq's TFTP root.

use super::objects::{manifest, metadata, pull_policy};
use super::{Manifest, Options, ServedFiles};
use crate::artifacts::arch::{Arch, Bootloader};
use crate::artifacts::layout::Kind;
use crate::settings::Settings;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A static busybox (the `musl` variant of Docker's official image is one binary and its
/// links, no libc): the Talos image has no shell, so its files are copied with this one.
pub const BUSYBOX_IMAGE: &str = "docker.io/library/busybox:1.37.0-musl";

/// Bytes of the arm64 iPXE binary per ConfigMap: base64 makes them a third larger, and a
/// client-side `kubectl apply` copies the object into an annotation limited to 256 KiB.
pub const IPXE_CHUNK: usize = 128 * 1024;

const SCRIPTS: &str = "cozyboot-scripts";
const FETCH_ASSETS: &str = include_str!("fetch-assets.sh");
/// Where the init containers see their volumes; under a directory of our own, so that no
/// mount hides a path of the image the files are taken from (`/assets` is one).
const TOOLS: &str = "/cozyboot/tools";
const SCRIPTS_DIR: &str = "/cozyboot/scripts";
const OUT: &str = "/cozyboot/out";
const IMAGE_MOUNT: &str = "/cozyboot/talos-image";
const IPXE_PARTS: &str = "/cozyboot/ipxe-arm64";
/// The busybox applets the script uses, linked beside the copied binary.
pub const APPLETS: &[&str] = &[
    "sh",
    "od",
    "tr",
    "dd",
    "tail",
    "head",
    "sed",
    "sha256sum",
    "cut",
    "cp",
    "mv",
    "chmod",
    "mkdir",
    "wc",
    "cat",
];

pub(super) fn scripts_config_map(o: &Options) -> Manifest {
    manifest(
        "configmap-cozyboot-scripts.yaml",
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(o, SCRIPTS, "boot-assets"),
            "data": { "fetch-assets.sh": FETCH_ASSETS },
        }),
    )
}

/// The layouts `up` tries, in its order, as the script reads them (see fetch-assets.sh).
pub fn layouts(arch: Arch) -> String {
    Kind::ALL
        .iter()
        .map(|kind| {
            let (sums, prefix) = kind.checksums(arch).map_or(("-".to_string(), "-"), |(path, prefix)| {
                (path, if prefix.is_empty() { "-" } else { prefix })
            });
            format!(
                "{} {} {} {sums} {prefix}",
                kind.name(),
                kind.dir(arch),
                kind.required().join(",")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn scripts_volume() -> Value {
    json!({ "name": "cozyboot-scripts", "configMap": { "name": SCRIPTS, "defaultMode": 0o555 } })
}

/// Init containers filling `assets_volume` with `talos/<arch>/{vmlinuz,initramfs.xz}` for
/// every served arch, and the volumes they need beside it.
pub(super) fn talos_assets(s: &Settings, o: &Options, assets_volume: &str) -> (Vec<Value>, Vec<Value>) {
    let out_mount = json!({ "name": assets_volume, "mountPath": OUT });
    let scripts_mount = json!({ "name": "cozyboot-scripts", "mountPath": SCRIPTS_DIR, "readOnly": true });
    let script = format!("{SCRIPTS_DIR}/fetch-assets.sh");
    let mut init = Vec::new();
    let mut volumes = vec![scripts_volume()];
    match o.served_files {
        ServedFiles::InitContainer => {
            let links: Vec<String> = APPLETS.iter().map(|a| format!("ln -s busybox {TOOLS}/{a}")).collect();
            init.push(json!({
                "name": "busybox",
                "image": BUSYBOX_IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["/bin/sh", "-c", format!("cp /bin/busybox {TOOLS}/busybox && {}", links.join(" && "))],
                "volumeMounts": [{ "name": "cozyboot-tools", "mountPath": TOOLS }],
            }));
            volumes.push(json!({ "name": "cozyboot-tools", "emptyDir": {} }));
            for &arch in &s.arches {
                init.push(json!({
                    "name": format!("talos-assets-{arch}"),
                    "image": s.talos_image(),
                    "imagePullPolicy": pull_policy(s),
                    // Links relative to the copied busybox: the image's own PATH may have none.
                    "command": [format!("{TOOLS}/sh"), script.clone(), "", arch.asset_dir(), format!("{OUT}/talos/{}", arch.asset_dir())],
                    "env": [{ "name": "PATH", "value": TOOLS }, { "name": "LAYOUTS", "value": layouts(arch) }],
                    "volumeMounts": [
                        out_mount.clone(),
                        scripts_mount.clone(),
                        { "name": "cozyboot-tools", "mountPath": TOOLS, "readOnly": true },
                    ],
                }));
            }
        }
        ServedFiles::ImageVolume => {
            volumes.push(json!({
                "name": "talos-image",
                "image": { "reference": s.talos_image(), "pullPolicy": pull_policy(s) },
            }));
            for &arch in &s.arches {
                init.push(json!({
                    "name": format!("talos-assets-{arch}"),
                    "image": BUSYBOX_IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["/bin/sh", script.clone(), IMAGE_MOUNT, arch.asset_dir(), format!("{OUT}/talos/{}", arch.asset_dir())],
                    "env": [{ "name": "LAYOUTS", "value": layouts(arch) }],
                    "volumeMounts": [
                        out_mount.clone(),
                        scripts_mount.clone(),
                        { "name": "talos-image", "mountPath": IMAGE_MOUNT, "readOnly": true },
                    ],
                }));
            }
        }
    }
    (init, volumes)
}

/// Init containers filling `tftp_volume` with the bootloaders `up` installs: x86 iPXE out of
/// the dnsmasq image (as `up` takes them), the arm64 iPXE from its ConfigMaps.
pub(super) fn bootloaders(
    s: &Settings,
    o: &Options,
    dnsmasq_image: &str,
    tftp_volume: &str,
) -> (Vec<Value>, Vec<Value>) {
    let mut init = Vec::new();
    let mut volumes = Vec::new();
    let tftp_mount = json!({ "name": tftp_volume, "mountPath": OUT });
    if s.serves(Arch::Amd64) {
        let from = "/var/lib/tftpboot";
        let bios = s.bootloaders.for_bootloader(Bootloader::Bios);
        let copies = [
            (
                "ipxe.efi",
                s.bootloaders.for_bootloader(Bootloader::X86_64Efi).to_string(),
            ),
            ("undionly.kpxe", bios.to_string()),
            // dnsmasq appends `.0` to a PXE service's file name without a dot.
            ("undionly.kpxe", format!("{bios}.0")),
        ];
        let script: Vec<String> = copies
            .iter()
            .map(|(src, dst)| {
                format!(
                    "cp {from}/{src} {OUT}/{} && chmod 0644 {OUT}/{}",
                    quote(dst),
                    quote(dst)
                )
            })
            .collect();
        init.push(json!({
            "name": "x86-ipxe",
            "image": dnsmasq_image,
            "imagePullPolicy": pull_policy(s),
            "command": ["/bin/sh", "-c", script.join(" && ")],
            "volumeMounts": [tftp_mount.clone()],
        }));
    }
    if let Some(ipxe) = &o.ipxe_arm64 {
        let name = quote(s.bootloaders.for_bootloader(Bootloader::Arm64Efi));
        let parts: Vec<String> = (0..chunks(ipxe)).map(|i| format!("{IPXE_PARTS}/{}", part(i))).collect();
        let digest = hex::encode(Sha256::digest(ipxe));
        let script = format!(
            "cat {} > {OUT}/{name} && echo '{digest}  {OUT}/{name}' | sha256sum -c - && chmod 0644 {OUT}/{name}",
            parts.join(" ")
        );
        init.push(json!({
            "name": "arm64-ipxe",
            "image": BUSYBOX_IMAGE,
            "imagePullPolicy": "IfNotPresent",
            "command": ["/bin/sh", "-c", script],
            "volumeMounts": [tftp_mount, { "name": "ipxe-arm64", "mountPath": IPXE_PARTS, "readOnly": true }],
        }));
        let sources: Vec<Value> = (0..chunks(ipxe))
            .map(|i| json!({ "configMap": { "name": ipxe_name(i), "items": [{ "key": "part", "path": part(i) }] } }))
            .collect();
        volumes.push(json!({ "name": "ipxe-arm64", "projected": { "sources": sources } }));
    }
    (init, volumes)
}

fn chunks(bytes: &[u8]) -> usize {
    bytes.len().div_ceil(IPXE_CHUNK).max(1)
}

fn ipxe_name(i: usize) -> String {
    format!("ipxe-arm64-{i:02}")
}

fn part(i: usize) -> String {
    format!("part-{i:02}")
}

/// The arm64 iPXE binary, [`IPXE_CHUNK`] bytes per ConfigMap.
pub(super) fn ipxe_config_maps(o: &Options, bytes: &[u8]) -> Vec<Manifest> {
    let pieces: Vec<&[u8]> = if bytes.is_empty() {
        vec![bytes]
    } else {
        bytes.chunks(IPXE_CHUNK).collect()
    };
    pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let name = ipxe_name(i);
            manifest(
                &format!("configmap-{name}.yaml"),
                json!({
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": metadata(o, &name, "boot-assets"),
                    "binaryData": { "part": base64(piece) },
                }),
            )
        })
        .collect()
}

/// Single quotes for a shell word (a file name from the settings).
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Standard base64 with padding, as `binaryData` takes it.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_test_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn layouts_follow_ups_order_with_checksums_where_the_layout_has_them() {
        assert_eq!(
            layouts(Arch::Arm64),
            "assets /assets/talos/arm64 vmlinuz,initramfs.xz /assets/talos/arm64/checksums.sha256 -\n\
             assets-boot /assets/talos/arm64/boot vmlinuz,initramfs.xz /assets/talos/arm64/checksums.sha256 boot/\n\
             installer /usr/install/arm64 vmlinuz,initramfs.xz - -\n\
             installer-uki /usr/install/arm64 vmlinuz.efi - -"
        );
    }

    #[test]
    fn the_ipxe_binary_is_split_into_chunks_that_join_back() {
        let bytes: Vec<u8> = (0..(IPXE_CHUNK * 2 + 5)).map(|i| (i % 253) as u8).collect();
        let o = Options {
            namespace: "ns".into(),
            node_arch: Arch::Arm64,
            served_files: ServedFiles::InitContainer,
            ipxe_arm64: Some(bytes.clone()),
        };
        let maps = ipxe_config_maps(&o, &bytes);
        assert_eq!(maps.len(), 3);
        assert_eq!(maps[2].name(), "ipxe-arm64-02");
        let joined: String = maps
            .iter()
            .map(|m| m.value["binaryData"]["part"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join("|");
        let expected: Vec<String> = bytes.chunks(IPXE_CHUNK).map(base64).collect();
        assert_eq!(joined, expected.join("|"));
        // What a client-side `kubectl apply` copies into its 256 KiB annotation.
        for m in &maps {
            assert!(
                m.to_yaml().len() < 256 * 1024,
                "{} is {} bytes",
                m.file,
                m.to_yaml().len()
            );
        }
    }
}
