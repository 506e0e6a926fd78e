//! Quotes from swtpm, verified by the server code, and every mutation
//! rejected with its own error.

use ironrack_pxe::attest::quote::{AkKey, Expected, QuoteError, verify_quote};
use ironrack_pxe::attest::tpm::attest::{Attest, Attested};
use ironrack_pxe::attest::tpm::constants::{alg, rh};
use ironrack_pxe::attest::tpm::model::primary_qualified_name;
use ironrack_pxe::attest::tpm::{
    AkTemplate, ClockInfo, PcrSelection, PcrValues, Quote, Signature, SwtpmSocket, Tpm,
};
use sha2::{Digest, Sha256};

use crate::swtpm::Swtpm;

struct Quoted {
    ak: AkKey,
    quote: Quote,
    pcrs: PcrValues,
    nonce: Vec<u8>,
}

/// Measures something into PCR 15, then quotes PCRs 0-15 with a fresh
/// nonce, returning what the agent would send.
fn quote_once(tpm: &mut Tpm<SwtpmSocket>, kind: AkTemplate, nonce: &[u8]) -> Quoted {
    tpm.pcr_extend(15, &[(alg::SHA256, Sha256::digest(b"rootfs").as_slice())])
        .unwrap();
    let ak = tpm.create_primary(rh::ENDORSEMENT, &kind.public()).unwrap();
    let selection = PcrSelection::sha256_boot();
    let quote = tpm.quote(ak.handle, nonce, &selection).unwrap();
    let pcrs = tpm.pcr_read(&selection).unwrap();
    tpm.flush(ak.handle).unwrap();
    Quoted {
        ak: AkKey::new(ak.public).unwrap(),
        quote,
        pcrs,
        nonce: nonce.to_vec(),
    }
}

fn expected<'a>(q: &'a Quoted, selection: &'a PcrSelection) -> Expected<'a> {
    Expected {
        nonce: &q.nonce,
        selection,
        pcrs: &q.pcrs,
        previous: None,
    }
}

#[test]
fn quote_round_trip_for_both_ak_kinds() {
    if !crate::swtpm::available() {
        return;
    }
    let (_sw, mut tpm) = Swtpm::started();
    let selection = PcrSelection::sha256_boot();
    for kind in [AkTemplate::EccP256, AkTemplate::Rsa2048] {
        let q = quote_once(&mut tpm, kind, b"server nonce 0123456789abcdef");
        let ok = verify_quote(
            &q.ak,
            &q.quote.attest,
            &q.quote.signature,
            &expected(&q, &selection),
        )
        .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        // The qualified signer is that of a primary key in the endorsement
        // hierarchy; the software model computes it the same way.
        assert_eq!(
            ok.qualified_signer,
            primary_qualified_name(rh::ENDORSEMENT, q.ak.name())
        );
        assert_ne!(q.pcrs.get(alg::SHA256, 15).unwrap(), [0u8; 32]);
    }
}

#[test]
fn mutated_quotes_are_rejected_each_with_its_reason() {
    if !crate::swtpm::available() {
        return;
    }
    let (_sw, mut tpm) = Swtpm::started();
    let selection = PcrSelection::sha256_boot();
    let q = quote_once(&mut tpm, AkTemplate::EccP256, b"nonce-1");
    let verify = |attest: &[u8], sig: &Signature, exp: &Expected<'_>| {
        verify_quote(&q.ak, attest, sig, exp).unwrap_err()
    };
    let base = expected(&q, &selection);

    // Wrong nonce (e.g. a replayed quote answering an older challenge).
    let exp = Expected {
        nonce: b"nonce-2",
        ..base
    };
    assert_eq!(
        verify(&q.quote.attest, &q.quote.signature, &exp),
        QuoteError::NonceMismatch
    );

    // Signed by another AK (the RSA one of the same TPM).
    let other = quote_once(&mut tpm, AkTemplate::Rsa2048, b"nonce-1");
    assert!(matches!(
        verify(&other.quote.attest, &other.quote.signature, &base),
        QuoteError::SchemeMismatch { .. }
    ));
    // ...and by another ECC AK: a different key, same scheme.
    let mut other_ecc = AkTemplate::EccP256.public();
    if let ironrack_pxe::attest::tpm::public::KeyParams::Ecc { x, .. } = &mut other_ecc.params {
        *x = b"another attestation key".to_vec();
    }
    let ak2 = tpm.create_primary(rh::ENDORSEMENT, &other_ecc).unwrap();
    let q2 = tpm.quote(ak2.handle, b"nonce-1", &selection).unwrap();
    tpm.flush(ak2.handle).unwrap();
    assert_eq!(
        verify(&q2.attest, &q2.signature, &base),
        QuoteError::BadSignature
    );

    // A PCR value altered.
    let mut pcrs = q.pcrs.clone();
    pcrs.insert(alg::SHA256, 4, Sha256::digest(b"evil bootloader").to_vec());
    let exp = Expected {
        pcrs: &pcrs,
        ..base
    };
    assert_eq!(
        verify(&q.quote.attest, &q.quote.signature, &exp),
        QuoteError::PcrDigestMismatch
    );

    // A PCR value missing.
    let mut partial = PcrValues::new();
    for ((bank, pcr), v) in q.pcrs.iter().filter(|((_, p), _)| *p != 7) {
        partial.insert(bank, pcr, v.to_vec());
    }
    let exp = Expected {
        pcrs: &partial,
        ..base
    };
    assert_eq!(
        verify(&q.quote.attest, &q.quote.signature, &exp),
        QuoteError::MissingPcr {
            bank: alg::SHA256,
            pcr: 7
        }
    );

    // Each byte of the attest structure flipped: the signature fails.
    for i in 0..q.quote.attest.len() {
        let mut attest = q.quote.attest.clone();
        attest[i] ^= 0x01;
        assert_eq!(
            verify(&attest, &q.quote.signature, &base),
            QuoteError::BadSignature,
            "byte {i}"
        );
    }
    // The signature altered.
    if let Signature::Ecdsa { hash, r, s } = &q.quote.signature {
        let mut s = s.clone();
        s[5] ^= 0x40;
        let sig = Signature::Ecdsa {
            hash: *hash,
            r: r.clone(),
            s,
        };
        assert_eq!(
            verify(&q.quote.attest, &sig, &base),
            QuoteError::BadSignature
        );
        let sha1 = Signature::Ecdsa {
            hash: alg::SHA1,
            r: r.clone(),
            s: vec![1],
        };
        assert!(matches!(
            verify(&q.quote.attest, &sha1, &base),
            QuoteError::SchemeMismatch { .. }
        ));
    }

    // The server asked for other PCRs than the node quoted.
    let narrower = PcrSelection::new(alg::SHA256, 0..8);
    let exp = Expected {
        selection: &narrower,
        ..base
    };
    assert!(matches!(
        verify(&q.quote.attest, &q.quote.signature, &exp),
        QuoteError::SelectionMismatch { .. }
    ));
}

#[test]
fn counters_from_a_later_quote_must_not_go_backwards() {
    if !crate::swtpm::available() {
        return;
    }
    let (_sw, mut tpm) = Swtpm::started();
    let selection = PcrSelection::sha256_boot();
    let first = quote_once(&mut tpm, AkTemplate::EccP256, b"n1");
    let first_ok = verify_quote(
        &first.ak,
        &first.quote.attest,
        &first.quote.signature,
        &expected(&first, &selection),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = quote_once(&mut tpm, AkTemplate::EccP256, b"n2");
    let exp = Expected {
        previous: Some(first_ok.clock_info),
        ..expected(&second, &selection)
    };
    let second_ok = verify_quote(
        &second.ak,
        &second.quote.attest,
        &second.quote.signature,
        &exp,
    )
    .unwrap();
    assert!(second_ok.clock_info.clock >= first_ok.clock_info.clock);
    assert_eq!(
        second_ok.clock_info.reset_count,
        first_ok.clock_info.reset_count
    );

    // Presented after a quote from the "future" (a higher reset count, as a
    // replayed old quote would look), the same quote is refused.
    let future = ClockInfo {
        reset_count: second_ok.clock_info.reset_count + 1,
        ..second_ok.clock_info
    };
    let exp = Expected {
        previous: Some(future),
        ..expected(&second, &selection)
    };
    assert!(matches!(
        verify_quote(
            &second.ak,
            &second.quote.attest,
            &second.quote.signature,
            &exp
        ),
        Err(QuoteError::ResetCountWentBackwards { .. })
    ));
    let later_clock = ClockInfo {
        clock: second_ok.clock_info.clock + 60_000,
        ..second_ok.clock_info
    };
    let exp = Expected {
        previous: Some(later_clock),
        ..expected(&second, &selection)
    };
    assert!(matches!(
        verify_quote(
            &second.ak,
            &second.quote.attest,
            &second.quote.signature,
            &exp
        ),
        Err(QuoteError::ClockWentBackwards { .. })
    ));
}

#[test]
fn swtpm_quote_parses_as_tpms_attest_quote() {
    if !crate::swtpm::available() {
        return;
    }
    let (_sw, mut tpm) = Swtpm::started();
    let q = quote_once(&mut tpm, AkTemplate::EccP256, b"parse me");
    let attest = Attest::from_bytes(&q.quote.attest).unwrap();
    assert!(attest.is_tpm_generated());
    assert_eq!(attest.extra_data, b"parse me");
    assert!(attest.clock_info.safe);
    let Attested::Quote {
        selection,
        pcr_digest,
    } = attest.attested
    else {
        panic!("not a quote");
    };
    assert_eq!(selection, PcrSelection::sha256_boot());
    assert_eq!(pcr_digest.len(), 32);
    // The structure re-marshals to the same bytes.
    let again = Attest::from_bytes(&q.quote.attest).unwrap().to_bytes();
    assert_eq!(again, q.quote.attest);
}
