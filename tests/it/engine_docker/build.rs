//! Test images built in the test: a layer's tar, its config and a docker-save archive.

use super::*;

pub(super) enum Entry {
    Dir(&'static str),
    File(&'static str, Vec<u8>),
    Symlink(&'static str, &'static str),
    Fifo(&'static str),
}

pub(super) fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = Header::new_gnu();
        header.set_mtime(1_700_000_000);
        let (path, data): (&str, &[u8]) = match entry {
            Entry::Dir(path) => {
                header.set_entry_type(EntryType::Directory);
                header.set_mode(0o755);
                (path, b"")
            }
            Entry::File(path, data) => {
                header.set_entry_type(EntryType::Regular);
                // 0600 in the image: extraction must still produce world-readable files.
                header.set_mode(0o600);
                (path, data)
            }
            Entry::Symlink(path, target) => {
                header.set_entry_type(EntryType::Symlink);
                header.set_mode(0o777);
                header.set_link_name(target).unwrap();
                (path, b"")
            }
            Entry::Fifo(path) => {
                header.set_entry_type(EntryType::Fifo);
                header.set_mode(0o644);
                (path, b"")
            }
        };
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, path, data).unwrap();
    }
    builder.into_inner().unwrap()
}

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(super) fn image_config(arch: &str, layer: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": { "Labels": { TEST_LABEL: "1" } },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(layer))] },
        "history": [{ "created": "2024-01-01T00:00:00Z", "created_by": "cozyboot engine_docker test" }],
    }))
    .unwrap()
}

/// A `docker save` archive with one image of one layer, tagged `tag`.
pub(super) fn docker_save_archive(tag: &str, arch: &str, layer: &[u8]) -> Vec<u8> {
    let layer_dir = sha256_hex(layer);
    let config = image_config(arch, layer);
    let config_name = format!("{}.json", sha256_hex(&config));
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": [tag],
        "Layers": [format!("{layer_dir}/layer.tar")],
    }]))
    .unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut header = Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, path, data).unwrap();
    };
    add(&format!("{layer_dir}/layer.tar"), layer);
    add(&config_name, &config);
    add("manifest.json", &manifest);
    builder.into_inner().unwrap()
}

pub(super) fn kernel() -> Vec<u8> {
    b"MZ fake arm64 kernel".repeat(1000)
}

pub(super) fn initramfs() -> Vec<u8> {
    (0..300_000u32).map(|i| (i % 251) as u8).collect()
}

pub(super) fn talos_assets_image() -> Vec<Entry> {
    vec![
        Entry::Dir("assets/"),
        Entry::Dir("assets/talos/"),
        Entry::Dir("assets/talos/arm64/"),
        Entry::File("assets/talos/arm64/vmlinuz", kernel()),
        Entry::File("assets/talos/arm64/initramfs.xz", initramfs()),
        // Also an installer path with other bytes, to prove the first candidate wins.
        Entry::Dir("usr/"),
        Entry::Dir("usr/install/"),
        Entry::Dir("usr/install/arm64/"),
        Entry::File("usr/install/arm64/vmlinuz", b"installer kernel".to_vec()),
    ]
}

pub(super) fn installer_only_image() -> Vec<Entry> {
    vec![
        Entry::Dir("usr/"),
        Entry::Dir("usr/install/"),
        Entry::Dir("usr/install/arm64/"),
        Entry::File("usr/install/arm64/vmlinuz", kernel()),
        Entry::File("usr/install/arm64/initramfs.xz", initramfs()),
    ]
}

/// A root filesystem whose programs come from the host's /usr, bind-mounted read-only
/// (merged-/usr hosts: /bin, /lib, /lib64 are links into /usr).
pub(super) fn host_usr_image() -> Vec<Entry> {
    vec![
        Entry::Dir("usr/"),
        Entry::Dir("data/"),
        Entry::Symlink("bin", "usr/bin"),
        Entry::Symlink("sbin", "usr/sbin"),
        Entry::Symlink("lib", "usr/lib"),
        Entry::Symlink("lib64", "usr/lib64"),
    ]
}

/// Whether this host's /usr can stand in for an image's root ([`host_usr_image`]); when it
/// cannot, the test is skipped or, where tests must run, fails (`support::guard`).
pub(super) fn require_merged_usr() -> bool {
    let is_link = |p: &str| {
        std::fs::symlink_metadata(p)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
    };
    if is_link("/bin") && is_link("/lib") && Path::new("/usr/bin/sh").exists() {
        return true;
    }
    support::guard::skip::<()>(
        None,
        "the container tests borrow the host's merged /usr (/bin and /lib links into it), which this host lacks",
    );
    false
}

pub(super) fn every_path_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.symlink_metadata().unwrap().is_dir() {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out.sort();
    out
}
