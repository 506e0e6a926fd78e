//! The real log edited the ways the attestation issue lists: each edit is
//! caught, either by replay (digests) or by the policy (what digests do
//! not cover).

use ironrack_pxe::attest::eventlog::{EventLog, EventLogError, EventType, PcrSelection, policy};

use super::support::{expected_pcrs, fixture_log};

fn pcr4_matches_the_tpm(log: &EventLog) -> bool {
    let expected = expected_pcrs()
        .into_iter()
        .find(|(p, _)| *p == 4)
        .unwrap()
        .1;
    log.replay()
        .unwrap()
        .sha256()
        .unwrap()
        .value(4)
        .unwrap()
        .to_hex()
        == expected
}

fn checked() -> PcrSelection {
    [0, 2, 4, 7, 9, 11, 12, 15].into_iter().collect()
}

#[test]
fn unknown_type_keeps_the_pcr_but_fails_the_policy() {
    let mut log = fixture_log();
    let app = log
        .events
        .iter()
        .position(|e| e.event_type == EventType::EFI_BOOT_SERVICES_APPLICATION)
        .unwrap();
    log.events[app].event_type = EventType(0x8000_7777);
    // The type is not covered by the digest: replay cannot see the edit...
    assert!(pcr4_matches_the_tpm(&log));
    // ...the registry can.
    match policy::check(&log, checked()) {
        Err(EventLogError::UnknownEventType {
            pcr: 4, event_type, ..
        }) => assert_eq!(event_type.0, 0x8000_7777),
        other => panic!("{other:?}"),
    }
    // In a PCR the policy does not check, the same event passes.
    policy::check(&log, [7].into_iter().collect()).unwrap();
}

#[test]
fn edited_action_string_fails_the_data_digest_check() {
    let mut log = fixture_log();
    let action = log
        .events
        .iter()
        .position(|e| e.event_type == EventType::EFI_ACTION && e.pcr == 4)
        .unwrap();
    log.events[action].data = b"Calling EFI Application from Boot Optiom".to_vec();
    assert!(pcr4_matches_the_tpm(&log));
    assert!(matches!(
        policy::check(&log, checked()),
        Err(EventLogError::DataDigestMismatch { pcr: 4, .. })
    ));
}

#[test]
fn edited_secure_boot_variable_fails_the_data_digest_check() {
    let mut log = fixture_log();
    let var = log
        .events
        .iter()
        .position(|e| e.event_type == EventType::EFI_VARIABLE_DRIVER_CONFIG)
        .unwrap();
    let last = log.events[var].data.len() - 1;
    log.events[var].data[last] ^= 1; // SecureBoot 0 → 1, digest unchanged
    assert!(matches!(
        policy::check(&log, checked()),
        Err(EventLogError::DataDigestMismatch { pcr: 7, .. })
    ));
}

#[test]
fn changed_digest_changes_the_replayed_pcr() {
    let mut log = fixture_log();
    let app = log
        .events
        .iter()
        .position(|e| e.event_type == EventType::EFI_BOOT_SERVICES_APPLICATION)
        .unwrap();
    let digest = &log.events[app].digests[0];
    let mut bytes = digest.as_bytes().to_vec();
    bytes[0] ^= 0x80;
    log.events[app].digests[0] =
        ironrack_pxe::attest::eventlog::Digest::from_slice(digest.algorithm(), &bytes).unwrap();
    assert!(!pcr4_matches_the_tpm(&log));
}

#[test]
fn reordered_events_change_the_replayed_pcr() {
    let mut log = fixture_log();
    let apps: Vec<usize> = log
        .events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.event_type == EventType::EFI_BOOT_SERVICES_APPLICATION)
        .map(|(i, _)| i)
        .collect();
    log.events.swap(apps[0], apps[3]);
    assert!(!pcr4_matches_the_tpm(&log));
}

#[test]
fn removed_event_changes_the_replayed_pcr() {
    let mut log = fixture_log();
    let app = log
        .events
        .iter()
        .rposition(|e| e.event_type == EventType::EFI_BOOT_SERVICES_APPLICATION)
        .unwrap();
    log.events.remove(app);
    assert!(!pcr4_matches_the_tpm(&log));
}
