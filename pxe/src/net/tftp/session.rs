//! One read transfer on its own socket (its TID): option acknowledgement,
//! then DATA in windows (RFC 7440; a window of 1 is RFC 1350's lock-step),
//! with retransmission and exponential backoff.
//!
//! Acknowledgements are matched against the window by wrapping 16-bit
//! arithmetic, so block numbers roll over past 65535 to 0 (as iPXE and
//! tftpd-hpa expect) and files of any size are served. A duplicate ACK
//! never triggers a retransmission (no Sorcerer's Apprentice): only the
//! timer does. An ACK inside the window means the client saw a gap: the
//! window restarts after the acknowledged block (go-back-N).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

use super::body::BlockReader;
use super::events::FailReason;
use super::packet::{ErrorCode, Packet, encode_data_header, error_packet};

/// Largest packet a client legitimately sends on a transfer socket (an
/// ACK or an ERROR with a message); longer ones are read truncated.
const RECV_BUFFER: usize = 1024;

/// Retransmission policy of one transfer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Retransmit {
    pub(super) initial: Duration,
    pub(super) max: Duration,
    pub(super) max_retries: u32,
}

/// The sending side of one transfer.
#[derive(Debug)]
pub(super) struct Transfer<'a> {
    socket: &'a TransferSocket,
    reader: BlockReader,
    file: String,
    window: u64,
    retransmit: Retransmit,
    send_buf: Vec<u8>,
    recv_buf: Vec<u8>,
    acked_blocks: u64,
    blksize: u64,
    len: u64,
}

/// What arrived while waiting for an acknowledgement.
enum Reply {
    Ack(u16),
    Timeout,
}

impl<'a> Transfer<'a> {
    pub(super) fn new(
        socket: &'a TransferSocket,
        reader: BlockReader,
        file: String,
        blksize: u16,
        windowsize: u16,
        len: u64,
        retransmit: Retransmit,
    ) -> Self {
        Self {
            socket,
            reader,
            file,
            window: u64::from(windowsize.max(1)),
            retransmit,
            send_buf: Vec::with_capacity(4 + usize::from(blksize)),
            recv_buf: vec![0; RECV_BUFFER],
            acked_blocks: 0,
            blksize: u64::from(blksize),
            len,
        }
    }

    /// Bytes the client has acknowledged so far.
    pub(super) fn bytes_acked(&self) -> u64 {
        (self.acked_blocks * self.blksize).min(self.len)
    }

    /// Sends an OACK and waits for its ACK (block 0).
    pub(super) async fn negotiate(&mut self, oack: &Packet<'_>) -> Result<(), FailReason> {
        self.send_buf.clear();
        oack.encode(&mut self.send_buf);
        let mut rto = self.retransmit.initial;
        let mut retries = 0;
        self.send_current().await?;
        let mut deadline = Instant::now() + rto;
        loop {
            match self.next_reply(deadline).await? {
                Reply::Ack(0) => return Ok(()),
                Reply::Ack(_) => {}
                Reply::Timeout => {
                    retries += 1;
                    if retries > self.retransmit.max_retries {
                        return Err(FailReason::Timeout {
                            retries: retries - 1,
                        });
                    }
                    rto = (rto * 2).min(self.retransmit.max);
                    self.send_current().await?;
                    deadline = Instant::now() + rto;
                }
            }
        }
    }

    /// Sends every block and waits for the last acknowledgement.
    pub(super) async fn send_file(&mut self) -> Result<(), FailReason> {
        let last = self.reader.block_count();
        // `base` is the first unacknowledged block, `next` the next to send
        // (both 1-based and unwrapped).
        let mut base = 1u64;
        let mut next = 1u64;
        let mut rto = self.retransmit.initial;
        let mut retries = 0;
        let mut deadline = Instant::now();
        loop {
            if next < base + self.window && next <= last {
                while next < base + self.window && next <= last {
                    self.send_block(next).await?;
                    next += 1;
                }
                deadline = Instant::now() + rto;
            }
            match self.next_reply(deadline).await? {
                Reply::Ack(wire) => {
                    // Which of base-1 ..= next-1 does the wire number name?
                    let offset = u64::from(wire.wrapping_sub(wrap(base - 1)));
                    if offset == 0 || offset > next - base {
                        // A duplicate or stale ACK: never answer it.
                        continue;
                    }
                    let acked = base - 1 + offset;
                    self.acked_blocks = acked;
                    if acked == last {
                        return Ok(());
                    }
                    base = acked + 1;
                    // Blocks after `acked` that were sent are lost or in
                    // flight out of order: the window restarts at `base`.
                    next = base;
                    rto = self.retransmit.initial;
                    retries = 0;
                }
                Reply::Timeout => {
                    retries += 1;
                    if retries > self.retransmit.max_retries {
                        return Err(FailReason::Timeout {
                            retries: retries - 1,
                        });
                    }
                    rto = (rto * 2).min(self.retransmit.max);
                    next = base;
                }
            }
        }
    }

    /// Tells the client why the transfer ends (best effort).
    pub(super) async fn abort(&self, code: ErrorCode, message: &str) {
        let _ = self.socket.send(&error_packet(code, message)).await;
    }

    async fn send_block(&mut self, block: u64) -> Result<(), FailReason> {
        self.send_buf.clear();
        encode_data_header(&mut self.send_buf, wrap(block));
        self.reader
            .append_block(block, &mut self.send_buf)
            .await
            .map_err(|source| FailReason::Read {
                file: self.file.clone(),
                source,
            })?;
        self.send_current().await
    }

    async fn send_current(&self) -> Result<(), FailReason> {
        match self.socket.send(&self.send_buf).await {
            Ok(_) => Ok(()),
            Err(err) => Err(socket_failure(err)),
        }
    }

    /// Waits until `deadline` for an ACK; anything else from the client
    /// but an ERROR is ignored.
    async fn next_reply(&mut self, deadline: Instant) -> Result<Reply, FailReason> {
        loop {
            let received = tokio::time::timeout_at(deadline, self.socket.recv(&mut self.recv_buf));
            let len = match received.await {
                Err(_elapsed) => return Ok(Reply::Timeout),
                Ok(Ok(len)) => len,
                Ok(Err(err)) => return Err(socket_failure(err)),
            };
            match Packet::parse(&self.recv_buf[..len]) {
                Ok(Packet::Ack { block }) => return Ok(Reply::Ack(block)),
                Ok(Packet::Error { code, message }) => {
                    return Err(FailReason::ClientError { code, message });
                }
                other => {
                    tracing::debug!(file = %self.file, packet = ?other.map(|p| format!("{p:?}")), "ignored packet during transfer");
                }
            }
        }
    }
}

/// The wire form of an unwrapped block number: past 65535 it rolls to 0.
fn wrap(block: u64) -> u16 {
    (block & 0xffff) as u16
}

fn socket_failure(err: std::io::Error) -> FailReason {
    if err.kind() == std::io::ErrorKind::ConnectionRefused {
        FailReason::ClientGone
    } else {
        FailReason::Socket(err)
    }
}

/// A transfer socket, bound on the server's address and connected to the
/// client so the kernel drops datagrams from any other TID.
///
/// It is registered with the runtime for reading only. tokio's own
/// `UdpSocket` also registers for writing, and a UDP socket turns writable
/// again after every send: each DATA block was then an edge event that
/// woke whichever thread was parked in `epoll_wait`, for nothing (two
/// `epoll_wait` returns per block, seen with strace). Sends go straight to
/// the non-blocking socket; a full send buffer, which lock-step and small
/// windows never meet, is waited out with short sleeps.
#[derive(Debug)]
pub(super) struct TransferSocket(AsyncFd<std::net::UdpSocket>);

impl TransferSocket {
    /// Binds on `local` (an ephemeral port: the transfer's TID) and
    /// connects to `client`.
    pub(super) fn open(local: std::net::IpAddr, client: SocketAddr) -> std::io::Result<Self> {
        let socket = std::net::UdpSocket::bind(SocketAddr::new(local, 0))?;
        socket.connect(client)?;
        socket.set_nonblocking(true)?;
        Ok(Self(crate::net::sys::register_udp(
            socket,
            Interest::READABLE,
        )?))
    }

    /// Sends one datagram to the client.
    pub(super) async fn send(&self, packet: &[u8]) -> std::io::Result<usize> {
        let mut pause = Duration::from_millis(1);
        loop {
            match self.0.get_ref().send(packet) {
                Err(err)
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                sent => return sent,
            }
        }
    }

    /// Receives one datagram from the client (an ICMP error the kernel
    /// queued on the socket comes back as the error it names).
    pub(super) async fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut ready = self.0.ready(Interest::READABLE | Interest::ERROR).await?;
            match ready.try_io(|socket| socket.get_ref().recv(buf)) {
                Ok(received) => return received,
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_numbers_roll_over_to_zero() {
        assert_eq!(wrap(65535), 65535);
        assert_eq!(wrap(65536), 0);
        assert_eq!(wrap(65537), 1);
        // An ACK of wire block 0 after rollover names block 65536.
        let base = 65536u64;
        assert_eq!(u64::from(0u16.wrapping_sub(wrap(base - 1))), 1);
    }
}
