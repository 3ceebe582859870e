//! The Talos side of booting: kernel, initramfs and kernel arguments.

use crate::arch::Arch;
use crate::settings::Settings;

pub const KERNEL: &str = "vmlinuz";
pub const INITRAMFS: &str = "initramfs.xz";

/// Arguments Talos needs on metal; `initrd=` because a UEFI kernel otherwise finds no initramfs.
const BASE_ARGS: &[&str] = &[
    "init_on_alloc=1",
    "slab_nomerge",
    "pti=on",
    "console=tty0",
    "printk.devkmsg=on",
    "talos.platform=metal",
];

/// iPXE expands `${...}` before Talos sees the line, so the URL carries every label a group
/// selects on (`arch`, and `mac` for per-node configs); matchbox then picks the same group
/// for `/generic` as it did for `/ipxe`.
pub const CONFIG_QUERY: &str = "arch=${buildarch:uristring}&mac=${mac:hexhyp}";

pub fn kernel_args(s: &Settings, arch: Arch, with_config: bool) -> Vec<String> {
    let mut args = vec![format!("initrd={INITRAMFS}")];
    args.extend(BASE_ARGS.iter().map(|a| a.to_string()));
    args.extend(arch.serial_console().map(str::to_string));
    if with_config {
        args.push(format!("talos.config={}/generic?{CONFIG_QUERY}", s.http_base()));
    }
    args.extend(s.kernel_args.iter().cloned());
    args
}
