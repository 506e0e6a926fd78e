//! Property tests of the TPM parsers: arbitrary bytes never panic, and
//! structures the code writes parse back to themselves.

use std::time::SystemTime;

use ironrack_pxe::attest::ek::{EkTrust, verify_ek_certificate};
use ironrack_pxe::attest::quote::{AkKey, Expected, verify_quote};
use ironrack_pxe::attest::tpm::attest::{Attest, Attested, BankSelection, ClockInfo, Signature};
use ironrack_pxe::attest::tpm::command::parse_response;
use ironrack_pxe::attest::tpm::constants::{TPM_GENERATED_VALUE, alg};
use ironrack_pxe::attest::tpm::model::SimulatedTpm;
use ironrack_pxe::attest::tpm::public::Public;
use ironrack_pxe::attest::tpm::wire::Reader;
use ironrack_pxe::attest::tpm::{AkTemplate, EkTemplate, PcrSelection, PcrValues};
use proptest::prelude::*;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn selection() -> impl Strategy<Value = PcrSelection> {
    proptest::collection::vec(
        (
            prop_oneof![Just(alg::SHA1), Just(alg::SHA256), any::<u16>()],
            proptest::collection::vec(any::<u8>(), 0..8),
        ),
        0..4,
    )
    .prop_map(|banks| PcrSelection {
        banks: banks
            .into_iter()
            .map(|(hash, bitmap)| BankSelection { hash, bitmap })
            .collect(),
    })
}

fn attest() -> impl Strategy<Value = Attest> {
    (
        any::<u32>(),
        bytes(66),
        bytes(64),
        (any::<u64>(), any::<u32>(), any::<u32>(), any::<bool>()),
        any::<u64>(),
        selection(),
        bytes(64),
    )
        .prop_map(
            |(magic, signer, extra, clock, fw, selection, digest)| Attest {
                magic,
                qualified_signer: signer,
                extra_data: extra,
                clock_info: ClockInfo {
                    clock: clock.0,
                    reset_count: clock.1,
                    restart_count: clock.2,
                    safe: clock.3,
                },
                firmware_version: fw,
                attested: Attested::Quote {
                    selection,
                    pcr_digest: digest,
                },
            },
        )
}

/// A valid structure with some bytes overwritten: reaches deeper than
/// uniformly random input.
fn mutate(mut base: Vec<u8>, edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
    for (at, v) in edits {
        if !base.is_empty() {
            let i = at % base.len();
            base[i] = *v;
        }
    }
    base.truncate(cut.min(base.len()));
    base
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn response_parser_never_panics(raw in bytes(300), handles in 0usize..3, sessions: bool) {
        let _ = parse_response(&raw, handles, sessions);
    }

    #[test]
    fn response_with_plausible_header_never_panics(
        tag in prop_oneof![Just(0x8001u16), Just(0x8002u16)],
        body in bytes(200),
        handles in 0usize..3,
    ) {
        let mut raw = tag.to_be_bytes().to_vec();
        raw.extend(((body.len() + 10) as u32).to_be_bytes());
        raw.extend(0u32.to_be_bytes());
        raw.extend(&body);
        let _ = parse_response(&raw, handles, tag == 0x8002);
    }

    #[test]
    fn attest_parser_never_panics(raw in bytes(400)) {
        let _ = Attest::from_bytes(&raw);
    }

    #[test]
    fn attest_round_trips(a in attest()) {
        prop_assert_eq!(Attest::from_bytes(&a.to_bytes()).unwrap(), a);
    }

    #[test]
    fn mutated_attest_never_panics(a in attest(), edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6), cut: usize) {
        let _ = Attest::from_bytes(&mutate(a.to_bytes(), &edits, cut));
    }

    #[test]
    fn public_parser_never_panics(raw in bytes(700)) {
        let _ = Public::from_bytes(&raw);
        let _ = Public::read_tpm2b(&mut Reader::new(&raw));
    }

    #[test]
    fn mutated_public_never_panics(
        which in 0usize..5,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut: usize,
    ) {
        let base = match which {
            0 => EkTemplate::Rsa2048.public(),
            1 => EkTemplate::EccP256.public(),
            2 => EkTemplate::EccP384.public(),
            3 => AkTemplate::EccP256.public(),
            _ => AkTemplate::Rsa2048.public(),
        };
        let raw = mutate(base.to_bytes(), &edits, cut);
        if let Ok(p) = Public::from_bytes(&raw) {
            // Whatever parses re-marshals to the same bytes and may be
            // offered as an AK without panicking.
            prop_assert_eq!(p.to_bytes(), raw);
            let _ = p.name();
            let _ = AkKey::new(p);
        }
    }

    #[test]
    fn signature_parser_never_panics(raw in bytes(600)) {
        if let Ok(sig) = Signature::from_bytes(&raw) {
            prop_assert_eq!(sig.to_bytes(), raw);
        }
    }

    #[test]
    fn selection_parser_never_panics(raw in bytes(100)) {
        let mut r = Reader::new(&raw);
        let _ = r.count("x", 16, 3);
        let mut r = Reader::new(&raw);
        let _ = r.tpm2b("y");
    }

    #[test]
    fn ek_certificate_check_never_panics(raw in bytes(600)) {
        let ek = EkTemplate::Rsa2048.public();
        let trust = EkTrust::new();
        prop_assert!(verify_ek_certificate(&raw, &ek, &trust, SystemTime::now()).is_err());
    }

    /// The verifier on arbitrary attest bytes and signatures: errors, no panic.
    #[test]
    fn verifier_never_panics(raw in bytes(300), sig in bytes(200)) {
        let node = SimulatedTpm::new(AkTemplate::EccP256).unwrap();
        let ak = AkKey::new(node.ak_public().clone()).unwrap();
        let selection = PcrSelection::sha256_boot();
        let pcrs = PcrValues::new();
        let expected = Expected { nonce: b"n", selection: &selection, pcrs: &pcrs, previous: None };
        if let Ok(sig) = Signature::from_bytes(&sig) {
            prop_assert!(verify_quote(&ak, &raw, &sig, &expected).is_err());
        }
    }
}

#[test]
fn attest_magic_constant_is_the_spec_value() {
    assert_eq!(&TPM_GENERATED_VALUE.to_be_bytes(), b"\xffTCG");
}
