//! The boot-storm software TPM model speaks the same protocol: the server
//! code accepts its quotes and its credential activation, and refuses
//! them where it refuses a real TPM's.

use ironrack_pxe::attest::credential::make_credential;
use ironrack_pxe::attest::quote::{AkKey, Expected, QuoteError, verify_quote};
use ironrack_pxe::attest::tpm::constants::alg;
use ironrack_pxe::attest::tpm::model::{ModelError, SimulatedTpm};
use ironrack_pxe::attest::tpm::{AkTemplate, EkTemplate, PcrSelection, Public};

#[test]
fn model_quotes_verify_like_tpm_quotes() {
    for kind in [AkTemplate::EccP256, AkTemplate::Rsa2048] {
        let mut node = SimulatedTpm::new(kind).unwrap();
        node.extend(4, &[4; 32]).unwrap();
        node.extend(15, &[15; 32]).unwrap();
        // The server sees only wire bytes.
        let ak = AkKey::new(Public::from_bytes(&node.ak_public().to_bytes()).unwrap()).unwrap();
        let selection = PcrSelection::sha256_boot();
        let quote = node.quote(b"nonce", &selection).unwrap();
        let boot_pcrs = node.pcrs().clone();
        let expected = Expected {
            nonce: b"nonce",
            selection: &selection,
            pcrs: &boot_pcrs,
            previous: None,
        };
        let first = verify_quote(&ak, &quote.attest, &quote.signature, &expected).unwrap();

        // A reboot resets PCRs and bumps resetCount; an old quote presented
        // after the new one is refused.
        node.reboot();
        let later = node.quote(b"nonce", &selection).unwrap();
        let later_pcrs = node.pcrs().clone();
        let expected_later = Expected {
            pcrs: &later_pcrs,
            previous: Some(first.clock_info),
            ..expected
        };
        let second = verify_quote(&ak, &later.attest, &later.signature, &expected_later).unwrap();
        assert_eq!(
            second.clock_info.reset_count,
            first.clock_info.reset_count + 1
        );
        let replay = Expected {
            previous: Some(second.clock_info),
            ..expected
        };
        assert!(matches!(
            verify_quote(&ak, &quote.attest, &quote.signature, &replay),
            Err(QuoteError::ResetCountWentBackwards { .. })
        ));
        // The PCR values before the reboot no longer match.
        let stale = Expected {
            pcrs: &later_pcrs,
            ..expected
        };
        assert_eq!(
            verify_quote(&ak, &quote.attest, &quote.signature, &stale),
            Err(QuoteError::PcrDigestMismatch)
        );
    }
}

#[test]
fn model_activates_server_credentials_for_its_ak_only() {
    let mut node = SimulatedTpm::new(AkTemplate::EccP256).unwrap();
    let ek = Public::from_bytes(&node.ek_public().to_bytes()).unwrap();
    assert!(EkTemplate::EccP256.matches(&ek));
    let cred = make_credential(&ek, node.ak_name(), b"token").unwrap();
    let got = node
        .activate_credential(node.ak_name(), &cred.id_object, &cred.encrypted_secret)
        .unwrap();
    assert_eq!(got, b"token");

    let other = SimulatedTpm::new(AkTemplate::EccP256).unwrap();
    let for_other = make_credential(&ek, other.ak_name(), b"token").unwrap();
    assert!(matches!(
        node.activate_credential(
            node.ak_name(),
            &for_other.id_object,
            &for_other.encrypted_secret
        ),
        Err(ModelError::Integrity)
    ));
    let to_other_ek = make_credential(other.ek_public(), node.ak_name(), b"token").unwrap();
    assert!(matches!(
        node.activate_credential(
            node.ak_name(),
            &to_other_ek.id_object,
            &to_other_ek.encrypted_secret
        ),
        Err(ModelError::Integrity)
    ));
    assert!(node.extend(30, &[0; 32]).is_err());
    assert!(matches!(
        node.quote(&[0; 65], &PcrSelection::sha256_boot()),
        Err(ModelError::NonceTooLong { len: 65 })
    ));
    assert!(matches!(
        node.activate_credential(node.ak_name(), &[0xff], &[0, 1]),
        Err(ModelError::Malformed(_))
    ));
    assert_eq!(node.pcrs().get(alg::SHA256, 0).unwrap(), [0u8; 32]);
}
