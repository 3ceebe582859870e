//! Where the real published images keep the Talos kernel and initramfs, in the order
//! cozyboot looks (see docs/arm64.md, "Where the assets come from"):
//!
//! 1. `/assets/talos/<arch>/{vmlinuz,initramfs.xz}`: the documented cozystack-assets layout;
//! 2. `/assets/talos/<arch>/boot/{vmlinuz,initramfs.xz}`: the ARM64 fork's asset container,
//!    with `checksums.sha256` one level up (`./boot/vmlinuz` lines);
//! 3. `/usr/install/<arch>/{vmlinuz,initramfs.xz}`: a Talos installer before v1.10;
//! 4. `/usr/install/<arch>/vmlinuz.efi`: a Talos installer since v1.10, a UKI only.
//!
//! Pure: which files to ask the engine for, and how to read a checksum file.

use crate::artifacts::arch::Arch;
use serde::Serialize;
use std::collections::BTreeMap;

/// The kernel's file name, in the images and as matchbox serves it.
pub const KERNEL: &str = "vmlinuz";
/// The initramfs's file name, in the images and as matchbox serves it.
pub const INITRAMFS: &str = "initramfs.xz";
/// The UKI's file name in a Talos installer.
pub const UKI: &str = "vmlinuz.efi";
/// The checksum file the asset container carries beside its assets.
pub const CHECKSUMS: &str = "checksums.sha256";

/// One way an image may lay out a set of files (absolute paths inside the image).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSet {
    pub required: Vec<String>,
    pub optional: Vec<String>,
}

impl FileSet {
    pub fn describe(&self) -> String {
        self.required.join(" + ")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Assets,
    AssetsBoot,
    Installer,
    InstallerUki,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Assets, Kind::AssetsBoot, Kind::Installer, Kind::InstallerUki];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Assets => "assets",
            Kind::AssetsBoot => "assets-boot",
            Kind::Installer => "installer",
            Kind::InstallerUki => "installer-uki",
        }
    }

    /// Where in the image this layout keeps the served files.
    pub fn dir(self, arch: Arch) -> String {
        let a = arch.asset_dir();
        match self {
            Kind::Assets => format!("/assets/talos/{a}"),
            Kind::AssetsBoot => format!("/assets/talos/{a}/boot"),
            Kind::Installer | Kind::InstallerUki => format!("/usr/install/{a}"),
        }
    }

    /// The files this layout must have, by name.
    pub fn required(self) -> &'static [&'static str] {
        match self {
            Kind::InstallerUki => &[UKI],
            _ => &[KERNEL, INITRAMFS],
        }
    }

    /// The checksum file of this layout, if it may carry one, and the prefix its lines put
    /// before the served files' names.
    pub fn checksums(self, arch: Arch) -> Option<(String, &'static str)> {
        let dir = format!("/assets/talos/{}", arch.asset_dir());
        match self {
            Kind::Assets => Some((format!("{dir}/{CHECKSUMS}"), "")),
            Kind::AssetsBoot => Some((format!("{dir}/{CHECKSUMS}"), "boot/")),
            Kind::Installer | Kind::InstallerUki => None,
        }
    }

    /// What the engine is asked for: the required files, and the checksum file if present.
    pub fn file_set(self, arch: Arch) -> FileSet {
        let dir = self.dir(arch);
        FileSet {
            required: self.required().iter().map(|f| format!("{dir}/{f}")).collect(),
            optional: self.checksums(arch).map(|(path, _)| path).into_iter().collect(),
        }
    }
}

/// Every layout for `arch`, in the order they are tried.
pub fn file_sets(arch: Arch) -> Vec<FileSet> {
    Kind::ALL.iter().map(|k| k.file_set(arch)).collect()
}

/// A `sha256sum` file: name (without `./` and the binary-mode `*`) to lower-case digest.
/// Lines that are not `<64 hex> <name>` are ignored, as `sha256sum -c` would warn and go on.
pub fn parse_checksums(text: &str) -> BTreeMap<String, String> {
    let mut sums = BTreeMap::new();
    for line in text.lines() {
        let Some((digest, name)) = line.trim().split_once(char::is_whitespace) else {
            continue;
        };
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let name = name.trim_start();
        let name = name.strip_prefix('*').unwrap_or(name);
        let name = name.strip_prefix("./").unwrap_or(name);
        sums.insert(name.to_string(), digest.to_ascii_lowercase());
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_tried_in_the_documented_order() {
        let sets = file_sets(Arch::Arm64);
        let firsts: Vec<&str> = sets.iter().map(|s| s.required[0].as_str()).collect();
        assert_eq!(
            firsts,
            [
                "/assets/talos/arm64/vmlinuz",
                "/assets/talos/arm64/boot/vmlinuz",
                "/usr/install/arm64/vmlinuz",
                "/usr/install/arm64/vmlinuz.efi",
            ]
        );
        assert_eq!(sets[1].optional, ["/assets/talos/arm64/checksums.sha256"]);
        assert!(sets[3].optional.is_empty(), "an installer carries no checksum file");
        assert_eq!(Kind::InstallerUki.dir(Arch::Amd64), "/usr/install/amd64");
    }

    #[test]
    fn reads_sha256sum_output_in_its_forms() {
        let a = "a".repeat(64);
        let b = "B".repeat(64);
        let text = format!(
            "{a}  ./boot/vmlinuz\n{b} *./boot/initramfs.xz\n\nnot a line\n{}  short\n{a}  validation/build-report.txt\n",
            "c".repeat(10)
        );
        let sums = parse_checksums(&text);
        assert_eq!(sums.get("boot/vmlinuz"), Some(&a));
        assert_eq!(sums.get("boot/initramfs.xz"), Some(&"b".repeat(64)));
        assert_eq!(sums.len(), 3, "{sums:?}");
    }
}
