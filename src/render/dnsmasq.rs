//! dnsmasq's argv, computed from settings and the arch table: never a shell string.
//!
//! Two rules make the result independent of line order (see netboot-facts.md):
//! every firmware line carries `tag:!ipxe`, and each firmware has its own tag, so at most one
//! tagged boot line matches any client.

use crate::artifacts::arch::{Arch, Bootloader, Firmware};
use crate::artifacts::rpi;
use crate::settings::{DhcpMode, Settings};

/// Where the TFTP root is inside the dnsmasq container.
pub const TFTP_ROOT: &str = "/var/lib/tftpboot";

/// The tag set on iPXE clients (option 175 or user class `iPXE`).
pub const IPXE_TAG: &str = "ipxe";

/// The tag set on the Raspberry Pi EEPROM, which says arch 0 but cannot run `undionly.kpxe`.
pub const RPI_TAG: &str = "rpi-eeprom";

/// dnsmasq's own defaults (dnsmasq(8), 2.90): `--tftp-max` "defaults to 50",
/// `--dhcp-lease-max` "the default is 1000".
const DNSMASQ_TFTP_MAX: u32 = 50;
const DNSMASQ_LEASE_MAX: u32 = 1000;
/// More TFTP transfers than this need more file descriptors than a container is likely to
/// have; dnsmasq lowers a larger `--tftp-max` to what its limit allows and logs it.
const TFTP_MAX_CEILING: u32 = 4096;

/// How many machines the site can boot at once: the addresses of the DHCP range (full mode),
/// or of the subnet (proxy mode, where another server hands them out).
pub fn machines_at_once(s: &Settings) -> u32 {
    match &s.dhcp {
        DhcpMode::Full {
            range_start, range_end, ..
        } => u32::from(*range_end)
            .saturating_sub(u32::from(*range_start))
            .saturating_add(1),
        DhcpMode::Proxy => {
            let hosts = s.subnet.hosts().count();
            u32::try_from(hosts).unwrap_or(u32::MAX)
        }
    }
}

/// Concurrent TFTP transfers: one per machine the site can boot at once. With dnsmasq's 50,
/// a rack powering on together queues every request past the 50th unread (dnsmasq stops
/// reading its TFTP port at the limit) until the firmware gives up waiting and sends again.
pub fn tftp_max(s: &Settings) -> u32 {
    machines_at_once(s).clamp(DNSMASQ_TFTP_MAX, TFTP_MAX_CEILING)
}

/// The arguments passed to dnsmasq (after the image's `ENTRYPOINT ["/usr/sbin/dnsmasq"]`).
pub fn args(s: &Settings) -> Vec<String> {
    let mut a = vec![
        // Foreground, logging to stderr: the container's log is dnsmasq's log.
        "-d".to_string(),
        // No DNS server: the site already has one, and -p0 keeps port 53 free.
        "-p0".to_string(),
        format!("--interface={}", s.iface),
        "--bind-interfaces".to_string(),
    ];
    match &s.dhcp {
        DhcpMode::Full {
            range_start,
            range_end,
            gateway,
            dns,
            lease_time,
        } => {
            a.push(format!(
                "--dhcp-range={range_start},{range_end},{},{lease_time}",
                s.subnet.netmask()
            ));
            if let Some(gw) = gateway {
                a.push(format!("--dhcp-option=option:router,{gw}"));
            }
            if !dns.is_empty() {
                let list: Vec<String> = dns.iter().map(|d| d.to_string()).collect();
                a.push(format!("--dhcp-option=option:dns-server,{}", list.join(",")));
            }
        }
        DhcpMode::Proxy => a.push(format!(
            "--dhcp-range={},proxy,{}",
            s.subnet.network(),
            s.subnet.netmask()
        )),
    }
    if let DhcpMode::Full { .. } = s.dhcp {
        // A range larger than dnsmasq's lease limit would leave its last addresses unleased.
        let leases = machines_at_once(s).max(DNSMASQ_LEASE_MAX);
        a.push(format!("--dhcp-lease-max={leases}"));
    }
    a.extend([
        "--enable-tftp".to_string(),
        format!("--tftp-root={TFTP_ROOT}"),
        // See `tftp_max`: a power-on storm must not queue TFTP behind dnsmasq's default of 50.
        format!("--tftp-max={}", tftp_max(s)),
        "--log-dhcp".to_string(),
        // iPXE always sends option 175; the user class is a second, independent signal.
        format!("--dhcp-match=set:{IPXE_TAG},175"),
        format!("--dhcp-userclass=set:{IPXE_TAG},iPXE"),
    ]);
    if s.serves(Arch::Amd64) || s.serves_rpi() {
        // The Pi EEPROM's vendor class is the same as an x86 PXE ROM's: it is told apart by
        // its MAC block, or by the `RPi4` its option 97 GUID starts with (a Pi whose MAC was
        // overridden with `MAC_ADDRESS`). Either sets the tag.
        a.extend(
            rpi::OUIS
                .iter()
                .map(|oui| format!("--dhcp-mac=set:{RPI_TAG},{oui}:*:*:*")),
        );
        a.push(format!("--dhcp-match=set:{RPI_TAG},97,{}", rpi::option97_match()));
    }
    if s.serves_rpi() {
        // The EEPROM boots only from a reply whose option 43 holds `Raspberry Pi Boot`; it then
        // reads start4.elf (and the rest) from the TFTP root by itself: no boot file.
        match s.dhcp {
            // Forced on the Pi's tag alone: a `--pxe-service` would make full-mode dnsmasq
            // answer every PXE client as a PXE server (options 60 and 43 added to PCs' offers).
            // The bytes are what dnsmasq's own PXE menu encodes (see artifacts::rpi::option43).
            DhcpMode::Full { .. } => a.extend([
                format!("--dhcp-option-force=tag:{RPI_TAG},option:vendor-class,PXEClient"),
                format!("--dhcp-option-force=tag:{RPI_TAG},43,{}", rpi::option43_hex()),
            ]),
            // Proxy replies carry boot information only through PXE services: a menu item of
            // type 0 (local boot) named as the EEPROM wants, CSA 0 as the Raspberry Pi
            // documentation writes it (`pxe-service=0,"Raspberry Pi Boot"`).
            DhcpMode::Proxy => a.push(format!(
                "--pxe-service=tag:{RPI_TAG},tag:!{IPXE_TAG},0,{}",
                rpi::OPTION43_MATCH
            )),
        }
    }
    for fw in served_firmwares(s) {
        a.extend(firmware_lines(s, fw));
    }
    a.extend(super::uboot::dnsmasq_lines(s, IPXE_TAG));
    a.extend(ipxe_lines(s));
    a
}

/// Every firmware of every served architecture, arm64 first.
pub fn served_firmwares(s: &Settings) -> impl Iterator<Item = &'static Firmware> + '_ {
    s.arches.iter().flat_map(|a| a.firmwares().iter())
}

fn firmware_lines(s: &Settings, fw: &Firmware) -> Vec<String> {
    // Proxy replies carry boot information only through PXE services, which HTTP boot lacks.
    if fw.http_boot && s.dhcp == DhcpMode::Proxy {
        return Vec::new();
    }
    let mut lines = vec![format!("--dhcp-match=set:{},option:client-arch,{}", fw.tag, fw.code)];
    if let Some(vc) = fw.vendor_class {
        lines.push(format!("--dhcp-vendorclass=set:{},{vc}", fw.tag));
    }
    let file = s.bootloaders.for_bootloader(fw.bootloader);
    let not_rpi = if fw.bootloader == Bootloader::Bios {
        format!("tag:!{RPI_TAG},")
    } else {
        String::new()
    };
    if fw.http_boot {
        // UEFI HTTP boot takes a URL and insists on option 60 = HTTPClient in the reply.
        lines.push(format!(
            "--dhcp-option-force=tag:{},option:vendor-class,HTTPClient",
            fw.tag
        ));
        lines.push(format!(
            "--dhcp-boot=tag:{},tag:!{IPXE_TAG},{}/assets/{file}",
            fw.tag,
            s.http_base()
        ));
        return lines;
    }
    match &s.dhcp {
        DhcpMode::Full { .. } => lines.push(format!(
            "--dhcp-boot=tag:{},{not_rpi}tag:!{IPXE_TAG},{file},,{}",
            fw.tag, s.server_ip
        )),
        DhcpMode::Proxy => {
            if let Some(csa) = fw.pxe_csa {
                lines.push(format!(
                    // argv, not a shell: quotes would end up in the menu text.
                    "--pxe-service=tag:{},{not_rpi}tag:!{IPXE_TAG},{csa},cozyboot {} ({}),{file}",
                    fw.tag,
                    fw.bootloader.arch(),
                    fw.code
                ));
            }
        }
    }
    lines
}

fn ipxe_lines(s: &Settings) -> Vec<String> {
    let url = format!("{}/boot.ipxe", s.http_base());
    match &s.dhcp {
        DhcpMode::Full { .. } => vec![format!("--dhcp-boot=tag:{IPXE_TAG},{url}")],
        // Proxy replies carry boot information only through PXE services, one per CSA.
        DhcpMode::Proxy => {
            let mut seen = Vec::new();
            served_firmwares(s)
                .filter_map(|fw| fw.pxe_csa)
                .filter(|csa| {
                    let new = !seen.contains(csa);
                    seen.push(*csa);
                    new
                })
                .map(|csa| format!("--pxe-service=tag:{IPXE_TAG},{csa},iPXE,{url}"))
                .collect()
        }
    }
}
