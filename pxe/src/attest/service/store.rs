//! What the attestation service keeps: enrollment sessions, nodes (EK,
//! AK, approval, last TPM clock), nonces and each node's timeline, behind
//! [`AttestStore`] so a multi-server site can put them in PostgreSQL.
//!
//! Atomicity contract: [`AttestStore::take_session`] and
//! [`AttestStore::consume_nonce`] are single atomic steps, so two requests
//! racing with the same session or nonce cannot both win.

use std::path::PathBuf;

use crate::attest::protocol::NodeId;
use crate::attest::tpm::ClockInfo;

/// An open enrollment: the credential was sent, the answer is awaited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentSession {
    /// Random id sent in the challenge.
    pub id: Vec<u8>,
    /// The node enrolling.
    pub node: NodeId,
    /// The EK's TPMT_PUBLIC.
    pub ek_public: Vec<u8>,
    /// The AK's TPMT_PUBLIC.
    pub ak_public: Vec<u8>,
    /// SHA-256 of the secret sealed in the credential (the secret itself is
    /// never stored).
    pub secret_sha256: [u8; 32],
    /// What the node becomes once it activates.
    pub state: NodeState,
    /// Unix seconds after which the session is dead.
    pub expires_at: u64,
}

/// Where a node stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    /// Its EK is certified by a trusted CA, or an operator approved it.
    Enrolled,
    /// Waiting for an operator (`ironrack nodes approve`), with the reason.
    Pending {
        /// Why (no EK certificate, unknown CA).
        reason: String,
    },
    /// Blocked by an operator.
    Revoked,
}

impl NodeState {
    /// The stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            NodeState::Enrolled => "enrolled",
            NodeState::Pending { .. } => "pending",
            NodeState::Revoked => "revoked",
        }
    }

    /// Parses a stored name and reason.
    pub fn from_parts(name: &str, reason: Option<String>) -> Option<NodeState> {
        match name {
            "enrolled" => Some(NodeState::Enrolled),
            "pending" => Some(NodeState::Pending {
                reason: reason.unwrap_or_default(),
            }),
            "revoked" => Some(NodeState::Revoked),
            _ => None,
        }
    }

    /// The pending reason, if any.
    pub fn reason(&self) -> Option<&str> {
        match self {
            NodeState::Pending { reason } => Some(reason),
            _ => None,
        }
    }
}

/// An enrolled (or pending) node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// The node.
    pub node: NodeId,
    /// The EK's TPMT_PUBLIC.
    pub ek_public: Vec<u8>,
    /// The AK's TPMT_PUBLIC, bound to the EK by an activation.
    pub ak_public: Vec<u8>,
    /// Enrolled, pending or revoked.
    pub state: NodeState,
    /// Clock and counters of the last accepted quote.
    pub last_clock: Option<ClockInfo>,
}

/// A nonce handed to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedNonce {
    /// The nonce.
    pub nonce: Vec<u8>,
    /// Who asked for it.
    pub node: NodeId,
    /// Unix seconds after which it is refused.
    pub expires_at: u64,
}

/// What [`AttestStore::consume_nonce`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NonceUse {
    /// Never issued (or pruned long ago).
    Unknown,
    /// Issued and already used once.
    Replayed(IssuedNonce),
    /// Issued, unused until now; now marked used.
    Fresh(IssuedNonce),
}

/// One line of a node's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    /// Unix seconds.
    pub at: u64,
    /// `enrolled`, `attested`, `pending`, `refused`, `approved`, `revoked`.
    pub status: String,
    /// The refusal code, for refusals.
    pub code: Option<String>,
    /// The reason or detail.
    pub detail: String,
}

/// Attestation state.
pub trait AttestStore: Send + Sync + std::fmt::Debug {
    /// Stores an open enrollment.
    fn put_session(&self, session: &EnrollmentSession) -> Result<(), AttestStoreError>;
    /// Removes and returns the session `id`, if any.
    fn take_session(&self, id: &[u8]) -> Result<Option<EnrollmentSession>, AttestStoreError>;
    /// The node's record.
    fn node(&self, node: &NodeId) -> Result<Option<NodeRecord>, AttestStoreError>;
    /// The node enrolled with this EK (TPMT_PUBLIC bytes), if any.
    fn node_with_ek(&self, ek_public: &[u8]) -> Result<Option<NodeId>, AttestStoreError>;
    /// Every node, by id.
    fn nodes(&self) -> Result<Vec<NodeRecord>, AttestStoreError>;
    /// Stores (inserts or replaces) a node's record.
    fn put_node(&self, record: &NodeRecord) -> Result<(), AttestStoreError>;
    /// Stores a fresh nonce.
    fn put_nonce(&self, nonce: &IssuedNonce) -> Result<(), AttestStoreError>;
    /// Marks `nonce` used and says what it was before.
    fn consume_nonce(&self, nonce: &[u8]) -> Result<NonceUse, AttestStoreError>;
    /// Appends to a node's timeline.
    fn append_timeline(&self, node: &NodeId, entry: &TimelineEntry)
    -> Result<(), AttestStoreError>;
    /// A node's timeline, oldest first.
    fn timeline(&self, node: &NodeId) -> Result<Vec<TimelineEntry>, AttestStoreError>;
    /// The highest version of `image` the node was attested running.
    fn highest_version(&self, node: &NodeId, image: &str) -> Result<Option<u64>, AttestStoreError>;
    /// Records that the node was attested running `image` at `version`
    /// (the highest is kept).
    fn record_version(
        &self,
        node: &NodeId,
        image: &str,
        version: u64,
    ) -> Result<(), AttestStoreError>;
    /// Deletes sessions and nonces that expired before `now`; returns how
    /// many. A used nonce is kept until it expires, so a replay within its
    /// lifetime is told apart from a made-up nonce.
    fn prune(&self, now: u64) -> Result<usize, AttestStoreError>;
}

/// Store failures, naming the database and the operation.
#[derive(Debug, thiserror::Error)]
pub enum AttestStoreError {
    /// The database could not be opened or its schema prepared.
    #[error("opening attestation database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database has a newer attestation schema than this build knows.
    #[error(
        "attestation database {path} has schema version {found}; this ironrack knows up to {known}"
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// Version in the file.
        found: i64,
        /// Newest version known.
        known: i64,
    },
    /// A query or commit failed.
    #[error("attestation database {path}: {op}: {source}")]
    Query {
        /// The database file.
        path: PathBuf,
        /// What was being done (`storing node 52:54:00:..`).
        op: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored row does not parse.
    #[error("attestation database {path}: {table} row {key}: {why}")]
    BadRow {
        /// The database file.
        path: PathBuf,
        /// The table.
        table: &'static str,
        /// The row's key.
        key: String,
        /// What is wrong.
        why: String,
    },
}
