//! What a PXE client is offered by a dnsmasq argv: the tag rules (`--dhcp-match`,
//! `--dhcp-userclass`, `--dhcp-vendorclass`) and boot lines (`--dhcp-boot`, `--pxe-service`)
//! evaluated as dnsmasq picks among them, for a firmware or iPXE of a given client-arch code.
//! The `config.*` checks ask it about the rendered and the running argv.

use crate::artifacts::arch::{Arch, Firmware};
use crate::render::dnsmasq;

/// A DHCP client as dnsmasq's tag rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// Option 93; some UEFI PXE stacks lose it.
    pub arch: Option<u16>,
    pub vendor_class: String,
    /// iPXE: sends option 175 and user class `iPXE`.
    pub ipxe: bool,
}

impl Client {
    pub fn firmware(code: u16) -> Client {
        let undi = if code == 0 { "002001" } else { "003000" };
        Client {
            arch: Some(code),
            vendor_class: format!("PXEClient:Arch:{code:05}:UNDI:{undi}"),
            ipxe: false,
        }
    }

    pub fn ipxe(code: u16) -> Client {
        Client {
            ipxe: true,
            vendor_class: format!("PXEClient:Arch:{code:05}:UNDI:003010"),
            ..Client::firmware(code)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Cond {
    Arch(u16),
    /// Option 175 or user class `iPXE`: what iPXE sends.
    Ipxe,
    VendorClass(String),
    /// Something this model does not evaluate (MAC blocks, other options): never set.
    Other,
}

/// `tag:x` (wanted) or `tag:!x` (must be absent).
type Req = (String, bool);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootLine {
    reqs: Vec<Req>,
    /// The PXE service type (CSA) for `--pxe-service`, `None` for `--dhcp-boot`.
    csa: Option<String>,
    pub file: String,
    pub arg: String,
}

impl BootLine {
    pub fn guards_ipxe(&self) -> bool {
        self.reqs
            .iter()
            .any(|(tag, wanted)| !wanted && tag == dnsmasq::IPXE_TAG)
    }

    fn applies(&self, tags: &[String]) -> bool {
        self.reqs.iter().all(|(tag, wanted)| tags.contains(tag) == *wanted)
    }

    fn tagged(&self) -> bool {
        self.reqs.iter().any(|(_, wanted)| *wanted)
    }
}

/// The parts of a dnsmasq argv that decide what a PXE client is offered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    sets: Vec<(String, Cond, String)>,
    pub boots: Vec<BootLine>,
    pub proxy: bool,
}

impl Rules {
    pub fn parse(argv: &[String]) -> Rules {
        let mut rules = Rules::default();
        for arg in argv {
            let Some((key, value)) = arg.split_once('=') else {
                continue;
            };
            match key {
                "--dhcp-range" => rules.proxy |= value.split(',').any(|p| p == "proxy"),
                "--dhcp-match" | "--dhcp-userclass" | "--dhcp-vendorclass" => {
                    rules.sets.extend(set_rule(key, value, arg))
                }
                "--dhcp-boot" | "--pxe-service" => rules.boots.extend(boot_line(key, value, arg)),
                _ => {}
            }
        }
        rules
    }

    fn tags(&self, client: &Client) -> Vec<String> {
        let hit = |cond: &Cond| match cond {
            Cond::Arch(code) => client.arch == Some(*code),
            Cond::Ipxe => client.ipxe,
            Cond::VendorClass(vc) => client.vendor_class.contains(vc.as_str()),
            Cond::Other => false,
        };
        self.sets
            .iter()
            .filter(|(_, cond, _)| hit(cond))
            .map(|(tag, _, _)| tag.clone())
            .collect()
    }

    /// The line that decides what `client` boots, as dnsmasq picks it: in full mode the last
    /// matching tagged `--dhcp-boot` (untagged ones only when none matches); in proxy mode
    /// the first `--pxe-service` for the client's CSA (several make a menu; firmware with
    /// nobody at the keyboard takes the first).
    pub fn answer(&self, client: &Client) -> Option<&BootLine> {
        let tags = self.tags(client);
        if self.proxy {
            let csa = client.arch.and_then(csa_of)?;
            return self
                .boots
                .iter()
                .find(|b| b.csa.as_deref() == Some(csa) && b.applies(&tags));
        }
        let full: Vec<&BootLine> = self
            .boots
            .iter()
            .filter(|b| b.csa.is_none() && b.applies(&tags))
            .collect();
        full.iter().rev().find(|b| b.tagged()).or_else(|| full.last()).copied()
    }

    pub fn rules_for_arch(&self, code: u16) -> Vec<&str> {
        self.sets
            .iter()
            .filter(|(_, c, _)| *c == Cond::Arch(code))
            .map(|(_, _, arg)| arg.as_str())
            .collect()
    }
}

fn set_rule(key: &str, value: &str, arg: &str) -> Option<(String, Cond, String)> {
    let (tag, rest) = value.split_once(',')?;
    let tag = tag
        .strip_prefix("set:")
        .or_else(|| tag.strip_prefix("net:"))?
        .to_string();
    let cond = match key {
        "--dhcp-userclass" if rest == "iPXE" => Cond::Ipxe,
        "--dhcp-vendorclass" => Cond::VendorClass(rest.to_string()),
        "--dhcp-match" => match_cond(rest),
        _ => Cond::Other,
    };
    Some((tag, cond, arg.to_string()))
}

/// `option:client-arch,11`, `93,11`, `option:93,11`; `175` or `option:175` for iPXE.
fn match_cond(rest: &str) -> Cond {
    let mut parts = rest.split(',');
    let option = parts.next().unwrap_or_default().trim_start_matches("option:");
    match (option, parts.next()) {
        ("client-arch" | "93", Some(code)) => code.parse().map_or(Cond::Other, Cond::Arch),
        ("175", _) => Cond::Ipxe,
        _ => Cond::Other,
    }
}

/// `--dhcp-boot=[tag:..,]file[,server...]`, `--pxe-service=[tag:..,]CSA,menu text,file[,...]`.
fn boot_line(key: &str, value: &str, arg: &str) -> Option<BootLine> {
    let mut reqs = Vec::new();
    let mut rest: Vec<&str> = Vec::new();
    for part in value.split(',') {
        match part.strip_prefix("tag:").or_else(|| part.strip_prefix("net:")) {
            Some(t) if rest.is_empty() => match t.strip_prefix('!') {
                Some(absent) => reqs.push((absent.to_string(), false)),
                None => reqs.push((t.to_string(), true)),
            },
            _ => rest.push(part),
        }
    }
    let (csa, file) = match key {
        "--pxe-service" => (Some(rest.first()?.to_string()), rest.get(2)?.to_string()),
        _ => (None, rest.first()?.to_string()),
    };
    Some(BootLine {
        reqs,
        csa,
        file,
        arg: arg.to_string(),
    })
}

/// The proxy-DHCP service type a firmware of this client-arch code asks for.
fn csa_of(code: u16) -> Option<&'static str> {
    all_firmwares().find(|f| f.code == code).and_then(|f| f.pxe_csa)
}

fn all_firmwares() -> impl Iterator<Item = &'static Firmware> {
    Arch::ALL.iter().flat_map(|a| a.firmwares())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// The manual guide's dnsmasq rules (full mode).
    fn guide() -> Rules {
        Rules::parse(&argv(&[
            "--dhcp-range=10.20.13.150,10.20.13.200",
            "--dhcp-match=set:bios,option:client-arch,0",
            "--dhcp-boot=tag:bios,undionly.kpxe",
            "--dhcp-match=set:efibc,option:client-arch,7",
            "--dhcp-boot=tag:efibc,ipxe.efi",
            "--dhcp-match=set:efiarm64,option:client-arch,12",
            "--dhcp-boot=tag:efiarm64,bootaa64.efi",
            "--dhcp-userclass=set:ipxe,iPXE",
            "--dhcp-boot=tag:ipxe,http://10.20.13.140:8080/boot.ipxe",
        ]))
    }

    fn file(rules: &Rules, client: Client) -> Option<String> {
        rules.answer(&client).map(|l| l.file.clone())
    }

    #[test]
    fn the_guides_rules_leave_arm64_without_a_file() {
        let g = guide();
        assert_eq!(file(&g, Client::firmware(11)), None);
        assert_eq!(file(&g, Client::firmware(12)).as_deref(), Some("bootaa64.efi"));
        assert_eq!(file(&g, Client::firmware(0)).as_deref(), Some("undionly.kpxe"));
        // The iPXE line is written last, so it wins: order saves the guide, for now.
        assert_eq!(
            file(&g, Client::ipxe(0)).as_deref(),
            Some("http://10.20.13.140:8080/boot.ipxe")
        );
        assert_eq!(
            g.rules_for_arch(12),
            vec!["--dhcp-match=set:efiarm64,option:client-arch,12"]
        );
    }

    #[test]
    fn last_tagged_line_wins_and_the_wrong_order_loops() {
        let mut a = argv(&[
            "--dhcp-match=set:efi-arm64,option:client-arch,11",
            "--dhcp-match=set:ipxe,175",
            "--dhcp-boot=tag:ipxe,http://x/boot.ipxe",
            "--dhcp-boot=tag:efi-arm64,bootaa64.efi",
        ]);
        assert_eq!(
            file(&Rules::parse(&a), Client::ipxe(11)).as_deref(),
            Some("bootaa64.efi")
        );
        a[3] = "--dhcp-boot=tag:efi-arm64,tag:!ipxe,bootaa64.efi".into();
        assert_eq!(
            file(&Rules::parse(&a), Client::ipxe(11)).as_deref(),
            Some("http://x/boot.ipxe")
        );
        assert_eq!(
            file(&Rules::parse(&a), Client::firmware(11)).as_deref(),
            Some("bootaa64.efi")
        );
    }

    #[test]
    fn untagged_lines_apply_only_when_no_tagged_line_matches() {
        let rules = Rules::parse(&argv(&[
            "--dhcp-match=set:bios,93,0",
            "--dhcp-boot=tag:bios,undionly.kpxe",
            "--dhcp-boot=default.efi",
        ]));
        assert_eq!(file(&rules, Client::firmware(0)).as_deref(), Some("undionly.kpxe"));
        assert_eq!(file(&rules, Client::firmware(11)).as_deref(), Some("default.efi"));
    }

    #[test]
    fn proxy_mode_reads_pxe_services_by_csa() {
        let rules = Rules::parse(&argv(&[
            "--dhcp-range=10.0.0.0,proxy,255.255.255.0",
            "--dhcp-match=set:ipxe,175",
            "--dhcp-vendorclass=set:efi-arm64,PXEClient:Arch:00011",
            "--pxe-service=tag:efi-arm64,tag:!ipxe,ARM64_EFI,cozyboot arm64 (11),bootaa64.efi",
            "--pxe-service=tag:ipxe,ARM64_EFI,iPXE,http://x/boot.ipxe",
        ]));
        assert!(rules.proxy);
        assert_eq!(file(&rules, Client::firmware(11)).as_deref(), Some("bootaa64.efi"));
        assert_eq!(file(&rules, Client::ipxe(11)).as_deref(), Some("http://x/boot.ipxe"));
        assert_eq!(file(&rules, Client::firmware(7)), None);
    }

    #[test]
    fn vendor_class_is_the_fallback_when_option_93_is_lost() {
        let rules = Rules::parse(&argv(&[
            "--dhcp-vendorclass=set:efi-arm64,PXEClient:Arch:00011",
            "--dhcp-boot=tag:efi-arm64,tag:!ipxe,bootaa64.efi",
        ]));
        let lost = Client {
            arch: None,
            ..Client::firmware(11)
        };
        assert_eq!(file(&rules, lost).as_deref(), Some("bootaa64.efi"));
    }
}
