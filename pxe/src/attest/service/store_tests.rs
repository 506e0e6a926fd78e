//! The store contract, run against both implementations.

use super::store::*;
use super::{MemoryStore, SqliteAttestStore};
use crate::attest::protocol::NodeId;
use crate::attest::tpm::ClockInfo;

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn contract(store: &dyn AttestStore) {
    let session = EnrollmentSession {
        id: vec![1; 16],
        node: id("n1"),
        ek_public: vec![2; 10],
        ak_public: vec![3; 10],
        secret_sha256: [4; 32],
        state: NodeState::Pending {
            reason: "no EK certificate".into(),
        },
        expires_at: 100,
    };
    store.put_session(&session).unwrap();
    assert_eq!(store.take_session(&[1; 16]).unwrap(), Some(session.clone()));
    assert_eq!(store.take_session(&[1; 16]).unwrap(), None, "taken once");

    let record = NodeRecord {
        node: id("n1"),
        ek_public: vec![2; 10],
        ak_public: vec![3; 10],
        state: NodeState::Enrolled,
        last_clock: Some(ClockInfo {
            clock: 5,
            reset_count: 6,
            restart_count: 7,
            safe: true,
        }),
    };
    store.put_node(&record).unwrap();

    // Versions: the highest per node and image is kept.
    assert_eq!(store.highest_version(&id("n1"), "gpu-node").unwrap(), None);
    for v in [3, 5, 4] {
        store.record_version(&id("n1"), "gpu-node", v).unwrap();
    }
    store.record_version(&id("n2"), "gpu-node", 9).unwrap();
    store.record_version(&id("n1"), "cpu-node", 1).unwrap();
    assert_eq!(
        store.highest_version(&id("n1"), "gpu-node").unwrap(),
        Some(5)
    );
    assert_eq!(
        store.highest_version(&id("n1"), "cpu-node").unwrap(),
        Some(1)
    );
    assert_eq!(store.node(&id("n1")).unwrap(), Some(record.clone()));
    assert_eq!(store.node_with_ek(&[2; 10]).unwrap(), Some(id("n1")));
    assert_eq!(store.node_with_ek(&[9; 10]).unwrap(), None);
    let revoked = NodeRecord {
        state: NodeState::Revoked,
        last_clock: None,
        ..record
    };
    store.put_node(&revoked).unwrap();
    assert_eq!(store.nodes().unwrap(), [revoked]);

    let nonce = IssuedNonce {
        nonce: vec![8; 32],
        node: id("n1"),
        expires_at: 50,
    };
    store.put_nonce(&nonce).unwrap();
    assert_eq!(
        store.consume_nonce(&[8; 32]).unwrap(),
        NonceUse::Fresh(nonce.clone())
    );
    assert_eq!(
        store.consume_nonce(&[8; 32]).unwrap(),
        NonceUse::Replayed(nonce)
    );
    assert_eq!(store.consume_nonce(&[9; 32]).unwrap(), NonceUse::Unknown);

    store.put_session(&session).unwrap();
    assert_eq!(
        store.prune(75).unwrap(),
        1,
        "the nonce expired, the session not"
    );
    assert_eq!(store.consume_nonce(&[8; 32]).unwrap(), NonceUse::Unknown);
    assert_eq!(store.prune(101).unwrap(), 1);

    let entry = TimelineEntry {
        at: 9,
        status: "refused".into(),
        code: Some("nonce-replayed".into()),
        detail: "nonce was already used".into(),
    };
    store.append_timeline(&id("n1"), &entry).unwrap();
    assert_eq!(store.timeline(&id("n1")).unwrap(), [entry]);
    assert!(store.timeline(&id("n2")).unwrap().is_empty());
}

#[test]
fn memory_store_keeps_the_contract() {
    contract(&MemoryStore::new());
}

#[test]
fn sqlite_store_keeps_the_contract_and_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("attest.db");
    contract(&SqliteAttestStore::open(&path).unwrap());
    let reopened = SqliteAttestStore::open(&path).unwrap();
    assert_eq!(reopened.nodes().unwrap().len(), 1);
    assert_eq!(reopened.timeline(&id("n1")).unwrap().len(), 1);
}

#[test]
fn sqlite_shares_a_file_with_the_lease_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    crate::store::SqliteStore::open(&path).unwrap();
    contract(&SqliteAttestStore::open(&path).unwrap());
    crate::store::SqliteStore::open(&path).unwrap();
}
