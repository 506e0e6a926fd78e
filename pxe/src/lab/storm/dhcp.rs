//! The simulated nodes' DHCP: one socket on the load generator's port 68
//! shared by every node (real nodes share the wire the same way), the
//! replies sorted to each node by transaction id.
//!
//! A node asks as PXE firmware would (DISCOVER, OFFER, REQUEST, ACK, with
//! the BROADCAST flag: it has no address yet, so the server's answers are
//! broadcast onto the link), and again as iPXE (user class `iPXE`), which
//! the server answers with the script URL.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::node::Firmware;

/// Which client asks: the NIC's PXE firmware, or iPXE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asker {
    /// PXE firmware (BIOS: architecture 0; UEFI x64: 7).
    Firmware,
    /// iPXE, after it was loaded over TFTP.
    Ipxe,
}

/// What an ACK gave a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The address.
    pub address: Ipv4Addr,
    /// The server (`siaddr`, else the server identifier).
    pub server: Ipv4Addr,
    /// The boot file (file field, else option 67).
    pub boot_file: String,
}

/// Why an exchange failed (after its retries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhcpFailure {
    /// No answer after every retransmission.
    NoAnswer(MessageType),
    /// A NAK.
    Nak,
    /// The socket failed.
    Socket(String),
    /// The ACK held no boot file.
    NoBootFile,
}

impl std::fmt::Display for DhcpFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DhcpFailure::NoAnswer(kind) => write!(f, "no answer to {kind:?}"),
            DhcpFailure::Nak => write!(f, "server sent NAK"),
            DhcpFailure::Socket(e) => write!(f, "socket: {e}"),
            DhcpFailure::NoBootFile => write!(f, "ACK without a boot file"),
        }
    }
}

/// The shared client side of port 68.
#[derive(Debug)]
pub struct DhcpWire {
    socket: Arc<UdpSocket>,
    waiting: Mutex<HashMap<u32, mpsc::UnboundedSender<Message>>>,
    /// Bytes sent and received, counted for the report.
    pub bytes: std::sync::atomic::AtomicU64,
}

/// Retransmission schedule: PXE firmware waits 4, 8, 16, 32 s; a storm
/// with loss needs a node to come back sooner, as iPXE does (1 s first).
const BACKOFF: [u64; 6] = [1, 2, 4, 8, 8, 8];

impl DhcpWire {
    /// Binds 0.0.0.0:68 on `interface` (broadcasts leave and arrive
    /// there) and starts the task that sorts replies by transaction id.
    pub fn bind(interface: &str) -> std::io::Result<Arc<DhcpWire>> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        socket.bind_device(Some(interface.as_bytes()))?;
        socket.set_broadcast(true)?;
        // A storm's replies arrive in a burst.
        let _ = socket.set_recv_buffer_size(8 << 20);
        socket.set_nonblocking(true)?;
        socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 68)).into())?;
        let socket = Arc::new(UdpSocket::from_std(socket.into())?);
        let wire = Arc::new(DhcpWire {
            socket,
            waiting: Mutex::new(HashMap::new()),
            bytes: 0.into(),
        });
        tokio::spawn(receive(Arc::downgrade(&wire)));
        Ok(wire)
    }

    /// One DISCOVER..ACK exchange for `mac` with transaction id `xid`.
    /// Returns the lease and how many packets had to be sent again.
    pub async fn lease(
        self: &Arc<Self>,
        mac: [u8; 6],
        xid: u32,
        asker: Asker,
        firmware: Firmware,
    ) -> (Result<Lease, DhcpFailure>, u32) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.lock().insert(xid, tx);
        let mut retries = 0;
        let who = (asker, firmware);
        let result = self.exchange(mac, xid, who, &mut rx, &mut retries).await;
        self.lock().remove(&xid);
        (result, retries)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, mpsc::UnboundedSender<Message>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn exchange(
        &self,
        mac: [u8; 6],
        xid: u32,
        (asker, firmware): (Asker, Firmware),
        rx: &mut mpsc::UnboundedReceiver<Message>,
        retries: &mut u32,
    ) -> Result<Lease, DhcpFailure> {
        let discover = request(mac, xid, asker, firmware, MessageType::Discover, None);
        let offer = self.ask(&discover, MessageType::Offer, rx, retries).await?;
        let server = server_id(&offer);
        let req = request(
            mac,
            xid,
            asker,
            firmware,
            MessageType::Request,
            Some((offer.yiaddr(), server)),
        );
        let ack = self.ask(&req, MessageType::Ack, rx, retries).await?;
        let boot_file = boot_file(&ack).ok_or(DhcpFailure::NoBootFile)?;
        let server = if ack.siaddr().is_unspecified() {
            server
        } else {
            ack.siaddr()
        };
        Ok(Lease {
            address: ack.yiaddr(),
            server,
            boot_file,
        })
    }

    /// Sends `message` until an answer of kind `want` comes (NAK ends it).
    async fn ask(
        &self,
        message: &Message,
        want: MessageType,
        rx: &mut mpsc::UnboundedReceiver<Message>,
        retries: &mut u32,
    ) -> Result<Message, DhcpFailure> {
        let bytes = message
            .to_vec()
            .map_err(|e| DhcpFailure::Socket(e.to_string()))?;
        let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
        for (attempt, wait) in BACKOFF.iter().enumerate() {
            if attempt > 0 {
                *retries += 1;
            }
            self.socket
                .send_to(&bytes, to)
                .await
                .map_err(|e| DhcpFailure::Socket(e.to_string()))?;
            self.count(bytes.len());
            let deadline = tokio::time::Instant::now() + Duration::from_secs(*wait);
            loop {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Err(_) => break,
                    Ok(None) => return Err(DhcpFailure::Socket("receiver stopped".into())),
                    Ok(Some(reply)) => match reply.opts().msg_type() {
                        Some(kind) if kind == want => return Ok(reply),
                        Some(MessageType::Nak) => return Err(DhcpFailure::Nak),
                        // A late OFFER while waiting for the ACK.
                        _ => {}
                    },
                }
            }
        }
        Err(DhcpFailure::NoAnswer(
            message.opts().msg_type().unwrap_or(want),
        ))
    }

    fn count(&self, n: usize) {
        self.bytes
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Sorts replies to the node waiting for their transaction id; others
/// (another node's retransmission answered twice) are dropped.
async fn receive(wire: std::sync::Weak<DhcpWire>) {
    let mut buf = vec![0u8; 1500];
    loop {
        let Some(w) = wire.upgrade() else { return };
        let socket = Arc::clone(&w.socket);
        drop(w);
        let Ok(Ok((len, _))) =
            tokio::time::timeout(Duration::from_millis(500), socket.recv_from(&mut buf)).await
        else {
            continue;
        };
        let Some(w) = wire.upgrade() else { return };
        w.count(len);
        let Some(message) = decode(&buf[..len]) else {
            continue;
        };
        // Our own broadcasts come back to us too: only BOOTREPLY.
        if message.opcode() != dhcproto::v4::Opcode::BootReply {
            continue;
        }
        if let Some(tx) = w.lock().get(&message.xid()) {
            let _ = tx.send(message);
        }
    }
}

/// dhcproto can panic on some malformed input (the server guards the
/// same way): never let a packet from the wire take the generator down.
pub fn decode(bytes: &[u8]) -> Option<Message> {
    std::panic::catch_unwind(|| Message::decode(&mut Decoder::new(bytes)))
        .ok()?
        .ok()
}

/// A DISCOVER or REQUEST as the firmware or iPXE sends it.
pub fn request(
    mac: [u8; 6],
    xid: u32,
    asker: Asker,
    firmware: Firmware,
    kind: MessageType,
    selected: Option<(Ipv4Addr, Ipv4Addr)>,
) -> Message {
    let zero = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(xid, zero, zero, zero, zero, &mac);
    m.set_flags(Flags::default().set_broadcast());
    let opts = m.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    // RFC 4578: 0 is BIOS, 7 is EFI x86-64 (what OVMF and snponly.efi send).
    let (arch, class): (u16, &[u8]) = match firmware {
        Firmware::Bios => (0, b"PXEClient:Arch:00000:UNDI:002001"),
        Firmware::Uefi => (7, b"PXEClient:Arch:00007:UNDI:003000"),
    };
    opts.insert(DhcpOption::ClientSystemArchitecture(arch.into()));
    opts.insert(DhcpOption::ClassIdentifier(class.to_vec()));
    opts.insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::ServerIdentifier,
        OptionCode::BootfileName,
    ]));
    if asker == Asker::Ipxe {
        opts.insert(DhcpOption::UserClass(b"iPXE".to_vec()));
    }
    if let Some((address, server)) = selected {
        opts.insert(DhcpOption::RequestedIpAddress(address));
        opts.insert(DhcpOption::ServerIdentifier(server));
    }
    m
}

fn server_id(m: &Message) -> Ipv4Addr {
    match m.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => *ip,
        _ => m.siaddr(),
    }
}

/// The boot file: the `file` field, else option 67.
pub fn boot_file(m: &Message) -> Option<String> {
    let text = |b: &[u8]| {
        let s = String::from_utf8_lossy(b).trim_end_matches('\0').to_owned();
        (!s.is_empty()).then_some(s)
    };
    m.fname()
        .and_then(text)
        .or_else(|| match m.opts().get(OptionCode::BootfileName) {
            Some(DhcpOption::BootfileName(b)) => text(b),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::dhcp::parse_request;

    /// The server's own parser reads what the storm's nodes send as the
    /// PXE firmware and iPXE it stands for.
    #[test]
    fn the_server_reads_firmware_and_ipxe_requests() {
        let mac = [0x52, 0x54, 0, 0x5e, 0, 7];
        let server = Ipv4Addr::new(198, 18, 0, 1);
        let address = Ipv4Addr::new(198, 18, 1, 7);
        let discover = request(
            mac,
            42,
            Asker::Firmware,
            Firmware::Bios,
            MessageType::Discover,
            None,
        );
        let bytes = discover.to_vec().unwrap();
        let r = parse_request(&bytes).unwrap();
        assert_eq!(r.kind, MessageType::Discover);
        assert_eq!(r.mac.to_string(), "52:54:00:5e:00:07");
        assert_eq!(r.arch, Some(0));
        assert!(r.is_pxe_client() && !r.ipxe);
        assert!(decode(&bytes).unwrap().flags().broadcast());

        let uefi = request(
            mac,
            44,
            Asker::Firmware,
            Firmware::Uefi,
            MessageType::Discover,
            None,
        );
        let r = parse_request(&uefi.to_vec().unwrap()).unwrap();
        assert_eq!(r.arch, Some(7));
        assert!(r.is_pxe_client() && !r.ipxe);

        let req = request(
            mac,
            43,
            Asker::Ipxe,
            Firmware::Uefi,
            MessageType::Request,
            Some((address, server)),
        );
        let r = parse_request(&req.to_vec().unwrap()).unwrap();
        assert_eq!(r.kind, MessageType::Request);
        assert!(r.ipxe);
        assert_eq!(r.requested_ip, Some(address));
        assert_eq!(r.server_id, Some(server));
    }

    #[test]
    fn the_boot_file_comes_from_the_file_field_or_option_67() {
        let zero = Ipv4Addr::UNSPECIFIED;
        let mut m = Message::new_with_id(1, zero, zero, zero, zero, &[1, 2, 3, 4, 5, 6]);
        assert_eq!(boot_file(&m), None);
        m.opts_mut().insert(DhcpOption::BootfileName(
            b"http://198.18.0.1:8080/boot/x.ipxe".to_vec(),
        ));
        assert_eq!(
            boot_file(&m).as_deref(),
            Some("http://198.18.0.1:8080/boot/x.ipxe")
        );
        m.set_fname_str("undionly.kpxe");
        assert_eq!(boot_file(&m).as_deref(), Some("undionly.kpxe"));
    }

    proptest::proptest! {
        #[test]
        fn replies_from_the_wire_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            if let Some(m) = decode(&raw) {
                let _ = boot_file(&m);
                let _ = server_id(&m);
            }
        }
    }
}
