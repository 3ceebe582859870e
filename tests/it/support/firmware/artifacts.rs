//! What `scripts/firmware-artifacts` built: firmware, kernels, the test initramfs, the UKI image.

use super::*;

/// The line `scripts/firmware-artifacts` writes into `manifest.txt` since its /init writes
/// only to /dev/console. Older artifacts wrote to the UARTs directly and would let a boot
/// whose console is not the serial port pass.
pub const MANIFEST_STAMP: &str = "initramfs-output: /dev/console";
/// The command line embedded in the test UKIs (`<arch>/vmlinuz.efi`): not cozyboot's.
pub const UKI_EMBEDDED_CMDLINE: &str = "console=tty0 cozyboot.embedded=1";

/// The files `scripts/firmware-artifacts` lays out: Debian's kernels, iPXE binaries, the
/// test initramfs, a UKI per architecture made of the two, and links to the firmware images.
pub struct Artifacts {
    pub dir: PathBuf,
    /// Bootloaders served instead of the ones in `dir` (see [`Artifacts::with_bootloader`]).
    overrides: Vec<(Bootloader, PathBuf)>,
    /// Bootloaders left out of the assets (see [`Artifacts::without_bootloader`]).
    pub(super) omitted: Vec<Bootloader>,
    /// How the Talos kernel and initramfs are laid down in the assets.
    pub talos: TalosSource,
}

/// Where the kernel and initramfs served as `talos/<arch>/...` come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TalosSource {
    /// `<arch>/vmlinuz` and `<arch>/initramfs.xz` as two files (installers before Talos 1.10).
    Pair,
    /// Only the UKI `<arch>/vmlinuz.efi` (Talos >= 1.10 installers): `cozyboot::artifacts::uki::split`
    /// takes its `.linux` and `.initrd` sections out to `talos/<arch>/vmlinuz` and
    /// `talos/<arch>/initramfs.xz`, as `cozyboot up` does.
    UkiSplit,
    /// The UKI itself, served as `talos/<arch>/vmlinuz.efi` (and nothing else).
    Uki,
}

impl Artifacts {
    const FILES: &'static [&'static str] = &[
        "ipxe/ipxe-arm64.efi",
        "ipxe/ipxe.efi",
        "ipxe/undionly.kpxe",
        "ipxe/ipxe-bookworm.efi",
        "arm64/vmlinuz",
        "arm64/initramfs.xz",
        "amd64/vmlinuz",
        "amd64/initramfs.xz",
        "arm64/vmlinuz.efi",
        "amd64/vmlinuz.efi",
        "firmware/QEMU_EFI.fd",
        "firmware/OVMF.fd",
        "firmware/u-boot-qemu_arm64.bin",
        "manifest.txt",
    ];
    const PROGRAMS: &'static [&'static str] = &["/usr/bin/qemu-system-aarch64", "/usr/bin/qemu-system-x86_64"];

    /// Finds them, or returns `None` after printing what is missing (run
    /// `scripts/firmware-artifacts`); panics instead where they are required.
    pub fn find() -> Option<Self> {
        let dir = std::env::var_os("COZYBOOT_FIRMWARE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ARTIFACTS));
        let missing: Vec<String> = Self::FILES
            .iter()
            .map(|f| dir.join(f))
            .chain(Self::PROGRAMS.iter().map(PathBuf::from))
            .filter(|p| !p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !missing.is_empty() {
            return skip(&format!(
                "firmware test artifacts missing ({}); run scripts/firmware-artifacts",
                missing.join(", ")
            ));
        }
        let manifest = fs::read_to_string(dir.join("manifest.txt")).unwrap_or_default();
        if !manifest.lines().any(|l| l.trim() == MANIFEST_STAMP) {
            return skip(&format!(
                "{} was made by an older scripts/firmware-artifacts (no `{MANIFEST_STAMP}`: its \
                 /init writes to the UARTs directly); run scripts/firmware-artifacts again",
                dir.display()
            ));
        }
        Some(Artifacts {
            dir,
            overrides: Vec::new(),
            omitted: Vec::new(),
            talos: TalosSource::Pair,
        })
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Serves `file` as bootloader `b` (e.g. an older iPXE).
    pub fn with_bootloader(mut self, b: Bootloader, file: impl Into<PathBuf>) -> Self {
        self.overrides.push((b, file.into()));
        self
    }

    /// Leaves bootloader `b` out of the TFTP root, as a data dir nobody provisioned.
    pub fn without_bootloader(mut self, b: Bootloader) -> Self {
        self.omitted.push(b);
        self
    }

    /// Lays down the Talos kernel and initramfs from `source` (see [`TalosSource`]).
    pub fn with_talos(mut self, source: TalosSource) -> Self {
        self.talos = source;
        self
    }

    /// The arm64 iPXE, x86_64 iPXE and BIOS iPXE binaries cozyboot provisions.
    pub(super) fn bootloader(&self, b: Bootloader) -> PathBuf {
        if let Some((_, file)) = self.overrides.iter().rev().find(|(o, _)| *o == b) {
            return file.clone();
        }
        self.path(match b {
            Bootloader::Arm64Efi => "ipxe/ipxe-arm64.efi",
            Bootloader::X86_64Efi => "ipxe/ipxe.efi",
            Bootloader::Bios => "ipxe/undionly.kpxe",
        })
    }
}

/// Imports a talos image in the shape of a Talos >= 1.10 installer: only the ukify-built UKIs
/// (`/usr/install/<arch>/vmlinuz.efi`), labelled as a test's. `work` holds the tar.
pub fn uki_image(a: &Artifacts, reference: &str, work: &Path) {
    let root = work.join("image-root");
    for arch in ["arm64", "amd64"] {
        let dir = root.join("usr/install").join(arch);
        fs::create_dir_all(&dir).unwrap();
        fs::copy(a.path(&format!("{arch}/{UKI}")), dir.join(UKI)).unwrap();
    }
    let tar = work.join("image.tar");
    let ok = Command::new("tar")
        .args(["-C", root.to_str().unwrap(), "-cf", tar.to_str().unwrap(), "."])
        .status()
        .unwrap()
        .success();
    assert!(ok, "tar of the UKI image");
    let out = Command::new("docker")
        .args(["import", "--change", "LABEL io.cozyboot.test=firmware-up"])
        .arg(&tar)
        .arg(reference)
        .output()
        .expect("the docker CLI runs");
    assert!(
        out.status.success(),
        "docker import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
