//! How far the VM got: its journey, read from the site's logs with the same parsers and fold
//! as `cozyboot nodes`, the serial console for what the logs cannot show (the kernel
//! starting, a panic, a firmware giving up), and Talos's port.

use super::{Firmware, Until};
use crate::journey::model::{self, Journey, Stage};
use crate::journey::{dnsmasq_log, matchbox_log};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

/// After matchbox answered `/ipxe` with a 404, how long iPXE may take to try anything else.
const AFTER_404: Duration = Duration::from_secs(15);

/// What the logs and the console held at one moment.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// The site's dnsmasq container, with docker's times.
    pub dnsmasq: String,
    /// The site's matchbox container, with docker's times.
    pub matchbox: String,
    /// Proxy mode's router DHCP (empty in full mode).
    pub router: String,
    pub serial: String,
}

/// Lines on the serial console that time the parts no log shows.
const CONSOLE_MARKS: &[(&str, &[&str])] = &[
    ("linux", &["EFI stub: ", "Linux version ", "Booting the kernel"]),
    ("userspace", &["Run /init as init process", "[talos]", "COZYBOOT-"]),
];

/// The stages reached so far, each with the time it was first seen (since QEMU started).
#[derive(Debug, Clone)]
pub struct Progress {
    pub mac: String,
    pub firmware: Firmware,
    pub until: Until,
    pub reached: BTreeMap<Stage, Duration>,
    /// Console milestones (`linux`, `userspace`) with the time first seen.
    pub console: Vec<(&'static str, Duration)>,
    no_profile_since: Option<Duration>,
}

impl Progress {
    pub fn new(mac: &str, firmware: Firmware, until: Until) -> Progress {
        Progress {
            mac: mac.to_string(),
            firmware,
            until,
            reached: BTreeMap::new(),
            console: Vec::new(),
            no_profile_since: None,
        }
    }

    /// The VM's journey as `cozyboot nodes` would show it.
    pub fn journey(&self, ev: &Evidence) -> Option<Journey> {
        let mut events = dnsmasq_log::events(&ev.dnsmasq);
        // U-Boot ignores proxy DHCP: in proxy mode the router answers its DHCP, and names
        // the site's TFTP server (its log has no times: its facts sort first, as they came).
        if self.firmware == Firmware::Uboot {
            events.extend(dnsmasq_log::events(&ev.router));
        }
        events.extend(matchbox_log::events(&ev.matchbox));
        let mut j = model::fold(events).remove(&self.mac)?;
        // In proxy mode the site never hands out the address: the router's log has it.
        if let Some(ip) = leased(&self.mac, &ev.router).last() {
            j.ip = Some(*ip);
        }
        Some(j)
    }

    /// Takes in what the journey shows now. Stages stay reached once seen: a later DHCP (the
    /// booted system's own) may start a new attempt in the journey, but the boot got there.
    pub fn observe(&mut self, journey: Option<&Journey>, ev: &Evidence, talos_open: bool, now: Duration) {
        if let Some(j) = journey {
            for stage in j.stages.keys() {
                self.reached.entry(*stage).or_insert(now);
            }
            if j.no_profile {
                self.no_profile_since.get_or_insert(now);
            }
        }
        if talos_open {
            self.reached.entry(Stage::Talos).or_insert(now);
        }
        for (name, needles) in CONSOLE_MARKS {
            if !self.console.iter().any(|(n, _)| n == name) && needles.iter().any(|n| ev.serial.contains(n)) {
                self.console.push((name, now));
            }
        }
    }

    pub fn goal(&self) -> Stage {
        self.until.stage(self.firmware)
    }

    pub fn done(&self) -> bool {
        self.reached.contains_key(&self.goal())
    }

    /// The furthest stage reached, in the order of the boot.
    pub fn furthest(&self) -> Option<Stage> {
        self.reached.keys().next_back().copied()
    }

    /// Whether Talos's port is worth trying: the kernel is on its way.
    pub fn may_answer(&self) -> bool {
        self.reached.contains_key(&Stage::Kernel)
    }

    /// Says why the machine can no longer get further, so that a broken site fails in seconds
    /// rather than at the timeout.
    pub fn hopeless(&self, ev: &Evidence, now: Duration) -> Option<String> {
        let has = |s: Stage| self.reached.contains_key(&s);
        // EDK2 tries PXE over IPv4 first; moving on to IPv6 or HTTP boot means it got no
        // usable offer over IPv4.
        if self.firmware == Firmware::Uefi
            && !has(Stage::Tftp)
            && ["PXE-E16", ">>Start PXE over IPv6", ">>Start HTTP Boot"]
                .iter()
                .any(|m| ev.serial.contains(m))
        {
            return Some("the UEFI firmware gave up on PXE over IPv4 (no offer with a boot file it could use)".into());
        }
        if let Some(t) = self.no_profile_since {
            if !has(Stage::Profile) && now > t + AFTER_404 {
                return Some("matchbox answered /ipxe with 404: no group matches the labels iPXE sent".into());
            }
        }
        if ev.serial.contains("Kernel panic") {
            return Some("Linux panicked (see the serial console)".into());
        }
        if ev.serial.contains("No bootable device") {
            return Some("SeaBIOS found no bootable device".into());
        }
        None
    }
}

/// The addresses a DHCP server acknowledged to `mac`, oldest first (`DHCPACK(<if>) <ip> <mac>`).
pub fn leased(mac: &str, log: &str) -> Vec<Ipv4Addr> {
    log.lines()
        .filter(|l| l.contains("DHCPACK(") && l.to_ascii_lowercase().contains(mac))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.parse().ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(f: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/fixtures/journey/{f}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn stages_come_from_the_same_fold_as_nodes_and_stay_reached() {
        let ev = Evidence {
            dnsmasq: fixture("arm64-full.dnsmasq.log"),
            matchbox: fixture("arm64-full-mac-urls.matchbox.log"),
            ..Evidence::default()
        };
        let mut p = Progress::new("52:54:00:c0:0b:11", Firmware::Uefi, Until::Initramfs);
        let j = p.journey(&ev).expect("the fixture's machine");
        p.observe(Some(&j), &ev, false, Duration::from_secs(30));
        assert!(p.done(), "{:?}", p.reached);
        assert_eq!(p.furthest(), Some(Stage::Initramfs));
        p.observe(None, &Evidence::default(), false, Duration::from_secs(40));
        assert_eq!(p.reached[&Stage::Dhcp], Duration::from_secs(30));
        let talos = Progress::new("52:54:00:c0:0b:11", Firmware::Uefi, Until::Talos);
        assert!(!talos.done());
    }

    #[test]
    fn the_router_log_gives_the_address_in_proxy_mode() {
        let log = "dnsmasq-dhcp: DHCPACK(br0) 10.247.3.120 52:54:00:80:00:01\n\
                   dnsmasq-dhcp: DHCPACK(br0) 10.247.3.121 52:54:00:80:00:02\n\
                   dnsmasq-dhcp: DHCPACK(br0) 10.247.3.131 52:54:00:80:00:01 node\n";
        assert_eq!(
            leased("52:54:00:80:00:01", log),
            [
                "10.247.3.120".parse::<Ipv4Addr>().unwrap(),
                "10.247.3.131".parse().unwrap()
            ]
        );
    }

    #[test]
    fn a_firmware_moving_on_to_ipv6_is_hopeless_before_tftp() {
        let p = Progress::new("52:54:00:80:00:01", Firmware::Uefi, Until::Talos);
        let ev = Evidence {
            serial: ">>Start PXE over IPv4.\n  PXE-E16: No valid offer received.\n>>Start PXE over IPv6.".into(),
            ..Evidence::default()
        };
        assert!(p
            .hopeless(&ev, Duration::from_secs(20))
            .unwrap()
            .contains("gave up on PXE"));
    }

    #[test]
    fn bootloader_of_a_bios_client_is_its_ipxe_rom() {
        assert_eq!(Until::Bootloader.stage(Firmware::Bios), Stage::Dhcp);
        assert_eq!(Until::Bootloader.stage(Firmware::Uefi), Stage::Tftp);
        assert_eq!(Until::Ipxe.stage(Firmware::Uefi), Stage::Profile);
    }
}
