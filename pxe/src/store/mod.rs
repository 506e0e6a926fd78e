//! Persistent state of the PXE service, behind traits so that a site with
//! several servers can move from the embedded SQLite store to PostgreSQL.
//!
//! [`Store`] is the whole state; each kind of record gets its own accessor
//! trait ([`LeaseStore`], [`InventoryStore`] for nodes, boot timelines and
//! image status), so a backend implements them one by one and callers ask
//! only for what they use.
//!
//! Durability contract: when a `put` returns `Ok`, the record survives a
//! crash of the process and of the machine. The DHCP server sends an ACK
//! only after that, so no client ever holds an address the server has
//! forgotten.

mod inventory;
mod sqlite;

use std::net::Ipv4Addr;
use std::path::PathBuf;

pub use inventory::{
    Approval, ImageStatus, InventoryStore, NodeEvent, NodeRecord, node_state_after,
};
pub use sqlite::SqliteStore;
pub(crate) use sqlite::{connect_read_only, tune};

use crate::site::MacAddr;

/// What a lease record says about its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Acknowledged to the client, valid until `expires_at`.
    Bound,
    /// A client declined the address (RFC 2131 DHCPDECLINE: something else
    /// answers on it); not handed out again until `expires_at`.
    Declined,
}

impl LeaseState {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Bound => "bound",
            LeaseState::Declined => "declined",
        }
    }

    /// Parses a stored name.
    pub fn from_name(name: &str) -> Option<LeaseState> {
        match name {
            "bound" => Some(LeaseState::Bound),
            "declined" => Some(LeaseState::Declined),
            _ => None,
        }
    }
}

/// One address held by one client. At most one record per address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The address.
    pub ip: Ipv4Addr,
    /// The client holding (or having declined) it.
    pub mac: MacAddr,
    /// Bound or declined.
    pub state: LeaseState,
    /// End of validity, seconds since the Unix epoch.
    pub expires_at: u64,
    /// The node's host name when the site knows it, for inventories.
    pub hostname: Option<String>,
}

impl Lease {
    /// Whether the record still holds its address at `now`.
    pub fn is_active(&self, now: u64) -> bool {
        self.expires_at > now
    }
}

/// Lease records.
pub trait LeaseStore: Send + Sync {
    /// Every stored record, expired ones included.
    fn all_leases(&self) -> Result<Vec<Lease>, StoreError>;
    /// Stores `lease`, replacing any record for its address and any other
    /// bound record of the same MAC (a client holds one address). Durable
    /// when it returns.
    fn put_lease(&self, lease: &Lease) -> Result<(), StoreError>;
    /// Forgets the record for `ip`, if any.
    fn remove_lease(&self, ip: Ipv4Addr) -> Result<(), StoreError>;
    /// Deletes records that expired before `now`; returns how many.
    fn prune_leases(&self, now: u64) -> Result<usize, StoreError>;
}

/// The service's persistent state.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Lease records.
    fn leases(&self) -> &dyn LeaseStore;
    /// Nodes, boot timelines, image status.
    fn inventory(&self) -> &dyn InventoryStore;
}

/// Store failures, naming the database and the operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or prepared.
    #[error("opening state database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer ironrack.
    #[error("state database {path} has schema version {found}; this ironrack knows up to {known}")]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// Version in the file.
        found: i64,
        /// Newest version this build knows.
        known: i64,
    },
    /// A query or a commit failed.
    #[error("state database {path}: {op}: {source}")]
    Query {
        /// The database file.
        path: PathBuf,
        /// What was being done (`storing lease 198.18.0.11`).
        op: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A stored row does not parse (edited by hand, or corrupted).
    #[error("state database {path}: row {row}: {why}")]
    BadRow {
        /// The database file.
        path: PathBuf,
        /// The row's address column.
        row: String,
        /// What is wrong.
        why: String,
    },
}
