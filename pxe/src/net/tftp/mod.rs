//! A read-only TFTP server for network boot, on tokio.
//!
//! Speaks RFC 1350 with option negotiation (RFC 2347), `blksize` (2348),
//! `timeout` and `tsize` (2349) and `windowsize` (7440). Write requests are
//! refused; names are confined to the served tree (see [`SafeName`] and
//! [`DirSource`]); small hot files are cached in memory; admission control
//! bounds sessions per server and per client (see `admission.rs`).
//!
//! Why our own engine: `tftp-server` 0.0.3 has no option negotiation and
//! accepts writes; async-tftp would do the protocol, but the parts a boot
//! storm needs (admission before any work, a shared cache keyed by file
//! identity, per-session file handles that survive a reload, events for
//! the boot timeline) would all live outside it, around a handler API
//! that opens files per request. Owning the ~2,000 lines keeps windowing,
//! retransmission and admission in one place we can measure and tune.
//!
//! Layout: `packet` (wire format) → `options` (negotiation) → `source`
//! (names, confinement, the [`FileSource`] trait) → `cache` and `body`
//! (bytes of one transfer) → `session` (one transfer on its own TID) →
//! `admission` and `server` (request socket, bounds, events).
//!
//! Each transfer socket is bound to the listen address and connected to
//! the client; with a wildcard listen address the kernel picks the source
//! address by route (no IP_PKTINFO yet), which is right for a PXE server
//! with one address per boot network.
//!
//! ```no_run
//! # async fn example() -> Result<(), ironrack_pxe::net::tftp::TftpError> {
//! use std::sync::Arc;
//! use ironrack_pxe::net::tftp::{DirSource, NoEvents, TftpConfig, TftpServer};
//!
//! let config = TftpConfig::default();
//! let files = DirSource::open(&config.root)
//!     .map_err(|source| ironrack_pxe::net::tftp::TftpError::OpenRoot { path: config.root.clone(), source })?;
//! let server = TftpServer::bind(config, Arc::new(files), Arc::new(NoEvents)).await?;
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

mod admission;
mod body;
mod cache;
pub mod client;
mod config;
mod events;
pub mod netascii;
mod options;
pub mod packet;
mod server;
mod session;
mod source;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use cache::FileCache;
pub use config::{ConfigError, TftpConfig};
pub use events::{FailReason, NoEvents, RefusalReason, TransferEvent, TransferEvents};
pub use options::{IgnoredOption, Negotiated, OptionLimits};
pub use server::{TftpHandle, TftpServer};
pub use source::{
    DirSource, FileIdentity, FileSource, NameError, OpenError, SafeName, SourceContent,
};

/// Errors starting or running the TFTP server.
#[derive(Debug, thiserror::Error)]
pub enum TftpError {
    /// A setting out of range.
    #[error("invalid TFTP configuration: {0}")]
    Config(#[from] ConfigError),
    /// The served directory cannot be opened.
    #[error("opening TFTP root {path}: {source}")]
    OpenRoot {
        /// The directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The listen address cannot be bound.
    #[error("binding TFTP socket {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}
