//! The Talos side of booting: kernel, initramfs and kernel arguments.

use crate::artifacts::arch::Arch;
use crate::artifacts::layout::INITRAMFS;
use crate::settings::Settings;

/// Arguments Talos needs on metal, in the order of Cozystack's own matchbox profile
/// (`initrd=initramfs.xz init_on_alloc=1 slab_nomerge pti=on console=tty0 console=ttyS0
/// printk.devkmsg=on talos.platform=metal`); `initrd=` because a UEFI kernel otherwise finds
/// no initramfs. The architecture's serial console ([`Arch::serial_console`]) goes right after
/// `console=tty0`, so that it is the last `console=` and becomes /dev/console.
const ARGS_BEFORE_SERIAL: &[&str] = &["init_on_alloc=1", "slab_nomerge", "pti=on", "console=tty0"];
const ARGS_AFTER_SERIAL: &[&str] = &["printk.devkmsg=on", "talos.platform=metal"];

/// iPXE expands `${...}` before Talos sees the line, so the URL carries every label a group
/// selects on (`arch`, and `mac` for per-node configs); matchbox then picks the same group
/// for `/generic` as it did for `/ipxe`.
pub const CONFIG_QUERY: &str = "arch=${buildarch:uristring}&mac=${mac:hexhyp}";

pub fn kernel_args(s: &Settings, arch: Arch, with_config: bool) -> Vec<String> {
    let mut args = vec![format!("initrd={INITRAMFS}")];
    args.extend(ARGS_BEFORE_SERIAL.iter().map(|a| a.to_string()));
    args.push(arch.serial_console().to_string());
    args.extend(ARGS_AFTER_SERIAL.iter().map(|a| a.to_string()));
    if with_config {
        args.push(format!("talos.config={}/generic?{CONFIG_QUERY}", s.http_base()));
    }
    args.extend(s.kernel_args.iter().cloned());
    args
}
