//! `cozyboot render --kubernetes DIR`: the site `up` would run, as Kubernetes manifests.

use super::Output;
use crate::apply::{host_ipxe_arm64, ipxe_arm64_cache_path as cache_path};
use crate::artifacts::arch::{Arch, Bootloader};
use crate::artifacts::pe::{self, PeMachine};
use crate::cli::RenderArgs;
use crate::error::{ConfigError, Error, Result};
use crate::render::kubernetes::{self, boot_lan, Manifest, Options, ServedFiles, BOOT_LAN_LABEL};
use crate::settings::{Network, Resolved, Settings};
use serde_json::json;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Said when arm64 is served with the Pi EEPROM's netboot on (`up`'s default).
const PI_EEPROM_NOTE: &str = "note: the Raspberry Pi EEPROM's network boot (option 43 and the Pi UEFI firmware) is not in these manifests: a Pi boots through the cluster's site only with the Pi UEFI firmware on its own storage (SD card or eMMC); Pis that netboot their firmware keep booting from this host's site (`cozyboot up`) until then";

/// Said when U-Boot boards would be served (arm64, `uboot-netboot` on: `up`'s default).
const UBOOT_NOTE: &str = "note: U-Boot's own network boot (boot.scr.uimg, with the Talos kernel and initramfs over TFTP) is not in these manifests: their TFTP root holds the iPXE bootloaders only; U-Boot boards keep booting from this host's site (`cozyboot up`)";

/// The first line of every file written, by which stale ones are recognised.
const HEADER: &str = "# Written by `cozyboot render --kubernetes`";

pub fn run(args: &RenderArgs, dir: &Path, resolved: &Resolved) -> Result<Output> {
    // The Pi EEPROM's netboot needs the Pi UEFI firmware in the TFTP root, which the manifests
    // do not carry yet: offering option 43 without it would stop every Pi at `start4.elf`.
    // So the in-cluster site serves the UEFI stage only, and says so.
    let mut site = resolved.settings.clone();
    let pi_eeprom_left_out = site.serves_rpi();
    site.rpi_netboot = false;
    // Likewise U-Boot's script reads the Talos files over TFTP, which the DaemonSet does not hold.
    let uboot_left_out = site.serves_uboot();
    site.uboot_netboot = false;
    let s = &site;
    if let Network::Named(name) = &s.network {
        let source = resolved.origins.get("network");
        return Err(Error::Config(vec![ConfigError::new(
            "network",
            "a Docker network has no meaning in a cluster: the manifests put dnsmasq and matchbox on the host network of the node labelled for the boot LAN",
            "drop --network (network: host) and give --iface, --server-ip and --subnet as the node sees them",
        )
        .value(name.clone())
        .from_source(source)]));
    }
    let rendered = crate::store::withdrawal::render_site(s)?;
    let ipxe_arm64 = if s.serves(Arch::Arm64) {
        Some(arm64_ipxe(s)?)
    } else {
        None
    };
    let options = Options {
        namespace: args.namespace.clone(),
        node_arch: args.node_arch.or_else(Arch::host).unwrap_or(Arch::Amd64),
        served_files: if args.image_volume {
            ServedFiles::ImageVolume
        } else {
            ServedFiles::InitContainer
        },
        ipxe_arm64: ipxe_arm64.as_ref().map(|(bytes, _)| bytes.clone()),
    };
    let manifests = kubernetes::manifests(s, &rendered, &options);
    let removed = write(dir, &manifests).map_err(|e| {
        Error::Failed(format!(
            "cannot write the manifests to {}: {e}\n  fix: choose a writable directory with --kubernetes",
            dir.display()
        ))
    })?;
    eprintln!("{}", next_steps(s, &options, dir));
    if pi_eeprom_left_out {
        eprintln!("{PI_EEPROM_NOTE}");
    }
    if uboot_left_out {
        eprintln!("{UBOOT_NOTE}");
    }

    let mut human = format!(
        "Rendered {} ({}) for Kubernetes, namespace {}, {} nodes labelled {BOOT_LAN_LABEL}={}, boot server {}\n",
        s.variant,
        s.talos_image(),
        options.namespace,
        options.node_arch,
        boot_lan(s),
        s.http_base(),
    );
    if let Some((_, from)) = &ipxe_arm64 {
        human.push_str(&format!("arm64 iPXE from {}\n", from.display()));
    }
    human.push_str(&format!("\nmanifests in {}:\n", dir.display()));
    for m in &manifests {
        human.push_str(&format!("  {:<42} {} {}\n", m.file, m.kind(), m.name()));
    }
    for r in &removed {
        human.push_str(&format!("  removed {r}\n"));
    }
    let json = json!({
        "settings": s,
        "output_dir": dir,
        "namespace": options.namespace,
        "node_arch": options.node_arch.name(),
        "node_label": { "key": BOOT_LAN_LABEL, "value": boot_lan(s) },
        "served_files": if args.image_volume { "image-volume" } else { "init-container" },
        "ipxe_arm64": ipxe_arm64.as_ref().map(|(_, from)| from),
        "files": manifests.iter().map(|m| json!({ "file": m.file, "kind": m.kind(), "name": m.name() })).collect::<Vec<_>>(),
        "removed": removed,
    });
    Ok(Output::new(human, json))
}

/// The arm64 iPXE binary `up` serves, found where `up` finds it: the path given, the copy
/// `up` installed, the host's package, `up`'s cached download. Nothing is downloaded here.
fn arm64_ipxe(s: &Settings) -> Result<(Vec<u8>, PathBuf)> {
    let given = s
        .ipxe_arm64
        .as_deref()
        .filter(|v| !v.starts_with("http://") && !v.starts_with("https://"))
        .map(PathBuf::from);
    let installed = s.assets_dir().join(s.bootloaders.for_bootloader(Bootloader::Arm64Efi));
    let candidates: Vec<PathBuf> = given
        .clone()
        .into_iter()
        .chain([installed, host_ipxe_arm64(), cache_path(&s.data_dir, &s.ipxe_arm64_url)])
        .collect();
    let Some(path) = (if given.is_some() {
        given
    } else {
        candidates.iter().find(|p| p.is_file()).cloned()
    }) else {
        return Err(Error::Config(vec![ConfigError::new(
            "ipxe-arm64",
            format!(
                "no arm64 iPXE binary to put in the manifests; looked for {}",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "run `cozyboot up` once (it installs one), or pass --ipxe-arm64 PATH",
        )
        .value(s.ipxe_arm64.clone().unwrap_or_default())]));
    };
    let bytes = fs::read(&path).map_err(|e| {
        Error::Config(vec![ConfigError::new(
            "ipxe-arm64",
            format!("cannot read {}: {e}", path.display()),
            "pass --ipxe-arm64 with a readable arm64 iPXE EFI binary",
        )
        .value(path.display().to_string())])
    })?;
    match pe::machine(&bytes) {
        Ok(PeMachine::Arm64) => Ok((bytes, path)),
        found => Err(Error::Config(vec![ConfigError::new(
            "ipxe-arm64",
            format!(
                "{} is not an arm64 EFI binary ({}): arm64 machines could not run it",
                path.display(),
                match found {
                    Ok(m) => format!("it is built for {m}"),
                    Err(e) => e.to_string(),
                }
            ),
            "pass --ipxe-arm64 with an arm64 iPXE build (Debian trixie's /usr/lib/ipxe/ipxe-arm64.efi)",
        )
        .value(path.display().to_string())])),
    }
}

/// Writes each manifest (the Secret's owner-only: it holds the Talos configs), and removes
/// files an earlier render wrote that this one did not.
fn write(dir: &Path, manifests: &[Manifest]) -> std::io::Result<Vec<String>> {
    fs::create_dir_all(dir)?;
    for m in manifests {
        let mode = if m.kind() == "Secret" { 0o600 } else { 0o644 };
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(m.to_yaml().as_bytes())?;
        tmp.as_file().set_permissions(fs::Permissions::from_mode(mode))?;
        tmp.as_file().sync_all()?;
        tmp.persist(dir.join(&m.file)).map_err(|e| e.error)?;
    }
    let mut removed = Vec::new();
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".yaml") || manifests.iter().any(|m| m.file == name) {
            continue;
        }
        let ours = fs::read_to_string(entry.path()).is_ok_and(|text| text.starts_with(HEADER));
        if ours {
            fs::remove_file(entry.path())?;
            removed.push(name);
        }
    }
    removed.sort();
    Ok(removed)
}

/// What to do with the manifests: the cluster's site answers only once this host's stops,
/// as with `export bootbox`.
fn next_steps(s: &Settings, o: &Options, dir: &Path) -> String {
    let ns = &o.namespace;
    let mut steps = vec![format!(
        "label the one node whose address on the boot LAN is {} (its interface {}): kubectl label node NODE {BOOT_LAN_LABEL}={}",
        s.server_ip,
        s.iface,
        boot_lan(s)
    )];
    if s.rpc_port.is_some() {
        let tls = crate::render::containers::tls_dir(s);
        steps.push(format!(
            "give matchbox its gRPC certificates: kubectl -n {ns} create secret generic {} --from-file={t}/ca.crt --from-file={t}/server.crt --from-file={t}/server.key",
            crate::render::kubernetes::MATCHBOX_TLS_SECRET,
            t = tls.display()
        ));
    }
    steps.extend([
        format!("apply: kubectl apply --server-side -f {}", dir.display()),
        format!("watch: kubectl -n {ns} get pods -o wide -w (the init containers copy the kernel, initramfs and iPXE first), then kubectl -n {ns} logs daemonset/dnsmasq -f while a machine boots"),
        format!(
            "check from this host while its site still runs: cozyboot validate --probe-dhcp warns that {} answers too (probe.servers)",
            s.server_ip
        ),
        format!(
            "stop this host's site so that one DHCP server answers the LAN: cozyboot down --data-dir {}",
            s.data_dir.display()
        ),
    ]);
    let mut text = "Next:".to_string();
    for (i, step) in steps.iter().enumerate() {
        text.push_str(&format!("\n  {}. {step}", i + 1));
    }
    text
}
