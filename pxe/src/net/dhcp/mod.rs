//! DHCP and proxyDHCP for network boot.
//!
//! dhcproto does the wire format; the policy is ours and is a pure function
//! ([`decide`]): a [`Request`], where it came in ([`Ingress`]), the [`Site`]
//! and the [`LeaseTable`] give a [`Decision`]. The server ([`DhcpServer`])
//! only moves datagrams, persists lease changes before replying, and reports
//! [`DhcpEvent`]s.
//!
//! ```no_run
//! # async fn example(site: ironrack_pxe::site::Site) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use ironrack_pxe::net::dhcp::{DhcpServer, NoEvents};
//! use ironrack_pxe::store::SqliteStore;
//!
//! let (site_tx, site_rx) = tokio::sync::watch::channel(Arc::new(site));
//! let store = Arc::new(SqliteStore::open("state.db".as_ref())?);
//! let server = DhcpServer::new(site_rx, store, Arc::new(NoEvents)).bind().await?;
//! // On SIGHUP: site_tx.send(Arc::new(Site::load(path)?)).
//! server.run(std::future::pending()).await?;
//! # drop(site_tx); Ok(()) }
//! ```
//!
//! [`Site`]: crate::site::Site

pub mod boot;
mod events;
mod leases;
mod packet;
mod policy;
mod reply;
mod server;
mod socket;

pub use events::{DhcpEvent, DhcpEventKind, DhcpEvents, NoEvents};
pub use leases::{
    DECLINE_QUARANTINE_SECS, Holder, LeaseChange, LeaseTable, OFFER_HOLD_SECS, Offer,
};
pub use packet::{OPTION_IPXE_ENCAP, Refusal, Request, parse_request};
pub use policy::{
    CLIENT_PORT, Decision, Ingress, PXE_PORT, Port, Reply, ReplyKind, SERVER_PORT, Silence, decide,
};
pub use reply::encode;
pub use server::{BoundDhcpServer, DhcpServer, SiteView, unix_now};

use crate::store::StoreError;

/// Failures of the DHCP server itself (bad packets are not errors: they
/// are refused and reported as events).
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    /// A listening socket could not be set up.
    #[error("binding DHCP port {port} on interface {interface}: {source}")]
    Bind {
        /// The interface.
        interface: String,
        /// The port.
        port: u16,
        /// The OS error.
        source: std::io::Error,
    },
    /// The lease store failed.
    #[error("lease store: {0}")]
    Store(#[from] StoreError),
    /// A blocking store task died.
    #[error("lease store task failed: {0}")]
    StoreTask(String),
}

/// Parses, decides and encodes in one step, as the server does for each
/// datagram, without sockets. Returns the decision and the encoded reply,
/// if any. Used by the fuzz tests; handy for replaying captures.
pub fn handle_datagram(
    bytes: &[u8],
    ingress: &Ingress<'_>,
    site: &crate::site::Site,
    leases: &LeaseTable,
    now: u64,
) -> Result<(Decision, Option<Vec<u8>>), Refusal> {
    let req = parse_request(bytes)?;
    let decision = decide(&req, ingress, site, leases, now);
    let encoded = match &decision.outcome {
        Ok(reply) => encode(&reply.message).ok(),
        Err(_) => None,
    };
    Ok((decision, encoded))
}
