//! The real log of an OVMF → iPXE → UKI boot with swtpm.

use ironrack_pxe::attest::eventlog::{
    AlgorithmId, EventData, EventLog, EventType, PcrSelection, policy,
};

use super::support::{expected_authenticode, expected_pcrs, fixture_bytes, fixture_log};

#[test]
fn replay_reproduces_every_pcr_the_tpm_reported() {
    let log = fixture_log();
    let banks = log.replay().unwrap();
    assert!(banks.skipped.is_empty());
    let sha256 = banks.sha256().expect("swtpm's SHA-256 bank");
    let expected = expected_pcrs();
    assert_eq!(expected.len(), 10, "INDEX.md lists ten PCRs");
    for (pcr, value) in expected {
        assert_eq!(sha256.value(pcr).unwrap().to_hex(), value, "PCR {pcr}");
    }
}

#[test]
fn pcr4_applications_are_the_three_authenticode_digests() {
    let log = fixture_log();
    let apps: Vec<String> = log
        .events_in(4)
        .filter(|e| e.event_type == EventType::EFI_BOOT_SERVICES_APPLICATION)
        .map(|e| e.digest(AlgorithmId::SHA256).unwrap().to_hex())
        .collect();
    let mut distinct = apps.clone();
    distinct.dedup();
    let expected: Vec<String> = expected_authenticode()
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    assert_eq!(expected.len(), 3);
    // snponly.efi, node.efi (probed by iPXE, then started), the kernel.
    assert_eq!(distinct, expected);
    assert_eq!(apps.len(), 4);
}

#[test]
fn image_load_events_name_where_the_images_came_from() {
    let log = fixture_log();
    let paths: Vec<String> = log
        .events_in(4)
        .filter(|e| e.event_type == EventType::EFI_BOOT_SERVICES_APPLICATION)
        .map(|e| match log.decode(e).unwrap() {
            EventData::ImageLoad(image) => {
                assert!(image.length > 0);
                image.device_path.to_string()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(
        paths[0].starts_with("PciRoot(0x0)/Pci(0x2,0x0)/MAC(525400123456,0x1)"),
        "{}",
        paths[0]
    );
    assert_eq!(
        paths[1], "",
        "iPXE's probe loads node.efi with an empty path"
    );
    assert!(
        paths[3].starts_with("VenMedia("),
        "systemd-stub loads the kernel from memory: {}",
        paths[3]
    );
}

#[test]
fn every_event_decodes_and_passes_the_policy_over_all_pcrs() {
    let log = fixture_log();
    for event in &log.events {
        log.decode(event).unwrap_or_else(|e| panic!("{e}"));
    }
    policy::check(&log, PcrSelection::range(0..24)).unwrap();
}

#[test]
fn typed_data_of_the_real_log() {
    let log = fixture_log();
    let texts: Vec<String> = log
        .events_in(11)
        .map(|e| match log.decode(e).unwrap() {
            EventData::Text(text) => text.as_str().unwrap().to_owned(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        texts,
        [
            ".linux", ".linux", ".osrel", ".osrel", ".cmdline", ".cmdline", ".initrd", ".initrd"
        ]
    );
    let secure_boot = log
        .events_in(7)
        .find_map(|e| match log.decode(e).unwrap() {
            EventData::Variable(v) if v.name == "SecureBoot" => Some(v),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        secure_boot.vendor.to_string(),
        "8be4df61-93ca-11d2-aa0d-00e098032b8c"
    );
    assert_eq!(
        secure_boot.data,
        [0],
        "the capture was taken with Secure Boot off"
    );
    let tags: Vec<u32> = log
        .events_in(9)
        .map(|e| match log.decode(e).unwrap() {
            EventData::Tagged(t) => t.id,
            other => panic!("{other:?}"),
        })
        .collect();
    // The Linux EFI stub's LoadOptions and initrd tags.
    assert_eq!(tags, [0x8F3B_22ED, 0x8F3B_22EC]);
}

#[test]
fn writing_the_parsed_log_gives_back_the_same_bytes() {
    let bytes = fixture_bytes();
    assert_eq!(EventLog::parse(&bytes).unwrap().to_bytes(), bytes);
}
