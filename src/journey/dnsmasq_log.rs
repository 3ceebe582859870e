//! dnsmasq's `--log-dhcp` and TFTP lines → [`Event`]s.
//!
//! One DHCP exchange spans several lines tied by the transaction id (xid): the vendor class
//! and user class come before the line that names the MAC, the tags and the boot file after
//! it. So the reader keeps a little state per xid. Lines look like (dnsmasq 2.90, with or
//! without `[pid]`, with or without docker's timestamp in front):
//!
//! ```text
//! dnsmasq-dhcp[20292]: 2934268050 vendor class: PXEClient:Arch:00011:UNDI:003000
//! dnsmasq-dhcp[20292]: 2934268050 DHCPOFFER(cb-srv) 10.213.167.130 52:54:00:c0:0b:11
//! dnsmasq-dhcp[20292]: 2934268050 sent size: 13 option: 67 bootfile-name  bootaa64.efi
//! dnsmasq-dhcp[22131]: 4225229027 PXE(cb-srv) 52:54:00:c0:0b:11 proxy
//! dnsmasq-dhcp[22131]: 4225229027 bootfile name: bootaa64.efi
//! dnsmasq-tftp[20292]: sent /tmp/.tmp6y1Jhs/data/assets/bootaa64.efi to 10.213.167.130
//! ```
//!
//! Where each line comes from in dnsmasq v2.90's source (thekelleys.org.uk's git, tag v2.90;
//! read through its GitHub mirror imp/dnsmasq), read, not copied:
//! - the prefix: `src/log.c`, `my_syslog`: `dnsmasq%s[%d]: ` with `-dhcp` for `MS_DHCP`
//!   and `-tftp` for `MS_TFTP` messages;
//! - `src/rfc2131.c`: `%u vendor class: %s` and `%u user class: %s` (the client's classes,
//!   before the exchange's other lines); `log_packet` with `--log-dhcp`:
//!   `%u %s(%s) %s%s%s %s%s` (xid, `DHCPDISCOVER`/`DHCPOFFER`/`DHCPREQUEST`/`DHCPACK`/`PXE`,
//!   the interface, the address, the MAC, then `proxy` or an error); `%u sent size:%3d
//!   option:%3d %s  %s` (each option sent, 67 being the boot file); `%u bootfile name: %s`
//!   (the proxy / port-4011 reply);
//! - `src/dhcp-common.c`: `%u tags: %s`;
//! - `src/tftp.c`: `sent %s to %s` (and `failed sending %s to %s`), `error %d %s received
//!   from %s`.
//!
//! The lines in `tests/fixtures/journey/*.dnsmasq.log` are real dnsmasq 2.90 (Debian
//! bookworm) output, captured from the firmware tests' boots.

use super::event::{normalize_mac, split_docker_time, Event, What};
use crate::render::dnsmasq::RPI_TAG;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// More open exchanges than this means lines are being lost or xids are never reused:
/// forget them all rather than grow without bound.
const MAX_OPEN_EXCHANGES: usize = 4096;

#[derive(Default)]
struct Exchange {
    mac: Option<String>,
    /// Tagged `rpi-eeprom`: the Raspberry Pi bootloader EEPROM asking.
    rpi: bool,
    client_arch: Option<u16>,
    ipxe: bool,
}

#[derive(Default)]
pub struct DnsmasqLog {
    open: HashMap<u32, Exchange>,
}

impl DnsmasqLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads one line; calls `emit` for each fact it holds (none for most lines).
    pub fn line(&mut self, line: &str, emit: &mut impl FnMut(Event)) {
        let (at, line) = split_docker_time(line);
        let Some((program, body)) = line.split_once(": ") else {
            return;
        };
        let program = program.split('[').next().unwrap_or(program);
        let mut push = |what| emit(Event { at, what });
        match program {
            "dnsmasq-dhcp" => self.dhcp(body, &mut push),
            "dnsmasq-tftp" => tftp(body, &mut push),
            _ => {}
        }
    }

    fn dhcp(&mut self, body: &str, push: &mut impl FnMut(What)) {
        let Some((xid, rest)) = body.split_once(' ') else {
            return;
        };
        let Ok(xid) = xid.parse::<u32>() else { return };
        if rest.starts_with("available DHCP") {
            // The first line dnsmasq writes for each packet: what follows is a new request.
            if self.open.len() >= MAX_OPEN_EXCHANGES {
                self.open.clear();
            }
            self.open.insert(xid, Exchange::default());
            return;
        }
        let ex = self.open.entry(xid).or_default();
        if let Some(class) = rest.strip_prefix("vendor class: ") {
            ex.client_arch = client_arch(class);
        } else if let Some(class) = rest.strip_prefix("user class: ") {
            ex.ipxe |= class.trim() == "iPXE";
        } else if let Some(tags) = rest.strip_prefix("tags: ") {
            ex.ipxe |= tags.split(", ").any(|t| t.trim() == "ipxe");
            ex.rpi |= tags.split(", ").any(|t| t.trim() == RPI_TAG);
        } else if let Some(file) = rest.strip_prefix("bootfile name: ") {
            boot_file(ex, file, push);
        } else if rest.starts_with("sent size:") {
            if let Some((_, file)) = rest.split_once(" option: 67 bootfile-name ") {
                boot_file(ex, file, push);
            } else if rest.contains(" option: 43 ") && ex.rpi {
                // Option 43 sent to a client tagged as the Pi EEPROM: its `Raspberry Pi Boot`
                // menu (the tag is on that one service only).
                if let Some(mac) = &ex.mac {
                    push(What::RpiOption43 { mac: mac.clone() });
                }
            }
        } else if let Some((verb, args)) = rest.split_once('(') {
            let words: Vec<&str> = args.split_once(')').map_or("", |(_, a)| a).split_whitespace().collect();
            // The MAC is the first word that is one; an address, when there is one, comes before it.
            let Some(at) = words.iter().position(|w| normalize_mac(w).is_some()) else {
                return;
            };
            let mac = normalize_mac(words[at]).unwrap_or_default();
            let ip = words[..at].iter().find_map(|w| w.parse::<Ipv4Addr>().ok());
            ex.mac = Some(mac.clone());
            match verb {
                "DHCPDISCOVER" | "DHCPREQUEST" | "DHCPINFORM" => push(What::DhcpRequest {
                    mac,
                    client_arch: ex.client_arch,
                    ipxe: ex.ipxe,
                    proxy: false,
                }),
                "DHCPOFFER" | "DHCPACK" => push(What::DhcpOffer { mac, ip, proxy: false }),
                "PXE" => {
                    push(What::DhcpRequest {
                        mac: mac.clone(),
                        client_arch: ex.client_arch,
                        ipxe: ex.ipxe,
                        proxy: true,
                    });
                    push(What::DhcpOffer {
                        mac: mac.clone(),
                        ip,
                        proxy: true,
                    });
                    // On port 4011 the boot file is the word after the MAC; on 67 it is `proxy`.
                    if let Some(file) = words.get(at + 1).filter(|w| **w != "proxy") {
                        push(What::BootFile {
                            mac,
                            file: (*file).to_string(),
                            ipxe: ex.ipxe,
                        });
                    }
                }
                _ => {}
            }
        }
    }
}

fn boot_file(ex: &Exchange, file: &str, push: &mut impl FnMut(What)) {
    if let Some(mac) = &ex.mac {
        push(What::BootFile {
            mac: mac.clone(),
            file: file.trim().to_string(),
            ipxe: ex.ipxe,
        });
    }
}

/// `PXEClient:Arch:00011:UNDI:003000` → 11; `HTTPClient:Arch:00019` → 19; `PXEClient` → none;
/// `U-Boot.armv8` → 22, the client arch arm64 U-Boot's own DHCP sends beside that class
/// (`DHCP_PXE_CLIENTARCH`'s default "if ARM64", cmd/Kconfig).
pub fn client_arch(vendor_class: &str) -> Option<u16> {
    if vendor_class.trim() == crate::render::uboot::VENDOR_CLASS {
        return Some(crate::artifacts::arch::UBOOT_NON_EFI_PXE);
    }
    let rest = vendor_class.trim().split_once(":Arch:")?.1;
    rest.get(..5)?.parse().ok()
}

fn tftp(body: &str, push: &mut impl FnMut(What)) {
    if let Some(rest) = body.strip_prefix("sent ") {
        if let Some((path, ip)) = rest.rsplit_once(" to ") {
            if let Ok(ip) = ip.trim().parse() {
                push(What::TftpSent {
                    file: basename(path),
                    ip,
                });
            }
        }
    } else if let Some(rest) = body.strip_prefix("file ") {
        if let Some((path, ip)) = rest.rsplit_once(" not found for ") {
            if let Ok(ip) = ip.trim().parse() {
                let file = basename(path);
                let announced = file
                    .strip_prefix(crate::render::uboot::ANNOUNCE)
                    .and_then(crate::settings::normalise_mac);
                push(match announced {
                    Some(mac) => What::UbootScript { mac, ip },
                    None => What::TftpMissing { file, ip },
                });
            }
        }
    }
}

fn basename(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}

/// Every fact in `text` (a whole log).
pub fn events(text: &str) -> Vec<Event> {
    let mut log = DnsmasqLog::new();
    let mut out = Vec::new();
    for line in text.lines() {
        log.line(line, &mut |e| out.push(e));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whats(text: &str) -> Vec<What> {
        events(text).into_iter().map(|e| e.what).collect()
    }

    const MAC: &str = "52:54:00:c0:0b:11";

    #[test]
    fn full_mode_firmware_exchange_names_arch_ip_and_boot_file() {
        let text = "\
dnsmasq-dhcp[20292]: 2934268050 available DHCP range: 10.213.167.100 -- 10.213.167.150
dnsmasq-dhcp[20292]: 2934268050 vendor class: PXEClient:Arch:00011:UNDI:003000
dnsmasq-dhcp[20292]: 2934268050 DHCPDISCOVER(cb-srv) 52:54:00:c0:0b:11 
dnsmasq-dhcp[20292]: 2934268050 tags: efi-arm64, cb-srv
dnsmasq-dhcp[20292]: 2934268050 DHCPOFFER(cb-srv) 10.213.167.130 52:54:00:c0:0b:11 
dnsmasq-dhcp[20292]: 2934268050 requested options: 1:netmask, 2:time-offset, 3:router, 4, 5, 
dnsmasq-dhcp[20292]: 2934268050 sent size: 13 option: 67 bootfile-name  bootaa64.efi
dnsmasq-tftp[20292]: error 8 User aborted the transfer received from 10.213.167.130
dnsmasq-tftp[20292]: sent /tmp/.tmp6y1Jhs/data/assets/bootaa64.efi to 10.213.167.130
dnsmasq-tftp[20292]: file /tmp/.tmp6y1Jhs/data/assets/autoexec.ipxe not found for 10.213.167.130
";
        let ip: Ipv4Addr = "10.213.167.130".parse().unwrap();
        assert_eq!(
            whats(text),
            vec![
                What::DhcpRequest {
                    mac: MAC.into(),
                    client_arch: Some(11),
                    ipxe: false,
                    proxy: false
                },
                What::DhcpOffer {
                    mac: MAC.into(),
                    ip: Some(ip),
                    proxy: false
                },
                What::BootFile {
                    mac: MAC.into(),
                    file: "bootaa64.efi".into(),
                    ipxe: false
                },
                What::TftpSent {
                    file: "bootaa64.efi".into(),
                    ip
                },
                What::TftpMissing {
                    file: "autoexec.ipxe".into(),
                    ip
                },
            ]
        );
    }

    #[test]
    fn ipxe_exchange_is_told_by_its_user_class() {
        let text = "\
dnsmasq-dhcp[20292]: 4086019125 available DHCP range: 10.213.167.100 -- 10.213.167.150
dnsmasq-dhcp[20292]: 4086019125 vendor class: PXEClient:Arch:00011:UNDI:003010
dnsmasq-dhcp[20292]: 4086019125 user class: iPXE
dnsmasq-dhcp[20292]: 4086019125 DHCPDISCOVER(cb-srv) 52:54:00:c0:0b:11 
dnsmasq-dhcp[20292]: 4086019125 tags: ipxe, efi-arm64, cb-srv
dnsmasq-dhcp[20292]: 4086019125 sent size: 35 option: 67 bootfile-name  http://10.213.167.1:8080/boot.ipxe
";
        let w = whats(text);
        assert_eq!(
            w[0],
            What::DhcpRequest {
                mac: MAC.into(),
                client_arch: Some(11),
                ipxe: true,
                proxy: false
            }
        );
        assert_eq!(
            w[1],
            What::BootFile {
                mac: MAC.into(),
                file: "http://10.213.167.1:8080/boot.ipxe".into(),
                ipxe: true
            }
        );
    }

    #[test]
    fn proxy_mode_lines_on_67_and_4011() {
        let text = "\
dnsmasq-dhcp[22131]: 4225229027 available DHCP subnet: 10.213.168.0/255.255.255.0
dnsmasq-dhcp[22131]: 4225229027 vendor class: PXEClient:Arch:00011:UNDI:003000
dnsmasq-dhcp[22131]: 4225229027 PXE(cb-srv) 52:54:00:c0:0b:11 proxy
dnsmasq-dhcp[22131]: 4225229027 tags: efi-arm64, cb-srv
dnsmasq-dhcp[22131]: 4225229027 bootfile name: bootaa64.efi
dnsmasq-dhcp[26152]: 0 available DHCP subnet: 10.213.171.0/255.255.255.0
dnsmasq-dhcp[26152]: 0 vendor class: PXEClient
dnsmasq-dhcp[26152]: 0 user class: iPXE
dnsmasq-dhcp[26152]: 0 PXE(cb-srv) 10.213.171.113 52:54:00:c0:0b:00 http://10.213.171.1:8080/boot.ipxe
";
        let bios = "52:54:00:c0:0b:00";
        assert_eq!(
            whats(text),
            vec![
                What::DhcpRequest {
                    mac: MAC.into(),
                    client_arch: Some(11),
                    ipxe: false,
                    proxy: true
                },
                What::DhcpOffer {
                    mac: MAC.into(),
                    ip: None,
                    proxy: true
                },
                What::BootFile {
                    mac: MAC.into(),
                    file: "bootaa64.efi".into(),
                    ipxe: false
                },
                What::DhcpRequest {
                    mac: bios.into(),
                    client_arch: None,
                    ipxe: true,
                    proxy: true
                },
                What::DhcpOffer {
                    mac: bios.into(),
                    ip: Some("10.213.171.113".parse().unwrap()),
                    proxy: true
                },
                What::BootFile {
                    mac: bios.into(),
                    file: "http://10.213.171.1:8080/boot.ipxe".into(),
                    ipxe: true
                },
            ]
        );
    }

    #[test]
    fn container_lines_without_pid_and_with_docker_time() {
        let text = "\
2026-11-29T19:08:35.000000001Z dnsmasq-dhcp: 679424347 available DHCP range: 10.213.136.100 -- 10.213.136.150
2026-11-29T19:08:35.000000002Z dnsmasq-dhcp: 679424347 vendor class: PXEClient:Arch:00007:UNDI:003010
2026-11-29T19:08:36.000000003Z dnsmasq-dhcp: 679424347 DHCPACK(cbfw136) 10.213.136.120 52:54:00:c0:0b:07 
";
        let e = events(text);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].at, super::super::clock::parse_rfc3339("2026-11-29T19:08:36Z"));
    }

    #[test]
    fn every_captured_log_parses_to_a_machine() {
        for name in [
            "arm64-full",
            "arm64-proxy",
            "bios-proxy",
            "no-i386-group",
            "arch-12",
            "up-x64-full",
        ] {
            let path = format!(
                "{}/tests/fixtures/journey/{name}.dnsmasq.log",
                env!("CARGO_MANIFEST_DIR")
            );
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                events(&text).iter().any(|e| matches!(e.what, What::DhcpRequest { .. })),
                "{path}"
            );
        }
    }

    #[test]
    fn vendor_classes_give_the_client_arch() {
        assert_eq!(client_arch("PXEClient:Arch:00011:UNDI:003000"), Some(11));
        assert_eq!(client_arch("PXEClient:Arch:00000:UNDI:002001"), Some(0));
        assert_eq!(client_arch("HTTPClient:Arch:00019"), Some(19));
        assert_eq!(client_arch("PXEClient"), None);
        assert_eq!(client_arch("MSFT 5.0"), None);
    }
}
