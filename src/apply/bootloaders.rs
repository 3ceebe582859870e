//! Bootloaders in the TFTP root: x86 iPXE out of the dnsmasq image, arm64 iPXE from a path or
//! URL given, the host's iPXE package, or a (cached) download; each checked against the
//! architecture it is served to.

use super::assets::staging_dir;
use super::undo::Undo;
use super::Context;
use crate::apply::progress::Printer;
use crate::artifacts::arch::{Arch, Bootloader};
use crate::artifacts::pe::{self, PeMachine};
use crate::engine::extract::Limits;
use crate::engine::ContainerEngine;
use crate::error::Error;
use crate::plan::Arm64Source;
use crate::settings::Settings;
use crate::store::state::{self, Arm64Record, CopiedFrom, FileRecord, SourceKind};
use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};

/// The x86 iPXE files the dnsmasq image ships in its TFTP root.
const IMAGE_TFTP_ROOT: &str = "/var/lib/tftpboot";

/// Where Debian (trixie and later) and Ubuntu's `ipxe` package install the arm64 EFI build.
pub const HOST_IPXE_ARM64: &str = "/usr/lib/ipxe/ipxe-arm64.efi";

/// FOR TESTS ONLY: replaces [`HOST_IPXE_ARM64`], so that tests neither depend on nor read
/// the host's `ipxe` package. Not a setting: nothing user-facing mentions it.
pub const HOST_IPXE_ARM64_TEST_ENV: &str = "COZYBOOT_TEST_HOST_IPXE_ARM64";

/// A download larger than this is not an iPXE binary (they are about 1 MiB).
const MAX_DOWNLOAD: u64 = 64 << 20;

/// The host package's arm64 iPXE path ([`HOST_IPXE_ARM64`] unless a test replaced it).
pub fn host_ipxe_arm64() -> PathBuf {
    std::env::var_os(HOST_IPXE_ARM64_TEST_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(HOST_IPXE_ARM64))
}

/// The cached copy of a download from `url`: one file per URL, so a changed
/// `ipxe-arm64-url` never installs what another URL served.
pub fn cache_path(data_dir: &Path, url: &str) -> PathBuf {
    let key = hex::encode(&Sha256::digest(url.as_bytes())[..8]);
    state::cache_dir(data_dir).join(format!("ipxe-arm64-{key}.efi"))
}

/// What [`resolve_arm64`] decides from; gathered from disk by [`arm64_facts`] (tests build it
/// by hand, so they never look at the real `/usr/lib/ipxe`).
#[derive(Debug, Clone)]
pub struct Arm64Facts {
    /// `--ipxe-arm64 PATH|URL`.
    pub explicit: Option<String>,
    /// What state says was installed.
    pub recorded: Option<Arm64Record>,
    /// `<assets>/<bootloader-arm64>`, and whether it exists.
    pub installed: PathBuf,
    pub installed_exists: bool,
    /// Whether that file still has the recorded size.
    pub installed_matches_record: bool,
    /// The host package's binary, and whether it exists.
    pub host: PathBuf,
    pub host_exists: bool,
    /// cozyboot's cached download of `url`, and whether it is there and an arm64 PE.
    pub cache: PathBuf,
    pub cache_usable: bool,
    pub url: String,
}

/// Reads what [`resolve_arm64`] needs from the disk; the host path is passed in.
pub fn arm64_facts(s: &Settings, recorded: Option<&Arm64Record>, host: PathBuf) -> Arm64Facts {
    let installed = s.assets_dir().join(&s.bootloaders.arm64);
    let cache = cache_path(&s.data_dir, &s.ipxe_arm64_url);
    Arm64Facts {
        explicit: s.ipxe_arm64.clone(),
        recorded: recorded.cloned(),
        installed_exists: installed.is_file(),
        installed_matches_record: recorded.is_some_and(|r| r.file.present_in(&s.assets_dir())),
        installed,
        host_exists: host.is_file(),
        host,
        cache_usable: cache.is_file() && pe::machine_of_file(&cache).is_ok_and(|m| m == PeMachine::Arm64),
        cache,
        url: s.ipxe_arm64_url.clone(),
    }
}

/// Where the arm64 iPXE binary comes from, in this order:
///
/// 1. `--ipxe-arm64 PATH|URL`: always wins.
/// 2. A file already in the assets dir that cozyboot did not choose by itself (placed by hand,
///    or installed from an earlier `--ipxe-arm64`): kept, never overwritten without being asked.
/// 3. The host's iPXE package (`/usr/lib/ipxe/ipxe-arm64.efi`).
/// 4. cozyboot's cached download of `ipxe-arm64-url`.
/// 5. A download of `ipxe-arm64-url`.
///
/// The `source` of the result is what state records and the plan compares, so an unchanged
/// source with the file still in place plans nothing: a download and its cached copy share
/// the URL as their source, and a second `up` neither downloads nor copies.
pub fn resolve_arm64(f: &Arm64Facts) -> Arm64Source {
    let auto = |kind, source: String, cached: Option<PathBuf>| Arm64Source { kind, source, cached };
    if let Some(explicit) = &f.explicit {
        return auto(SourceKind::Explicit, explicit.clone(), None);
    }
    let placed = || auto(SourceKind::Placed, f.installed.display().to_string(), None);
    if f.installed_exists {
        match &f.recorded {
            None => return placed(),
            Some(r)
                if matches!(
                    r.source_kind,
                    None | Some(SourceKind::Explicit) | Some(SourceKind::Placed)
                ) =>
            {
                return match (&r.file.source, f.installed_matches_record) {
                    (Some(source), true) => auto(r.source_kind.unwrap_or(SourceKind::Explicit), source.clone(), None),
                    _ => placed(),
                };
            }
            Some(_) => {}
        }
    }
    if f.host_exists {
        return auto(SourceKind::HostPackage, f.host.display().to_string(), None);
    }
    auto(
        SourceKind::Download,
        f.url.clone(),
        f.cache_usable.then(|| f.cache.clone()),
    )
}

/// With arm64 served: where its iPXE binary comes from this run. Local files are checked
/// now, before anything is touched; URLs are fetched (and checked) by [`prefetch`].
pub(super) fn arm64_source(s: &Settings, recorded: Option<&Arm64Record>) -> Result<Option<Arm64Source>, Error> {
    if !s.serves(Arch::Arm64) {
        return Ok(None);
    }
    let facts = arm64_facts(s, recorded, host_ipxe_arm64());
    let source = resolve_arm64(&facts);
    let local = match source.kind {
        SourceKind::Explicit if is_url(&source.source) => None,
        SourceKind::Explicit if facts.explicit.is_none() => Some(facts.installed.clone()),
        SourceKind::Explicit | SourceKind::HostPackage | SourceKind::Placed => Some(PathBuf::from(&source.source)),
        SourceKind::Download => None,
    };
    if let Some(path) = local {
        check_pe(&path, Bootloader::Arm64Efi)?;
    }
    Ok(Some(source))
}

/// Fetches a binary the plan installs from a URL, before anything is changed, and checks it:
/// offline, a bad mirror or an x86 build leaves containers, assets and state as they were.
pub(super) async fn prefetch(s: &Settings, source: &Arm64Source, printer: &Printer) -> Result<Vec<u8>, Error> {
    let fetched = match download(&source.source, printer).await {
        Ok(bytes) => bytes,
        Err(e) if source.kind == SourceKind::Download => return Err(no_source(s, &source.source, &e)),
        Err(e) => {
            return Err(Error::Failed(format!(
                "downloading {}: {e}
  nothing was changed
  fix: check the URL, or download it yourself and pass the path",
                source.source
            )))
        }
    };
    check_pe_bytes(&fetched, &source.source, Bootloader::Arm64Efi).map_err(|m| Error::Failed(nothing_changed(&m)))?;
    Ok(fetched)
}

/// No `--ipxe-arm64`, no host package, no cached copy, and the download failed.
fn no_source(s: &Settings, url: &str, why: &str) -> Error {
    let installed = s.assets_dir().join(&s.bootloaders.arm64);
    Error::Failed(format!(
        "no arm64 iPXE binary: ARM64 UEFI clients (DHCP arch 11) would be offered {name} and find nothing. \
         {host} does not exist, no copy is cached in {cache}, and downloading {url} failed: {why}\n  \
         nothing was changed\n  \
         fix: install Debian trixie's (or Ubuntu's) `ipxe` package, which ships {HOST_IPXE_ARM64}; \
         or pass --ipxe-arm64 PATH|URL with an arm64 iPXE EFI build; \
         or set --ipxe-arm64-url (COZYBOOT_IPXE_ARM64_URL) to a mirror you can reach; \
         or place the file at {installed}",
        name = s.bootloaders.arm64,
        host = host_ipxe_arm64().display(),
        cache = state::cache_dir(&s.data_dir).display(),
        installed = installed.display(),
    ))
}

/// `problem\n  fix: ...` → `problem\n  nothing was changed\n  fix: ...`.
fn nothing_changed(message: &str) -> String {
    match message.split_once("\n  fix:") {
        Some((problem, fix)) => format!("{problem}\n  nothing was changed\n  fix:{fix}"),
        None => format!("{message}\n  nothing was changed"),
    }
}

pub(super) fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// Refuses a bootloader built for another architecture: the guide's classic silent failure.
fn check_pe(path: &Path, bootloader: Bootloader) -> Result<(), Error> {
    let machine = pe::machine_of_file(path).map_err(|e| not_usable(&path.display().to_string(), bootloader, &e))?;
    check_machine(machine, &path.display().to_string(), bootloader).map_err(Error::Failed)
}

/// Like [`check_pe`], for a binary held in memory; `what` names it (a URL or path).
fn check_pe_bytes(bytes: &[u8], what: &str, bootloader: Bootloader) -> Result<(), String> {
    let machine = pe::machine(bytes).map_err(|e| match not_usable(what, bootloader, &e) {
        Error::Failed(m) => m,
        other => other.to_string(),
    })?;
    check_machine(machine, what, bootloader)
}

fn not_usable(what: &str, bootloader: Bootloader, e: &pe::PeError) -> Error {
    Error::Failed(format!(
        "{what} is not a usable {} iPXE EFI binary: {e}\n  fix: give an iPXE EFI build for {}",
        bootloader.arch(),
        bootloader.arch()
    ))
}

fn check_machine(machine: PeMachine, what: &str, bootloader: Bootloader) -> Result<(), String> {
    let wanted = match bootloader.arch() {
        Arch::Arm64 => PeMachine::Arm64,
        Arch::Amd64 => PeMachine::X86_64,
    };
    if machine != wanted {
        return Err(format!(
            "{what} is built for {machine:?}, but it would be served to {} clients, whose firmware cannot run it\n  fix: give an iPXE EFI build for {}",
            bootloader.arch(),
            bootloader.arch()
        ));
    }
    Ok(())
}

pub(super) async fn copy_x86_bootloaders<E: ContainerEngine>(
    cx: &Context<'_, E>,
    image: &str,
    image_id: &str,
    undo: &mut Undo,
) -> Result<CopiedFrom, Error> {
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
            undo.save_file(&dest)?;
            let tmp = s.assets_dir().join(format!(".{to}.cozyboot-new"));
            fs_err::copy(&src, &tmp)?;
            fs_err::rename(&tmp, &dest)?;
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

/// Installs the arm64 iPXE binary as `<assets>/<bootloader-arm64>`, from `fetched` (what
/// [`prefetch`] downloaded), else the cached copy, else the source itself; a download is
/// also kept in the cache, so the next `up` need not fetch it again.
pub(super) async fn install_arm64_bootloader(
    s: &Settings,
    source: &Arm64Source,
    fetched: Option<Vec<u8>>,
    undo: &mut Undo,
    printer: &Printer,
) -> Result<Arm64Record, Error> {
    let bytes = match (fetched, &source.cached) {
        (Some(bytes), _) => bytes,
        (None, Some(cached)) => fs::read(cached).map_err(|e| {
            Error::Failed(format!(
                "cannot read the cached arm64 iPXE binary {}: {e}",
                cached.display()
            ))
        })?,
        (None, None) if is_url(&source.source) => download(&source.source, printer).await.map_err(|e| {
            Error::Failed(format!(
                "downloading {}: {e}\n  fix: check the URL, or download it yourself and pass the path",
                source.source
            ))
        })?,
        (None, None) => fs::read(&source.source).map_err(|e| {
            Error::Failed(format!(
                "cannot read the arm64 iPXE binary {}: {e}\n  fix: check the path given to --ipxe-arm64",
                source.source
            ))
        })?,
    };
    check_pe_bytes(&bytes, &source.source, Bootloader::Arm64Efi).map_err(Error::Failed)?;
    if source.kind == SourceKind::Download && source.cached.is_none() {
        let cache = cache_path(&s.data_dir, &source.source);
        fs_err::create_dir_all(state::cache_dir(&s.data_dir))?;
        write_atomically(&cache, &bytes)?;
    }
    fs_err::create_dir_all(s.assets_dir())?;
    let dest = s.assets_dir().join(&s.bootloaders.arm64);
    undo.save_file(&dest)?;
    write_atomically(&dest, &bytes)?;
    Ok(Arm64Record {
        file: FileRecord {
            name: s.bootloaders.arm64.clone(),
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
            source: Some(source.source.clone()),
        },
        source_kind: Some(source.kind),
    })
}

/// Writes `dest` through a temporary file beside it and a rename, world-readable (dnsmasq
/// serves only world-readable files when root).
pub(super) fn write_atomically(dest: &Path, bytes: &[u8]) -> Result<(), Error> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dest.with_file_name(format!(".{name}.cozyboot-new"));
    let result = (|| {
        fs_err::write(&tmp, bytes)?;
        fs_err::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        fs::rename(&tmp, dest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    Ok(result?)
}

/// Downloads `url` into memory (iPXE binaries are small; see [`MAX_DOWNLOAD`]).
async fn download(url: &str, printer: &Printer) -> Result<Vec<u8>, String> {
    download_limited(url, printer, MAX_DOWNLOAD).await
}

/// Downloads `url` into memory, refusing more than `max` bytes.
pub(super) async fn download_limited(url: &str, printer: &Printer, max: u64) -> Result<Vec<u8>, String> {
    use futures_util::StreamExt;
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(15))
        .timeout(std::time::Duration::from_secs(300))
        .build()
        .map_err(|e| e.to_string())?;
    let response = client.get(url).send().await.map_err(|e| error_chain(&e))?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    if response.content_length().is_some_and(|n| n > max) {
        return Err(format!("larger than {} MiB: not what was asked for", max >> 20));
    }
    let bar = printer.download(response.content_length());
    let mut bytes = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| error_chain(&e))?;
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > max {
            return Err(format!("larger than {} MiB: not what was asked for", max >> 20));
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(bytes)
}

/// reqwest's top-level message ("error sending request") hides the cause (connection refused,
/// DNS, TLS); show the whole chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://boot.ipxe.org/arm64-efi/ipxe.efi";

    /// Nothing anywhere: no flag, nothing installed, no host package, no cache. The paths are
    /// made up, so these tests never look at the real /usr/lib/ipxe.
    fn nothing() -> Arm64Facts {
        Arm64Facts {
            explicit: None,
            recorded: None,
            installed: "/site/assets/bootaa64.efi".into(),
            installed_exists: false,
            installed_matches_record: false,
            host: "/host/usr/lib/ipxe/ipxe-arm64.efi".into(),
            host_exists: false,
            cache: "/site/.cozyboot/cache/ipxe-arm64-1.efi".into(),
            cache_usable: false,
            url: URL.into(),
        }
    }

    fn record(kind: Option<SourceKind>, source: &str) -> Option<Arm64Record> {
        Some(Arm64Record {
            file: FileRecord {
                name: "bootaa64.efi".into(),
                size: 1,
                sha256: String::new(),
                source: Some(source.into()),
            },
            source_kind: kind,
        })
    }

    fn resolved(f: &Arm64Facts) -> (SourceKind, String, Option<PathBuf>) {
        let r = resolve_arm64(f);
        (r.kind, r.source, r.cached)
    }

    #[test]
    fn host_package_then_cache_then_download() {
        let mut f = nothing();
        assert_eq!(resolved(&f), (SourceKind::Download, URL.into(), None));
        f.cache_usable = true;
        assert_eq!(
            resolved(&f),
            (SourceKind::Download, URL.into(), Some(f.cache.clone())),
            "a cached copy keeps the URL as its source, so the plan sees no change"
        );
        f.host_exists = true;
        assert_eq!(
            resolved(&f),
            (
                SourceKind::HostPackage,
                "/host/usr/lib/ipxe/ipxe-arm64.efi".into(),
                None
            )
        );
    }

    #[test]
    fn an_explicit_source_always_wins() {
        let mut f = nothing();
        f.host_exists = true;
        f.cache_usable = true;
        f.installed_exists = true;
        f.explicit = Some("http://mirror.lan/arm64.efi".into());
        assert_eq!(
            resolved(&f),
            (SourceKind::Explicit, "http://mirror.lan/arm64.efi".into(), None)
        );
    }

    #[test]
    fn a_file_placed_by_hand_or_given_earlier_is_kept() {
        let mut f = nothing();
        f.host_exists = true;
        f.installed_exists = true;
        assert_eq!(
            resolved(&f),
            (SourceKind::Placed, "/site/assets/bootaa64.efi".into(), None),
            "unrecorded: someone put it there"
        );
        // Installed from --ipxe-arm64 before (or by a cozyboot that recorded no kind), still in place.
        for kind in [None, Some(SourceKind::Explicit)] {
            f.recorded = record(kind, "/srv/ipxe-arm64.efi");
            f.installed_matches_record = true;
            assert_eq!(resolved(&f), (SourceKind::Explicit, "/srv/ipxe-arm64.efi".into(), None));
        }
        // Replaced by hand since: that file is kept (and recorded again).
        f.installed_matches_record = false;
        assert_eq!(resolved(&f).0, SourceKind::Placed);
    }

    #[test]
    fn what_cozyboot_chose_itself_follows_the_order_again() {
        let mut f = nothing();
        f.installed_exists = true;
        f.installed_matches_record = true;
        f.recorded = record(Some(SourceKind::Download), URL);
        f.cache_usable = true;
        assert_eq!(resolved(&f), (SourceKind::Download, URL.into(), Some(f.cache.clone())));
        f.host_exists = true;
        assert_eq!(
            resolved(&f).0,
            SourceKind::HostPackage,
            "a newly installed host package wins"
        );
        // Missing from the assets dir: chosen again, not treated as placed.
        f.installed_exists = false;
        f.recorded = record(Some(SourceKind::Placed), "/site/assets/bootaa64.efi");
        assert_eq!(resolved(&f).0, SourceKind::HostPackage);
    }

    #[test]
    fn the_real_host_path_is_the_debian_package_path() {
        assert_eq!(HOST_IPXE_ARM64, "/usr/lib/ipxe/ipxe-arm64.efi");
    }

    #[test]
    fn each_url_has_its_own_cache_file_in_the_state_dir() {
        let data = Path::new("/opt/matchbox");
        let a = cache_path(data, URL);
        assert!(a.starts_with("/opt/matchbox/.cozyboot/cache"), "{}", a.display());
        assert_ne!(a, cache_path(data, "http://mirror.lan/ipxe.efi"));
        assert_eq!(a, cache_path(data, URL));
    }

    #[test]
    fn messages_say_nothing_was_changed_before_the_fix() {
        assert_eq!(
            nothing_changed("x is built for X86_64\n  fix: give one"),
            "x is built for X86_64\n  nothing was changed\n  fix: give one"
        );
    }
}
