//! The Wake-on-LAN magic packet (AMD's "Magic Packet" white paper: six 0xFF bytes, then the
//! target's MAC sixteen times), and sending it as a UDP broadcast out of one interface.

use socket2::{Domain, Protocol, Socket, Type};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

pub const PACKET_LEN: usize = 6 + 16 * 6;

/// The 102-byte payload for `mac` (`aa:bb:..` or `aa-bb-..`), or `None` when it is not one.
pub fn magic_packet(mac: &str) -> Option<[u8; PACKET_LEN]> {
    let bytes: Vec<u8> = mac
        .split([':', '-'])
        .map(|p| (p.len() == 2).then(|| u8::from_str_radix(p, 16).ok()).flatten())
        .collect::<Option<Vec<u8>>>()?;
    if bytes.len() != 6 {
        return None;
    }
    let mut packet = [0xFF; PACKET_LEN];
    for chunk in packet[6..].chunks_mut(6) {
        chunk.copy_from_slice(&bytes);
    }
    Some(packet)
}

/// Sends `packet` to `to` out of `iface` only (SO_BINDTODEVICE: the boot LAN, never
/// whichever interface the default route picks), with SO_BROADCAST so a broadcast address
/// is allowed. Needs root or CAP_NET_RAW for the binding to the device.
pub fn send(iface: &str, to: SocketAddrV4, packet: &[u8]) -> Result<(), String> {
    let fail = |what: &str, e: std::io::Error| format!("sending the magic packet out of {iface}: {what}: {e}");
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(|e| fail("socket", e))?;
    socket.set_broadcast(true).map_err(|e| fail("SO_BROADCAST", e))?;
    socket
        .bind_device(Some(iface.as_bytes()))
        .map_err(|e| fail("SO_BINDTODEVICE (needs root or CAP_NET_RAW)", e))?;
    socket
        .bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)).into())
        .map_err(|e| fail("bind", e))?;
    let sent = socket
        .send_to(packet, &SocketAddr::V4(to).into())
        .map_err(|e| fail("send", e))?;
    if sent != packet.len() {
        return Err(format!(
            "sending the magic packet out of {iface}: sent {sent} of {} bytes",
            packet.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_ff_then_the_mac_sixteen_times() {
        let p = magic_packet("52-54-00-AA-00-01").unwrap();
        assert_eq!(p.len(), 102);
        assert_eq!(p[..6], [0xFF; 6]);
        for i in 0..16 {
            assert_eq!(p[6 + 6 * i..12 + 6 * i], [0x52, 0x54, 0x00, 0xAA, 0x00, 0x01]);
        }
        assert!(magic_packet("52:54:00:aa:00").is_none());
        assert!(magic_packet("52:54:00:aa:00:zz").is_none());
    }
}
