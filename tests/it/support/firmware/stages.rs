//! The stages of a network boot and the evidence that says each was reached.

use super::*;

/// The steps of a network boot, in order; each is recognised by the evidence it leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// dnsmasq's reply carried the firmware's boot file (for the BIOS client, already iPXE,
    /// the `boot.ipxe` URL).
    DhcpOffer,
    /// dnsmasq sent the bootloader over TFTP (UEFI clients only).
    Tftp,
    /// iPXE fetched `/boot.ipxe` from matchbox.
    BootIpxe,
    /// iPXE fetched `/ipxe?...` and matchbox found a profile for its labels.
    Ipxe,
    /// iPXE fetched the kernel from `/assets/talos/<arch>/vmlinuz`.
    Kernel,
    /// iPXE fetched the initramfs.
    Initrd,
    /// Linux ran our /init: the marker is on the serial console.
    Linux,
    /// /init, standing in for Talos in maintenance mode ([`LISTEN_ARG`]), leased an address
    /// and a connection to its port came (a `cozyboot nodes` probe).
    Answered,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::DhcpOffer => "DHCP offer",
            Stage::Tftp => "TFTP",
            Stage::BootIpxe => "boot.ipxe",
            Stage::Ipxe => "/ipxe",
            Stage::Kernel => "kernel",
            Stage::Initrd => "initrd",
            Stage::Linux => "Linux",
            Stage::Answered => "TCP answered",
        })
    }
}

pub struct Evidence {
    pub dnsmasq: String,
    pub router: String,
    pub matchbox: String,
    pub serial: String,
    pub qemu: String,
}

pub(super) struct Watch<'a> {
    pub(super) client: Client,
    pub(super) s: &'a Settings,
    pub(super) bootloader_name: Option<String>,
    /// Whether the client's profile has an initrd (not when it boots a UKI whole).
    pub(super) initrd: bool,
    /// Whether /init is asked to stand in for Talos's maintenance mode ([`LISTEN_ARG`]).
    pub(super) listen: bool,
}

impl Watch<'_> {
    pub(super) fn stages(&self) -> Vec<Stage> {
        let mut v = vec![Stage::DhcpOffer];
        if self.client.bootloader().is_some() || self.client.uboot() {
            v.push(Stage::Tftp);
        }
        if !self.client.uboot() {
            v.extend([Stage::BootIpxe, Stage::Ipxe]);
        }
        v.push(Stage::Kernel);
        if self.initrd {
            v.push(Stage::Initrd);
        }
        v.push(Stage::Linux);
        if self.listen {
            v.push(Stage::Answered);
        }
        v
    }

    fn asset(&self, file: &str) -> String {
        format!("HTTP GET /assets/talos/{}/{file}", self.client.arch().asset_dir())
    }

    /// A Talos file fetched: from matchbox by iPXE, over TFTP by U-Boot's script (dnsmasq
    /// logs `sent <root>/talos/<arch>/<file> to <ip>`).
    fn fetched(&self, file: &str, ev: &Evidence) -> bool {
        if self.client.uboot() {
            let path = format!("/talos/{}/{file} to ", self.client.arch().asset_dir());
            ev.dnsmasq.lines().any(|l| l.contains("sent ") && l.contains(&path))
        } else {
            ev.matchbox.contains(&self.asset(file))
        }
    }

    pub(super) fn reached(&self, stage: Stage, ev: &Evidence) -> bool {
        match stage {
            Stage::DhcpOffer => {
                let file = match &self.bootloader_name {
                    Some(name) => name.clone(),
                    None => format!("{}/boot.ipxe", self.s.http_base()),
                };
                // With --log-dhcp, full mode logs the option sent (`sent size: N option: 67
                // bootfile-name  <file>`), proxy mode its answer on 4011 (`bootfile name: <file>`).
                // U-Boot ignores proxy DHCP: in proxy mode the router names the boot script.
                let router = if self.client.uboot() { ev.router.as_str() } else { "" };
                ev.dnsmasq.lines().chain(router.lines()).any(|l| {
                    (l.contains("option: 67 bootfile-name") || l.contains("bootfile name: "))
                        && l.trim_end().ends_with(&file)
                })
            }
            Stage::Tftp => {
                let name = self.bootloader_name.as_deref().unwrap_or("");
                ev.dnsmasq
                    .lines()
                    .any(|l| l.contains("sent ") && l.contains(&format!("/{name} to ")))
            }
            Stage::BootIpxe => ev.matchbox.contains("HTTP GET /boot.ipxe"),
            Stage::Ipxe => {
                // The request, then the next request with no 404 ("No matching profile")
                // between. matchbox logs the 404 on a line of its own just after the request,
                // so the request alone, read a moment too early, does not tell.
                ev.matchbox.find("HTTP GET /ipxe?").is_some_and(|at| {
                    let after = &ev.matchbox[at + 1..];
                    after.find("HTTP GET").is_some_and(|next| {
                        let between = &after[..next];
                        !between.contains("No matching") && !between.contains("No profile named")
                    })
                })
            }
            Stage::Kernel => self.fetched(cozyboot::artifacts::layout::KERNEL, ev),
            Stage::Initrd => self.fetched(cozyboot::artifacts::layout::INITRAMFS, ev),
            Stage::Linux => ev.serial.contains(MARKER),
            Stage::Answered => ev.serial.contains(ANSWERED),
        }
    }

    /// Gives up early when the client can no longer get further, so that a broken
    /// configuration fails in seconds rather than at the timeout.
    pub(super) fn hopeless(&self, ev: &Evidence, reached: &[(Stage, Duration)], now: Duration) -> Option<String> {
        let has = |st: Stage| reached.iter().any(|(s, _)| *s == st);
        let at = |st: Stage| reached.iter().find(|(s, _)| *s == st).map(|(_, t)| *t);
        // EDK2 tries PXE over IPv4 first; moving on to IPv6 or HTTP boot means IPv4 PXE failed.
        if !has(Stage::Tftp)
            && self.client.bootloader().is_some()
            && ["PXE-E16", ">>Start PXE over IPv6", ">>Start HTTP Boot"]
                .iter()
                .any(|m| ev.serial.contains(m))
        {
            return Some("the UEFI firmware gave up on PXE over IPv4".into());
        }
        // matchbox said 404 to /ipxe and nothing else happened for a while.
        if has(Stage::BootIpxe) && !has(Stage::Ipxe) && ev.matchbox.contains("No matching") {
            let since = ev.matchbox.matches("HTTP GET /ipxe?").count();
            if since > 0 && now > at(Stage::BootIpxe).unwrap_or_default() + AFTER_404 {
                return Some("matchbox answered /ipxe with 404 (no group for the labels iPXE sent)".into());
            }
        }
        // The last download before the kernel runs: the initrd, or the UKI.
        let last_download = if self.initrd {
            at(Stage::Initrd)
        } else {
            at(Stage::Kernel)
        };
        if let Some(t) = last_download {
            // A UEFI kernel's EFI stub says where it found the initramfs within a second or
            // two (Debian's arm64 and amd64 kernels both do); without that line it found none (iPXE offered no LoadFile2 initrd and the
            // command line named none) and Linux will not run /init.
            if self.client.bootloader().is_some()
                && now > t + NO_INITRD_AFTER
                && !ev.serial.contains("EFI stub: Loaded initrd")
            {
                return Some("the kernel's EFI stub loaded no initrd".into());
            }
            if !has(Stage::Linux) && now > t + LINUX_AFTER_INITRD {
                return Some(format!("no marker {LINUX_AFTER_INITRD:?} after the initrd was fetched"));
            }
        }
        if let Some(line) = ev.serial.lines().find(|l| l.contains("COZYBOOT-NET: ")) {
            return Some(format!("/init could not listen: {}", line.trim()));
        }
        // U-Boot's script says so when booti returns; U-Boot refuses a bad script image.
        if self.client.uboot() {
            let refusals = [
                "cozyboot: booti returned",
                "Bad header checksum",
                "Bad data CRC",
                "Wrong image format",
            ];
            if let Some(m) = refusals.iter().find(|m| ev.serial.contains(**m)) {
                return Some(format!("U-Boot: `{m}` on the console"));
            }
        }
        if ev.serial.contains("Kernel panic") {
            return Some("Linux panicked".into());
        }
        if ev.serial.contains("No bootable device") {
            return Some("SeaBIOS found no bootable device".into());
        }
        None
    }
}
