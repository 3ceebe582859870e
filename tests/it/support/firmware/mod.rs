//! Real firmware clients (QEMU with AAVMF, OVMF or SeaBIOS + iPXE) booting through cozyboot's
//! rendered configuration, served by the real dnsmasq and the matchbox double, on a private
//! network made of namespaces this module creates and deletes. See docs/firmware-tests.md.
//!
//! The network of one boot ([`Lab`]):
//!
//! ```text
//!  server ns (TestNet)            client ns (TestNet)                   router ns (proxy mode)
//!  cb-srv 10.213.X.1  <-veth->  cb-cli ─┐                       ┌─ cb-rtrp <-veth-> cb-rtr 10.213.X.254
//!  dnsmasq (cozyboot's argv)            cb-br (bridge) ─ cb-tap ─ QEMU         dnsmasq (addresses only)
//!  matchbox-double :8080
//! ```
//!
//! Nothing is attached to a host interface: every link is created inside a namespace, QEMU
//! gets only the tap (`-nodefaults`, so no user-mode network either), and dropping the [`Lab`]
//! kills every process in its namespaces and deletes them.

use super::netns::{DnsmasqProc, TestNet, DNSMASQ};
use cozyboot::artifacts::arch::{Arch, Bootloader};
use cozyboot::render::{self, Rendered};
use cozyboot::settings::Settings;
use cozyboot::smoke::report::strip_escapes;
use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What `scripts/firmware-artifacts` builds, unless `COZYBOOT_FIRMWARE_DIR` says otherwise.
pub const DEFAULT_ARTIFACTS: &str = "/var/cache/cozyboot-firmware/out";
/// The whole of one boot, firmware to powered-off Linux. Measured here: 15–60 s.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// After matchbox answered `/ipxe` with a 404, how long to wait for iPXE to try anything else.
const AFTER_404: Duration = Duration::from_secs(15);
/// After the initrd download, how long a UEFI kernel may take to say it loaded the initrd.
const NO_INITRD_AFTER: Duration = Duration::from_secs(30);
/// After the initrd download, how long Linux may take to run /init (measured: about 5 s).
const LINUX_AFTER_INITRD: Duration = Duration::from_secs(90);
/// After the marker, how long QEMU may take to power off before it is killed.
const POWEROFF_GRACE: Duration = Duration::from_secs(20);

pub const MARKER: &str = "COZYBOOT-BOOT-OK";
/// The kernel argument that makes the test /init stand in for Talos's maintenance mode: lease
/// an address by DHCP and answer one TCP connection on the port (see scripts/firmware-artifacts).
pub const LISTEN_ARG: &str = "cozyboot.listen=50000";
/// What /init prints once it listens: `COZYBOOT-LISTENING ip=<addr> port=<port>`.
pub const LISTENING: &str = "COZYBOOT-LISTENING";
/// What /init prints after it answered a connection (then it powers off).
pub const ANSWERED: &str = "COZYBOOT-ANSWERED";
pub const CMDLINE_PREFIX: &str = "COZYBOOT-CMDLINE: ";
const POWEROFF: &str = "COZYBOOT-POWEROFF";

/// A missing artifact fails the test where tests must run (CI, `scripts/test`, or
/// `COZYBOOT_REQUIRE_FIRMWARE=1`), see [`super::guard`].
pub fn skip<T>(reason: &str) -> Option<T> {
    super::guard::skip(Some("COZYBOOT_REQUIRE_FIRMWARE"), reason)
}

/// The UKI's file name, in the artifacts (`<arch>/vmlinuz.efi`, as in a Talos installer's
/// `/usr/install/<arch>/`) and in the assets when it is served whole.
pub const UKI: &str = "vmlinuz.efi";

/// One boot at a time per test process: QEMU's software emulation wants both cores.
pub fn one_boot_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

mod artifacts;
mod clients;
mod lab;
mod outcome;
mod processes;
mod stages;

pub use artifacts::*;
pub use clients::*;
pub use lab::*;
pub use outcome::*;
pub use processes::*;
pub use stages::*;
