//! An [`AttestStore`] in memory: for tests, dry runs and a server that
//! accepts losing its enrollments on restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::store::{
    AttestStore, AttestStoreError, EnrollmentSession, IssuedNonce, NodeRecord, NonceUse,
    TimelineEntry,
};
use crate::attest::protocol::NodeId;

#[derive(Debug, Default)]
struct State {
    sessions: HashMap<Vec<u8>, EnrollmentSession>,
    nodes: BTreeMap<NodeId, NodeRecord>,
    /// Nonce → (issue, used).
    nonces: HashMap<Vec<u8>, (IssuedNonce, bool)>,
    timelines: HashMap<NodeId, Vec<TimelineEntry>>,
    /// (node, image) → the highest version attested.
    versions: HashMap<(NodeId, String), u64>,
}

/// Attestation state in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every operation below leaves the maps consistent at each step.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl AttestStore for MemoryStore {
    fn put_session(&self, session: &EnrollmentSession) -> Result<(), AttestStoreError> {
        self.state()
            .sessions
            .insert(session.id.clone(), session.clone());
        Ok(())
    }

    fn take_session(&self, id: &[u8]) -> Result<Option<EnrollmentSession>, AttestStoreError> {
        Ok(self.state().sessions.remove(id))
    }

    fn node(&self, node: &NodeId) -> Result<Option<NodeRecord>, AttestStoreError> {
        Ok(self.state().nodes.get(node).cloned())
    }

    fn node_with_ek(&self, ek_public: &[u8]) -> Result<Option<NodeId>, AttestStoreError> {
        Ok(self
            .state()
            .nodes
            .values()
            .find(|r| r.ek_public == ek_public)
            .map(|r| r.node.clone()))
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>, AttestStoreError> {
        Ok(self.state().nodes.values().cloned().collect())
    }

    fn put_node(&self, record: &NodeRecord) -> Result<(), AttestStoreError> {
        self.state()
            .nodes
            .insert(record.node.clone(), record.clone());
        Ok(())
    }

    fn put_nonce(&self, nonce: &IssuedNonce) -> Result<(), AttestStoreError> {
        self.state()
            .nonces
            .insert(nonce.nonce.clone(), (nonce.clone(), false));
        Ok(())
    }

    fn consume_nonce(&self, nonce: &[u8]) -> Result<NonceUse, AttestStoreError> {
        let mut state = self.state();
        Ok(match state.nonces.get_mut(nonce) {
            None => NonceUse::Unknown,
            Some((issued, true)) => NonceUse::Replayed(issued.clone()),
            Some((issued, used)) => {
                *used = true;
                NonceUse::Fresh(issued.clone())
            }
        })
    }

    fn append_timeline(
        &self,
        node: &NodeId,
        entry: &TimelineEntry,
    ) -> Result<(), AttestStoreError> {
        self.state()
            .timelines
            .entry(node.clone())
            .or_default()
            .push(entry.clone());
        Ok(())
    }

    fn timeline(&self, node: &NodeId) -> Result<Vec<TimelineEntry>, AttestStoreError> {
        Ok(self
            .state()
            .timelines
            .get(node)
            .cloned()
            .unwrap_or_default())
    }

    fn highest_version(&self, node: &NodeId, image: &str) -> Result<Option<u64>, AttestStoreError> {
        Ok(self
            .state()
            .versions
            .get(&(node.clone(), image.to_owned()))
            .copied())
    }

    fn record_version(
        &self,
        node: &NodeId,
        image: &str,
        version: u64,
    ) -> Result<(), AttestStoreError> {
        let mut state = self.state();
        let highest = state
            .versions
            .entry((node.clone(), image.to_owned()))
            .or_insert(version);
        *highest = (*highest).max(version);
        Ok(())
    }

    fn prune(&self, now: u64) -> Result<usize, AttestStoreError> {
        let mut state = self.state();
        let before = state.sessions.len() + state.nonces.len();
        state.sessions.retain(|_, s| s.expires_at >= now);
        state.nonces.retain(|_, (n, _)| n.expires_at >= now);
        Ok(before - state.sessions.len() - state.nonces.len())
    }
}
