//! A small TFTP read client: the windowed (RFC 7440) side the packaged
//! clients lack, for tests and for the boot-storm load generator.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

use super::packet::{DEFAULT_BLKSIZE, ErrorCode, Mode, Packet, PacketError, Request};

/// What to ask the server for.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// `blksize` to request, if any.
    pub blksize: Option<u16>,
    /// `windowsize` to request, if any.
    pub windowsize: Option<u16>,
    /// Ask for `tsize`.
    pub tsize: bool,
    /// Transfer mode (the body is returned as received, not decoded).
    pub mode: Mode,
    /// Time to wait for a packet before retransmitting.
    pub timeout: Duration,
    /// Retransmissions before giving up.
    pub retries: u32,
    /// Fault injection: ignore every n-th DATA packet received, as if the
    /// network had lost it (for loss tests and load generation).
    pub drop_every: Option<u32>,
    /// The local address to send from (default: any). A load generator
    /// gives each simulated node its own, as real nodes have.
    pub local: Option<Ipv4Addr>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            blksize: None,
            windowsize: None,
            tsize: false,
            mode: Mode::Octet,
            timeout: Duration::from_secs(1),
            retries: 5,
            drop_every: None,
            local: None,
        }
    }
}

/// A completed download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The bytes received.
    pub data: Vec<u8>,
    /// The options the server acknowledged (empty without an OACK).
    pub oack: Vec<(String, String)>,
    /// DATA packets received, duplicates and dropped ones included.
    pub packets: u64,
    /// Packets sent again after a timeout (the request or an ACK).
    pub retransmits: u64,
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Socket failure.
    #[error("tftp fetch of {file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The server answered with an ERROR packet.
    #[error("tftp fetch of {file}: server error {code}: {message}")]
    Server {
        /// The file.
        file: String,
        /// Its code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// The server stopped answering.
    #[error("tftp fetch of {file}: timed out")]
    Timeout {
        /// The file.
        file: String,
    },
    /// The server sent something that is not TFTP.
    #[error("tftp fetch of {file}: malformed packet: {source}")]
    Malformed {
        /// The file.
        file: String,
        /// The parse error.
        #[source]
        source: PacketError,
    },
    /// The server's OACK does not fit the request.
    #[error("tftp fetch of {file}: bad OACK option {name}={value}")]
    BadOack {
        /// The file.
        file: String,
        /// Option name.
        name: String,
        /// Option value.
        value: String,
    },
}

/// Downloads `file` from `server`.
pub async fn fetch(
    server: SocketAddr,
    file: &str,
    options: &FetchOptions,
) -> Result<Fetched, FetchError> {
    Download::start(server, file, options).await?.run().await
}

struct Download<'a> {
    socket: UdpSocket,
    server: SocketAddr,
    file: &'a str,
    options: &'a FetchOptions,
    request: Vec<u8>,
    blksize: usize,
    window: u64,
    out: Fetched,
}

impl<'a> Download<'a> {
    async fn start(
        server: SocketAddr,
        file: &'a str,
        options: &'a FetchOptions,
    ) -> Result<Self, FetchError> {
        let bind: SocketAddr = if server.is_ipv4() {
            (options.local.unwrap_or(Ipv4Addr::UNSPECIFIED), 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(bind)
            .await
            .map_err(|source| FetchError::Io {
                file: file.to_owned(),
                source,
            })?;
        let mut requested = Vec::new();
        if let Some(blksize) = options.blksize {
            requested.push(("blksize".to_owned(), blksize.to_string()));
        }
        if let Some(window) = options.windowsize {
            requested.push(("windowsize".to_owned(), window.to_string()));
        }
        if options.tsize {
            requested.push(("tsize".to_owned(), "0".to_owned()));
        }
        let request = Packet::Rrq(Request {
            filename: file.to_owned(),
            mode: options.mode,
            options: requested,
        })
        .to_bytes();
        Ok(Self {
            socket,
            server,
            file,
            options,
            request,
            blksize: usize::from(DEFAULT_BLKSIZE),
            window: 1,
            out: Fetched {
                data: Vec::new(),
                oack: Vec::new(),
                packets: 0,
                retransmits: 0,
            },
        })
    }

    async fn run(mut self) -> Result<Fetched, FetchError> {
        let mut buf = vec![0u8; 65536 + 4];
        // `expected` is the next block wanted, unwrapped; `in_window`
        // counts blocks received since the last ACK sent.
        let mut expected = 1u64;
        let mut in_window = 0u64;
        let mut retries = 0;
        let mut last_sent = self.request.clone();
        let mut peer: Option<SocketAddr> = None;
        self.send_to(&last_sent, self.server).await?;
        loop {
            let received =
                tokio::time::timeout(self.options.timeout, self.socket.recv_from(&mut buf)).await;
            let (len, from) = match received {
                Err(_) => {
                    retries += 1;
                    if retries > self.options.retries {
                        return Err(FetchError::Timeout {
                            file: self.file.to_owned(),
                        });
                    }
                    self.send_to(&last_sent, peer.unwrap_or(self.server))
                        .await?;
                    self.out.retransmits += 1;
                    in_window = 0;
                    continue;
                }
                Ok(result) => result.map_err(|source| self.io(source))?,
            };
            if peer.is_some_and(|p| p != from) || (peer.is_none() && from.ip() != self.server.ip())
            {
                continue; // another TID: not ours (RFC 1350 would answer error 5)
            }
            peer = Some(from);
            match Packet::parse(&buf[..len]).map_err(|source| FetchError::Malformed {
                file: self.file.to_owned(),
                source,
            })? {
                Packet::Oack { options } if expected == 1 && self.out.oack.is_empty() => {
                    self.accept_oack(options)?;
                    last_sent = Packet::Ack { block: 0 }.to_bytes();
                    self.send_to(&last_sent, from).await?;
                    retries = 0;
                }
                Packet::Data { block, data } => {
                    self.out.packets += 1;
                    if self
                        .options
                        .drop_every
                        .is_some_and(|n| self.out.packets.is_multiple_of(u64::from(n.max(1))))
                    {
                        continue;
                    }
                    if block != (expected & 0xffff) as u16 {
                        // Out of order or a duplicate: acknowledge the last
                        // block received in order, so the server goes back.
                        last_sent = Packet::Ack {
                            block: ((expected - 1) & 0xffff) as u16,
                        }
                        .to_bytes();
                        self.send_to(&last_sent, from).await?;
                        in_window = 0;
                        continue;
                    }
                    self.out.data.extend_from_slice(data);
                    let last = data.len() < self.blksize;
                    expected += 1;
                    in_window += 1;
                    retries = 0;
                    if last || in_window == self.window {
                        last_sent = Packet::Ack {
                            block: ((expected - 1) & 0xffff) as u16,
                        }
                        .to_bytes();
                        self.send_to(&last_sent, from).await?;
                        in_window = 0;
                    }
                    if last {
                        return Ok(self.out);
                    }
                }
                Packet::Error { code, message } => {
                    return Err(FetchError::Server {
                        file: self.file.to_owned(),
                        code,
                        message,
                    });
                }
                _ => {}
            }
        }
    }

    fn accept_oack(&mut self, options: Vec<(String, String)>) -> Result<(), FetchError> {
        for (name, value) in &options {
            let bad = || FetchError::BadOack {
                file: self.file.to_owned(),
                name: name.clone(),
                value: value.clone(),
            };
            let number: u64 = value.parse().map_err(|_| bad())?;
            match name.to_ascii_lowercase().as_str() {
                "blksize" if Some(number) <= self.options.blksize.map(u64::from) && number >= 8 => {
                    self.blksize = number as usize;
                }
                "windowsize"
                    if Some(number) <= self.options.windowsize.map(u64::from) && number >= 1 =>
                {
                    self.window = number;
                }
                "tsize" if self.options.tsize => {}
                _ => return Err(bad()),
            }
        }
        self.out.oack = options;
        Ok(())
    }

    async fn send_to(&self, bytes: &[u8], to: SocketAddr) -> Result<(), FetchError> {
        self.socket
            .send_to(bytes, to)
            .await
            .map(|_| ())
            .map_err(|source| self.io(source))
    }

    fn io(&self, source: std::io::Error) -> FetchError {
        FetchError::Io {
            file: self.file.to_owned(),
            source,
        }
    }
}
