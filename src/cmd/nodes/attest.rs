//! The attestation side of `ironrack nodes`: each node's attestation state
//! and verdicts, read from the attestation tables of the same state
//! database, and `revoke`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use ironrack_pxe::attest::protocol::NodeId;
use ironrack_pxe::attest::service::{
    AttestConfig, AttestService, AttestStore, ImageSet, NodeRecord, NodeState, SqliteAttestStore,
    TimelineEntry,
};

/// Opens the attestation tables: read-only (`None` when no server created
/// them yet), or read-write (created as the server would).
pub(super) fn open(db: &Path, write: bool) -> anyhow::Result<Option<SqliteAttestStore>> {
    if write {
        return SqliteAttestStore::open(db)
            .map(Some)
            .with_context(|| format!("opening the attestation tables of {}", db.display()));
    }
    SqliteAttestStore::open_read_only(db).context("opening the attestation tables")
}

/// A node as the attestation service knows it, with its verdicts.
pub(super) struct Attestation {
    pub record: NodeRecord,
    pub timeline: Vec<TimelineEntry>,
}

/// The first of `ids` (a node's MAC, its host name) the service knows.
pub(super) fn find(
    store: Option<&SqliteAttestStore>,
    ids: &[String],
) -> anyhow::Result<Option<Attestation>> {
    let Some(store) = store else { return Ok(None) };
    for id in ids {
        let Ok(node) = NodeId::new(id) else { continue };
        if let Some(record) = store
            .node(&node)
            .context("reading the attestation record")?
        {
            let timeline = store
                .timeline(&node)
                .context("reading the attestation timeline")?;
            return Ok(Some(Attestation { record, timeline }));
        }
    }
    Ok(None)
}

impl Attestation {
    /// The last verdict (or operator action) with its code.
    fn last(&self) -> Option<&TimelineEntry> {
        self.timeline.last()
    }

    /// One cell for `nodes list`: revoked, else the last verdict
    /// (`refused (code)`), else the enrollment state.
    pub fn cell(&self) -> String {
        if self.record.state == NodeState::Revoked {
            return "revoked".into();
        }
        match self.last() {
            Some(e) => match &e.code {
                Some(code) => format!("{} ({code})", e.status),
                None => e.status.clone(),
            },
            None => self.record.state.as_str().into(),
        }
    }

    /// The lines `nodes show` prints.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "attestation: {}{}",
            self.record.state.as_str(),
            self.record
                .state
                .reason()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )];
        if let Some(last) = self.last() {
            out.push(format!("last verdict: {}", entry_text(last)));
        }
        for e in &self.timeline {
            out.push(format!("  {:>10}  {}", e.at, entry_text(e)));
        }
        out
    }

    /// The JSON `nodes show --json` and `nodes list --json` carry.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "node": self.record.node.as_str(),
            "state": self.record.state.as_str(),
            "reason": self.record.state.reason(),
            "verdicts": self.timeline.iter().map(|e| serde_json::json!({
                "at": e.at,
                "status": e.status,
                "code": e.code,
                "detail": e.detail,
            })).collect::<Vec<_>>(),
        })
    }
}

fn entry_text(e: &TimelineEntry) -> String {
    let code = e
        .code
        .as_deref()
        .map(|c| format!(" [{c}]"))
        .unwrap_or_default();
    if e.detail.is_empty() {
        format!("{}{code}", e.status)
    } else {
        format!("{}{code}: {}", e.status, e.detail)
    }
}

/// The service over `store`, for operator actions (no image is judged).
fn service(store: SqliteAttestStore) -> AttestService {
    AttestService::new(
        Arc::new(store) as Arc<dyn AttestStore>,
        Arc::new(ImageSet::new()),
        AttestConfig::new(Default::default()),
    )
}

/// Blocks the node for good: no nonce, quote or enrollment succeeds.
pub(super) fn revoke(store: SqliteAttestStore, node: &NodeId) -> anyhow::Result<()> {
    service(store)
        .revoke(node)
        .with_context(|| format!("revoking node {node}"))
}

/// Approves a node the service holds as pending (EK without a trusted
/// certificate). Returns whether it was pending.
pub(super) fn approve(store: SqliteAttestStore, node: &NodeId) -> anyhow::Result<bool> {
    let pending = store
        .node(node)
        .context("reading the attestation record")?
        .is_some_and(|r| matches!(r.state, NodeState::Pending { .. }));
    if pending {
        service(store)
            .approve(node)
            .with_context(|| format!("approving node {node} for attestation"))?;
    }
    Ok(pending)
}
