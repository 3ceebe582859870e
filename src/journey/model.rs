//! Facts folded into one journey per machine (MAC): how far it got, and when.

use super::event::{Event, What};
use crate::artifacts::{arch, layout, rpi};
use crate::render::uboot;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// The way from DHCP to Talos maintenance mode, in the order a machine walks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// DHCP offered a boot file (a bootloader, or the `boot.ipxe` URL to an iPXE ROM).
    Dhcp,
    /// TFTP sent the bootloader (U-Boot: its boot script).
    Tftp,
    /// iPXE fetched `/boot.ipxe`.
    BootIpxe,
    /// matchbox chose a profile (`/ipxe` matched a group).
    Profile,
    /// The kernel, from matchbox (iPXE) or over TFTP (U-Boot's boot script).
    Kernel,
    Initramfs,
    /// The Talos machine config (`/generic`), where configs are served.
    Config,
    /// Talos answered on TCP 50000 (maintenance mode).
    Talos,
}

impl Stage {
    pub const ALL: [Stage; 8] = [
        Stage::Dhcp,
        Stage::Tftp,
        Stage::BootIpxe,
        Stage::Profile,
        Stage::Kernel,
        Stage::Initramfs,
        Stage::Config,
        Stage::Talos,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Dhcp => "dhcp",
            Stage::Tftp => "tftp",
            Stage::BootIpxe => "boot-ipxe",
            Stage::Profile => "profile",
            Stage::Kernel => "kernel",
            Stage::Initramfs => "initramfs",
            Stage::Config => "config",
            Stage::Talos => "talos",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Stage::ALL.into_iter().find(|st| st.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Stage::ALL.iter().map(|s| s.name()).collect();
            format!("unknown stage `{s}`; one of: {}", names.join(", "))
        })
    }
}

/// A stage reached: when (if the log said) and what (a file name, a profile's arch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mark {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<i64>,
    pub detail: String,
}

/// One machine's latest boot attempt; a firmware asking again after it got further starts a
/// new attempt, so that the stages describe the last boot, not a mix of several.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Journey {
    pub mac: String,
    /// DHCP option 93 as the vendor class carries it (`PXEClient:Arch:000NN`).
    pub client_arch: Option<u16>,
    /// iPXE's `${buildarch}` as it told matchbox (`arm64`, `x86_64`, `i386`).
    pub ipxe_arch: Option<String>,
    pub ip: Option<Ipv4Addr>,
    /// The SMBIOS system uuid and serial iPXE sent with `/ipxe` (the latest given); they
    /// survive a new attempt, as they belong to the machine, not to one boot.
    pub uuid: Option<String>,
    pub serial: Option<String>,
    /// Answered by proxy DHCP (the router hands out the address).
    pub proxy: bool,
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
    /// Boot attempts seen (a firmware starting over after getting past TFTP).
    pub attempts: u32,
    pub stages: BTreeMap<Stage, Mark>,
    /// Answered, but with no boot file (no firmware line matched its client-arch).
    pub offered: bool,
    /// A TFTP file the machine asked for that was not there.
    pub tftp_missing: Option<String>,
    /// iPXE was offered the `boot.ipxe` URL.
    pub boot_script_offered: bool,
    /// matchbox answered `/ipxe` with 404: no group matched these labels.
    pub no_profile: bool,
    /// The Raspberry Pi EEPROM's first stage, when this machine is a Pi that netboots it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpi: Option<RpiStage>,
}

/// What a Raspberry Pi 4/CM4 did before its UEFI firmware ran: the EEPROM's DHCP (client-arch
/// 0) and the Pi firmware it and start4.elf read over TFTP. Kept apart from [`Stage`]: the
/// UEFI firmware's own DHCP (client-arch 11) that follows is the same boot, not a new attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RpiStage {
    /// The EEPROM was sent option 43 `Raspberry Pi Boot`, which it boots from.
    pub option43: bool,
    /// The Pi firmware files sent over TFTP, in order, once each.
    pub files: Vec<String>,
    /// A file asked for that was not there and was not found later either (the EEPROM tries
    /// `<serial>/start4.elf` first, then the root's).
    pub missing: Option<String>,
}

impl RpiStage {
    /// Whether start4.elf loaded the UEFI firmware image.
    pub fn uefi_loaded(&self) -> bool {
        self.files.iter().any(|f| f == rpi::UEFI_FD)
    }
}

/// Files the Pi EEPROM and start4.elf read from the TFTP root (basenames, as dnsmasq's TFTP
/// lines are read).
fn is_rpi_firmware_file(name: &str) -> bool {
    rpi::REQUIRED_FILES.iter().any(|f| f.rsplit('/').next() == Some(name))
        || name.ends_with(".dtb")
        || name.ends_with(".dtbo")
        || name == "cmdline.txt"
}

impl Journey {
    fn new(mac: &str) -> Self {
        Journey {
            mac: mac.to_string(),
            attempts: 1,
            ..Journey::default()
        }
    }

    pub fn reached(&self, stage: Stage) -> bool {
        self.stages.contains_key(&stage)
    }

    /// The furthest stage reached.
    pub fn furthest(&self) -> Option<Stage> {
        self.stages.keys().next_back().copied()
    }

    fn touch(&mut self, at: Option<i64>) {
        if let Some(t) = at {
            self.first_seen = Some(self.first_seen.map_or(t, |f| f.min(t)));
            self.last_seen = Some(self.last_seen.map_or(t, |l| l.max(t)));
        }
    }

    fn mark(&mut self, stage: Stage, at: Option<i64>, detail: impl Into<String>) {
        self.stages.entry(stage).or_insert(Mark {
            at,
            detail: detail.into(),
        });
    }

    fn start_over(&mut self) {
        self.stages.clear();
        self.tftp_missing = None;
        self.boot_script_offered = false;
        self.no_profile = false;
        self.attempts += 1;
    }
}

/// How far apart two facts from different containers' logs may be sorted by docker's times
/// and still be one step of the same boot.
const CROSS_LOG_SKEW_SECS: i64 = 5;

/// Fixed-size memories of the fold, so that a long log cannot make it grow without bound.
const MAX_PENDING_SCRIPTS: usize = 64;

/// Folds facts, in order, into journeys; keeps what it needs to tie facts that name no MAC
/// (TFTP names an address, `/boot.ipxe` nothing) to a machine.
#[derive(Default)]
pub struct Folder {
    pub journeys: BTreeMap<String, Journey>,
    ip_to_mac: HashMap<Ipv4Addr, String>,
    /// In proxy mode the first TFTP comes from an address dnsmasq never logged: the machine
    /// most recently offered that file is the one fetching it.
    offered_file: HashMap<String, String>,
    /// `/boot.ipxe` requests not yet followed by an `/ipxe` that names the machine.
    boot_scripts: VecDeque<Option<i64>>,
    /// The machine of the last `/ipxe`: assets fetched without `?mac=` (profiles rendered by
    /// an older cozyboot) are its, as iPXE fetches them right after.
    last_profile: Option<String>,
    /// The Pi most recently sent option 43: in proxy mode its TFTP comes from an address
    /// dnsmasq never logged.
    last_rpi: Option<String>,
    /// Addresses `cozyboot validate --probe-dhcp` was offered: their TFTP is no machine's.
    own_ips: std::collections::HashSet<Ipv4Addr>,
}

impl Folder {
    pub fn new() -> Self {
        Self::default()
    }

    fn journey(&mut self, mac: &str, at: Option<i64>) -> &mut Journey {
        let j = self
            .journeys
            .entry(mac.to_string())
            .or_insert_with(|| Journey::new(mac));
        j.touch(at);
        j
    }

    pub fn add(&mut self, e: &Event) {
        let at = e.at;
        if is_validate_probe(&e.what) {
            // `cozyboot validate` asks /boot.ipxe, then /ipxe and the assets as its sample MAC.
            match &e.what {
                What::Profile { .. } => {
                    self.boot_scripts.pop_front();
                }
                // Its DHCP probe then fetches the bootloader over TFTP from this address.
                What::DhcpOffer { ip: Some(ip), .. } => {
                    self.own_ips.insert(*ip);
                }
                // In proxy mode its TFTP comes from an address never logged: no machine's.
                What::BootFile { file, .. } => {
                    self.offered_file.remove(file);
                }
                _ => {}
            }
            return;
        }
        match &e.what {
            What::DhcpRequest {
                mac,
                client_arch,
                ipxe,
                proxy,
            } => {
                let j = self.journey(mac, at);
                // The profile comes from matchbox's log, this request from dnsmasq's: merged
                // by docker's times, which lag behind under load, iPXE's last DHCP step
                // (proxy mode's port-4011 reply) can sort after its own downloads. A real
                // new attempt (a reboot, iPXE retrying) comes later than that.
                let ipxe_again = *ipxe
                    && j.stages.get(&Stage::Profile).is_some_and(|p| match (p.at, at) {
                        (Some(profile), Some(now)) => now - profile > CROSS_LOG_SKEW_SECS,
                        _ => true,
                    });
                // Every boot attempt starts with a PXE firmware or iPXE asking. A client with
                // neither mark is the booted system's own (busybox udhcpc, Talos in
                // maintenance mode): the same boot going on, and its answer is the address
                // the node is reached on from now.
                let netboot_client = client_arch.is_some() || *ipxe;
                // The Pi EEPROM asking again is the board starting over: its first stage too.
                let pi_eeprom = *client_arch == Some(rpi::EEPROM_CLIENT_ARCH) && rpi::is_raspberry_pi_mac(mac);
                if pi_eeprom && j.rpi.as_ref().is_some_and(|r| !r.files.is_empty()) {
                    j.rpi = None;
                    j.start_over();
                }
                if netboot_client && ((!ipxe && j.reached(Stage::Tftp)) || ipxe_again) {
                    j.start_over();
                }
                if pi_eeprom {
                    j.rpi.get_or_insert_with(RpiStage::default);
                }
                if client_arch.is_some() {
                    j.client_arch = *client_arch;
                }
                j.proxy |= *proxy;
            }
            What::DhcpOffer { mac, ip, proxy } => {
                let j = self.journey(mac, at);
                j.offered = true;
                j.proxy |= *proxy;
                if let Some(ip) = ip {
                    j.ip = Some(*ip);
                    self.ip_to_mac.insert(*ip, mac.clone());
                }
            }
            What::RpiOption43 { mac } => {
                let j = self.journey(mac, at);
                j.offered = true;
                j.rpi.get_or_insert_with(RpiStage::default).option43 = true;
                self.last_rpi = Some(mac.clone());
            }
            What::BootFile { mac, file, ipxe } => {
                let script = *ipxe || file.ends_with("boot.ipxe");
                let j = self.journey(mac, at);
                j.mark(Stage::Dhcp, at, file.clone());
                if script {
                    j.boot_script_offered = true;
                } else {
                    self.offered_file.insert(file.clone(), mac.clone());
                }
            }
            What::TftpSent { file, ip } | What::TftpMissing { file, ip } => {
                // iPXE looks for autoexec.ipxe first; its absence is normal.
                if file == "autoexec.ipxe" || self.own_ips.contains(ip) {
                    return;
                }
                let pi_file = is_rpi_firmware_file(file);
                let Some(mac) = self
                    .ip_to_mac
                    .get(ip)
                    .or_else(|| self.offered_file.get(file))
                    .or_else(|| self.last_rpi.as_ref().filter(|_| pi_file))
                    .cloned()
                else {
                    return;
                };
                self.ip_to_mac.insert(*ip, mac.clone());
                let missing = matches!(e.what, What::TftpMissing { .. });
                let j = self.journey(&mac, at);
                j.ip.get_or_insert(*ip);
                if let Some(r) = j.rpi.as_mut().filter(|_| pi_file) {
                    if missing {
                        r.missing = Some(file.clone());
                    } else {
                        if r.missing.as_deref() == Some(file.as_str()) {
                            r.missing = None;
                        }
                        if !r.files.contains(file) {
                            r.files.push(file.clone());
                        }
                    }
                    return;
                }
                if missing {
                    j.tftp_missing = Some(file.clone());
                } else {
                    // U-Boot's boot script reads Talos's kernel and initramfs over TFTP.
                    let stage = match file.as_str() {
                        layout::KERNEL => Stage::Kernel,
                        layout::INITRAMFS => Stage::Initramfs,
                        _ => Stage::Tftp,
                    };
                    j.mark(stage, at, file.clone());
                }
            }
            What::UbootScript { mac, ip } => {
                if self.own_ips.contains(ip) {
                    return;
                }
                self.ip_to_mac.insert(*ip, mac.clone());
                let j = self.journey(mac, at);
                j.ip.get_or_insert(*ip);
                // The script runs, so U-Boot was sent it: beside another DHCP server, which
                // named this one, these are the first facts dnsmasq has of the board.
                j.client_arch.get_or_insert(arch::UBOOT_NON_EFI_PXE);
                j.mark(Stage::Dhcp, at, uboot::SCRIPT);
                j.mark(Stage::Tftp, at, uboot::SCRIPT);
            }
            What::BootScript => {
                if self.boot_scripts.len() >= MAX_PENDING_SCRIPTS {
                    self.boot_scripts.pop_front();
                }
                self.boot_scripts.push_back(at);
            }
            What::Profile {
                mac,
                arch,
                uuid,
                serial,
            } => {
                let script_at = self.boot_scripts.pop_front().unwrap_or(at);
                self.last_profile = Some(mac.clone());
                let j = self.journey(mac, at);
                if arch.is_some() {
                    j.ipxe_arch = arch.clone();
                }
                if uuid.is_some() {
                    j.uuid = uuid.clone();
                }
                if serial.is_some() {
                    j.serial = serial.clone();
                }
                j.mark(Stage::BootIpxe, script_at, "/boot.ipxe");
                j.no_profile = false;
                j.mark(Stage::Profile, at, arch.clone().unwrap_or_default());
            }
            What::NoProfile { mac, .. } => {
                if let Some(mac) = mac.clone().or_else(|| self.last_profile.clone()) {
                    let j = self.journey(&mac, at);
                    j.stages.remove(&Stage::Profile);
                    j.no_profile = true;
                }
            }
            What::Asset { path, mac } => {
                let name = path.rsplit('/').next().unwrap_or(path);
                let stage = if name.contains("initramfs") || name.contains("initrd") {
                    Stage::Initramfs
                } else if name.contains("vmlinuz") || name.contains("kernel") {
                    Stage::Kernel
                } else {
                    return;
                };
                if let Some(mac) = mac.clone().or_else(|| self.last_profile.clone()) {
                    self.journey(&mac, at).mark(stage, at, path.clone());
                }
            }
            What::Config { mac } => {
                if let Some(mac) = mac.clone().or_else(|| self.last_profile.clone()) {
                    self.journey(&mac, at).mark(Stage::Config, at, "/generic");
                }
            }
        }
    }
}

/// `cozyboot validate` asks as MACs of its own (locally administered, "coz y" in hex):
/// `02-63-6f-7a-79-01` for matchbox ([`super::validate_marks::SAMPLE_MAC`]), `...:02` for
/// its DHCP probe. They are not machines.
const COZYBOOT_MACS: &str = "02:63:6f:7a:79:";

fn is_validate_probe(what: &What) -> bool {
    let mac = match what {
        What::DhcpRequest { mac, .. }
        | What::RpiOption43 { mac }
        | What::DhcpOffer { mac, .. }
        | What::BootFile { mac, .. }
        | What::Profile { mac, .. } => Some(mac),
        What::NoProfile { mac, .. } | What::Asset { mac, .. } | What::Config { mac } => mac.as_ref(),
        _ => None,
    };
    mac.is_some_and(|m| m.starts_with(COZYBOOT_MACS))
}

/// Journeys from facts of both logs. Facts are ordered by time; facts without one (dnsmasq
/// read without docker's stamps) keep their order and go first, as DHCP and TFTP come before
/// HTTP in every boot.
pub fn fold(mut events: Vec<Event>) -> BTreeMap<String, Journey> {
    events.sort_by_key(|e| e.at.unwrap_or(i64::MIN));
    let mut f = Folder::new();
    for e in &events {
        f.add(e);
    }
    f.journeys
}

#[cfg(test)]
mod tests {
    use super::super::{dnsmasq_log, matchbox_log};
    use super::*;

    fn fixture(name: &str) -> BTreeMap<String, Journey> {
        let dir = format!("{}/tests/fixtures/journey", env!("CARGO_MANIFEST_DIR"));
        let read = |kind: &str| std::fs::read_to_string(format!("{dir}/{name}.{kind}.log")).unwrap_or_default();
        let mut events = dnsmasq_log::events(&read("dnsmasq"));
        events.extend(matchbox_log::events(&read("matchbox")));
        fold(events)
    }

    /// What a UEFI machine walks through when its initramfs comes: all before `config`.
    const UEFI_THROUGH_INITRAMFS: &[Stage] = Stage::ALL.split_at(6).0;

    fn stages(j: &Journey) -> Vec<Stage> {
        j.stages.keys().copied().collect()
    }

    /// A CM4's EEPROM through the site `up` starts in full mode: dnsmasq 2.90's lines as
    /// captured by tests/it/rpi_eeprom.rs (requested-options lines left out), then the UEFI
    /// firmware's own DHCP as arm64.
    const PI_EEPROM: &str = "\
dnsmasq-dhcp: 2222789005 available DHCP range: 10.214.26.100 -- 10.214.26.150
dnsmasq-dhcp: 2222789005 vendor class: PXEClient:Arch:00000:UNDI:002001
dnsmasq-dhcp: 2222789005 DHCPDISCOVER(eth0) d8:3a:dd:20:04:01 
dnsmasq-dhcp: 2222789005 tags: bios, rpi-eeprom, eth0
dnsmasq-dhcp: 2222789005 DHCPOFFER(eth0) 10.214.26.148 d8:3a:dd:20:04:01 
dnsmasq-dhcp: 2222789005 next server: 10.214.26.10
dnsmasq-dhcp: 2222789005 sent size:  9 option: 60 vendor-class  50:58:45:43:6c:69:65:6e:74
dnsmasq-dhcp: 2222789005 sent size: 32 option: 43 vendor-encap  06:01:03:0a:04:00:50:58:45:09:14:00:00:11...
dnsmasq-tftp: file /var/lib/tftpboot/2f0a11c4/start4.elf not found for 10.214.26.148
dnsmasq-tftp: sent /var/lib/tftpboot/start4.elf to 10.214.26.148
dnsmasq-tftp: sent /var/lib/tftpboot/config.txt to 10.214.26.148
dnsmasq-tftp: sent /var/lib/tftpboot/RPI_EFI.fd to 10.214.26.148
";

    #[test]
    fn a_pi_eeprom_first_stage_is_kept_and_the_uefi_dhcp_that_follows_is_the_same_boot() {
        use super::super::diagnosis::{diagnose, Site};
        let site = Site {
            arches: vec![crate::artifacts::arch::Arch::Arm64],
            config_for_all: false,
            config_macs: vec![],
            http: "10.214.26.10:8080".into(),
        };
        let first = fold(dnsmasq_log::events(PI_EEPROM));
        let j = &first["d8:3a:dd:20:04:01"];
        let pi = j.rpi.as_ref().expect("a Pi's first stage");
        assert!(pi.option43);
        assert_eq!(pi.files, ["start4.elf", "config.txt", "RPI_EFI.fd"]);
        assert_eq!(
            pi.missing, None,
            "<serial>/start4.elf missing, then the root's sent: no stop"
        );
        let d = diagnose(j, &site, 0);
        assert_eq!(d.stopped_before, Some(Stage::Dhcp));
        assert!(d.finding.contains("never asked DHCP as arm64"), "{}", d.finding);

        // Stopped at a missing file: the diagnosis names it.
        let missing = PI_EEPROM.replace(
            "dnsmasq-tftp: sent /var/lib/tftpboot/RPI_EFI.fd to",
            "dnsmasq-tftp: file /var/lib/tftpboot/RPI_EFI.fd not found for",
        );
        let all = fold(dnsmasq_log::events(&missing));
        let d = diagnose(&all["d8:3a:dd:20:04:01"], &site, 0);
        assert_eq!(d.stopped_before, Some(Stage::Tftp));
        assert!(d.finding.contains("`RPI_EFI.fd`"), "{}", d.finding);

        // No option 43 (arm64 not served): the diagnosis says so.
        let no43: String = PI_EEPROM
            .lines()
            .filter(|l| !l.contains("option: 43"))
            .map(|l| format!("{l}\n"))
            .collect();
        let all = fold(dnsmasq_log::events(&no43));
        let d = diagnose(&all["d8:3a:dd:20:04:01"], &site, 0);
        assert!(d.finding.contains("no option 43"), "{}", d.finding);

        // The UEFI firmware then asks as arm64 and takes bootaa64.efi: one attempt.
        let uefi = format!(
            "{PI_EEPROM}\
dnsmasq-dhcp: 77 vendor class: PXEClient:Arch:00011:UNDI:003000
dnsmasq-dhcp: 77 DHCPDISCOVER(eth0) d8:3a:dd:20:04:01 
dnsmasq-dhcp: 77 DHCPOFFER(eth0) 10.214.26.148 d8:3a:dd:20:04:01 
dnsmasq-dhcp: 77 sent size: 13 option: 67 bootfile-name  bootaa64.efi
dnsmasq-tftp: sent /var/lib/tftpboot/bootaa64.efi to 10.214.26.148
"
        );
        let all = fold(dnsmasq_log::events(&uefi));
        let j = &all["d8:3a:dd:20:04:01"];
        assert_eq!(j.attempts, 1);
        assert_eq!(j.client_arch, Some(11));
        assert_eq!(stages(j), [Stage::Dhcp, Stage::Tftp]);
        assert_eq!(j.rpi.as_ref().unwrap().files.len(), 3);
    }

    #[test]
    fn arm64_full_dhcp_reaches_the_initramfs() {
        let all = fixture("arm64-full");
        let j = &all["52:54:00:c0:0b:11"];
        assert_eq!(all.len(), 1);
        assert_eq!(j.client_arch, Some(11));
        assert_eq!(j.ipxe_arch.as_deref(), Some("arm64"));
        assert_eq!(j.ip, Some("10.213.167.130".parse().unwrap()));
        assert!(!j.proxy);
        assert_eq!(stages(j), UEFI_THROUGH_INITRAMFS);
        assert_eq!(j.stages[&Stage::Dhcp].detail, "bootaa64.efi");
        assert_eq!(j.stages[&Stage::Tftp].detail, "bootaa64.efi");
        assert_eq!(j.attempts, 1);
    }

    #[test]
    fn arm64_proxy_dhcp_ties_tftp_to_the_machine_offered_the_file() {
        let all = fixture("arm64-proxy");
        let j = &all["52:54:00:c0:0b:11"];
        assert!(j.proxy);
        assert_eq!(j.ip, Some("10.213.168.130".parse().unwrap()));
        assert_eq!(stages(j), UEFI_THROUGH_INITRAMFS);
    }

    #[test]
    fn bios_proxy_goes_straight_to_ipxe() {
        let j = &fixture("bios-proxy")["52:54:00:c0:0b:00"];
        assert_eq!(j.ipxe_arch.as_deref(), Some("i386"));
        assert_eq!(j.client_arch, Some(0));
        assert!(j.boot_script_offered);
        assert_eq!(
            stages(j),
            [
                Stage::Dhcp,
                Stage::BootIpxe,
                Stage::Profile,
                Stage::Kernel,
                Stage::Initramfs
            ]
        );
    }

    #[test]
    fn no_group_is_a_404_at_profile() {
        let j = &fixture("no-i386-group")["52:54:00:c0:0b:00"];
        assert!(j.no_profile);
        assert_eq!(stages(j), [Stage::Dhcp, Stage::BootIpxe]);
    }

    #[test]
    fn arch_12_rule_leaves_an_offer_without_boot_file() {
        let j = &fixture("arch-12")["52:54:00:c0:0b:11"];
        assert!(j.offered);
        assert_eq!(j.client_arch, Some(11));
        assert!(j.stages.is_empty());
    }

    #[test]
    fn a_firmware_asking_again_after_tftp_starts_a_new_attempt() {
        let mut events = dnsmasq_log::events(include_str!("../../tests/fixtures/journey/arm64-full.dnsmasq.log"));
        events.extend(dnsmasq_log::events(
            "dnsmasq-dhcp[1]: 7 available DHCP range: x\ndnsmasq-dhcp[1]: 7 vendor class: PXEClient:Arch:00011:UNDI:003000\ndnsmasq-dhcp[1]: 7 DHCPDISCOVER(eth0) 52:54:00:c0:0b:11 \n",
        ));
        let j = &fold(events)["52:54:00:c0:0b:11"];
        assert_eq!(j.attempts, 2);
        assert!(j.stages.is_empty());
    }

    /// Real logs of an x64 UEFI boot whose system, once running, leased its address with a
    /// plain DHCP client (`vendor class: udhcp 1.37.0`, no PXE class), as Talos does in
    /// maintenance mode: still the one boot, and its address is that lease.
    #[test]
    fn the_booted_systems_own_dhcp_is_not_a_new_attempt() {
        let all = fixture("x64-full-talos-dhcp");
        let j = &all["52:54:00:c0:0b:07"];
        assert_eq!(j.attempts, 1, "{j:#?}");
        assert_eq!(stages(j), UEFI_THROUGH_INITRAMFS);
        assert_eq!(j.client_arch, Some(7), "the firmware's class stays: {j:#?}");
        assert_eq!(j.ip, Some("10.213.36.120".parse().unwrap()));
    }

    /// Seen in CI: under load docker stamped dnsmasq's port-4011 line (iPXE's last DHCP step
    /// in proxy mode) after matchbox's kernel and initramfs lines of the same boot.
    #[test]
    fn an_ipxe_dhcp_logged_just_after_its_own_downloads_is_the_same_attempt() {
        let mac = "52:54:00:c0:0b:00";
        let ev = |at: i64, what: What| Event { at: Some(at), what };
        let request = |at| {
            ev(
                at,
                What::DhcpRequest {
                    mac: mac.into(),
                    client_arch: Some(0),
                    ipxe: true,
                    proxy: true,
                },
            )
        };
        let boot = vec![
            request(100),
            ev(
                100,
                What::BootFile {
                    mac: mac.into(),
                    file: "http://s/boot.ipxe".into(),
                    ipxe: true,
                },
            ),
            ev(101, What::BootScript),
            ev(
                101,
                What::Profile {
                    mac: mac.into(),
                    arch: Some("i386".into()),
                    uuid: None,
                    serial: None,
                },
            ),
            ev(
                101,
                What::Asset {
                    path: "/assets/talos/amd64/vmlinuz".into(),
                    mac: Some(mac.into()),
                },
            ),
            ev(
                102,
                What::Asset {
                    path: "/assets/talos/amd64/initramfs.xz".into(),
                    mac: Some(mac.into()),
                },
            ),
        ];
        let mut late = boot.clone();
        late.push(request(102));
        let j = &fold(late)[mac];
        assert_eq!(j.attempts, 1, "{j:#?}");
        assert!(j.reached(Stage::Initramfs), "{j:#?}");
        let mut reboot = boot;
        reboot.push(request(160));
        let j = &fold(reboot)[mac];
        assert_eq!(j.attempts, 2, "a DHCP a minute later is a new attempt: {j:#?}");
    }

    /// The facts of matchbox's `/ipxe` request line (matchbox v0.11.0 `http/handlers.go`'s
    /// `logRequest`, the query from its bootstrap script `http/ipxe.go`'s `ipxeBootstrap`).
    #[test]
    fn the_hardware_ipxe_sent_is_the_machines_and_a_request_without_it_keeps_it() {
        let line = |serial: &str| {
            format!(
                "time=\"2026-12-06T03:45:35Z\" level=info msg=\"HTTP GET /ipxe?uuid=4c4c4544-0042-3510-8052-b4c04f395a32&mac=52-54-00-c0-0b-11&domain=&hostname=&serial={serial}&arch=arm64\"\n"
            )
        };
        let mac = "52:54:00:c0:0b:11";
        let j = &fold(matchbox_log::events(&line("CZB-SN-0042")))[mac];
        assert_eq!(j.uuid.as_deref(), Some("4c4c4544-0042-3510-8052-b4c04f395a32"));
        assert_eq!(j.serial.as_deref(), Some("CZB-SN-0042"));
        // A later request without a serial (iPXE sends it empty) does not forget it.
        let j = &fold(matchbox_log::events(&(line("CZB-SN-0042") + &line(""))))[mac];
        assert_eq!(j.serial.as_deref(), Some("CZB-SN-0042"));
    }

    #[test]
    fn validates_sample_mac_is_no_machine() {
        let text = "\
time=\"2026-11-29T18:51:46Z\" level=info msg=\"HTTP GET /boot.ipxe\"
time=\"2026-11-29T18:51:46Z\" level=info msg=\"HTTP GET /ipxe?uuid=x&mac=02-63-6f-7a-79-01&arch=arm64\"
time=\"2026-11-29T18:51:46Z\" level=info msg=\"HTTP GET /assets/talos/arm64/vmlinuz?mac=02-63-6f-7a-79-01\"
";
        assert!(fold(matchbox_log::events(text)).is_empty());
        assert!(crate::journey::validate_marks::SAMPLE_MAC
            .replace('-', ":")
            .starts_with(COZYBOOT_MACS));
        let probe = "dnsmasq-dhcp: 5 available DHCP range: x\ndnsmasq-dhcp: 5 vendor class: PXEClient:Arch:00011:UNDI:003000\ndnsmasq-dhcp: 5 DHCPDISCOVER(eth0) 02:63:6f:7a:79:02 \ndnsmasq-dhcp: 5 DHCPOFFER(eth0) 10.0.0.9 02:63:6f:7a:79:02 \ndnsmasq-tftp: sent /a/bootaa64.efi to 10.0.0.9\n";
        assert!(fold(dnsmasq_log::events(probe)).is_empty());
    }

    #[test]
    fn stage_names_round_trip() {
        for s in Stage::ALL {
            assert_eq!(s.name().parse::<Stage>(), Ok(s));
        }
        assert!("linux".parse::<Stage>().unwrap_err().contains("kernel"));
    }
}
