//! Bootloaders in the TFTP root: x86 iPXE out of the dnsmasq image, arm64 iPXE from a path
//! or URL; each checked against the architecture it is served to.

use super::assets::staging_dir;
use super::Context;
use crate::arch::{Arch, Bootloader};
use crate::engine::extract::Limits;
use crate::error::Error;
use crate::pe::{self, PeMachine};
use crate::settings::Settings;
use crate::state::{CopiedFrom, FileRecord};
use sha2::{Digest, Sha256};
use std::fs;
use std::path::Path;

/// The x86 iPXE files the dnsmasq image ships in its TFTP root.
const IMAGE_TFTP_ROOT: &str = "/var/lib/tftpboot";

/// With arm64 served, a bootloader must come from somewhere, and must really be arm64.
pub(super) fn check_arm64_bootloader(s: &Settings) -> Result<(), Error> {
    if !s.serves(Arch::Arm64) {
        return Ok(());
    }
    let installed = s.assets_dir().join(&s.bootloaders.arm64);
    if s.ipxe_arm64.is_none() && !installed.exists() {
        return Err(Error::Failed(format!(
            "no arm64 iPXE binary: ARM64 UEFI clients (DHCP arch 11) would be offered {} and find nothing\n  \
             fix: pass --ipxe-arm64 PATH|URL with an arm64 iPXE EFI build, e.g. /usr/lib/ipxe/ipxe-arm64.efi from Debian trixie's `ipxe` package, \
             or an upstream bin-arm64-efi/ipxe.efi build; or place it at {}",
            s.bootloaders.arm64,
            installed.display()
        )));
    }
    if let Some(source) = s.ipxe_arm64.as_deref().filter(|src| !is_url(src)) {
        check_pe(Path::new(source), Bootloader::Arm64Efi)?;
    } else if s.ipxe_arm64.is_none() {
        check_pe(&installed, Bootloader::Arm64Efi)?;
    }
    Ok(())
}

fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// Refuses a bootloader built for another architecture: the guide's classic silent failure.
fn check_pe(path: &Path, bootloader: Bootloader) -> Result<(), Error> {
    let machine = pe::machine_of_file(path).map_err(|e| {
        Error::Failed(format!(
            "{} is not a usable {} iPXE EFI binary: {e}\n  fix: give an iPXE EFI build for {}",
            path.display(),
            bootloader.arch(),
            bootloader.arch()
        ))
    })?;
    let wanted = match bootloader.arch() {
        Arch::Arm64 => PeMachine::Arm64,
        Arch::Amd64 => PeMachine::X86_64,
    };
    if machine != wanted {
        return Err(Error::Failed(format!(
            "{} is built for {machine:?}, but it would be served to {} clients, whose firmware cannot run it\n  fix: give an iPXE EFI build for {}",
            path.display(),
            bootloader.arch(),
            bootloader.arch()
        )));
    }
    Ok(())
}

pub(super) async fn copy_x86_bootloaders(cx: &Context<'_>, image: &str, image_id: &str) -> Result<CopiedFrom, Error> {
    let s = cx.s;
    let staging = staging_dir(s, "tftpboot")?;
    let result = cx
        .engine
        .export_dir(image, &[IMAGE_TFTP_ROOT], &staging, &Limits::default())
        .await;
    let outcome = (|| {
        let report = result?;
        let mut files = Vec::new();
        // (file in the image, name in our TFTP root, must be a PE of this arch)
        let wanted = [
            ("ipxe.efi", s.bootloaders.x86_64.clone(), Some(Bootloader::X86_64Efi)),
            ("undionly.kpxe", s.bootloaders.bios.clone(), None),
            // Some dnsmasq versions append `.0` to PXE basenames; keep that name working too.
            ("undionly.kpxe", format!("{}.0", s.bootloaders.bios), None),
        ];
        for (from, to, pe_arch) in wanted {
            let found = report.file(from).ok_or_else(|| {
                Error::Failed(format!("{image} has no {IMAGE_TFTP_ROOT}/{from}\n  fix: use the poseidon dnsmasq image or one that ships iPXE in {IMAGE_TFTP_ROOT}"))
            })?;
            let src = staging.join(&found.path);
            if let Some(b) = pe_arch {
                check_pe(&src, b)?;
            }
            let dest = s.assets_dir().join(&to);
            let tmp = s.assets_dir().join(format!(".{to}.cozyboot-new"));
            fs::copy(&src, &tmp)?;
            fs::rename(&tmp, &dest)?;
            files.push(FileRecord {
                name: to,
                size: found.size,
                sha256: found.sha256.clone(),
                source: Some(format!("{image}:{IMAGE_TFTP_ROOT}/{from}")),
            });
        }
        Ok::<_, Error>(files)
    })();
    let _ = fs::remove_dir_all(&staging);
    Ok(CopiedFrom {
        image: image.to_string(),
        image_id: image_id.to_string(),
        files: outcome?,
    })
}

pub(super) async fn install_arm64_bootloader(s: &Settings, source: &str) -> Result<FileRecord, Error> {
    fs::create_dir_all(s.assets_dir())?;
    let tmp = s.assets_dir().join(format!(".{}.cozyboot-new", s.bootloaders.arm64));
    let result = async {
        if is_url(source) {
            download(source, &tmp).await?;
        } else {
            fs::copy(source, &tmp).map_err(|e| {
                Error::Failed(format!(
                    "cannot read the arm64 iPXE binary {source}: {e}\n  fix: check the path given to --ipxe-arm64"
                ))
            })?;
        }
        fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        check_pe(&tmp, Bootloader::Arm64Efi)?;
        let bytes = fs::read(&tmp)?;
        fs::rename(&tmp, s.assets_dir().join(&s.bootloaders.arm64))?;
        Ok::<_, Error>(FileRecord {
            name: s.bootloaders.arm64.clone(),
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
            source: Some(source.to_string()),
        })
    }
    .await;
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

async fn download(url: &str, dest: &Path) -> Result<(), Error> {
    use futures_util::StreamExt;
    use std::io::Write;
    let fail = |e: String| {
        Error::Failed(format!(
            "downloading {url}: {e}\n  fix: check the URL, or download it yourself and pass the path"
        ))
    };
    let response = reqwest::get(url).await.map_err(|e| fail(e.to_string()))?;
    if !response.status().is_success() {
        return Err(fail(format!("HTTP {}", response.status())));
    }
    let bar =
        indicatif::ProgressBar::with_draw_target(response.content_length(), indicatif::ProgressDrawTarget::stderr());
    let mut file = fs::File::create(dest)?;
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| fail(e.to_string()))?;
        file.write_all(&chunk)?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(())
}
