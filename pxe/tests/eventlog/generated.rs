//! Logs made by the generator: identical bytes for the real log's events,
//! StartupLocality, several banks, and the builder's refusals.

use ironrack_pxe::attest::eventlog::{
    AlgorithmId, DevicePath, Digest, EventLog, EventLogBuilder, EventLogError, EventType,
    ImageLoadEvent,
};
use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha384, Sha512};

use super::support::{fixture_bytes, fixture_log};

/// PCR_Extend computed straight with the hash crates, not the code under test.
fn fold<H: sha2::Digest>(initial: Vec<u8>, digests: &[Vec<u8>]) -> Vec<u8> {
    digests.iter().fold(initial, |pcr, d| {
        let mut h = H::new();
        h.update(&pcr);
        h.update(d);
        h.finalize().to_vec()
    })
}

#[test]
fn generator_rewrites_the_real_log_byte_for_byte() {
    let real = fixture_log();
    let mut builder = EventLogBuilder::sha256();
    for event in &real.events {
        builder.event_with_digests(
            event.pcr,
            event.event_type,
            &event.digests,
            event.data.clone(),
        );
    }
    let built = builder.build().unwrap();
    assert_eq!(built, real, "same events, same offsets");
    assert_eq!(built.to_bytes(), fixture_bytes());
}

#[test]
fn startup_locality_sets_pcr0_initial_value() {
    let mut builder = EventLogBuilder::sha256();
    builder
        .startup_locality(3)
        .event(0, EventType::S_CRTM_VERSION, vec![0, 0])
        .separator(0);
    let log = EventLog::parse(&builder.to_bytes().unwrap()).unwrap();
    let banks = log.replay().unwrap();
    let mut initial = vec![0u8; 32];
    initial[31] = 3;
    let expected = fold::<Sha256>(
        initial,
        &[
            Sha256::digest([0, 0]).to_vec(),
            Sha256::digest([0u8; 4]).to_vec(),
        ],
    );
    assert_eq!(
        banks.sha256().unwrap().value(0).unwrap().as_bytes(),
        expected
    );
    // Without the locality event, the same events give another PCR 0.
    let mut plain = EventLogBuilder::sha256();
    plain
        .event(0, EventType::S_CRTM_VERSION, vec![0, 0])
        .separator(0);
    assert_ne!(
        plain
            .build()
            .unwrap()
            .replay()
            .unwrap()
            .sha256()
            .unwrap()
            .value(0),
        banks.sha256().unwrap().value(0)
    );
}

#[test]
fn startup_locality_after_pcr0_was_extended_is_refused() {
    let mut builder = EventLogBuilder::sha256();
    builder.separator(0).startup_locality(3);
    assert!(matches!(
        builder.build().unwrap().replay(),
        Err(EventLogError::LateStartupLocality { index: 1 })
    ));
}

#[test]
fn every_bank_is_replayed() {
    let algs = [
        AlgorithmId::SHA1,
        AlgorithmId::SHA256,
        AlgorithmId::SHA384,
        AlgorithmId::SHA512,
    ];
    let mut builder = EventLogBuilder::new(&algs).unwrap();
    let events: [(u32, &[u8]); 4] = [(4, b"one"), (4, b"two"), (7, b"three"), (17, b"dynamic")];
    for (pcr, data) in events {
        builder.event(pcr, EventType::EFI_ACTION, data);
    }
    let log = EventLog::parse(&builder.to_bytes().unwrap()).unwrap();
    let banks = log.replay().unwrap();
    let of = |pcr: u32, h: fn(&[u8]) -> Vec<u8>| -> Vec<Vec<u8>> {
        events
            .iter()
            .filter(|(p, _)| *p == pcr)
            .map(|(_, d)| h(d))
            .collect()
    };
    let sha1 = |d: &[u8]| Sha1::digest(d).to_vec();
    let sha384 = |d: &[u8]| Sha384::digest(d).to_vec();
    let sha512 = |d: &[u8]| Sha512::digest(d).to_vec();
    let value = |alg, pcr| {
        banks
            .bank(alg)
            .unwrap()
            .value(pcr)
            .unwrap()
            .as_bytes()
            .to_vec()
    };
    assert_eq!(
        value(AlgorithmId::SHA1, 4),
        fold::<Sha1>(vec![0; 20], &of(4, sha1))
    );
    assert_eq!(
        value(AlgorithmId::SHA384, 7),
        fold::<Sha384>(vec![0; 48], &of(7, sha384))
    );
    // PCRs 17-22 start at all ones.
    assert_eq!(
        value(AlgorithmId::SHA512, 17),
        fold::<Sha512>(vec![0xFF; 64], &of(17, sha512))
    );
    assert_eq!(value(AlgorithmId::SHA256, 5), vec![0; 32]);
    assert!(!banks.sha256().unwrap().extended().contains(5));
}

#[test]
fn a_bank_digest_missing_from_an_event_stops_replay() {
    let mut builder = EventLogBuilder::new(&[AlgorithmId::SHA1, AlgorithmId::SHA256]).unwrap();
    builder.efi_action(4, "ok");
    let mut log = builder.build().unwrap();
    log.events[0]
        .digests
        .retain(|d| d.algorithm() == AlgorithmId::SHA256);
    let reparsed = EventLog::parse(&log.to_bytes()).unwrap();
    assert!(matches!(
        reparsed.replay(),
        Err(EventLogError::MissingDigest {
            alg: AlgorithmId::SHA1,
            ..
        })
    ));
}

#[test]
fn builder_refuses_what_the_format_cannot_hold() {
    let mut bad_pcr = EventLogBuilder::sha256();
    bad_pcr.efi_action(24, "x");
    assert!(matches!(bad_pcr.build(), Err(EventLogError::Build { .. })));

    let mut missing_bank = EventLogBuilder::new(&[AlgorithmId::SHA1, AlgorithmId::SHA256]).unwrap();
    let only_sha256 = AlgorithmId::SHA256.hash(b"x").unwrap();
    missing_bank.event_with_digests(4, EventType::EFI_ACTION, &[only_sha256], b"x".to_vec());
    assert!(missing_bank.build().is_err());

    assert!(EventLogBuilder::new(&[AlgorithmId::SM3_256]).is_err());
    assert!(EventLogBuilder::new(&[]).is_err());
}

#[test]
fn boot_application_event_round_trips_in_64_and_32_bit_layouts() {
    let name: Vec<u8> = "snponly.efi\0"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let image = ImageLoadEvent {
        location: 0x3e15_5018,
        length: 0x2a6e0,
        link_time_address: 0,
        device_path: DevicePath::from_nodes(&[(4, 4, &name)]),
    };
    let authenticode = Digest::from_slice(AlgorithmId::SHA256, &[0xEA; 32]).unwrap();
    let mut builder = EventLogBuilder::sha256();
    builder.boot_application(&[authenticode], &image);
    let log = EventLog::parse(&builder.to_bytes().unwrap()).unwrap();
    match log.decode(&log.events[0]).unwrap() {
        ironrack_pxe::attest::eventlog::EventData::ImageLoad(decoded) => assert_eq!(decoded, image),
        other => panic!("{other:?}"),
    }
    let bytes32 = image.to_bytes(4);
    assert_eq!(
        bytes32.len(),
        8 + 3 * 4 + image.device_path.as_bytes().len()
    );
    let decoded = ironrack_pxe::attest::eventlog::EventData::decode(
        EventType::EFI_BOOT_SERVICES_APPLICATION,
        &bytes32,
        4,
    )
    .unwrap();
    assert_eq!(
        decoded,
        ironrack_pxe::attest::eventlog::EventData::ImageLoad(image)
    );
}
