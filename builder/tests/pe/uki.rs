//! UKI predictions: PCR 11 (systemd-stub 252's sections), PCR 12 (the
//! command line iPXE passes) and PCR 9 (the Linux EFI stub), checked against
//! the real event log of the fixture boot and independent arithmetic.

use ironrack_builder::boot::measure::{
    MeasureError, SYSTEMD_STUB_252, ipxe_load_options, predict_pcr9_linux, predict_pcr11,
    predict_pcr12, replay_sha256,
};
use ironrack_builder::boot::pe::PeImage;
use ironrack_builder::boot::pe_fixture::{FixtureSection, PeFixture};
use ironrack_pxe::attest::eventlog::{AlgorithmId, EventData};
use sha2::{Digest as _, Sha256};

use super::support::{expected_pcr, fixture_log};

fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

fn log_digests(pcr: u32) -> Vec<[u8; 32]> {
    fixture_log()
        .events_in(pcr)
        .map(|e| {
            e.digest(AlgorithmId::SHA256)
                .unwrap()
                .as_bytes()
                .try_into()
                .unwrap()
        })
        .collect()
}

/// The fixture boot's command line, as the iPXE script passed it
/// (`chain tftp://…/node.efi console=ttyS0 panic=-1`, INDEX.md).
fn fixture_load_options() -> String {
    ipxe_load_options("node.efi", "console=ttyS0 panic=-1")
}

#[test]
fn pcr12_prediction_reproduces_the_tpm() {
    let prediction = predict_pcr12(&fixture_load_options(), false, true);
    assert_eq!(hex::encode(prediction.value), expected_pcr(12));

    // The log agrees on how: one EV_IPL whose data is the measured string,
    // UTF-16LE with its terminating NUL.
    let log = fixture_log();
    let event = log.events_in(12).next().unwrap();
    assert_eq!(event.data, prediction.measured.clone().unwrap());
    assert_eq!(
        event.digest(AlgorithmId::SHA256).unwrap().as_bytes(),
        prediction.digest.unwrap()
    );
    let without_nul = &event.data[..event.data.len() - 2];
    assert_ne!(
        sha256(without_nul),
        prediction.digest.unwrap(),
        "the NUL is part of the measurement"
    );
}

#[test]
fn pcr12_depends_on_the_command_line_and_secure_boot() {
    let fixture = predict_pcr12(&fixture_load_options(), false, true).value;
    assert_ne!(
        predict_pcr12("node.efi console=ttyS0", false, true).value,
        fixture
    );
    // What a script saying only `chain node.efi` would give (facts.md).
    assert_ne!(predict_pcr12("node.efi", false, true).value, fixture);
    // Trailing whitespace is chomped by the stub before measuring.
    assert_eq!(
        predict_pcr12(&format!("{} \t", fixture_load_options()), false, true).value,
        fixture
    );
    // Secure Boot with an embedded .cmdline: LoadOptions ignored, PCR 12 untouched.
    assert_eq!(
        predict_pcr12(&fixture_load_options(), true, true).value,
        [0; 32]
    );
}

#[test]
fn pcr9_prediction_reproduces_the_tpm() {
    // The Linux EFI stub measures the load options systemd-stub hands it
    // (the PCR 12 bytes) and then the initrd (the .initrd section's data
    // digest, the last PCR 11 event).
    let cmdline = predict_pcr12(&fixture_load_options(), false, true).digest;
    let initrd = *log_digests(11).last().unwrap();
    assert_eq!(
        hex::encode(predict_pcr9_linux(cmdline, Some(initrd))),
        expected_pcr(9)
    );
}

#[test]
fn pcr11_section_names_are_measured_with_their_nul() {
    let uki = PeFixture::uki_like(b"kernel", b"initrd", "console=ttyS0").build();
    let prediction = predict_pcr11(&PeImage::parse(&uki).unwrap(), &SYSTEMD_STUB_252).unwrap();
    let names: Vec<&str> = prediction.sections.iter().map(|s| s.section).collect();
    assert_eq!(
        names,
        [".linux", ".osrel", ".cmdline", ".initrd"],
        "systemd-stub 252's order, not the table's"
    );
    // The real log's name events (every other PCR 11 event) are exactly
    // SHA-256(".linux\0"), ... in the same order.
    let logged: Vec<[u8; 32]> = log_digests(11).into_iter().step_by(2).collect();
    let predicted: Vec<[u8; 32]> = prediction.sections.iter().map(|s| s.name_digest).collect();
    assert_eq!(predicted, logged);
    // The value is the plain extend chain of the events.
    let mut chain = [0u8; 32];
    for (name, data) in [
        (".linux", &b"kernel"[..]),
        (".osrel", b"ID=ironrack\nVERSION_ID=1\n"),
        (".cmdline", b"console=ttyS0"),
        (".initrd", b"initrd"),
    ] {
        for digest in [sha256(format!("{name}\0").as_bytes()), sha256(data)] {
            chain = sha256(&[chain, digest].concat());
        }
    }
    assert_eq!(prediction.value, chain);
    assert_eq!(replay_sha256(&prediction.event_digests()), chain);
}

#[test]
fn pcr11_follows_the_stubs_lookup() {
    let mut fixture = PeFixture::uki_like(b"kernel", b"initrd", "");
    // VirtualSize smaller than the raw data: only VirtualSize bytes count.
    fixture.sections[3].virtual_size = Some(3);
    // An empty .cmdline (VirtualSize 0) is not measured.
    // A section whose name only starts with ".initrd" is found by 252's
    // prefix comparison, and the last match in the table wins.
    fixture
        .sections
        .push(FixtureSection::new(".initrdX", b"second".to_vec()));
    fixture
        .sections
        .push(FixtureSection::new(".sbat", b"sbat,1\n".to_vec()));
    let uki = fixture.build();
    let prediction = predict_pcr11(&PeImage::parse(&uki).unwrap(), &SYSTEMD_STUB_252).unwrap();
    let by_name = |n: &str| {
        prediction
            .sections
            .iter()
            .find(|s| s.section == n)
            .map(|s| s.data_digest)
    };
    assert_eq!(by_name(".linux"), Some(sha256(b"ker")));
    assert_eq!(by_name(".cmdline"), None);
    assert_eq!(by_name(".initrd"), Some(sha256(b"second")));
    assert_eq!(prediction.sections.len(), 3, ".sbat is not measured by 252");
}

#[test]
fn zero_filled_payload_is_refused_not_allocated() {
    let mut fixture = PeFixture::uki_like(b"kernel", b"initrd", "x");
    fixture.sections[4].virtual_size = Some(u32::MAX);
    let uki = fixture.build();
    assert!(matches!(
        predict_pcr11(&PeImage::parse(&uki).unwrap(), &SYSTEMD_STUB_252),
        Err(MeasureError::SectionZeroFilled {
            section: ".initrd",
            virtual_size: u32::MAX,
            ..
        })
    ));
}

#[test]
fn uki_without_linux_is_refused() {
    let mut fixture = PeFixture::uki_like(b"kernel", b"initrd", "x");
    fixture.sections.remove(3);
    let uki = fixture.build();
    assert!(matches!(
        predict_pcr11(&PeImage::parse(&uki).unwrap(), &SYSTEMD_STUB_252),
        Err(MeasureError::NoLinuxSection)
    ));
}

#[test]
fn fixture_pcr11_events_decode_as_the_stub_writes_them() {
    let log = fixture_log();
    for event in log.events_in(11) {
        match log.decode(event).unwrap() {
            EventData::Text(text) => assert!(text.as_str().unwrap().starts_with('.')),
            other => panic!("{other:?}"),
        }
    }
}
