//! A TFTP client (RFC 1350) that downloads a boot file the way a PXE firmware does: octet
//! mode, asking for a large block size and the transfer size (RFC 2347-2349), and still
//! correct with a server that ignores those options.
//!
//! Written by hand because the Rust TFTP crates are servers, or clients without options.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use super::ProbeError;

pub const TFTP_PORT: u16 = 69;

const RRQ: u16 = 1;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;
const OACK: u16 = 6;

const ERR_UNDEFINED: u16 = 0;
const ERR_ILLEGAL_OPERATION: u16 = 4;
const ERR_UNKNOWN_TID: u16 = 5;
/// RFC 2347 calls code 8 "option refused"; firmware sends it to end a size-only request.
const ERR_OPTION_REFUSED: u16 = 8;
const ERR_USER_ABORT: u16 = ERR_OPTION_REFUSED;

/// RFC 1350's block size, used when the server ignores our options.
const DEFAULT_BLKSIZE: usize = 512;
/// The largest block that fits an Ethernet frame: 1500 - 20 (IP) - 8 (UDP) - 4 (TFTP).
const REQUESTED_BLKSIZE: usize = 1468;
/// RFC 2348's lower bound.
const MIN_BLKSIZE: usize = 8;
/// Sends of one packet before giving up (the first try plus retransmissions).
const MAX_ATTEMPTS: u32 = 5;
/// Boot files are kernels and initramfs images; anything bigger is a runaway transfer.
const MAX_FILE_SIZE: usize = 1 << 30;

/// Downloads `file` from `server`'s TFTP port. `wait` bounds each wait for a packet; a lost
/// packet is retransmitted, at most [`MAX_ATTEMPTS`] times.
pub fn fetch(server: Ipv4Addr, file: &str, wait: Duration) -> Result<Vec<u8>, ProbeError> {
    fetch_from(SocketAddrV4::new(server, TFTP_PORT), file, wait)
}

/// [`fetch`] from the address `local`, as a firmware that leased it does (the power-on storm
/// benchmark gives each simulated machine its own address on one interface).
pub fn fetch_as(local: Ipv4Addr, server: Ipv4Addr, file: &str, wait: Duration) -> Result<Vec<u8>, ProbeError> {
    transfer(local, SocketAddrV4::new(server, TFTP_PORT), file, wait)
}

/// The size of `file` as a UEFI firmware asks for it before downloading: a request with
/// `tsize`, then "error 8, user aborted" on the server's option acknowledgement (dnsmasq logs
/// it, see netboot-facts.md). `None` when the server ignores options (it then starts sending
/// the file, which is abandoned the same way).
pub fn size_as(local: Ipv4Addr, server: Ipv4Addr, file: &str, wait: Duration) -> Result<Option<usize>, ProbeError> {
    size_from(local, SocketAddrV4::new(server, TFTP_PORT), file, wait)
}

fn size_from(local: Ipv4Addr, server: SocketAddrV4, file: &str, wait: Duration) -> Result<Option<usize>, ProbeError> {
    let mut t = Transfer::new(local, server, file, wait)?;
    t.size_only = true;
    t.run().map(|_| t.tsize)
}

fn fetch_from(server: SocketAddrV4, file: &str, wait: Duration) -> Result<Vec<u8>, ProbeError> {
    transfer(Ipv4Addr::UNSPECIFIED, server, file, wait)
}

fn transfer(local: Ipv4Addr, server: SocketAddrV4, file: &str, wait: Duration) -> Result<Vec<u8>, ProbeError> {
    let mut t = Transfer::new(local, server, file, wait)?;
    t.run()?;
    Ok(t.data)
}

/// One read transfer: the state a client keeps between packets.
struct Transfer<'a> {
    socket: UdpSocket,
    server: SocketAddrV4,
    /// The server's transfer ID (its address and port for this transfer), once it answered.
    peer: Option<SocketAddr>,
    file: &'a str,
    wait: Duration,
    blksize: usize,
    tsize: Option<usize>,
    data: Vec<u8>,
    /// Stop at the server's first answer, as a firmware asking only for the size does.
    size_only: bool,
}

/// What the last packet we sent was, so a timeout can resend it.
enum Sent {
    Request,
    Ack(u16),
}

impl<'a> Transfer<'a> {
    fn new(local: Ipv4Addr, server: SocketAddrV4, file: &'a str, wait: Duration) -> Result<Self, ProbeError> {
        let socket = UdpSocket::bind((local, 0)).map_err(|err| ProbeError::io("binding a UDP socket for TFTP", err))?;
        Ok(Transfer {
            socket,
            server,
            peer: None,
            file,
            wait,
            blksize: DEFAULT_BLKSIZE,
            tsize: None,
            data: Vec::new(),
            size_only: false,
        })
    }

    fn run(&mut self) -> Result<(), ProbeError> {
        self.send_request()?;
        let mut last = Sent::Request;
        let mut expected: u16 = 1;
        let mut attempts = 1;
        loop {
            let Some((packet, from)) = self.receive()? else {
                if attempts >= MAX_ATTEMPTS {
                    return Err(ProbeError::TftpTimeout {
                        server: *self.server.ip(),
                        file: self.file.to_owned(),
                        attempts,
                        per_attempt: self.wait,
                    });
                }
                attempts += 1;
                match last {
                    Sent::Request => self.send_request()?,
                    Sent::Ack(block) => self.send_ack(block)?,
                }
                continue;
            };
            if !self.accept_peer(from) {
                continue;
            }
            match parse(&packet) {
                Packet::Error { code, message } => {
                    return Err(ProbeError::TftpRefused {
                        server: *self.server.ip(),
                        file: self.file.to_owned(),
                        code,
                        message,
                    })
                }
                Packet::OptionAck(options) if matches!(last, Sent::Request) => {
                    self.apply_options(&options)?;
                    if self.size_only {
                        self.send_error(ERR_USER_ABORT, "User aborted the transfer");
                        return Ok(());
                    }
                    self.send_ack(0)?;
                    last = Sent::Ack(0);
                    attempts = 1;
                }
                // Our ACK of the OACK or of the previous block was lost: say it again.
                Packet::OptionAck(_) if expected == 1 => self.send_ack(0)?,
                Packet::Data { block, .. } if block == expected.wrapping_sub(1) => self.send_ack(block)?,
                Packet::Data { .. } if self.size_only => {
                    self.send_error(ERR_USER_ABORT, "User aborted the transfer");
                    return Ok(());
                }
                Packet::Data { block, payload } if block == expected => {
                    self.store(payload)?;
                    self.send_ack(block)?;
                    if payload.len() < self.blksize {
                        return self.finish();
                    }
                    last = Sent::Ack(block);
                    expected = expected.wrapping_add(1);
                    attempts = 1;
                }
                Packet::Data { .. } | Packet::OptionAck(_) => {}
                Packet::Other(detail) => {
                    self.send_error(ERR_ILLEGAL_OPERATION, "unexpected packet");
                    return Err(self.protocol_error(detail));
                }
            }
        }
    }

    fn send_request(&self) -> Result<(), ProbeError> {
        let mut packet = RRQ.to_be_bytes().to_vec();
        for field in [
            self.file,
            "octet",
            "blksize",
            &REQUESTED_BLKSIZE.to_string(),
            "tsize",
            "0",
        ] {
            packet.extend(field.as_bytes());
            packet.push(0);
        }
        self.send_to(&packet, SocketAddr::V4(self.server))
    }

    fn send_ack(&self, block: u16) -> Result<(), ProbeError> {
        let mut packet = ACK.to_be_bytes().to_vec();
        packet.extend(block.to_be_bytes());
        self.send_to(&packet, self.reply_address())
    }

    /// Best effort: the transfer is being abandoned anyway.
    fn send_error(&self, code: u16, message: &str) {
        let _ = self.send_to(&error_packet(code, message), self.reply_address());
    }

    fn reply_address(&self) -> SocketAddr {
        self.peer.unwrap_or(SocketAddr::V4(self.server))
    }

    fn send_to(&self, packet: &[u8], to: SocketAddr) -> Result<(), ProbeError> {
        self.socket
            .send_to(packet, to)
            .map(drop)
            .map_err(|err| ProbeError::io(format!("sending TFTP packet to {to}"), err))
    }

    /// Waits up to `wait` for a packet from the server's address; `None` on timeout.
    fn receive(&self) -> Result<Option<(Vec<u8>, SocketAddr)>, ProbeError> {
        let deadline = Instant::now() + self.wait;
        let mut buf = vec![0u8; REQUESTED_BLKSIZE + 4];
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Ok(None);
            }
            self.socket
                .set_read_timeout(Some(remaining))
                .map_err(|err| ProbeError::io("setting a TFTP receive timeout", err))?;
            match self.socket.recv_from(&mut buf) {
                Ok((len, from)) if from.ip() == *self.server.ip() => return Ok(Some((buf[..len].to_vec(), from))),
                Ok(_) => {}
                Err(err) if is_timeout(&err) => return Ok(None),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(ProbeError::io("receiving TFTP data", err)),
            }
        }
    }

    /// Pins the server's transfer ID on its first answer; a packet from any other port is
    /// answered with "unknown transfer ID" and otherwise ignored (RFC 1350, section 4).
    fn accept_peer(&mut self, from: SocketAddr) -> bool {
        match self.peer {
            None => {
                self.peer = Some(from);
                true
            }
            Some(peer) if peer == from => true,
            Some(_) => {
                let packet = error_packet(ERR_UNKNOWN_TID, "unknown transfer ID");
                let _ = self.socket.send_to(&packet, from);
                false
            }
        }
    }

    fn apply_options(&mut self, options: &[(String, String)]) -> Result<(), ProbeError> {
        for (name, value) in options {
            let parsed = value.parse::<usize>().ok();
            match (name.to_ascii_lowercase().as_str(), parsed) {
                ("blksize", Some(size)) if (MIN_BLKSIZE..=REQUESTED_BLKSIZE).contains(&size) => self.blksize = size,
                ("tsize", Some(size)) if size <= MAX_FILE_SIZE => self.tsize = Some(size),
                _ => {
                    self.send_error(ERR_OPTION_REFUSED, "option not requested or out of range");
                    return Err(self.protocol_error(format!(
                        "option acknowledgement with {name}={value}, which was not requested or \
                         is out of range"
                    )));
                }
            }
        }
        Ok(())
    }

    fn store(&mut self, payload: &[u8]) -> Result<(), ProbeError> {
        if payload.len() > self.blksize {
            self.send_error(ERR_ILLEGAL_OPERATION, "block larger than negotiated");
            return Err(self.protocol_error(format!(
                "a data block of {} bytes exceeds the block size {}",
                payload.len(),
                self.blksize
            )));
        }
        if self.data.len() + payload.len() > MAX_FILE_SIZE {
            self.send_error(ERR_UNDEFINED, "file too large");
            return Err(self.protocol_error(format!("file exceeds {MAX_FILE_SIZE} bytes")));
        }
        self.data.extend_from_slice(payload);
        Ok(())
    }

    fn finish(&self) -> Result<(), ProbeError> {
        match self.tsize {
            Some(size) if size != self.data.len() => {
                Err(self.protocol_error(format!("announced {size} bytes (tsize) but sent {}", self.data.len())))
            }
            _ => Ok(()),
        }
    }

    fn protocol_error(&self, detail: String) -> ProbeError {
        ProbeError::TftpProtocol {
            server: *self.server.ip(),
            file: self.file.to_owned(),
            detail,
        }
    }
}

enum Packet<'a> {
    Data { block: u16, payload: &'a [u8] },
    OptionAck(Vec<(String, String)>),
    Error { code: u16, message: String },
    Other(String),
}

fn parse(packet: &[u8]) -> Packet<'_> {
    let Some((&[hi, lo], body)) = packet.split_first_chunk::<2>() else {
        return Packet::Other(format!("a {}-byte packet", packet.len()));
    };
    match u16::from_be_bytes([hi, lo]) {
        DATA if body.len() >= 2 => Packet::Data {
            block: u16::from_be_bytes([body[0], body[1]]),
            payload: &body[2..],
        },
        OACK => Packet::OptionAck(
            strings(body)
                .chunks_exact(2)
                .map(|pair| (pair[0].clone(), pair[1].clone()))
                .collect(),
        ),
        ERROR if body.len() >= 2 => Packet::Error {
            code: u16::from_be_bytes([body[0], body[1]]),
            message: strings(&body[2..]).into_iter().next().unwrap_or_default(),
        },
        opcode => Packet::Other(format!("unexpected opcode {opcode}")),
    }
}

/// NUL-terminated strings, the encoding of TFTP file names, modes, options and messages.
fn strings(body: &[u8]) -> Vec<String> {
    body.split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect::<Vec<_>>()
        .split_last()
        .map(|(_, complete)| complete.to_vec())
        .unwrap_or_default()
}

fn error_packet(code: u16, message: &str) -> Vec<u8> {
    let mut packet = ERROR.to_be_bytes().to_vec();
    packet.extend(code.to_be_bytes());
    packet.extend(message.as_bytes());
    packet.push(0);
    packet
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

#[cfg(test)]
mod tests {
    //! A scripted TFTP server on loopback plays each server behaviour the client must handle.

    use super::*;
    use std::thread;

    const WAIT: Duration = Duration::from_millis(300);

    /// Starts a server that hands each request to `script` on a fresh socket (a new TID).
    fn serve<F>(script: F) -> (SocketAddrV4, thread::JoinHandle<()>)
    where
        F: FnOnce(&UdpSocket, SocketAddr, Vec<String>) + Send + 'static,
    {
        let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
        let SocketAddr::V4(addr) = listener.local_addr().unwrap() else {
            unreachable!()
        };
        let handle = thread::spawn(move || {
            let mut buf = [0u8; 600];
            listener.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let (len, client) = listener.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..2], &RRQ.to_be_bytes());
            let fields = strings(&buf[2..len]);
            let transfer = UdpSocket::bind("127.0.0.1:0").unwrap();
            transfer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            script(&transfer, client, fields);
        });
        (addr, handle)
    }

    fn data(block: u16, payload: &[u8]) -> Vec<u8> {
        let mut packet = DATA.to_be_bytes().to_vec();
        packet.extend(block.to_be_bytes());
        packet.extend(payload);
        packet
    }

    fn expect_ack(socket: &UdpSocket, block: u16) {
        let mut buf = [0u8; 16];
        let (len, _) = socket.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..len], &[0, ACK as u8, (block >> 8) as u8, block as u8]);
    }

    fn send_blocks(socket: &UdpSocket, client: SocketAddr, content: &[u8], blksize: usize) {
        let mut blocks: Vec<&[u8]> = content.chunks(blksize).collect();
        if content.len().is_multiple_of(blksize) {
            blocks.push(&[]);
        }
        for (index, chunk) in blocks.into_iter().enumerate() {
            let block = index as u16 + 1;
            socket.send_to(&data(block, chunk), client).unwrap();
            expect_ack(socket, block);
        }
    }

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn server_ignoring_options_gets_512_byte_blocks() {
        let file = content(1300);
        let expected = file.clone();
        let (addr, server) = serve(move |socket, client, fields| {
            assert_eq!(fields, ["boot.efi", "octet", "blksize", "1468", "tsize", "0"]);
            send_blocks(socket, client, &file, DEFAULT_BLKSIZE);
        });
        assert_eq!(fetch_from(addr, "boot.efi", WAIT).unwrap(), expected);
        server.join().unwrap();
    }

    #[test]
    fn a_size_request_ends_with_error_8_as_edk2_ends_it() {
        let (addr, server) = serve(move |socket, client, fields| {
            assert_eq!(fields, ["bootaa64.efi", "octet", "blksize", "1468", "tsize", "0"]);
            let mut oack = OACK.to_be_bytes().to_vec();
            oack.extend(b"blksize\x001468\x00tsize\x001011712\x00");
            socket.send_to(&oack, client).unwrap();
            let mut buf = [0u8; 64];
            let (len, _) = socket.recv_from(&mut buf).unwrap();
            // What dnsmasq logs as `error 8 User aborted the transfer received from ...`.
            assert_eq!(&buf[..len], error_packet(8, "User aborted the transfer").as_slice());
        });
        let size = size_from(Ipv4Addr::LOCALHOST, addr, "bootaa64.efi", WAIT).unwrap();
        assert_eq!(size, Some(1_011_712));
        server.join().unwrap();
    }

    #[test]
    fn option_ack_is_acknowledged_with_block_zero() {
        let file = content(1468 * 2);
        let expected = file.clone();
        let (addr, server) = serve(move |socket, client, _| {
            let mut oack = OACK.to_be_bytes().to_vec();
            oack.extend(format!("blksize\x001468\x00tsize\x00{}\x00", file.len()).as_bytes());
            socket.send_to(&oack, client).unwrap();
            expect_ack(socket, 0);
            send_blocks(socket, client, &file, 1468);
        });
        assert_eq!(fetch_from(addr, "f", WAIT).unwrap(), expected);
        server.join().unwrap();
    }

    #[test]
    fn duplicate_block_is_acknowledged_again() {
        let (addr, server) = serve(move |socket, client, _| {
            socket.send_to(&data(1, &[1; 512]), client).unwrap();
            expect_ack(socket, 1);
            socket.send_to(&data(1, &[1; 512]), client).unwrap();
            expect_ack(socket, 1);
            socket.send_to(&data(2, &[2; 3]), client).unwrap();
            expect_ack(socket, 2);
        });
        let got = fetch_from(addr, "f", WAIT).unwrap();
        assert_eq!(got.len(), 515);
        server.join().unwrap();
    }

    #[test]
    fn server_error_carries_its_message() {
        let (addr, server) = serve(|socket, client, _| {
            socket.send_to(&error_packet(1, "file not found"), client).unwrap();
        });
        let err = fetch_from(addr, "missing.efi", WAIT).unwrap_err();
        assert!(
            matches!(&err, ProbeError::TftpRefused { code: 1, message, .. } if message == "file not found"),
            "{err:?}"
        );
        assert!(err.to_string().contains("file not found"));
        server.join().unwrap();
    }

    #[test]
    fn wrong_tsize_is_a_protocol_error() {
        let (addr, server) = serve(|socket, client, _| {
            let mut oack = OACK.to_be_bytes().to_vec();
            oack.extend(b"tsize\x00100\x00");
            socket.send_to(&oack, client).unwrap();
            expect_ack(socket, 0);
            socket.send_to(&data(1, &[0; 10]), client).unwrap();
            expect_ack(socket, 1);
        });
        let err = fetch_from(addr, "f", WAIT).unwrap_err();
        assert!(matches!(err, ProbeError::TftpProtocol { .. }), "{err:?}");
        server.join().unwrap();
    }

    #[test]
    fn silent_server_times_out_after_bounded_retries() {
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let SocketAddr::V4(addr) = silent.local_addr().unwrap() else {
            unreachable!()
        };
        let started = Instant::now();
        let err = fetch_from(addr, "f", Duration::from_millis(50)).unwrap_err();
        assert!(
            matches!(
                err,
                ProbeError::TftpTimeout {
                    attempts: MAX_ATTEMPTS,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        let mut buf = [0u8; 600];
        silent.set_nonblocking(true).unwrap();
        let mut requests = 0;
        while silent.recv_from(&mut buf).is_ok() {
            requests += 1;
        }
        assert_eq!(requests, MAX_ATTEMPTS);
    }
}
