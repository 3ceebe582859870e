//! `--probe-dhcp`: cozyboot plays the PXE firmware of every served architecture, and iPXE, on
//! one interface: it checks each offer (and the UDP 4011 step of proxy DHCP), fetches the
//! offered bootloader by TFTP and compares it byte for byte with the file on disk, and fetches
//! the iPXE script URL. It never requests a lease, and every wait is bounded.

use super::{Check, Findings};
use crate::artifacts::rpi;
use crate::host::pxe_client::{self, BootAnswer, DiscoverSpec, Offer, ProbeError};
use crate::render::dnsmasq::served_firmwares;
use crate::render::uboot;
use crate::settings::{DhcpMode, Settings};
use std::net::Ipv4Addr;
use std::time::Duration;

/// Each DISCOVER waits this long for every answer: a second server answering late is
/// exactly what must be reported.
pub const WAIT: Duration = Duration::from_secs(4);
/// In full mode dnsmasq pings an address for 3 s before it first offers it.
const FIRST_OFFER_PING: Duration = Duration::from_secs(3);
/// A locally administered MAC no NIC ships with, outside the Raspberry Pi blocks dnsmasq
/// tags specially.
// Keep it in the 02:63:6f:7a:79 block: `cozyboot nodes` counts no MAC of it as a machine.
const MAC: [u8; 6] = [0x02, 0x63, 0x6f, 0x7a, 0x79, 0x02];
/// The Pi EEPROM probe's MAC: the same block, so it too is not counted as a machine.
const RPI_MAC: [u8; 6] = [0x02, 0x63, 0x6f, 0x7a, 0x79, 0x04];
/// The U-Boot probe's MAC, in the same block.
const UBOOT_MAC: [u8; 6] = [0x02, 0x63, 0x6f, 0x7a, 0x79, 0x05];
const NOT_RUN: &str = "probe.dhcp";
const SERVERS: &str = "probe.servers";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOptions {
    /// Where the DISCOVERs are broadcast (the segment the machines boot on).
    pub iface: String,
    pub wait: Duration,
}

/// One simulated client and what it must be offered.
struct Target {
    id: String,
    who: String,
    spec: DiscoverSpec,
    expect: Expect,
}

enum Expect {
    /// A bootloader file name in the TFTP root.
    Bootloader(String),
    /// The iPXE script URL.
    Script(String),
}

impl Expect {
    fn name(&self) -> &str {
        match self {
            Expect::Bootloader(name) | Expect::Script(name) => name,
        }
    }
}

pub async fn checks(s: &Settings, options: Option<&ProbeOptions>) -> Vec<Check> {
    let Some(options) = options else {
        return vec![Check::skip(
            NOT_RUN,
            "not run: --probe-dhcp makes cozyboot act as a PXE client (needs root)",
        )];
    };
    let (s, options) = (s.clone(), options.clone());
    let handle = tokio::runtime::Handle::current();
    // The probe blocks on sockets; it must not hold up the runtime's workers.
    tokio::task::spawn_blocking(move || run(&s, &options, &handle))
        .await
        .unwrap_or_else(|e| vec![Check::fail(NOT_RUN, format!("the probe stopped: {e}"))])
}

fn targets(s: &Settings) -> Vec<Target> {
    let codes: Vec<(u16, String)> = served_firmwares(s)
        .filter(|fw| !fw.http_boot)
        .map(|fw| (fw.code, s.bootloaders.for_bootloader(fw.bootloader).to_string()))
        .collect();
    let mut targets: Vec<Target> = codes
        .iter()
        .map(|(code, file)| Target {
            id: format!("probe.arch-{code}"),
            who: format!("a firmware sending arch {code}"),
            spec: DiscoverSpec::firmware(*code, MAC),
            expect: Expect::Bootloader(file.clone()),
        })
        .collect();
    if let Some((code, _)) = codes.first() {
        targets.push(Target {
            id: "probe.ipxe".into(),
            who: format!("iPXE (arch {code})"),
            spec: DiscoverSpec::ipxe(*code, MAC),
            expect: Expect::Script(format!("{}/boot.ipxe", s.http_base())),
        });
    }
    targets
}

fn run(s: &Settings, o: &ProbeOptions, handle: &tokio::runtime::Handle) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut offers: Vec<Offer> = Vec::new();
    let mut others: Vec<(Ipv4Addr, String)> = Vec::new();
    let mut blocked: Option<String> = None;
    for (i, t) in targets(s).into_iter().enumerate() {
        if let Some(first) = &blocked {
            checks.push(Check::skip(&t.id, format!("not run (see {first})")));
            continue;
        }
        let ping = matches!(s.dhcp, DhcpMode::Full { .. }) && i == 0;
        let wait = if ping { o.wait + FIRST_OFFER_PING } else { o.wait };
        match pxe_client::boot_file_for(&o.iface, &t.spec, wait) {
            Ok(answer) => {
                offers.extend(answer.offers.iter().cloned());
                for found in other_boot_files(&o.iface, &t.spec, &answer, s.server_ip, o.wait) {
                    if !others.contains(&found) {
                        others.push(found);
                    }
                }
                checks.push(judge(s, o, &t, &answer, handle));
            }
            Err(e) => {
                if cannot_probe_here(&e) {
                    blocked = Some(t.id.clone());
                }
                checks.push(unanswered(o, &t, &e));
            }
        }
    }
    if s.serves_rpi() {
        checks.push(match &blocked {
            Some(first) => Check::skip(RPI, format!("not run (see {first})")),
            None => rpi_eeprom(s, o, &mut offers),
        });
    }
    if s.serves_uboot() {
        checks.push(match &blocked {
            Some(first) => Check::skip(UBOOT, format!("not run (see {first})")),
            None => u_boot(s, o, &mut offers),
        });
    }
    checks.push(servers(s.server_ip, s.dhcp == DhcpMode::Proxy, &offers, &others));
    checks
}

/// The boot file each other server that answered `answer`'s DISCOVER offers this client:
/// named in its offer, or, for a proxy offer, asked of it on UDP 4011 as a firmware would
/// (the probe's own boot-server step asked only one of them). Another site serving the same
/// LAN (the cluster's, from `render --kubernetes`, before this host's is stopped) is found so.
pub fn other_boot_files(
    iface: &str,
    spec: &DiscoverSpec,
    answer: &BootAnswer,
    own: Ipv4Addr,
    wait: Duration,
) -> Vec<(Ipv4Addr, String)> {
    let mut found: Vec<(Ipv4Addr, String)> = Vec::new();
    for offer in answer.offers.iter().filter(|o| o.server_id != own) {
        let file = match &offer.boot_file {
            Some(file) => Some(file.clone()),
            None if offer.proxy && offer.is_pxe() => pxe_client::pxe_boot_request(iface, spec, offer, wait)
                .ok()
                .and_then(|ack| ack.boot_file),
            None => None,
        };
        if let Some(file) = file {
            if !found.iter().any(|(server, f)| *server == offer.server_id && *f == file) {
                found.push((offer.server_id, file));
            }
        }
    }
    found
}

/// One DISCOVER as `t`'s client: every answer (added to `seen`), and findings holding them as
/// evidence; or the failed check when nobody answered, unless `silence_is_an_answer`.
fn discover_once(
    s: &Settings,
    o: &ProbeOptions,
    t: &Target,
    silence_is_an_answer: bool,
    seen: &mut Vec<Offer>,
) -> Result<(Vec<Offer>, Findings), Check> {
    // A new MAC: in full mode dnsmasq pings the address it will offer first.
    let wait = match s.dhcp {
        DhcpMode::Full { .. } => o.wait + FIRST_OFFER_PING,
        DhcpMode::Proxy => o.wait,
    };
    let offers = match pxe_client::discover(&o.iface, &t.spec, wait) {
        Ok(offers) => offers,
        Err(e) if silence_is_an_answer && !cannot_probe_here(&e) => Vec::new(),
        Err(e) => return Err(unanswered(o, t, &e)),
    };
    seen.extend(offers.iter().cloned());
    let mut f = Findings::default();
    f.evidence.extend(offers.iter().map(describe));
    Ok((offers, f))
}

const RPI: &str = "probe.rpi-eeprom";

/// The Raspberry Pi 4/CM4 EEPROM: its request shape (client-arch 0, the x86 BIOS vendor
/// class, option 97 starting `RPi4`) from cozyboot's own MAC block, so the Pi is recognised
/// by its GUID and `nodes` does not count the probe as a machine. It must be offered option 43
/// `Raspberry Pi Boot`, never `undionly.kpxe`, and read start4.elf over TFTP as installed.
fn rpi_eeprom(s: &Settings, o: &ProbeOptions, seen: &mut Vec<Offer>) -> Check {
    let who = "the Raspberry Pi EEPROM (arch 0, option 97 RPi4)";
    let target = Target {
        id: RPI.into(),
        who: who.into(),
        spec: DiscoverSpec::rpi_eeprom(RPI_MAC, 0x00c0_3141, 0x0c0f_fee0),
        expect: Expect::Bootloader(rpi::START_FILE.into()),
    };
    let (offers, mut f) = match discover_once(s, o, &target, false, seen) {
        Ok(answer) => answer,
        Err(unanswered) => return unanswered,
    };
    if let Some(x86) = offers
        .iter()
        .find(|x| x.boot_file.as_deref() == Some(s.bootloaders.bios.as_str()))
    {
        f.fail(format!(
            "{who} is offered {} by {}: a Pi cannot run it",
            s.bootloaders.bios, x86.server_id
        ));
    }
    match offers.iter().find(|x| x.offers_raspberry_pi_boot()) {
        None => f.fail(format!(
            "{who} got no option 43 with `{}`, so a Pi never netboots",
            rpi::OPTION43_MATCH
        )),
        Some(offer) => {
            f.note(format!("option 43 `{}` from {}", rpi::OPTION43_MATCH, offer.server_id));
            tftp_matches_disk(s, o, offer.tftp_server(), rpi::START_FILE, &mut f);
        }
    }
    let check = f.into_check(
        RPI,
        format!(
            "{who} is offered option 43 `{}` and reads {} over TFTP as installed",
            rpi::OPTION43_MATCH,
            rpi::START_FILE
        ),
    );
    match check.status {
        super::Status::Pass => check,
        _ => check.fix("run `cozyboot up` with arm64 served (and --rpi-netboot on): it renders the Pi's option 43 and installs its firmware; see assets.rpi-firmware"),
    }
}

const UBOOT: &str = "probe.uboot";

/// U-Boot's own network boot, from cozyboot's own MAC block: it takes only an offer with an
/// address (net/bootp.c drops proxy replies), and reads `boot.scr.uimg` from that offer's
/// next-server. In full mode that offer is this site's; beside another DHCP server it is that
/// server's, which must name this one (a warning: a site may have no U-Boot boards).
fn u_boot(s: &Settings, o: &ProbeOptions, seen: &mut Vec<Offer>) -> Check {
    let who = "U-Boot (vendor class U-Boot.armv8, arch 22)";
    let target = Target {
        id: UBOOT.into(),
        who: who.into(),
        spec: DiscoverSpec::u_boot(UBOOT_MAC),
        expect: Expect::Bootloader(uboot::SCRIPT.into()),
    };
    let proxy = s.dhcp == DhcpMode::Proxy;
    // Beside another DHCP server, no answer at all is judged below like an answer that does
    // not name this server: what U-Boot is told is that server's to say.
    let (offers, mut f) = match discover_once(s, o, &target, proxy, seen) {
        Ok(answer) => answer,
        Err(unanswered) => return unanswered,
    };
    let taken = offers.iter().find(|x| !x.proxy);
    match taken.map(|x| (x, x.boot_file.as_deref())) {
        Some((offer, Some(uboot::SCRIPT))) if offer.tftp_server() == s.server_ip => {
            f.note(format!(
                "{} from {}, next-server {}",
                uboot::SCRIPT,
                offer.server_id,
                s.server_ip
            ));
            tftp_matches_disk(s, o, s.server_ip, uboot::SCRIPT, &mut f);
        }
        taken => {
            let problem = match taken {
                Some((offer, file)) => format!(
                    "{who} takes {}'s offer, which sends it to {} for {}: never to this server's {}",
                    offer.server_id,
                    offer.tftp_server(),
                    file.unwrap_or("no boot file"),
                    uboot::SCRIPT
                ),
                None => format!("{who} got no offer with an address, the only kind it takes"),
            };
            // Beside another DHCP server, what U-Boot is told is that server's to say.
            if proxy {
                f.warn(problem);
            } else {
                f.fail(problem);
            }
        }
    }
    let check = f.into_check(
        UBOOT,
        format!(
            "{who} is sent to this server for {} and reads it over TFTP as rendered",
            uboot::SCRIPT
        ),
    );
    match (check.status, proxy) {
        (super::Status::Pass, _) => check,
        (_, true) => check.fix(format!(
            "U-Boot ignores proxy DHCP: if U-Boot boards boot here, make the LAN's DHCP server answer vendor class {} with next-server {} and boot file {} (docs/raspberry-pi.md, \"U-Boot boards\")",
            uboot::VENDOR_CLASS,
            s.server_ip,
            uboot::SCRIPT
        )),
        (_, false) => check.fix("run `cozyboot up` with arm64 served and --uboot-netboot on: it renders the U-Boot rule and writes the script"),
    }
}

/// Errors of this host, not of the server: every other probe would hit them too.
fn cannot_probe_here(e: &ProbeError) -> bool {
    matches!(
        e,
        ProbeError::PermissionDenied { .. }
            | ProbeError::PortInUse { .. }
            | ProbeError::NoSuchInterface { .. }
            | ProbeError::Io { .. }
    )
}

fn unanswered(o: &ProbeOptions, t: &Target, e: &ProbeError) -> Check {
    let fix = match e {
        ProbeError::PermissionDenied { .. } => "run `cozyboot validate --probe-dhcp` as root".to_string(),
        ProbeError::NoSuchInterface { .. } => "pass --probe-iface with an interface on the boot segment".to_string(),
        ProbeError::PortInUse { .. } => "stop the DHCP client or server holding UDP port 68 on this host".to_string(),
        _ => format!(
            "check that dnsmasq runs and listens on the segment {} is on (containers.dnsmasq.running, logs.dnsmasq.started), \
             that no firewall drops UDP 67/68 (and 4011 in proxy mode), and that no other DHCP server answers first",
            o.iface
        ),
    };
    Check::fail(&t.id, format!("{} on {} got no answer", t.who, o.iface))
        .evidence(e.to_string())
        .fix(fix)
}

fn describe(offer: &Offer) -> String {
    let address = if offer.proxy {
        "no address (proxy DHCP)".to_string()
    } else {
        format!("address {}", offer.yiaddr)
    };
    format!(
        "offer from {} ({}): {address}, next-server {}, file {}",
        offer.server_id,
        offer.from,
        offer.siaddr,
        offer.boot_file.as_deref().unwrap_or("none")
    )
}

fn judge(s: &Settings, o: &ProbeOptions, t: &Target, answer: &BootAnswer, handle: &tokio::runtime::Handle) -> Check {
    let mut f = Findings::default();
    f.evidence.extend(answer.offers.iter().map(describe));
    if answer.via_pxe_port {
        f.note(format!(
            "boot file from the proxy's UDP {} answer",
            pxe_client::dhcp::PXE_PORT
        ));
    }
    let (ok, fix) = match offer_problem(t, answer) {
        Some(problem) => {
            f.fail(problem);
            (String::new(), "run `cozyboot up`: it renders a boot rule for every served firmware (see config.arch-11, config.dnsmasq-args)")
        }
        None => fetch_offered(s, o, t, answer, handle, &mut f),
    };
    let check = f.into_check(&t.id, ok);
    match check.status {
        super::Status::Pass => check,
        _ => check.fix(fix),
    }
}

/// What is wrong with the boot file offered, if anything.
fn offer_problem(t: &Target, answer: &BootAnswer) -> Option<String> {
    let expected = t.expect.name();
    match answer.boot_file.as_deref() {
        None => {
            let got = if answer.offers.iter().any(|x| !x.proxy) {
                "an address"
            } else {
                "a proxy answer"
            };
            Some(format!(
                "{} got {got} but no boot file (expected {expected}): no dnsmasq rule matches it",
                t.who
            ))
        }
        Some(file) if file != expected => Some(format!("{} is offered {file}, expected {expected}", t.who)),
        Some(_) => None,
    }
}

/// Fetches what was offered as the client would; returns the passing finding and the fix
/// for a failure.
fn fetch_offered(
    s: &Settings,
    o: &ProbeOptions,
    t: &Target,
    answer: &BootAnswer,
    handle: &tokio::runtime::Handle,
    f: &mut Findings,
) -> (String, &'static str) {
    match &t.expect {
        Expect::Bootloader(name) => {
            let server = answer.tftp_server.unwrap_or(s.server_ip);
            if server != s.server_ip {
                f.warn(format!(
                    "next-server is {server}, not --server-ip {}: clients fetch {name} from there",
                    s.server_ip
                ));
            }
            tftp_matches_disk(s, o, server, name, f);
            let ok = format!(
                "{} is offered {name}; TFTP from {server} serves it byte for byte",
                t.who
            );
            (ok, "see assets.bootloader.* and logs.dnsmasq.tftp-not-found")
        }
        Expect::Script(url) => {
            script_answers(url, handle, f);
            let ok = format!("{} is sent to {url}, which serves the iPXE script", t.who);
            (ok, "see matchbox.health and matchbox.boot-ipxe")
        }
    }
}

fn tftp_matches_disk(s: &Settings, o: &ProbeOptions, server: Ipv4Addr, name: &str, f: &mut Findings) {
    let disk_path = s.assets_dir().join(name);
    let disk = match std::fs::read(&disk_path) {
        Ok(bytes) => bytes,
        Err(e) => return f.fail(format!("{} cannot be read to compare: {e}", disk_path.display())),
    };
    match pxe_client::fetch(server, name, o.wait) {
        Ok(bytes) if bytes == disk => f.note(format!(
            "TFTP {server}:{name}: {} bytes, identical to {}",
            bytes.len(),
            disk_path.display()
        )),
        Ok(bytes) => f.fail(format!(
            "TFTP {server}:{name} serves {} bytes that differ from {} ({} bytes): the server serves another TFTP root",
            bytes.len(),
            disk_path.display(),
            disk.len()
        )),
        Err(e) => f.fail(format!("TFTP fetch of {name} from {server} failed: {e}")),
    }
}

fn script_answers(url: &str, handle: &tokio::runtime::Handle, f: &mut Findings) {
    // Asked from this host: never through a gateway, where another server could answer.
    let guarded = reqwest::Url::parse(url)
        .map_err(|e| format!("{url} is not a URL: {e}"))
        .and_then(|u| crate::host::reach::guard(&u));
    if let Err(refused) = guarded {
        return f.warn(format!("the iPXE URL {url} was not fetched: {refused}"));
    }
    let fetched = handle.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(WAIT)
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        let response = client.get(url).send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        Ok::<_, String>((status, response.text().await.unwrap_or_default()))
    });
    match fetched {
        Ok((status, body)) if status.is_success() && body.contains("#!ipxe") => f.note(format!("GET {url} → {status}")),
        Ok((status, _)) => f.fail(format!("GET {url} → {status}, not an iPXE script")),
        Err(e) => f.fail(format!("GET {url} failed: {e}")),
    }
}

/// Every server that answered any probe (`own` is this site's address); another full DHCP
/// server on the segment is the most common reason a node boots something else, and a second
/// boot server (`others`: each with a boot file it offers) means two sites answer the LAN.
pub fn servers(own: Ipv4Addr, proxy_mode: bool, offers: &[Offer], others: &[(Ipv4Addr, String)]) -> Check {
    if offers.is_empty() {
        return Check::skip(SERVERS, "no DHCP server answered");
    }
    let mut seen: Vec<&Offer> = Vec::new();
    for offer in offers {
        if !seen.iter().any(|o| o.server_id == offer.server_id) {
            seen.push(offer);
        }
    }
    let mut f = Findings::default();
    f.evidence.extend(seen.iter().map(|o| describe(o)));
    let others_seen: Vec<&&Offer> = seen.iter().filter(|o| o.server_id != own).collect();
    if !seen.iter().any(|o| o.server_id == own) {
        f.warn(format!("{own} never answered; only other servers did"));
    }
    let mut boot_servers = false;
    for other in &others_seen {
        let files: Vec<&str> = others
            .iter()
            .filter(|(server, _)| *server == other.server_id)
            .map(|(_, file)| file.as_str())
            .collect();
        let kind = if other.proxy { "proxy DHCP" } else { "DHCP" };
        if !files.is_empty() {
            boot_servers = true;
            f.warn(format!(
                "a second boot server, {} ({kind}), offers {} too: each machine boots from whichever answers first",
                other.server_id,
                files.join(", ")
            ));
        } else if !proxy_mode {
            f.warn(format!(
                "another DHCP server, {}, answers on this segment: clients may take its offer first",
                other.server_id
            ));
        } else {
            f.note(format!(
                "{} hands out addresses; {own} adds boot information (proxy)",
                other.server_id
            ));
        }
    }
    let names: Vec<String> = seen.iter().map(|o| o.server_id.to_string()).collect();
    let check = f.into_check(SERVERS, format!("answering: {}", names.join(", ")));
    match check.status {
        super::Status::Warn if boot_servers => check.fix(
            "one boot server per LAN: if the other is this site moved into the cluster (`render --kubernetes`), stop this host's with `cozyboot down`; else find and stop the other",
        ),
        super::Status::Warn => {
            check.fix("find and stop the other DHCP server, or use proxy mode (no --dhcp-range) beside it")
        }
        _ => check,
    }
}
