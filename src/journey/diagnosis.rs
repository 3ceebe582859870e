//! Where a machine stopped, in words an operator acts on.

use super::model::{Journey, RpiStage, Stage};
use crate::artifacts::arch::{self, Arch};
use crate::artifacts::rpi;
use serde::Serialize;

/// What the site serves, to judge a journey against.
#[derive(Debug, Clone)]
pub struct Site {
    pub arches: Vec<Arch>,
    /// `talos-config` is set: every machine is served a config.
    pub config_for_all: bool,
    /// The MACs of `talos-nodes` entries (lower-case, colons).
    pub config_macs: Vec<String>,
    /// `server-ip:http-port`, to name in fixes.
    pub http: String,
}

impl Site {
    /// What these settings serve.
    pub fn of(s: &crate::settings::Settings) -> Site {
        Site {
            arches: s.arches.clone(),
            config_for_all: s.talos_config.is_some(),
            config_macs: s.talos_nodes.iter().map(|n| n.mac.to_lowercase()).collect(),
            http: format!("{}:{}", s.server_ip, s.http_port),
        }
    }

    /// Configs withdrawn from the matchbox tree (see [`crate::store::withdrawal`]) are no
    /// longer served: a machine booting now goes to maintenance mode without fetching one.
    pub fn without(mut self, shared: bool, macs: &[String]) -> Site {
        self.config_for_all &= !shared;
        self.config_macs.retain(|m| !macs.contains(m));
        self
    }

    /// Talos configs are served to this MAC, so it should fetch one.
    pub fn serves_config(&self, mac: &str) -> bool {
        self.config_for_all || self.config_macs.iter().any(|m| m == mac)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    /// The first stage not reached (`None`: Talos answered, all done).
    pub stopped_before: Option<Stage>,
    /// Seen within the last [`QUIET_SECS`]: it may still be on its way.
    pub in_progress: bool,
    pub finding: String,
    pub fix: String,
}

/// A machine quiet for less than this is still booting, not stuck: iPXE alone waits 10–13 s
/// between DHCP and its first HTTP request, and a kernel download takes a while.
pub const QUIET_SECS: i64 = 120;

/// The architecture cozyboot would serve a client-arch code, if any.
pub fn arch_of_code(code: u16) -> Option<Arch> {
    Arch::ALL
        .into_iter()
        .find(|a| a.firmwares().iter().any(|f| f.code == code))
}

/// A human name for the machine's architecture: `arm64 (client-arch 11)`, `x86 BIOS (iPXE i386)`.
pub fn arch_label(j: &Journey) -> String {
    let from_code = j.client_arch.map(|c| match (c, arch_of_code(c)) {
        (0, _) => "x86 BIOS (client-arch 0)".to_string(),
        (arch::UBOOT_NON_EFI_PXE, _) => "arm64 U-Boot (client-arch 22)".to_string(),
        (c, Some(a)) => format!("{a} (client-arch {c})"),
        (arch::POWERPC_OPEN_FIRMWARE, None) => "PowerPC (client-arch 12)".to_string(),
        (c, None) => format!("client-arch {c}"),
    });
    match (from_code, &j.ipxe_arch) {
        (Some(a), Some(i)) => format!("{a}, iPXE {i}"),
        (Some(a), None) => a,
        (None, Some(i)) => format!("iPXE {i}"),
        (None, None) => "unknown".to_string(),
    }
}

/// Where a board running U-Boot's own network boot stopped: it reads the boot script, then
/// the kernel and initramfs over TFTP, with no iPXE and no profile between. `None` once it
/// has both, when Talos's own stages follow as on the iPXE path.
fn uboot_stopped(j: &Journey) -> Option<(Stage, String, String)> {
    let script = crate::render::uboot::SCRIPT;
    if !j.reached(Stage::Tftp) {
        return Some((
            Stage::Tftp,
            format!("U-Boot was offered `{script}` but never read it over TFTP"),
            "check that UDP 69 reaches the server (firewall); U-Boot reads from the server that answered its DHCP"
                .into(),
        ));
    }
    let (stage, what) = if !j.reached(Stage::Kernel) {
        (Stage::Kernel, "the kernel")
    } else if !j.reached(Stage::Initramfs) {
        (Stage::Initramfs, "the initramfs")
    } else {
        return None;
    };
    Some((
        stage,
        format!("U-Boot ran `{script}` but never read {what} over TFTP"),
        "watch the board's serial console for the script's `cozyboot:` lines; `cozyboot validate` checks the script and the assets".into(),
    ))
}

/// Where a Raspberry Pi stopped before its UEFI firmware asked DHCP as arm64.
fn rpi_stopped(pi: &RpiStage, site: &Site, served: &str) -> (Stage, String, String) {
    if !pi.option43 {
        let fix = if site.arches.contains(&Arch::Arm64) {
            "the running dnsmasq has no Raspberry Pi rule: run `cozyboot up` with --rpi-netboot on (the default)"
                .to_string()
        } else {
            format!("serve arm64: `cozyboot up --arch {served},arm64` (with the rest of the site's settings)")
        };
        return (
            Stage::Dhcp,
            format!(
                "a Raspberry Pi's EEPROM bootloader asked (client-arch 0) and was sent no option 43 `{}`: it boots from no such reply",
                rpi::OPTION43_MATCH
            ),
            fix,
        );
    }
    if let Some(file) = &pi.missing {
        return (
            Stage::Tftp,
            format!("the Pi asked for its firmware file `{file}` over TFTP and it is not in the TFTP tree"),
            "run `cozyboot up`: it installs the Pi UEFI firmware into <data-dir>/assets; `cozyboot validate` checks it (assets.rpi-firmware)".into(),
        );
    }
    if pi.files.is_empty() {
        return (
            Stage::Tftp,
            format!("the Pi EEPROM was sent option 43 but never read {} over TFTP", rpi::START_FILE),
            "check that UDP 69 reaches the server (firewall); the EEPROM's TFTP_IP setting, if set, must name this server".into(),
        );
    }
    if !pi.uefi_loaded() {
        return (
            Stage::Tftp,
            format!(
                "the Pi read {} but never {}: its config.txt does not load the UEFI firmware",
                pi.files.join(", "),
                rpi::UEFI_FD
            ),
            format!(
                "restore the released config.txt (`armstub={}`): run `cozyboot up`",
                rpi::UEFI_FD
            ),
        );
    }
    (
        Stage::Dhcp,
        format!(
            "the Pi loaded its UEFI firmware ({}) but the firmware never asked DHCP as arm64 (client-arch 11)",
            rpi::UEFI_FD
        ),
        "network boot must come first in the firmware's boot order; releases v1.51 and v1.52 report the MAC 00:00:00:00:00:00 and cannot netboot (use the pinned release); its serial console shows why".into(),
    )
}

pub fn diagnose(j: &Journey, site: &Site, now: i64) -> Diagnosis {
    let in_progress = j.last_seen.is_some_and(|t| now - t < QUIET_SECS);
    let served: Vec<&str> = site.arches.iter().map(|a| a.name()).collect();
    let served = served.join(",");
    let d = |stage: Stage, finding: String, fix: String| Diagnosis {
        stopped_before: Some(stage),
        in_progress,
        finding,
        fix,
    };
    let ip = j.ip.map_or_else(|| "<node-ip>".to_string(), |ip| ip.to_string());

    // A Raspberry Pi whose EEPROM asked and that has not yet asked as its UEFI firmware.
    if let Some(pi) = j
        .rpi
        .as_ref()
        .filter(|_| !j.reached(Stage::Dhcp) && j.client_arch == Some(0))
    {
        let (stage, finding, fix) = rpi_stopped(pi, site, &served);
        return d(stage, finding, fix);
    }
    if !j.reached(Stage::Dhcp) {
        let code = j.client_arch;
        let is_pi_eeprom = code == Some(0) && crate::artifacts::rpi::is_raspberry_pi_mac(&j.mac);
        return match code.map(|c| (c, arch_of_code(c))) {
            _ if is_pi_eeprom => d(
                Stage::Dhcp,
                "a Raspberry Pi's EEPROM bootloader asked (client-arch 0): it cannot run iPXE, so it gets no boot file".into(),
                "flash the Pi's UEFI firmware (pftf RPi4/CM4 UEFI), which netboots as arm64 client-arch 11".into(),
            ),
            Some((c, Some(a))) if !site.arches.contains(&a) => d(
                Stage::Dhcp,
                format!("this is an {a} machine (client-arch {c}) and the site serves only {served}: it got no boot file"),
                format!("add it: `cozyboot up --arch {served},{a}` (with the rest of the site's settings)"),
            ),
            Some((arch::UBOOT_NON_EFI_PXE, _)) if site.arches.contains(&Arch::Arm64) => d(
                Stage::Dhcp,
                "U-Boot's own DHCP (vendor class U-Boot.armv8) got no boot script: dnsmasq answers U-Boot only as the DHCP server, and U-Boot ignores proxy DHCP replies".into(),
                format!(
                    "in proxy mode, make the site's DHCP server name this server as next-server (option 66 / siaddr) for U-Boot, with boot file `{}` (docs/raspberry-pi.md); in full mode, `cozyboot up` restarts dnsmasq with cozyboot's rules",
                    crate::render::uboot::SCRIPT
                ),
            ),
            Some((arch::POWERPC_OPEN_FIRMWARE, _)) => d(
                Stage::Dhcp,
                "the machine says client-arch 12 (PowerPC Open Firmware), which nothing serves".into(),
                "an ARM64 UEFI machine sends 11; if this one is ARM64, its firmware is not UEFI (flash UEFI firmware)".into(),
            ),
            Some((c, Some(_))) => d(
                Stage::Dhcp,
                format!("answered without a boot file although the site serves client-arch {c}: the running dnsmasq does not map it (the guide's `client-arch,12` rule for ARM64 does this)"),
                "run `cozyboot validate` (check dnsmasq.args) and `cozyboot up` to restart dnsmasq with cozyboot's rules".into(),
            ),
            Some((c, None)) => d(
                Stage::Dhcp,
                format!("client-arch {c} is not an architecture cozyboot serves (arm64: 11, x86: 0, 7, 9)"),
                "boot the machine in UEFI (or BIOS) PXE mode".into(),
            ),
            None if j.offered => d(
                Stage::Dhcp,
                "answered without a boot file, and the machine sent no PXE vendor class".into(),
                "make the machine network-boot with PXE (its boot order / NIC option ROM); a plain DHCP client is not a PXE client".into(),
            ),
            None => d(
                Stage::Dhcp,
                "seen asking for DHCP, never answered".into(),
                "check `cozyboot logs dnsmasq`; in proxy mode the router must answer the address and dnsmasq only PXE".into(),
            ),
        };
    }
    if let Some(file) = &j.tftp_missing {
        return d(
            Stage::Tftp,
            format!("TFTP: `{file}` not found in the assets folder"),
            "run `cozyboot up` (it installs the bootloaders into <data-dir>/assets) and `cozyboot validate`".into(),
        );
    }
    // U-Boot's script reads kernel and initramfs itself: no iPXE, no profile between.
    if j.client_arch == Some(arch::UBOOT_NON_EFI_PXE) {
        if let Some(stop) = uboot_stopped(j) {
            return d(stop.0, stop.1, stop.2);
        }
    } else {
        let ipxe_seen = j.boot_script_offered || j.reached(Stage::BootIpxe) || j.ipxe_arch.is_some();
        if !j.reached(Stage::Tftp) && !ipxe_seen {
            return d(
                Stage::Tftp,
                format!(
                    "offered `{}` but never fetched it over TFTP",
                    j.stages[&Stage::Dhcp].detail
                ),
                "check that UDP 69 reaches the server (firewall) and, in proxy mode, that the firmware takes proxy offers"
                    .into(),
            );
        }
        if !ipxe_seen {
            return d(
                Stage::BootIpxe,
                format!("bootloader `{}` was sent but the machine never came back as iPXE", j.stages[&Stage::Tftp].detail),
                "a wrong-architecture binary (`cozyboot validate` checks the PE machine type) or Secure Boot (iPXE is unsigned: turn Secure Boot off)".into(),
            );
        }
        if !j.reached(Stage::BootIpxe) {
            return d(
                Stage::BootIpxe,
                "iPXE was offered the boot.ipxe URL but never fetched it".into(),
                format!(
                    "check that iPXE can reach http://{}/boot.ipxe (firewall, `server-ip`)",
                    site.http
                ),
            );
        }
        if !j.reached(Stage::Profile) {
            let arch = j.ipxe_arch.as_deref().unwrap_or("?");
            return d(
                Stage::Profile,
                format!("matchbox has no group for arch={arch} mac={} (HTTP 404 on /ipxe)", j.mac),
                format!("serve this architecture (`--arch`, now {served}) and run `cozyboot up`; `cozyboot validate` checks /ipxe per arch"),
            );
        }
        if !j.reached(Stage::Kernel) {
            return d(
                Stage::Kernel,
                "a profile was chosen but the kernel was never fetched".into(),
                "the kernel is missing from the assets or iPXE could not fetch it: run `cozyboot validate` (matchbox.ipxe checks kernel and initramfs)".into(),
            );
        }
        if !j.reached(Stage::Initramfs) {
            return d(
                Stage::Initramfs,
                "the kernel was fetched but never the initramfs".into(),
                "the initramfs is missing or iPXE ran out of memory: run `cozyboot validate`; check the profile's initrd"
                    .into(),
            );
        }
    }
    let wants_config = site.serves_config(&j.mac);
    if wants_config && !j.reached(Stage::Config) {
        return d(
            Stage::Config,
            "kernel and initramfs were fetched, but Talos never fetched its config".into(),
            "the kernel did not start Talos (wrong `console=` or kernel args, a bad image), or the node cannot reach the talos.config URL; watch its console".into(),
        );
    }
    if !j.reached(Stage::Talos) {
        let why = if j.ip.is_none() {
            "its address is unknown (proxy DHCP: the router handed it out), so TCP 50000 was not tried".to_string()
        } else {
            format!("everything was fetched but Talos never answered on {ip}:50000")
        };
        return d(
            Stage::Talos,
            why,
            "the kernel did not reach Talos maintenance mode: wrong `console=`/kernel args, a bad image, or it installed and boots from disk now; watch its console".into(),
        );
    }
    Diagnosis {
        stopped_before: None,
        in_progress: false,
        finding: format!("Talos is in maintenance mode on {ip}:50000"),
        fix: format!("next: `talosctl apply-config --insecure -n {ip} --file <machine-config>.yaml`"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{dnsmasq_log, matchbox_log, model};
    use super::*;

    fn site(arches: &[Arch]) -> Site {
        Site {
            arches: arches.to_vec(),
            config_for_all: false,
            config_macs: Vec::new(),
            http: "10.0.0.1:8080".into(),
        }
    }

    fn journey(name: &str, mac: &str) -> Journey {
        let dir = format!("{}/tests/fixtures/journey", env!("CARGO_MANIFEST_DIR"));
        let read = |kind: &str| std::fs::read_to_string(format!("{dir}/{name}.{kind}.log")).unwrap_or_default();
        let mut events = dnsmasq_log::events(&read("dnsmasq"));
        events.extend(matchbox_log::events(&read("matchbox")));
        model::fold(events).remove(mac).unwrap()
    }

    const LATER: i64 = 4_000_000_000;

    #[test]
    fn arch_12_rule_is_named() {
        let d = diagnose(&journey("arch-12", "52:54:00:c0:0b:11"), &site(&[Arch::Arm64]), LATER);
        assert_eq!(d.stopped_before, Some(Stage::Dhcp));
        assert!(d.finding.contains("client-arch,12"), "{}", d.finding);
    }

    #[test]
    fn an_architecture_the_site_does_not_serve() {
        let d = diagnose(&journey("arch-12", "52:54:00:c0:0b:11"), &site(&[Arch::Amd64]), LATER);
        assert!(d.finding.contains("arm64 machine (client-arch 11)"), "{}", d.finding);
        assert!(d.fix.contains("--arch amd64,arm64"), "{}", d.fix);
    }

    /// U-Boot's own network boot (captured from firmware_up's U-Boot boots): its DHCP as
    /// client-arch 22, the script and the Talos files over TFTP, no iPXE stage between; the
    /// next stop is Talos, not "never came back as iPXE".
    #[test]
    fn a_u_boot_board_walks_script_kernel_and_initramfs_over_tftp() {
        let uboot = "52:54:00:c0:0b:16";
        for (log, offered) in [("uboot-full", true), ("uboot-proxy", false)] {
            let j = journey(log, uboot);
            assert_eq!(j.client_arch, Some(arch::UBOOT_NON_EFI_PXE), "{log}");
            let stages: Vec<Stage> = j.stages.keys().copied().collect();
            assert_eq!(
                stages,
                [Stage::Dhcp, Stage::Tftp, Stage::Kernel, Stage::Initramfs],
                "{log}: {j:#?}"
            );
            assert_eq!(j.stages[&Stage::Tftp].detail, crate::render::uboot::SCRIPT, "{log}");
            assert!(j.ip.is_some(), "{log}: the board's address, from its TFTP reads");
            // Beside a router, cozyboot's dnsmasq offered U-Boot nothing: the board said who
            // it is by the file it asked for.
            assert_eq!(j.offered, offered, "{log}");
            assert_eq!(arch_label(&j), "arm64 U-Boot (client-arch 22)");
            let d = diagnose(&j, &site(&[Arch::Arm64]), LATER);
            assert_eq!(d.stopped_before, Some(Stage::Talos), "{log}: {d:?}");
        }
    }

    #[test]
    fn a_u_boot_board_is_told_where_it_stopped() {
        let full = journey("uboot-full", "52:54:00:c0:0b:16");
        let mut no_kernel = full.clone();
        no_kernel.stages.retain(|s, _| *s <= Stage::Tftp);
        let d = diagnose(&no_kernel, &site(&[Arch::Arm64]), LATER);
        assert_eq!(d.stopped_before, Some(Stage::Kernel));
        assert!(d.finding.contains("never read the kernel"), "{}", d.finding);
        let mut missing = no_kernel.clone();
        missing.tftp_missing = Some("vmlinuz".into());
        let d = diagnose(&missing, &site(&[Arch::Arm64]), LATER);
        assert!(d.finding.contains("`vmlinuz` not found"), "{}", d.finding);
        // Seen asking, never answered with the script: proxy mode without next-server.
        let mut unanswered = full.clone();
        unanswered.stages.clear();
        let d = diagnose(&unanswered, &site(&[Arch::Arm64]), LATER);
        assert_eq!(d.stopped_before, Some(Stage::Dhcp));
        assert!(d.fix.contains("next-server"), "{}", d.fix);
    }

    #[test]
    fn no_group() {
        let d = diagnose(
            &journey("no-i386-group", "52:54:00:c0:0b:00"),
            &site(&[Arch::Amd64]),
            LATER,
        );
        assert_eq!(d.stopped_before, Some(Stage::Profile));
        assert!(d.finding.contains("no group for arch=i386"), "{}", d.finding);
    }

    #[test]
    fn everything_fetched_but_talos_silent() {
        let j = journey("arm64-full", "52:54:00:c0:0b:11");
        let d = diagnose(&j, &site(&[Arch::Arm64]), LATER);
        assert_eq!(d.stopped_before, Some(Stage::Talos));
        assert!(d.finding.contains("10.213.167.130:50000"), "{}", d.finding);
        assert!(!d.in_progress);
        assert!(diagnose(&j, &site(&[Arch::Arm64]), j.last_seen.unwrap() + 5).in_progress);
    }

    #[test]
    fn talos_answering_gives_the_next_step() {
        let mut j = journey("arm64-full", "52:54:00:c0:0b:11");
        j.stages.insert(
            Stage::Talos,
            model::Mark {
                at: None,
                detail: "tcp/50000".into(),
            },
        );
        let d = diagnose(&j, &site(&[Arch::Arm64]), LATER);
        assert_eq!(d.stopped_before, None);
        assert!(
            d.fix.contains("talosctl apply-config --insecure -n 10.213.167.130"),
            "{}",
            d.fix
        );
    }

    #[test]
    fn the_other_stops() {
        let base = journey("arm64-full", "52:54:00:c0:0b:11");
        let s = site(&[Arch::Arm64]);
        let cut = |keep: &[Stage]| {
            let mut j = base.clone();
            j.stages.retain(|k, _| keep.contains(k));
            j.ipxe_arch = None;
            j.boot_script_offered = false;
            j
        };
        let d = diagnose(&cut(&[Stage::Dhcp, Stage::Tftp]), &s, LATER);
        assert!(
            d.finding.contains("never came back as iPXE") && d.fix.contains("Secure Boot"),
            "{d:?}"
        );
        let mut missing = cut(&[Stage::Dhcp]);
        missing.tftp_missing = Some("bootaa64.efi".into());
        assert!(diagnose(&missing, &s, LATER)
            .finding
            .contains("`bootaa64.efi` not found"));
        let k = cut(&[Stage::Dhcp, Stage::Tftp, Stage::BootIpxe, Stage::Profile, Stage::Kernel]);
        assert!(diagnose(&k, &s, LATER).finding.contains("never the initramfs"));
        let with_config = Site {
            config_macs: vec![base.mac.clone()],
            ..s.clone()
        };
        assert_eq!(diagnose(&base, &with_config, LATER).stopped_before, Some(Stage::Config));
    }

    #[test]
    fn labels() {
        let j = journey("bios-proxy", "52:54:00:c0:0b:00");
        assert_eq!(arch_label(&j), "x86 BIOS (client-arch 0), iPXE i386");
    }
}
