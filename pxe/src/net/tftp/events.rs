//! Transfer events for the caller (inventory, boot timelines, metrics).
//!
//! The server never waits on an observer: a slow consumer loses events
//! (logged), it never slows a transfer.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::packet::{ErrorCode, Mode, PacketError};
use super::source::{NameError, OpenError};

/// Something that happened to a request or a transfer.
#[derive(Debug)]
pub enum TransferEvent {
    /// A transfer began (after the file was opened and options agreed).
    Started {
        /// Client address and port (its TID).
        client: SocketAddr,
        /// File name, normalised.
        file: String,
        /// Bytes the client will receive.
        size: u64,
        /// Agreed block size.
        blksize: u16,
        /// Agreed window size.
        windowsize: u16,
    },
    /// The client acknowledged the last block.
    Completed {
        /// Client address and port.
        client: SocketAddr,
        /// File name, normalised.
        file: String,
        /// Bytes sent.
        bytes: u64,
        /// From request to last acknowledgement.
        duration: Duration,
    },
    /// A started transfer ended before its last block was acknowledged.
    Failed {
        /// Client address and port.
        client: SocketAddr,
        /// File name, normalised.
        file: String,
        /// Bytes acknowledged before the failure.
        bytes: u64,
        /// From request to failure.
        duration: Duration,
        /// Why.
        reason: FailReason,
    },
    /// A request or packet was refused before any transfer began.
    Refused {
        /// Sender address and port.
        client: SocketAddr,
        /// File name as requested, when the packet named one.
        file: Option<String>,
        /// Why.
        reason: RefusalReason,
    },
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum RefusalReason {
    /// Not a valid TFTP packet.
    #[error("malformed packet: {0}")]
    Malformed(#[from] PacketError),
    /// A write request: the server is read-only.
    #[error("write request on a read-only server")]
    WriteRequest,
    /// A packet other than a request sent to the request port.
    #[error("unexpected packet on the request port")]
    NotARequest,
    /// A mode this server does not serve.
    #[error("transfer mode {} not supported", .0.as_str())]
    UnsupportedMode(Mode),
    /// The name failed the confinement check.
    #[error(transparent)]
    BadName(#[from] NameError),
    /// The file could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A netascii file too large to convert in memory.
    #[error("netascii transfer of {size} bytes exceeds the {limit}-byte limit; use octet mode")]
    NetasciiTooLarge {
        /// File size.
        size: u64,
        /// cache-max-file-bytes.
        limit: u64,
    },
    /// All sessions and queue places taken.
    #[error("server busy: {active} transfers running or queued")]
    Busy {
        /// Transfers admitted.
        active: usize,
    },
    /// The client already has its share of transfers.
    #[error("client already has {active} transfers (per-client-sessions)")]
    PerClientLimit {
        /// Transfers this client has.
        active: usize,
    },
    /// The client sent requests faster than its rate limit.
    #[error("request rate limit exceeded")]
    RateLimited,
    /// The request waited in the queue longer than queue-timeout-ms.
    #[error("waited {0:?} in the queue for a free session")]
    QueueTimeout(Duration),
}

impl RefusalReason {
    /// The TFTP error sent back, or `None` when the request is dropped
    /// silently (so the client retries later).
    pub fn reply(&self) -> Option<(ErrorCode, String)> {
        let code = match self {
            Self::Malformed(_) | Self::NotARequest | Self::UnsupportedMode(_) => {
                ErrorCode::ILLEGAL_OPERATION
            }
            Self::WriteRequest | Self::BadName(_) => ErrorCode::ACCESS_VIOLATION,
            Self::Open(OpenError::NotFound { .. }) => ErrorCode::FILE_NOT_FOUND,
            Self::Open(OpenError::Io { .. }) => ErrorCode::UNDEFINED,
            Self::Open(_) => ErrorCode::ACCESS_VIOLATION,
            Self::NetasciiTooLarge { .. } | Self::Busy { .. } | Self::PerClientLimit { .. } => {
                ErrorCode::UNDEFINED
            }
            Self::RateLimited | Self::QueueTimeout(_) => return None,
        };
        Some((code, self.to_string()))
    }
}

/// Why a transfer in progress failed.
#[derive(Debug, thiserror::Error)]
pub enum FailReason {
    /// No acknowledgement after the last retransmission.
    #[error("no acknowledgement after {retries} retransmissions")]
    Timeout {
        /// Retransmissions made.
        retries: u32,
    },
    /// The client sent an ERROR packet.
    #[error("client sent error {code}: {message}")]
    ClientError {
        /// Its code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// The client's port is closed (ICMP port unreachable).
    #[error("client port unreachable")]
    ClientGone,
    /// Reading the file failed.
    #[error("reading {file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Sending or receiving on the transfer's socket failed.
    #[error("socket: {0}")]
    Socket(#[source] std::io::Error),
    /// The server is shutting down.
    #[error("server shutting down")]
    Shutdown,
}

/// Receives transfer events. Called from the server's tasks: it must not
/// block.
pub trait TransferEvents: Send + Sync + fmt::Debug {
    /// Handles one event.
    fn event(&self, event: TransferEvent);
}

/// Discards events (logs still record everything).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl TransferEvents for NoEvents {
    fn event(&self, _event: TransferEvent) {}
}

/// Forwards events to a bounded channel; when it is full the event is
/// dropped with a warning rather than stalling a transfer.
impl TransferEvents for tokio::sync::mpsc::Sender<TransferEvent> {
    fn event(&self, event: TransferEvent) {
        if let Err(err) = self.try_send(event) {
            tracing::warn!(error = %err, "tftp event dropped: consumer not keeping up or gone");
        }
    }
}
