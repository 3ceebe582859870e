//! A DHCP client that asks what a PXE firmware would be told.
//!
//! [`discover`] broadcasts one DHCPDISCOVER and reports every answer; it never takes a lease.
//! [`lease`] goes on the way a firmware does (REQUEST the offered address, until the ACK); only
//! the power-on storm benchmark (`examples/storm_bench.rs`) uses it, on a veth it made.
//! [`pxe_boot_request`] is
//! the PXE boot-server step on UDP 4011 that a proxy-DHCP server (dnsmasq `--dhcp-range=..,proxy`)
//! expects from UEFI clients, and [`boot_file_for`] chains the two the way a firmware does.
//!
//! What dnsmasq 2.90 does (read in its `src/rfc2131.c`), which shapes this module:
//! - In proxy mode it answers a DISCOVER from a client with option 93 >= 6 (UEFI) with an offer
//!   that has `yiaddr` 0, `siaddr` = itself, option 60 `PXEClient` and *no* boot file and no
//!   option 43: the client must send a DHCPREQUEST to port 4011. There, when exactly one
//!   `--pxe-service` matches the client's architecture and tags, the ACK carries the file.
//! - For x86 BIOS clients (arch 0) the port-67 offer carries option 43 with a boot menu
//!   (sub-option 9) and the boot server list (sub-option 8, discovery control 3 = unicast only).
//!   The client then sends a REQUEST to 4011 naming the chosen menu item in option 43 sub-option
//!   71; dnsmasq answers that only when the request's `ciaddr` lies in its subnet.
//! - Replies from port 4011 go to the client's port 68 (unicast to `ciaddr`, or broadcast when
//!   `ciaddr` is 0), so one socket bound to port 68 hears every step.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use dhcproto::v4::{Architecture, DhcpOption, Flags, Message, MessageType, OptionCode, UnknownOption};
use dhcproto::Encodable;
use socket2::{Domain, Protocol, Socket, Type};

use super::ProbeError;
use crate::artifacts::rpi;

const SERVER_PORT: u16 = 67;
const CLIENT_PORT: u16 = 68;
/// The PXE boot-server port (PXE spec 2.1), where proxy DHCP answers UEFI clients.
pub const PXE_PORT: u16 = 4011;

/// BOOTP requires at least 300 bytes; some relays and old servers drop shorter requests.
const MIN_BOOTP_LEN: usize = 300;
const MAX_DHCP_MESSAGE: u16 = 1472;

// Offsets in the fixed BOOTP header (RFC 2131, figure 1).
const OP_BOOTREPLY: u8 = 2;
const HDR_XID: usize = 4;
const HDR_YIADDR: usize = 16;
const HDR_SIADDR: usize = 20;
const HDR_CHADDR: usize = 28;
const HDR_SNAME: usize = 44;
const HDR_FILE: usize = 108;
const HDR_OPTIONS: usize = 236;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

const OPT_PAD: u8 = 0;
const OPT_VENDOR_ENCAP: u8 = 43;
const OPT_OVERLOAD: u8 = 52;
const OPT_MESSAGE_TYPE: u8 = 53;
const OPT_SERVER_ID: u8 = 54;
const OPT_VENDOR_CLASS: u8 = 60;
const OPT_BOOTFILE: u8 = 67;
const OPT_IPXE_ENCAP: u8 = 175;
const OPT_END: u8 = 255;

const DHCPOFFER: u8 = 2;
const DHCPACK: u8 = 5;

// PXE vendor sub-options carried in option 43 (PXE spec 2.1, table 2-1).
const PXE_BOOT_SERVERS: u8 = 8;
const PXE_BOOT_MENU: u8 = 9;
const PXE_BOOT_ITEM: u8 = 71;
/// Menu item type 0 means "boot from local disk", never a network boot file.
const PXE_LOCAL_BOOT: u16 = 0;

/// iPXE feature indicators inside option 175 (HTTP, TFTP, DNS), each `code, len 1, value 1`,
/// which is what dnsmasq's `--dhcp-match=set:ipxe,175` keys on.
const IPXE_FEATURES: [u8; 9] = [0x13, 1, 1, 0x15, 1, 1, 0x17, 1, 1];

/// Linux errno for "no such device", returned by SO_BINDTODEVICE for an unknown interface.
const ENODEV: i32 = 19;

/// What the probe claims to be in its DHCP requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverSpec {
    pub mac: [u8; 6],
    /// Option 93; `None` makes the probe a plain (non-PXE) DHCP client.
    pub client_arch: Option<u16>,
    /// Option 60, sent verbatim.
    pub vendor_class: Option<String>,
    /// Adds what iPXE sends: option 175 and user class (option 77) `iPXE`.
    pub ipxe: bool,
    /// Option 97 as sent (type byte and GUID); `None` sends one made from the MAC.
    pub guid: Option<Vec<u8>>,
}

impl DiscoverSpec {
    /// A UEFI/BIOS PXE ROM of architecture `arch_code`, with the vendor class EDK2 and PXE ROMs
    /// send, e.g. `PXEClient:Arch:00011:UNDI:003000`.
    pub fn firmware(arch_code: u16, mac: [u8; 6]) -> Self {
        Self::pxe_client(arch_code, mac, false)
    }

    /// iPXE running on architecture `arch_code` (it reports UNDI 3.10 on EFI, like iPXE does).
    pub fn ipxe(arch_code: u16, mac: [u8; 6]) -> Self {
        Self::pxe_client(arch_code, mac, true)
    }

    /// The Raspberry Pi 4/CM4 bootloader EEPROM: client-arch 0 and UNDI 2.1 like an x86 BIOS
    /// ROM (`PXEClient:Arch:00000:UNDI:002001`), and its option 97 GUID (`RPi4`, the board
    /// revision, the MAC's low 4 bytes, the serial); see [`crate::artifacts::rpi`].
    pub fn rpi_eeprom(mac: [u8; 6], board_revision: u32, serial: u32) -> Self {
        Self {
            guid: Some(rpi::option97(board_revision, mac, serial).to_vec()),
            ..Self::pxe_client(rpi::EEPROM_CLIENT_ARCH, mac, false)
        }
    }

    /// U-Boot's own network boot on arm64: client-arch 22 and vendor class `U-Boot.armv8`
    /// (the defaults of U-Boot's cmd/Kconfig `DHCP_PXE_CLIENTARCH` and `BOOTP_VCI_STRING`).
    pub fn u_boot(mac: [u8; 6]) -> Self {
        Self {
            mac,
            client_arch: Some(crate::artifacts::arch::UBOOT_NON_EFI_PXE),
            vendor_class: Some(crate::render::uboot::VENDOR_CLASS.to_string()),
            ipxe: false,
            guid: None,
        }
    }

    fn pxe_client(arch_code: u16, mac: [u8; 6], ipxe: bool) -> Self {
        let (major, minor) = undi_version(arch_code, ipxe);
        Self {
            mac,
            client_arch: Some(arch_code),
            vendor_class: Some(format!("PXEClient:Arch:{arch_code:05}:UNDI:{major:03}{minor:03}")),
            ipxe,
            guid: None,
        }
    }
}

/// UNDI version a client reports in option 94 and its vendor class: BIOS PXE ROMs say 2.1,
/// UEFI firmware 3.0, iPXE on EFI 3.10.
fn undi_version(arch_code: u16, ipxe: bool) -> (u8, u8) {
    match (arch_code, ipxe) {
        (0, _) => (2, 1),
        (_, false) => (3, 0),
        (_, true) => (3, 10),
    }
}

/// One DHCPOFFER (from [`discover`]) or DHCPACK (from [`pxe_boot_request`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Option 54, or the packet's source address when a server omits it.
    pub server_id: Ipv4Addr,
    pub from: SocketAddr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    /// The BOOTP `file` field, or option 67 when the field is empty.
    pub boot_file: Option<String>,
    /// Option 60; a PXE-aware server answers `PXEClient`.
    pub vendor_class: Option<String>,
    /// `yiaddr` is 0.0.0.0: the server offers boot information but no address.
    pub proxy: bool,
    /// Option 43, raw.
    pub pxe_options: Option<Vec<u8>>,
}

/// One entry of a PXE boot menu (option 43 sub-option 9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PxeMenuItem {
    pub boot_type: u16,
    pub description: String,
}

impl Offer {
    /// Where the boot file is fetched from: `siaddr`, else the server itself.
    pub fn tftp_server(&self) -> Ipv4Addr {
        if self.siaddr.is_unspecified() {
            self.server_id
        } else {
            self.siaddr
        }
    }

    /// Whether the server speaks PXE to us (it echoes option 60 as `PXEClient`).
    pub fn is_pxe(&self) -> bool {
        self.vendor_class
            .as_deref()
            .is_some_and(|class| class.starts_with("PXEClient"))
    }

    /// Whether the Raspberry Pi EEPROM would boot from this answer: option 43 holds
    /// `Raspberry Pi Boot` (its `PXE_OPTION43` match string).
    pub fn offers_raspberry_pi_boot(&self) -> bool {
        let needle = rpi::OPTION43_MATCH.as_bytes();
        self.pxe_options
            .as_deref()
            .is_some_and(|o| o.windows(needle.len()).any(|w| w == needle))
    }

    /// The PXE boot menu the server sent in option 43, in its order.
    pub fn pxe_menu(&self) -> Vec<PxeMenuItem> {
        let Some(menu) = self.pxe_suboption(PXE_BOOT_MENU) else {
            return Vec::new();
        };
        let mut items = Vec::new();
        let mut rest = menu.as_slice();
        while let [hi, lo, len, tail @ ..] = rest {
            let len = usize::from(*len).min(tail.len());
            items.push(PxeMenuItem {
                boot_type: u16::from_be_bytes([*hi, *lo]),
                description: String::from_utf8_lossy(&tail[..len]).into_owned(),
            });
            rest = &tail[len..];
        }
        items
    }

    /// The first address the boot server list (sub-option 8) gives for `boot_type`.
    fn boot_server_for(&self, boot_type: u16) -> Option<Ipv4Addr> {
        let list = self.pxe_suboption(PXE_BOOT_SERVERS)?;
        let mut rest = list.as_slice();
        while let [hi, lo, count, tail @ ..] = rest {
            let len = usize::from(*count) * 4;
            if tail.len() < len {
                return None;
            }
            if u16::from_be_bytes([*hi, *lo]) == boot_type && len >= 4 {
                return Some(Ipv4Addr::new(tail[0], tail[1], tail[2], tail[3]));
            }
            rest = &tail[len..];
        }
        None
    }

    fn pxe_suboption(&self, code: u8) -> Option<Vec<u8>> {
        parse_tlv(self.pxe_options.as_deref()?).remove(&code)
    }
}

/// The outcome of [`boot_file_for`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootAnswer {
    /// The file (or iPXE URL) the firmware would load; `None` when every server left it out.
    pub boot_file: Option<String>,
    /// Where to fetch `boot_file` by TFTP: `siaddr` of the answer that named it, else its server.
    pub tftp_server: Option<Ipv4Addr>,
    /// The answer came from the proxy-DHCP boot-server step on UDP 4011.
    pub via_pxe_port: bool,
    /// Every answer to the DISCOVER, in arrival order.
    pub offers: Vec<Offer>,
}

impl BootAnswer {
    /// Every distinct server that answered the DISCOVER.
    pub fn servers(&self) -> Vec<Ipv4Addr> {
        let mut servers: Vec<Ipv4Addr> = Vec::new();
        for offer in &self.offers {
            if !servers.contains(&offer.server_id) {
                servers.push(offer.server_id);
            }
        }
        servers
    }
}

/// Broadcasts one DHCPDISCOVER on `iface` and returns every offer heard within `wait`.
///
/// It always waits the full `wait`: a second server answering later is exactly what a probe
/// must report.
pub fn discover(iface: &str, spec: &DiscoverSpec, wait: Duration) -> Result<Vec<Offer>, ProbeError> {
    let socket = client_socket(iface)?;
    let message = client_message(spec, MessageType::Discover, Ipv4Addr::UNSPECIFIED, None);
    send(&socket, &message, SocketAddrV4::new(Ipv4Addr::BROADCAST, SERVER_PORT))?;
    let filter = ReplyFilter::new(&message, DHCPOFFER);
    let offers = receive(&socket, &filter, Instant::now() + wait, false)?;
    if offers.is_empty() {
        return Err(ProbeError::NoAnswer {
            iface: iface.to_owned(),
            waited_ms: wait.as_millis(),
        });
    }
    Ok(offers)
}

/// Takes a lease the way a firmware does: DISCOVER until an offer with an address arrives,
/// then REQUEST that address from that server until its ACK, which is returned. `waits` are
/// the waits before each retransmission of either message (a firmware backs off: EDK2 and
/// RFC 2131 section 4.1 use 4, 8, 16 and 32 s).
///
/// Several threads may lease at once on one interface, each for its own MAC: every call has
/// its own port-68 socket (`SO_REUSEADDR`), every broadcast reply reaches them all, and each
/// keeps only the replies to its own transaction id and MAC.
pub fn lease(iface: &str, spec: &DiscoverSpec, waits: &[Duration]) -> Result<Offer, ProbeError> {
    let socket = client_socket(iface)?;
    let started = Instant::now();
    let no_answer = || ProbeError::NoAnswer {
        iface: iface.to_owned(),
        waited_ms: started.elapsed().as_millis(),
    };
    let discover = client_message(spec, MessageType::Discover, Ipv4Addr::UNSPECIFIED, None);
    let offer = exchange(&socket, &discover, DHCPOFFER, waits, |offer| !offer.proxy)?.ok_or_else(no_answer)?;
    let request = lease_request(spec, &discover, &offer);
    exchange(&socket, &request, DHCPACK, waits, |ack| ack.yiaddr == offer.yiaddr)?.ok_or_else(no_answer)
}

/// The REQUEST that follows `offer`: the DISCOVER's transaction id, the offered address
/// (option 50) and the server chosen (option 54), as RFC 2131 section 3.1 step 3 has it.
fn lease_request(spec: &DiscoverSpec, discover: &Message, offer: &Offer) -> Message {
    let mut request = client_message(spec, MessageType::Request, Ipv4Addr::UNSPECIFIED, None);
    request.set_xid(discover.xid());
    let opts = request.opts_mut();
    opts.insert(DhcpOption::RequestedIpAddress(offer.yiaddr));
    opts.insert(DhcpOption::ServerIdentifier(offer.server_id));
    request
}

/// Broadcasts `message` to port 67 and waits for the first reply of `kind` that `accept`s,
/// sending again after each of `waits`; `None` when none came.
fn exchange(
    socket: &UdpSocket,
    message: &Message,
    kind: u8,
    waits: &[Duration],
    accept: impl Fn(&Offer) -> bool,
) -> Result<Option<Offer>, ProbeError> {
    let filter = ReplyFilter::new(message, kind);
    for wait in waits {
        send(socket, message, SocketAddrV4::new(Ipv4Addr::BROADCAST, SERVER_PORT))?;
        let deadline = Instant::now() + *wait;
        while let Some(reply) = receive(socket, &filter, deadline, true)?.pop() {
            if accept(&reply) {
                return Ok(Some(reply));
            }
        }
    }
    Ok(None)
}

/// The PXE boot-server request: asks the proxy-DHCP server behind `offer` on UDP 4011 for the
/// boot file, the way a firmware does after a proxy offer without one.
///
/// With a boot menu in the offer the first network item is requested (a firmware with nobody
/// at the keyboard does the same); without one the request names no item, which is how EDK2
/// asks and what dnsmasq answers UEFI clients with.
pub fn pxe_boot_request(iface: &str, spec: &DiscoverSpec, offer: &Offer, wait: Duration) -> Result<Offer, ProbeError> {
    let socket = client_socket(iface)?;
    let deadline = Instant::now() + wait;
    // dnsmasq answers a menu-item request only from a client whose ciaddr is in its subnet,
    // i.e. one already holding an address from the "real" DHCP server, as the probing host does.
    let ciaddr = interface_ipv4(iface).unwrap_or(Ipv4Addr::UNSPECIFIED);
    let item = first_network_item(offer);
    let server = item
        .and_then(|boot_type| offer.boot_server_for(boot_type))
        .unwrap_or(offer.server_id);

    let ack = boot_server_exchange(&socket, iface, spec, ciaddr, server, item, deadline)?;
    if ack.boot_file.is_some() || item.is_some() {
        return Ok(ack);
    }
    // Several services matched, so dnsmasq answered with a menu instead of a file.
    match first_network_item(&ack) {
        Some(boot_type) => boot_server_exchange(&socket, iface, spec, ciaddr, server, Some(boot_type), deadline),
        None => Ok(ack),
    }
}

/// Discovers, then follows a proxy offer to UDP 4011 when no offer names a boot file.
///
/// `wait` bounds each of the two steps.
pub fn boot_file_for(iface: &str, spec: &DiscoverSpec, wait: Duration) -> Result<BootAnswer, ProbeError> {
    let offers = discover(iface, spec, wait)?;
    if let Some(offer) = offers.iter().find(|offer| offer.boot_file.is_some()) {
        return Ok(BootAnswer {
            boot_file: offer.boot_file.clone(),
            tftp_server: Some(offer.tftp_server()),
            via_pxe_port: false,
            offers,
        });
    }
    // EDK2 and iPXE prefer a proxy offer and fall back to any PXE-speaking one.
    let pxe_offer = offers
        .iter()
        .filter(|offer| offer.is_pxe())
        .min_by_key(|offer| !offer.proxy);
    let Some(pxe_offer) = pxe_offer else {
        return Ok(BootAnswer {
            boot_file: None,
            tftp_server: None,
            via_pxe_port: false,
            offers,
        });
    };
    let ack = pxe_boot_request(iface, spec, pxe_offer, wait)?;
    Ok(BootAnswer {
        tftp_server: ack.boot_file.as_ref().map(|_| ack.tftp_server()),
        boot_file: ack.boot_file,
        via_pxe_port: true,
        offers,
    })
}

fn first_network_item(offer: &Offer) -> Option<u16> {
    offer
        .pxe_menu()
        .into_iter()
        .map(|item| item.boot_type)
        .find(|&boot_type| boot_type != PXE_LOCAL_BOOT)
}

fn boot_server_exchange(
    socket: &UdpSocket,
    iface: &str,
    spec: &DiscoverSpec,
    ciaddr: Ipv4Addr,
    server: Ipv4Addr,
    boot_item: Option<u16>,
    deadline: Instant,
) -> Result<Offer, ProbeError> {
    let message = client_message(spec, MessageType::Request, ciaddr, boot_item);
    // Without an address of our own a unicast has no route; dnsmasq's 4011 socket is bound to
    // the wildcard address and hears a broadcast as well.
    let target = if ciaddr.is_unspecified() {
        Ipv4Addr::BROADCAST
    } else {
        server
    };
    send(socket, &message, SocketAddrV4::new(target, PXE_PORT))?;
    let started = Instant::now();
    let filter = ReplyFilter::new(&message, DHCPACK);
    receive(socket, &filter, deadline, true)?
        .into_iter()
        .next()
        .ok_or_else(|| ProbeError::NoBootServerAnswer {
            iface: iface.to_owned(),
            server,
            port: PXE_PORT,
            waited_ms: deadline.saturating_duration_since(started).as_millis(),
        })
}

/// A UDP socket on port 68 of `iface` only, able to send and hear broadcasts.
fn client_socket(iface: &str) -> Result<UdpSocket, ProbeError> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(|err| ProbeError::io("creating a UDP socket", err))?;
    socket
        .set_reuse_address(true)
        .and_then(|()| socket.set_broadcast(true))
        .map_err(|err| ProbeError::io("setting DHCP socket options", err))?;
    // Bound to the device so the broadcast leaves (and answers are heard) on `iface` only.
    socket
        .bind_device(Some(iface.as_bytes()))
        .map_err(|err| bind_error(iface, err))?;
    socket
        .bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT).into())
        .map_err(|err| bind_error(iface, err))?;
    Ok(socket.into())
}

fn bind_error(iface: &str, err: io::Error) -> ProbeError {
    match err.kind() {
        io::ErrorKind::PermissionDenied => ProbeError::PermissionDenied {
            iface: iface.to_owned(),
            port: CLIENT_PORT,
        },
        io::ErrorKind::AddrInUse => ProbeError::PortInUse { port: CLIENT_PORT },
        _ if err.raw_os_error() == Some(ENODEV) => ProbeError::NoSuchInterface {
            iface: iface.to_owned(),
        },
        _ => ProbeError::io(format!("binding UDP port {CLIENT_PORT} on {iface}"), err),
    }
}

/// The first IPv4 address of `iface` in the calling thread's network namespace.
fn interface_ipv4(iface: &str) -> Option<Ipv4Addr> {
    if_addrs::get_if_addrs()
        .ok()?
        .into_iter()
        .filter(|interface| interface.name == iface)
        .find_map(|interface| match interface.ip() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        })
}

/// A request carrying the options a PXE firmware (or iPXE) sends.
fn client_message(spec: &DiscoverSpec, kind: MessageType, ciaddr: Ipv4Addr, boot_item: Option<u16>) -> Message {
    let unspecified = Ipv4Addr::UNSPECIFIED;
    let mut message = Message::new(ciaddr, unspecified, unspecified, unspecified, &spec.mac);
    if ciaddr.is_unspecified() {
        // A client without an address cannot receive unicast; ask for broadcast replies.
        message.set_flags(Flags::default().set_broadcast());
    }
    let opts = message.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::MaxMessageSize(MAX_DHCP_MESSAGE));
    opts.insert(DhcpOption::ParameterRequestList(requested_options(spec)));
    if let Some(arch) = spec.client_arch {
        let (major, minor) = undi_version(arch, spec.ipxe);
        opts.insert(DhcpOption::ClientSystemArchitecture(Architecture::from(arch)));
        opts.insert(DhcpOption::ClientNetworkInterface(1, major, minor));
        opts.insert(DhcpOption::ClientMachineIdentifier(
            spec.guid.clone().unwrap_or_else(|| machine_guid(&spec.mac)),
        ));
    }
    if let Some(class) = &spec.vendor_class {
        opts.insert(DhcpOption::ClassIdentifier(class.as_bytes().to_vec()));
    }
    if spec.ipxe {
        opts.insert(DhcpOption::Unknown(UnknownOption::new(
            OptionCode::from(OPT_IPXE_ENCAP),
            IPXE_FEATURES.to_vec(),
        )));
        // iPXE sends the bare string, not RFC 3004's length-prefixed list; dnsmasq accepts both.
        opts.insert(DhcpOption::UserClass(b"iPXE".to_vec()));
    }
    if let Some(boot_type) = boot_item {
        // Sub-option 71: boot server type and layer 0, then the end of the encapsulation.
        let [hi, lo] = boot_type.to_be_bytes();
        let item = vec![PXE_BOOT_ITEM, 4, hi, lo, 0, 0, OPT_END];
        opts.insert(DhcpOption::VendorExtensions(item));
    }
    message
}

/// The parameter request list EDK2's PXE driver sends (plus 175 for iPXE), so servers that
/// only send requested options answer us as they would answer a firmware.
fn requested_options(spec: &DiscoverSpec) -> Vec<OptionCode> {
    let mut codes: Vec<u8> = vec![
        1, 2, 3, 4, 5, 6, 12, 13, 15, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51, 54, 58, 59, 60, 66, 67, 97, 128, 129,
        130, 131, 132, 133, 134, 135,
    ];
    if spec.ipxe {
        codes.push(OPT_IPXE_ENCAP);
    }
    codes.into_iter().map(OptionCode::from).collect()
}

/// Option 97: type 0 and a 16-byte GUID; derived from the MAC so repeated probes look alike.
fn machine_guid(mac: &[u8; 6]) -> Vec<u8> {
    let mut guid = vec![0u8; 17];
    guid[1..5].copy_from_slice(b"cozy");
    guid[11..].copy_from_slice(mac);
    guid
}

fn send(socket: &UdpSocket, message: &Message, to: SocketAddrV4) -> Result<(), ProbeError> {
    let mut packet = message.to_vec().map_err(|err| ProbeError::Encode(err.to_string()))?;
    if packet.len() < MIN_BOOTP_LEN {
        packet.resize(MIN_BOOTP_LEN, OPT_PAD);
    }
    socket
        .send_to(&packet, to)
        .map_err(|err| ProbeError::io(format!("sending DHCP request to {to}"), err))?;
    Ok(())
}

/// Which replies belong to our request.
struct ReplyFilter {
    xid: u32,
    mac: Vec<u8>,
    message_type: u8,
}

impl ReplyFilter {
    fn new(request: &Message, message_type: u8) -> Self {
        Self {
            xid: request.xid(),
            mac: request.chaddr().to_vec(),
            message_type,
        }
    }
}

/// Collects matching replies until `deadline`, or until the first one when `first_only`.
fn receive(
    socket: &UdpSocket,
    filter: &ReplyFilter,
    deadline: Instant,
    first_only: bool,
) -> Result<Vec<Offer>, ProbeError> {
    let mut offers = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Ok(offers);
        }
        socket
            .set_read_timeout(Some(remaining))
            .map_err(|err| ProbeError::io("setting a receive timeout", err))?;
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            Err(err) if is_timeout(&err) => return Ok(offers),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(ProbeError::io("receiving DHCP replies", err)),
        };
        if let Some(offer) = parse_reply(&buf[..len], from, filter) {
            offers.push(offer);
            if first_only {
                return Ok(offers);
            }
        }
    }
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// Decodes a reply by hand rather than with dhcproto: one odd option from some router must
/// not hide an offer, and the `file` field may be full-length or overloaded with options.
fn parse_reply(packet: &[u8], from: SocketAddr, filter: &ReplyFilter) -> Option<Offer> {
    if packet.len() < HDR_OPTIONS + MAGIC_COOKIE.len()
        || packet[0] != OP_BOOTREPLY
        || read_u32(packet, HDR_XID) != filter.xid
        || packet[HDR_CHADDR..HDR_CHADDR + filter.mac.len()] != filter.mac[..]
        || packet[HDR_OPTIONS..HDR_OPTIONS + 4] != MAGIC_COOKIE
    {
        return None;
    }
    let options = reply_options(packet);
    if options.get(&OPT_MESSAGE_TYPE).map(Vec::as_slice) != Some(&[filter.message_type]) {
        return None;
    }
    let overload = options.get(&OPT_OVERLOAD).and_then(|v| v.first()).copied();
    let file_field = (overload.unwrap_or(0) & 1 == 0)
        .then(|| nul_terminated(&packet[HDR_FILE..HDR_OPTIONS]))
        .flatten();
    let yiaddr = read_ipv4(packet, HDR_YIADDR);
    let source = match from {
        SocketAddr::V4(v4) => *v4.ip(),
        SocketAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    };
    Some(Offer {
        server_id: options
            .get(&OPT_SERVER_ID)
            .filter(|id| id.len() == 4)
            .map_or(source, |id| Ipv4Addr::new(id[0], id[1], id[2], id[3])),
        from,
        yiaddr,
        siaddr: read_ipv4(packet, HDR_SIADDR),
        boot_file: file_field.or_else(|| options.get(&OPT_BOOTFILE).and_then(|v| nul_terminated(v))),
        vendor_class: options.get(&OPT_VENDOR_CLASS).and_then(|v| nul_terminated(v)),
        proxy: yiaddr.is_unspecified(),
        pxe_options: options.get(&OPT_VENDOR_ENCAP).cloned(),
    })
}

/// All options of a reply, including those overloaded into `file`/`sname` (RFC 2132 9.3).
fn reply_options(packet: &[u8]) -> HashMap<u8, Vec<u8>> {
    let mut options = parse_tlv(&packet[HDR_OPTIONS + 4..]);
    let overload = options.get(&OPT_OVERLOAD).and_then(|v| v.first()).copied();
    let fields = [(1, HDR_FILE..HDR_OPTIONS), (2, HDR_SNAME..HDR_FILE)];
    for (bit, range) in fields {
        if overload.unwrap_or(0) & bit != 0 {
            for (code, value) in parse_tlv(&packet[range]) {
                options.entry(code).or_default().extend(value);
            }
        }
    }
    options
}

/// Parses DHCP-style type-length-value options; repeated codes are concatenated (RFC 3396).
fn parse_tlv(mut data: &[u8]) -> HashMap<u8, Vec<u8>> {
    let mut options: HashMap<u8, Vec<u8>> = HashMap::new();
    loop {
        match data {
            [OPT_PAD, rest @ ..] => data = rest,
            [OPT_END, ..] | [] | [_] => return options,
            [code, len, rest @ ..] => {
                let len = usize::from(*len).min(rest.len());
                options.entry(*code).or_default().extend(&rest[..len]);
                data = &rest[len..];
            }
        }
    }
}

fn nul_terminated(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    (end > 0).then(|| String::from_utf8_lossy(&bytes[..end]).into_owned())
}

fn read_u32(packet: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([packet[at], packet[at + 1], packet[at + 2], packet[at + 3]])
}

fn read_ipv4(packet: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::from(read_u32(packet, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    #[test]
    fn firmware_vendor_class_matches_edk2_and_pxe_roms() {
        let arm = DiscoverSpec::firmware(11, MAC);
        assert_eq!(arm.vendor_class.as_deref(), Some("PXEClient:Arch:00011:UNDI:003000"));
        let bios = DiscoverSpec::firmware(0, MAC);
        assert_eq!(bios.vendor_class.as_deref(), Some("PXEClient:Arch:00000:UNDI:002001"));
        let ipxe = DiscoverSpec::ipxe(11, MAC);
        assert_eq!(ipxe.vendor_class.as_deref(), Some("PXEClient:Arch:00011:UNDI:003010"));
        assert!(ipxe.ipxe && !arm.ipxe);
    }

    #[test]
    fn discover_carries_pxe_and_ipxe_options() {
        let spec = DiscoverSpec::ipxe(11, MAC);
        let message = client_message(&spec, MessageType::Discover, Ipv4Addr::UNSPECIFIED, None);
        let bytes = message.to_vec().unwrap();
        let options = parse_tlv(&bytes[HDR_OPTIONS + 4..]);
        assert_eq!(options[&93], vec![0, 11]);
        assert_eq!(options[&94], vec![1, 3, 10]);
        assert_eq!(options[&97].len(), 17);
        assert_eq!(options[&60], b"PXEClient:Arch:00011:UNDI:003010".to_vec());
        assert_eq!(options[&77], b"iPXE".to_vec());
        assert_eq!(options[&175], IPXE_FEATURES.to_vec());
        assert!(!options.contains_key(&43));
        assert!(message.flags().broadcast());
    }

    #[test]
    fn boot_item_request_names_the_menu_entry() {
        let spec = DiscoverSpec::firmware(0, MAC);
        let ciaddr = Ipv4Addr::new(10, 0, 0, 2);
        let message = client_message(&spec, MessageType::Request, ciaddr, Some(0x8001));
        let bytes = message.to_vec().unwrap();
        let options = parse_tlv(&bytes[HDR_OPTIONS + 4..]);
        assert_eq!(options[&53], vec![3]);
        assert_eq!(parse_tlv(&options[&43])[&PXE_BOOT_ITEM], vec![0x80, 0x01, 0, 0]);
        assert_eq!(message.ciaddr(), ciaddr);
        assert!(!message.flags().broadcast());
    }

    #[test]
    fn lease_request_names_the_offered_address_and_server_under_the_discovers_xid() {
        let spec = DiscoverSpec::firmware(11, MAC);
        let discover = client_message(&spec, MessageType::Discover, Ipv4Addr::UNSPECIFIED, None);
        let offer = Offer {
            server_id: Ipv4Addr::new(10, 0, 0, 1),
            from: from(),
            yiaddr: Ipv4Addr::new(10, 0, 0, 57),
            siaddr: Ipv4Addr::new(10, 0, 0, 1),
            boot_file: Some("bootaa64.efi".into()),
            vendor_class: None,
            proxy: false,
            pxe_options: None,
        };
        let request = lease_request(&spec, &discover, &offer);
        assert_eq!(request.xid(), discover.xid());
        let bytes = request.to_vec().unwrap();
        let options = parse_tlv(&bytes[HDR_OPTIONS + 4..]);
        assert_eq!(options[&OPT_MESSAGE_TYPE], vec![3]);
        assert_eq!(options[&50], vec![10, 0, 0, 57]);
        assert_eq!(options[&OPT_SERVER_ID], vec![10, 0, 0, 1]);
        // Still the firmware: same arch and vendor class as its DISCOVER, broadcast replies.
        assert_eq!(options[&93], vec![0, 11]);
        assert_eq!(options[&60], b"PXEClient:Arch:00011:UNDI:003000".to_vec());
        assert!(request.flags().broadcast() && request.ciaddr().is_unspecified());
    }

    fn reply(xid: u32, message_type: u8, file: &[u8], options: &[u8]) -> Vec<u8> {
        let mut packet = vec![0u8; HDR_OPTIONS];
        packet[0] = OP_BOOTREPLY;
        packet[HDR_XID..HDR_XID + 4].copy_from_slice(&xid.to_be_bytes());
        packet[HDR_SIADDR..HDR_SIADDR + 4].copy_from_slice(&[10, 0, 0, 1]);
        packet[HDR_CHADDR..HDR_CHADDR + 6].copy_from_slice(&MAC);
        packet[HDR_FILE..HDR_FILE + file.len()].copy_from_slice(file);
        packet.extend(MAGIC_COOKIE);
        packet.extend([OPT_MESSAGE_TYPE, 1, message_type]);
        packet.extend(options);
        packet.push(OPT_END);
        packet
    }

    fn filter(xid: u32, message_type: u8) -> ReplyFilter {
        ReplyFilter {
            xid,
            mac: MAC.to_vec(),
            message_type,
        }
    }

    fn from() -> SocketAddr {
        "10.0.0.1:67".parse().unwrap()
    }

    #[test]
    fn proxy_offer_with_menu_is_parsed() {
        let menu = [
            PXE_BOOT_MENU,
            7,
            0x80,
            0x00,
            4,
            b'B',
            b'I',
            b'O',
            b'S', //
            PXE_BOOT_SERVERS,
            7,
            0x80,
            0x00,
            1,
            10,
            0,
            0,
            9,
            OPT_END,
        ];
        let mut options = vec![OPT_SERVER_ID, 4, 10, 0, 0, 1, OPT_VENDOR_CLASS, 9];
        options.extend(b"PXEClient");
        options.extend([OPT_VENDOR_ENCAP, menu.len() as u8]);
        options.extend(menu);
        let packet = reply(7, DHCPOFFER, b"", &options);
        let offer = parse_reply(&packet, from(), &filter(7, DHCPOFFER)).unwrap();
        assert!(offer.proxy && offer.is_pxe());
        assert_eq!(offer.boot_file, None);
        assert_eq!(
            offer.pxe_menu(),
            vec![PxeMenuItem {
                boot_type: 0x8000,
                description: "BIOS".into()
            }]
        );
        assert_eq!(first_network_item(&offer), Some(0x8000));
        assert_eq!(offer.boot_server_for(0x8000), Some(Ipv4Addr::new(10, 0, 0, 9)));
    }

    #[test]
    fn boot_file_comes_from_file_field_or_option_67() {
        let packet = reply(1, DHCPOFFER, b"bootaa64.efi", &[]);
        let offer = parse_reply(&packet, from(), &filter(1, DHCPOFFER)).unwrap();
        assert_eq!(offer.boot_file.as_deref(), Some("bootaa64.efi"));
        assert_eq!(offer.server_id, Ipv4Addr::new(10, 0, 0, 1));

        let packet = reply(1, DHCPOFFER, b"", &[OPT_BOOTFILE, 6, b'a', b'.', b'e', b'f', b'i', 0]);
        let offer = parse_reply(&packet, from(), &filter(1, DHCPOFFER)).unwrap();
        assert_eq!(offer.boot_file.as_deref(), Some("a.efi"));
    }

    #[test]
    fn overloaded_file_field_holds_options_not_a_name() {
        let packet = reply(
            1,
            DHCPOFFER,
            &[OPT_BOOTFILE, 3, b'x', b'.', b'y', OPT_END],
            &[OPT_OVERLOAD, 1, 1],
        );
        let offer = parse_reply(&packet, from(), &filter(1, DHCPOFFER)).unwrap();
        assert_eq!(offer.boot_file.as_deref(), Some("x.y"));
    }

    #[test]
    fn foreign_replies_are_ignored() {
        let packet = reply(1, DHCPOFFER, b"", &[]);
        assert!(parse_reply(&packet, from(), &filter(2, DHCPOFFER)).is_none());
        assert!(parse_reply(&packet, from(), &filter(1, DHCPACK)).is_none());
        assert!(parse_reply(&packet[..100], from(), &filter(1, DHCPOFFER)).is_none());
    }
}
