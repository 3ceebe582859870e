//! Is a port free on this host, and if not, who holds it? Checked before `up` starts anything,
//! so a clash is reported with its owner instead of as a crash-looping container.

use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};

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

/// `None` when the port can be bound on all addresses; otherwise a description of the owner.
pub fn in_use(proto: Proto, port: u16) -> Option<String> {
    let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
    let free = match proto {
        Proto::Tcp => TcpListener::bind(addr).is_ok(),
        Proto::Udp => UdpSocket::bind(addr).is_ok(),
    };
    if free {
        return None;
    }
    Some(match owner(proto, port) {
        Some(who) => format!("{}/{port} is in use by {who}", proto.name()),
        None => format!(
            "{}/{port} is in use (owner unknown; try `ss -lpn sport = :{port}`)",
            proto.name()
        ),
    })
}

/// Finds the process holding the socket through /proc: socket inode, then the fd that points at it.
fn owner(proto: Proto, port: u16) -> Option<String> {
    let inodes = socket_inodes(proto, port);
    if inodes.is_empty() {
        return None;
    }
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            if inodes.iter().any(|i| target == format!("socket:[{i}]")) {
                let comm = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                return Some(format!("{} (pid {pid})", comm.trim()));
            }
        }
    }
    None
}

fn socket_inodes(proto: Proto, port: u16) -> Vec<String> {
    let mut inodes = Vec::new();
    for file in [
        format!("/proc/net/{}", proto.name()),
        format!("/proc/net/{}6", proto.name()),
    ] {
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let local_port = cols
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                if let Some(inode) = cols.get(9) {
                    inodes.push(inode.to_string());
                }
            }
        }
    }
    inodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_port_is_reported_with_its_owner() {
        let held = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let message = in_use(Proto::Tcp, port).expect("the port is held");
        assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
        drop(held);
        assert_eq!(in_use(Proto::Tcp, port), None);
    }
}
