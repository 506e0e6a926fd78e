//! Property tests: the parser, the typed decoders, replay and the policy
//! never panic on arbitrary or mutated bytes, hostile counts and sizes are
//! errors (not allocations), and whatever parses writes back identically.

use ironrack_pxe::attest::eventlog::{
    AlgorithmId, EventLog, EventLogBuilder, EventLogError, EventType, PcrSelection, policy,
};
use proptest::prelude::*;
use sha2::{Digest as _, Sha256};

use super::support::fixture_bytes;

/// Runs everything a verifier runs on untrusted bytes.
fn exercise(bytes: &[u8]) {
    let Ok(log) = EventLog::parse(bytes) else {
        return;
    };
    assert_eq!(
        log.to_bytes(),
        bytes,
        "a parsed log writes back to the same bytes"
    );
    for event in &log.events {
        let _ = log.decode(event);
    }
    let _ = log.replay();
    let _ = policy::check(&log, PcrSelection::range(0..24));
}

fn header() -> Vec<u8> {
    EventLogBuilder::new(&[AlgorithmId::SHA1, AlgorithmId::SHA256])
        .unwrap()
        .to_bytes()
        .unwrap()
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Truncate { at: usize },
    PutU32 { at: usize, value: u32 },
    Insert { at: usize, bytes: Vec<u8> },
    Delete { at: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let big = prop_oneof![
        Just(u32::MAX),
        Just(0x8000_0000u32),
        Just(0x0001_0000u32),
        Just(0u32),
        any::<u32>()
    ];
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), big).prop_map(|(at, value)| Mutation::PutU32 { at, value }),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Delete { at, len }),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let len = bytes.len();
    match m {
        Mutation::Flip { at, mask } => bytes[at % len] ^= mask,
        Mutation::Truncate { at } => bytes.truncate(at % len),
        Mutation::PutU32 { at, value } => {
            let at = at % len;
            for (i, b) in value.to_le_bytes().into_iter().enumerate() {
                if let Some(slot) = bytes.get_mut(at + i) {
                    *slot = b;
                }
            }
        }
        Mutation::Insert { at, bytes: new } => {
            let at = at % len;
            bytes.splice(at..at, new.iter().copied());
        }
        Mutation::Delete { at, len: n } => {
            let at = at % len;
            bytes.drain(at..(at + n).min(len));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        exercise(&bytes);
    }

    #[test]
    fn arbitrary_events_after_a_valid_header_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let mut bytes = header();
        bytes.extend_from_slice(&tail);
        exercise(&bytes);
    }

    #[test]
    fn mutated_real_log_never_panics(mutations in proptest::collection::vec(mutation(), 1..6)) {
        let mut bytes = fixture_bytes();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        exercise(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn generated_logs_round_trip_and_replay(
        events in proptest::collection::vec(
            (0u32..24, prop_oneof![Just(EventType::EFI_ACTION), Just(EventType::IPL), any::<u32>().prop_map(EventType)],
             proptest::collection::vec(any::<u8>(), 0..48)),
            0..24),
        with_sha1 in any::<bool>(),
    ) {
        let algs: &[AlgorithmId] =
            if with_sha1 { &[AlgorithmId::SHA1, AlgorithmId::SHA256] } else { &[AlgorithmId::SHA256] };
        let mut builder = EventLogBuilder::new(algs).unwrap();
        for (pcr, ty, data) in &events {
            builder.event(*pcr, *ty, data.clone());
        }
        let built = builder.build().unwrap();
        let parsed = EventLog::parse(&built.to_bytes()).unwrap();
        prop_assert_eq!(&parsed, &built);
        let banks = parsed.replay().unwrap();
        for pcr in 0..24u32 {
            let initial = if (17..=22).contains(&pcr) { [0xFF; 32] } else { [0; 32] };
            let expected = events
                .iter()
                .filter(|(p, ty, _)| *p == pcr && *ty != EventType::NO_ACTION)
                .fold(initial.to_vec(), |acc, (_, _, d)| {
                    Sha256::new().chain_update(&acc).chain_update(Sha256::digest(d)).finalize().to_vec()
                });
            prop_assert_eq!(banks.sha256().unwrap().value(pcr).unwrap().as_bytes(), expected.as_slice());
        }
    }
}

fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn hostile_counts_and_sizes_are_errors() {
    let mut builder = EventLogBuilder::sha256();
    builder.efi_action(4, "x");
    let good = builder.to_bytes().unwrap();
    let header_len = good.len() - (12 + 2 + 32 + 4 + 1);

    // numberOfAlgorithms in the Spec ID header (after 32 + 16 + 4 + 4 bytes).
    let mut many_banks = good.clone();
    put_u32(&mut many_banks, 32 + 16 + 8, u32::MAX);
    assert!(matches!(
        EventLog::parse(&many_banks),
        Err(EventLogError::BadSpecId { .. })
    ));

    let mut many_digests = good.clone();
    put_u32(&mut many_digests, header_len + 8, u32::MAX);
    assert!(matches!(
        EventLog::parse(&many_digests),
        Err(EventLogError::DigestCount { .. })
    ));

    let mut huge_event = good.clone();
    put_u32(&mut huge_event, header_len + 12 + 2 + 32, u32::MAX);
    assert!(matches!(
        EventLog::parse(&huge_event),
        Err(EventLogError::Truncated { .. })
    ));

    let mut huge_header = good.clone();
    put_u32(&mut huge_header, 28, u32::MAX);
    assert!(matches!(
        EventLog::parse(&huge_header),
        Err(EventLogError::Truncated { .. })
    ));

    let mut bad_size = good;
    // SHA-256 declared with a 64-byte digest.
    put_u32(
        &mut bad_size,
        32 + 16 + 12,
        u32::from_le_bytes([0x0B, 0, 64, 0]),
    );
    assert!(matches!(
        EventLog::parse(&bad_size),
        Err(EventLogError::BadSpecId { .. })
    ));
}

#[test]
fn empty_and_legacy_logs_are_refused() {
    assert!(EventLog::parse(&[]).is_err());
    let mut legacy = header();
    legacy[32 + 14] = b'0'; // "Spec ID Event00"
    assert!(matches!(
        EventLog::parse(&legacy),
        Err(EventLogError::NotCryptoAgile { .. })
    ));
}
