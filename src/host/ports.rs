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

use std::fs;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};

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
    /// matchbox's HTTP and gRPC listeners: `0.0.0.0:<port>`, exclusive.
    TcpWildcard,
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
            Binding::TcpWildcard => Verdict::Free,
        },
        Err(e) if e.kind() == ErrorKind::PermissionDenied => Verdict::Unchecked(format!(
            "{name} cannot be checked without root ({e}); the container binds it as root"
        )),
        Err(e) if e.kind() == ErrorKind::AddrInUse => Verdict::Clash(match on(None).first() {
            Some(h) => format!("{name} is in use by {}", h.describe()),
            None => format!("{name} is in use (owner unknown; try `ss -lpn sport = :{port}`)"),
        }),
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
    let socket = Socket::new(Domain::IPV4, kind, Some(protocol))?;
    let addr = match binding {
        Binding::TcpWildcard => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port),
        Binding::UdpShared { .. } => {
            socket.set_reuse_address(true)?;
            SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)
        }
        Binding::UdpOn(ip) => {
            socket.set_reuse_address(true)?;
            SocketAddrV4::new(ip, port)
        }
    };
    socket.bind(&addr.into())?;
    if proto == Proto::Tcp {
        socket.listen(1)?;
    }
    Ok(())
}

/// The processes holding a socket on `port` (on `only` or the wildcard address, when given),
/// through /proc: socket inodes, then the fds that point at them.
fn holders(proto: Proto, port: u16, only: Option<Ipv4Addr>) -> Vec<Holder> {
    let inodes = socket_inodes(proto, port, only);
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

/// Inodes of the sockets bound to `port`, from the calling thread's network namespace
/// (`thread-self`, not `self`: a thread may have entered another namespace).
/// Without `only`, IPv6 sockets count too: a dual-stack `[::]` listener blocks `0.0.0.0`.
fn socket_inodes(proto: Proto, port: u16, only: Option<Ipv4Addr>) -> Vec<String> {
    let v4 = fs::read_to_string(format!("/proc/thread-self/net/{}", proto.name())).unwrap_or_default();
    let v6 = match only {
        None => fs::read_to_string(format!("/proc/thread-self/net/{}6", proto.name())).unwrap_or_default(),
        Some(_) => String::new(),
    };
    let mut inodes = Vec::new();
    for line in v4.lines().skip(1).chain(v6.lines().skip(1)) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let Some((addr, local_port)) = cols.get(1).and_then(|a| a.split_once(':')) else {
            continue;
        };
        // The kernel prints an IPv4 address as a host-order hex word of the network-order bytes.
        let addr = u32::from_str_radix(addr, 16).map(|a| Ipv4Addr::from(a.to_ne_bytes()));
        let wanted = match (only, addr) {
            (None, _) => true,
            (Some(ip), Ok(a)) => a == ip || a.is_unspecified(),
            (Some(_), Err(_)) => false,
        };
        if wanted && u16::from_str_radix(local_port, 16) == Ok(port) {
            if let Some(inode) = cols.get(9).filter(|i| **i != "0") {
                inodes.push(inode.to_string());
            }
        }
    }
    inodes
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

    #[test]
    fn a_held_port_is_reported_with_its_owner() {
        let held = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let Verdict::Clash(message) = check(Proto::Tcp, port, Binding::TcpWildcard) else {
            panic!("the port is held");
        };
        assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
        drop(held);
        assert_eq!(check(Proto::Tcp, port, Binding::TcpWildcard), Verdict::Free);
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
