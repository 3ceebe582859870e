//! Can the containers `up` starts on the host network bind their ports, and if not, who
//! holds them? Checked before anything starts, so a clash is reported with its owner and the
//! fix that fits the port instead of as a crash-looping container.
//!
//! Each port is probed the way its server binds it, because that decides what may share it
//! (measured with dnsmasq 2.90, `--bind-interfaces --interface=X`): dnsmasq binds DHCP (67)
//! and proxy PXE (4011) as `0.0.0.0` with `SO_REUSEADDR` and `SO_BINDTODEVICE`, and TFTP (69)
//! on each address of its interface with `SO_REUSEADDR`. So two dnsmasq on two interfaces run
//! side by side; a server holding `0.0.0.0:67` without `SO_REUSEADDR` blocks every other; and
//! a dnsmasq on the same interface would answer the same clients.
//!
//! matchbox is a Go program: `net.Listen("tcp", addr)` sets `SO_REUSEADDR` on every listener
//! (Go's `setDefaultListenerSockopts`), and for a wildcard address opens one dual-stack
//! `[::]` socket (`favoriteAddrFamily`). So connections an earlier server left on its port
//! (ESTABLISHED, or FIN-WAIT and TIME-WAIT for minutes after a machine was powered off in
//! the middle of a download) do not stop it; only a listener does, and only a listener is
//! named as the holder of a TCP port.

use std::fs;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// How the server that will own a port binds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding<'a> {
    /// matchbox's HTTP and gRPC listeners, on the address matchbox is given: shared with
    /// connections, exclusive against another listener.
    TcpListen(Ipv4Addr),
    /// dnsmasq's DHCP and proxy-PXE sockets: `0.0.0.0:<port>`, shared, tied to `iface`.
    UdpShared { iface: &'a str },
    /// dnsmasq's TFTP socket: `<addr>:<port>`, shared.
    UdpOn(Ipv4Addr),
}

/// The verdict on one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nobody holds it.
    Free,
    /// Held, but by something that shares it without answering the same clients; says who.
    Shared(String),
    /// Held in a way that stops the new server, or that would make two servers answer the
    /// same clients; says who.
    Clash(String),
    /// Could not be checked (e.g. permission denied to a non-root user below 1024); says why.
    Unchecked(String),
}

/// A process holding a socket on the port, found through /proc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub comm: String,
    pub args: Vec<String>,
}

impl Holder {
    fn describe(&self) -> String {
        format!("{} (pid {})", self.comm, self.pid)
    }

    /// The interface a dnsmasq is tied to: `Some(iface)` with `--interface`/`-i` and
    /// `--bind-interfaces`/`--bind-dynamic`; `None` for anything else (answers everywhere).
    fn dnsmasq_interface(&self) -> Option<String> {
        if self.comm != "dnsmasq"
            && !self
                .args
                .first()
                .is_some_and(|a| a.ends_with("/dnsmasq") || a == "dnsmasq")
        {
            return None;
        }
        let bound = self
            .args
            .iter()
            .any(|a| matches!(a.as_str(), "--bind-interfaces" | "-z" | "--bind-dynamic"));
        let mut iface = None;
        let mut words = self.args.iter().skip(1);
        while let Some(a) = words.next() {
            if let Some(v) = a.strip_prefix("--interface=") {
                iface = Some(v.to_string());
            } else if a == "--interface" || a == "-i" {
                iface = words.next().cloned();
            } else if let Some(v) = a.strip_prefix("-i").filter(|v| !v.is_empty()) {
                iface = Some(v.to_string());
            }
        }
        iface.filter(|_| bound)
    }
}

/// Probes `port` as `binding` would bind it, and says who holds it if anyone does.
pub fn check(proto: Proto, port: u16, binding: Binding<'_>) -> Verdict {
    let name = format!("{}/{port}", proto.name());
    let on = |only: Option<Ipv4Addr>| holders(proto, port, only);
    match probe(proto, port, binding) {
        Ok(()) => match binding {
            Binding::UdpShared { iface } => classify_shared(&name, iface, &on(None)),
            // Shared sockets on the very address: two TFTP servers, one gets each request.
            Binding::UdpOn(ip) => match on(Some(ip)).first() {
                Some(h) => Verdict::Clash(format!("{name} on {ip} is in use by {}", h.describe())),
                None => match on(None).first() {
                    Some(h) => Verdict::Shared(format!("{name} is also open in {} on another address", h.describe())),
                    None => Verdict::Free,
                },
            },
            Binding::TcpListen(_) => Verdict::Free,
        },
        Err(e) if e.kind() == ErrorKind::PermissionDenied => Verdict::Unchecked(format!(
            "{name} cannot be checked without root ({e}); the container binds it as root"
        )),
        Err(e) if e.kind() == ErrorKind::AddrInUse => {
            let (only, ss) = match binding {
                Binding::TcpListen(ip) => (Some(ip), "-tanp"),
                _ => (None, "-lpn"),
            };
            Verdict::Clash(match on(only).first() {
                Some(h) => format!("{name} is in use by {}", h.describe()),
                None => format!("{name} is in use (owner unknown; try `ss {ss} sport = :{port}`)"),
            })
        }
        Err(e) => Verdict::Unchecked(format!("{name} could not be checked: {e}")),
    }
}

/// A shared DHCP socket bound: fine unless a holder answers on the same interface.
fn classify_shared(name: &str, iface: &str, holders: &[Holder]) -> Verdict {
    let mut shared = Vec::new();
    for h in holders {
        match h.dnsmasq_interface() {
            Some(theirs) if theirs != iface => {
                shared.push(format!("{} bound to interface {theirs}", h.describe()));
            }
            Some(_) => {
                return Verdict::Clash(format!(
                "{name} is in use by {} on the same interface {iface}: two DHCP servers would answer the same machines",
                h.describe()
            ))
            }
            None => {
                return Verdict::Clash(format!(
                    "{name} is in use by {}, which is not bound to one interface and would answer on {iface} too",
                    h.describe()
                ))
            }
        }
    }
    if shared.is_empty() {
        Verdict::Free
    } else {
        Verdict::Shared(format!("{name} is shared with {}", shared.join(", ")))
    }
}

fn probe(proto: Proto, port: u16, binding: Binding<'_>) -> std::io::Result<()> {
    let (kind, protocol) = match proto {
        Proto::Tcp => (Type::STREAM, Protocol::TCP),
        Proto::Udp => (Type::DGRAM, Protocol::UDP),
    };
    let (socket, addr) = match binding {
        Binding::TcpListen(ip) => go_listener(ip, port)?,
        Binding::UdpShared { .. } => (
            Socket::new(Domain::IPV4, kind, Some(protocol))?,
            SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into(),
        ),
        Binding::UdpOn(ip) => (
            Socket::new(Domain::IPV4, kind, Some(protocol))?,
            SocketAddrV4::new(ip, port).into(),
        ),
    };
    // Every server probed here sets it: dnsmasq on its DHCP and TFTP sockets, Go on listeners.
    socket.set_reuse_address(true)?;
    socket.bind(&addr)?;
    if proto == Proto::Tcp {
        socket.listen(1)?;
    }
    Ok(())
}

/// The socket and address Go's `net.Listen("tcp", "<ip>:<port>")` binds: a dual-stack `[::]`
/// for the wildcard address where the host has IPv6 (a listener of either family on the port
/// stops it), else IPv4.
fn go_listener(ip: Ipv4Addr, port: u16) -> std::io::Result<(Socket, SockAddr)> {
    if ip.is_unspecified() {
        if let Ok(socket) = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)) {
            socket.set_only_v6(false)?;
            return Ok((socket, SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0).into()));
        }
    }
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    Ok((socket, SocketAddrV4::new(ip, port).into()))
}

/// The processes holding a socket on `port` (on `only` or the wildcard address, when given),
/// through /proc: socket inodes, then the fds that point at them. For TCP only listeners
/// count: a connection does not stop a server that binds with `SO_REUSEADDR`.
fn holders(proto: Proto, port: u16, only: Option<Ipv4Addr>) -> Vec<Holder> {
    let inodes = socket_inodes(proto, port, only.filter(|ip| !ip.is_unspecified()));
    let mut found = Vec::new();
    if inodes.is_empty() {
        return found;
    }
    let Ok(procs) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in procs.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            fs::read_link(fd.path())
                .is_ok_and(|t| inodes.iter().any(|i| t.to_string_lossy() == format!("socket:[{i}]")))
        });
        if holds {
            let comm = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push(Holder {
                pid,
                comm: comm.trim().to_string(),
                args: cmdline
                    .split(|&b| b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect(),
            });
        }
    }
    found
}

/// /proc/net/tcp's `st` column for a listening socket (`TCP_LISTEN`).
const TCP_LISTEN: &str = "0A";

/// Inodes of the sockets bound to `port`, from the calling thread's network namespace
/// (`thread-self`, not `self`: a thread may have entered another namespace).
/// Without `only`, IPv6 sockets count too: a dual-stack `[::]` listener blocks `0.0.0.0`; with
/// it, a TCP `[::]` listener still counts (a UDP one is left out: dnsmasq's TFTP binds IPv4).
fn socket_inodes(proto: Proto, port: u16, only: Option<Ipv4Addr>) -> Vec<String> {
    let read = |family: &str| {
        fs::read_to_string(format!("/proc/thread-self/net/{}{family}", proto.name())).unwrap_or_default()
    };
    let v4 = read("");
    let v6 = match (only, proto) {
        (Some(_), Proto::Udp) => String::new(),
        _ => read("6"),
    };
    let mut inodes = Vec::new();
    for line in v4.lines().skip(1).chain(v6.lines().skip(1)) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let Some((addr, local_port)) = cols.get(1).and_then(|a| a.split_once(':')) else {
            continue;
        };
        let listening = proto == Proto::Udp || cols.get(3) == Some(&TCP_LISTEN);
        let wanted = only.is_none_or(|ip| covers(addr, ip));
        if listening && wanted && u16::from_str_radix(local_port, 16) == Ok(port) {
            if let Some(inode) = cols.get(9).filter(|i| **i != "0") {
                inodes.push(inode.to_string());
            }
        }
    }
    inodes
}

/// Whether a socket bound to `hex` (a local address as /proc prints it) holds `ip`: bound to
/// it, or to the wildcard address of either family.
fn covers(hex: &str, ip: Ipv4Addr) -> bool {
    if hex.bytes().all(|b| b == b'0') {
        return true;
    }
    // The kernel prints an IPv4 address as a host-order hex word of the network-order bytes.
    hex.len() == 8 && u32::from_str_radix(hex, 16).is_ok_and(|a| Ipv4Addr::from(a.to_ne_bytes()) == ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, UdpSocket};

    fn dnsmasq(args: &[&str]) -> Holder {
        Holder {
            pid: 7,
            comm: "dnsmasq".into(),
            args: std::iter::once("/usr/sbin/dnsmasq")
                .chain(args.iter().copied())
                .map(String::from)
                .collect(),
        }
    }

    const ANY: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
    const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

    #[test]
    fn a_held_port_is_reported_with_its_owner() {
        let held = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = held.local_addr().unwrap().port();
        for binding in [Binding::TcpListen(ANY), Binding::TcpListen(LOOPBACK)] {
            let Verdict::Clash(message) = check(Proto::Tcp, port, binding) else {
                panic!("the port is held: {binding:?}");
            };
            assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
        }
        drop(held);
        assert_eq!(check(Proto::Tcp, port, Binding::TcpListen(ANY)), Verdict::Free);
    }

    #[test]
    fn a_listener_on_another_address_stops_only_a_wildcard_server() {
        let held = TcpListener::bind("127.0.0.2:0").unwrap();
        let port = held.local_addr().unwrap().port();
        assert_eq!(
            check(Proto::Tcp, port, Binding::TcpListen(Ipv4Addr::new(127, 0, 0, 3))),
            Verdict::Free
        );
        let verdict = check(Proto::Tcp, port, Binding::TcpListen(ANY));
        assert!(
            matches!(&verdict, Verdict::Clash(m) if m.contains(&format!("pid {}", std::process::id()))),
            "{verdict:?}"
        );
    }

    /// The TCP states (as /proc/net/tcp writes them) of the sockets on local `port`.
    fn tcp_states(port: u16) -> Vec<String> {
        let table = fs::read_to_string("/proc/thread-self/net/tcp").unwrap();
        table
            .lines()
            .skip(1)
            .filter_map(|line| {
                let cols: Vec<&str> = line.split_whitespace().collect();
                let (_, p) = cols[1].split_once(':')?;
                (u16::from_str_radix(p, 16) == Ok(port)).then(|| cols[3].to_string())
            })
            .collect()
    }

    /// A server on loopback that accepted one connection and then stopped listening, as
    /// matchbox's port looks after its container was replaced while a machine downloaded.
    fn served_once() -> (u16, std::net::TcpStream, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (served, _) = listener.accept().unwrap();
        drop(listener);
        (port, served, client)
    }

    /// Waits (at most 2 s) until a socket on `port` is in `state`.
    fn wait_for_state(port: u16, state: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while !tcp_states(port).iter().any(|s| s == state) {
            assert!(
                std::time::Instant::now() < deadline,
                "no socket on {port} reached {state}: {:?}",
                tcp_states(port)
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn a_connection_left_established_does_not_stop_a_server() {
        // The machine still connected, nothing listening.
        let (port, _served, _client) = served_once();
        wait_for_state(port, "01");
        for binding in [Binding::TcpListen(ANY), Binding::TcpListen(LOOPBACK)] {
            assert_eq!(check(Proto::Tcp, port, binding), Verdict::Free, "{binding:?}");
        }
    }

    #[test]
    fn a_connection_left_in_fin_wait_does_not_stop_a_server() {
        // The server closed; the machine, powered off, never sends its FIN.
        let (port, served, _client) = served_once();
        drop(served);
        wait_for_state(port, "05");
        assert_eq!(check(Proto::Tcp, port, Binding::TcpListen(ANY)), Verdict::Free);
    }

    #[test]
    fn a_connection_left_in_time_wait_does_not_stop_a_server() {
        // The server closed first, then the machine.
        let (port, served, client) = served_once();
        drop(served);
        wait_for_state(port, "05");
        drop(client);
        wait_for_state(port, "06");
        assert_eq!(check(Proto::Tcp, port, Binding::TcpListen(ANY)), Verdict::Free);
    }

    #[test]
    fn a_connection_is_not_named_as_the_holder() {
        // A server that bound without SO_REUSEADDR leaves connections matchbox cannot bind
        // beside: the port is refused, but the connection is no listener to name.
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        socket.bind(&SocketAddrV4::new(LOOPBACK, 0).into()).unwrap();
        socket.listen(1).unwrap();
        let port = socket.local_addr().unwrap().as_socket().unwrap().port();
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_served, _) = socket.accept().unwrap();
        drop(socket);
        wait_for_state(port, "01");
        let verdict = check(Proto::Tcp, port, Binding::TcpListen(ANY));
        assert!(
            matches!(&verdict, Verdict::Clash(m) if m.contains("owner unknown") && m.contains("ss -tanp")),
            "{verdict:?}"
        );
    }

    #[test]
    fn a_wildcard_udp_holder_without_reuse_blocks_a_dhcp_server() {
        let held = UdpSocket::bind("0.0.0.0:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let verdict = check(Proto::Udp, port, Binding::UdpShared { iface: "eth1" });
        assert!(
            matches!(&verdict, Verdict::Clash(m) if m.contains("in use by")),
            "{verdict:?}"
        );
    }

    #[test]
    fn a_shared_udp_holder_is_judged_by_what_it_is() {
        // Held as dnsmasq holds it (SO_REUSEADDR): the bind works; the holder is this test
        // process, which is no dnsmasq tied to an interface, so it would answer everywhere.
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        socket.set_reuse_address(true).unwrap();
        socket
            .bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0).into())
            .unwrap();
        let port = socket.local_addr().unwrap().as_socket().unwrap().port();
        let verdict = check(Proto::Udp, port, Binding::UdpShared { iface: "eth1" });
        assert!(
            matches!(&verdict, Verdict::Clash(m) if m.contains("not bound to one interface")),
            "{verdict:?}"
        );
    }

    #[test]
    fn tftp_on_another_address_is_no_clash() {
        let held = UdpSocket::bind("127.0.0.2:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let verdict = check(Proto::Udp, port, Binding::UdpOn(Ipv4Addr::new(127, 0, 0, 3)));
        assert!(matches!(verdict, Verdict::Shared(_)), "{verdict:?}");
        let verdict = check(Proto::Udp, port, Binding::UdpOn(Ipv4Addr::new(127, 0, 0, 2)));
        assert!(matches!(verdict, Verdict::Clash(_)), "{verdict:?}");
    }

    #[test]
    fn dnsmasq_on_another_interface_shares_and_on_ours_clashes() {
        let other = dnsmasq(&[
            "-k",
            "--interface=eth1",
            "--bind-interfaces",
            "--dhcp-range=10.0.0.0,proxy",
        ]);
        let ours = dnsmasq(&["-i", "eth0", "-z"]);
        let wildcard = dnsmasq(&["--interface=eth1"]);
        assert!(
            matches!(classify_shared("udp/67", "eth0", std::slice::from_ref(&other)), Verdict::Shared(m) if m.contains("bound to interface eth1"))
        );
        assert!(
            matches!(classify_shared("udp/67", "eth0", &[other, ours]), Verdict::Clash(m) if m.contains("same interface eth0"))
        );
        assert!(
            matches!(classify_shared("udp/67", "eth0", &[wildcard]), Verdict::Clash(_)),
            "without --bind-interfaces dnsmasq answers everywhere"
        );
        assert_eq!(classify_shared("udp/67", "eth0", &[]), Verdict::Free);
        assert_eq!(
            dnsmasq(&["-ieth3", "--bind-dynamic"]).dnsmasq_interface().as_deref(),
            Some("eth3")
        );
        assert_eq!(
            dnsmasq(&["--interface", "eth4", "--bind-interfaces"])
                .dnsmasq_interface()
                .as_deref(),
            Some("eth4")
        );
    }
}
