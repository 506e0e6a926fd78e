//! The agent measurement log: what the server accepts and what it refuses.

use ironrack_pxe::attest::eventlog::agent::{AGENT_PCR, AGENT_TAG_ID, AgentLog, AgentMeasurement};
use ironrack_pxe::attest::eventlog::{
    AlgorithmId, EventLog, EventLogBuilder, EventLogError, EventType, PcrSelection, TaggedEvent,
    policy,
};
use sha2::{Digest as _, Sha256};

fn manifest_and_rootfs() -> ([u8; 32], [u8; 32]) {
    (
        Sha256::digest(b"{\"version\":7}").into(),
        Sha256::digest(b"squashfs image bytes").into(),
    )
}

fn gpus() -> [u8; 32] {
    Sha256::digest(b"{\"devices\":[]}").into()
}

#[test]
fn server_prediction_matches_the_replayed_agent_log() {
    let (manifest, rootfs) = manifest_and_rootfs();
    let mut agent = AgentLog::new();
    agent.record(AgentMeasurement::Manifest, manifest);
    agent.record(AgentMeasurement::Rootfs, rootfs);
    agent.record(AgentMeasurement::Gpus, gpus());
    let bytes = agent.to_bytes();

    // Server side: the same parser, replay and policy as for firmware logs.
    let log = EventLog::parse(&bytes).unwrap();
    policy::check(&log, PcrSelection::range(0..24)).unwrap();
    let replayed = log.replay().unwrap();
    let pcr15 = replayed
        .sha256()
        .unwrap()
        .value(AGENT_PCR)
        .unwrap()
        .as_bytes()
        .to_vec();

    let mut independent = [0u8; 32].to_vec();
    for digest in [manifest, rootfs, gpus()] {
        independent = Sha256::new()
            .chain_update(&independent)
            .chain_update(digest)
            .finalize()
            .to_vec();
    }
    assert_eq!(pcr15, independent);
    assert_eq!(
        AgentLog::expected(manifest, rootfs, gpus())
            .pcr_value()
            .to_vec(),
        independent
    );
    assert_eq!(
        AgentLog::parse(&bytes).unwrap(),
        AgentLog::expected(manifest, rootfs, gpus())
    );
}

#[test]
fn order_matters() {
    let (manifest, rootfs) = manifest_and_rootfs();
    let mut swapped = AgentLog::new();
    swapped.record(AgentMeasurement::Rootfs, rootfs);
    swapped.record(AgentMeasurement::Manifest, manifest);
    swapped.record(AgentMeasurement::Gpus, gpus());
    assert_ne!(
        swapped.pcr_value(),
        AgentLog::expected(manifest, rootfs, gpus()).pcr_value()
    );
}

fn tagged(id: u32, label: &[u8]) -> Vec<u8> {
    TaggedEvent {
        id,
        data: label.to_vec(),
    }
    .to_bytes()
}

#[test]
fn logs_the_agent_would_not_write_are_refused() {
    let digest = AlgorithmId::SHA256.hash(b"artifact").unwrap();
    let cases: Vec<(&str, EventLogBuilder)> = vec![
        ("other PCR", {
            let mut b = EventLogBuilder::sha256();
            b.event_with_digests(
                14,
                EventType::EVENT_TAG,
                &[digest],
                tagged(AGENT_TAG_ID, b"rootfs"),
            );
            b
        }),
        ("other type", {
            let mut b = EventLogBuilder::sha256();
            b.event_with_digests(
                AGENT_PCR,
                EventType::IPL,
                &[digest],
                tagged(AGENT_TAG_ID, b"rootfs"),
            );
            b
        }),
        ("other tag", {
            let mut b = EventLogBuilder::sha256();
            b.event_with_digests(
                AGENT_PCR,
                EventType::EVENT_TAG,
                &[digest],
                tagged(0x8F3B_22ED, b"rootfs"),
            );
            b
        }),
        ("unknown label", {
            let mut b = EventLogBuilder::sha256();
            b.event_with_digests(
                AGENT_PCR,
                EventType::EVENT_TAG,
                &[digest],
                tagged(AGENT_TAG_ID, b"kernel"),
            );
            b
        }),
        ("extra bank", {
            let mut b = EventLogBuilder::new(&[AlgorithmId::SHA1, AlgorithmId::SHA256]).unwrap();
            b.event(
                AGENT_PCR,
                EventType::EVENT_TAG,
                tagged(AGENT_TAG_ID, b"rootfs"),
            );
            b
        }),
    ];
    for (case, builder) in cases {
        let bytes = builder.to_bytes().unwrap();
        assert!(
            matches!(AgentLog::parse(&bytes), Err(EventLogError::AgentLog { .. })),
            "{case}"
        );
    }
}
