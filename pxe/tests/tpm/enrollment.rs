//! Enrollment end to end against swtpm: EK discovery, EK certificate chain
//! to swtpm's local CA, AK creation, MakeCredential/ActivateCredential.

use std::time::SystemTime;

use ironrack_pxe::attest::credential::make_credential;
use ironrack_pxe::attest::ek::{EkError, EkTrust, verify_ek_certificate};
use ironrack_pxe::attest::quote::AkKey;
use ironrack_pxe::attest::tpm::constants::rh;
use ironrack_pxe::attest::tpm::endorsement::endorsement_keys;
use ironrack_pxe::attest::tpm::{AK_PERSISTENT_HANDLE, AkTemplate, EkTemplate, Public};

use crate::swtpm::{Swtpm, impostor_ca_pem, local_ca_pem};

fn local_ca_trust() -> EkTrust {
    let (root, intermediate) = local_ca_pem();
    let mut trust = EkTrust::new();
    trust.add_roots_pem(&root).unwrap();
    trust.add_intermediates_pem(&intermediate).unwrap();
    trust
}

#[test]
fn full_enrollment_with_both_ek_kinds() {
    if !crate::swtpm::available() {
        return;
    }
    let (_sw, mut tpm) = Swtpm::started();
    let trust = local_ca_trust();

    // Node side: EKs with their certificates (swtpm persisted both).
    let eks = endorsement_keys(&mut tpm).unwrap();
    let kinds: Vec<EkTemplate> = eks.iter().map(|e| e.template).collect();
    assert_eq!(kinds, [EkTemplate::Rsa2048, EkTemplate::EccP384]);
    assert!(eks.iter().all(|e| e.persistent), "persistent EKs reused");
    // The agent's path: the default AK, persisted at ironrack's handle.
    let ak = tpm
        .load_or_create_ak(AkTemplate::default(), AK_PERSISTENT_HANDLE)
        .unwrap()
        .key;

    for ek in &eks {
        // What crosses the wire: EK public, certificate, AK public.
        let ek_public = Public::from_bytes(&ek.key.public.to_bytes()).unwrap();
        let cert = ek.certificate.as_deref().expect("certificate in NV");
        let ak_public = Public::from_bytes(&ak.public.to_bytes()).unwrap();

        // Server side.
        let info = verify_ek_certificate(cert, &ek_public, &trust, SystemTime::now()).unwrap();
        assert_eq!(
            info.chain.len(),
            3,
            "leaf, swtpm-localca, root: {:?}",
            info.chain
        );
        assert_eq!(info.chain[2], "CN=swtpm-localca-rootca");
        assert_eq!(info.tpm_manufacturer.as_deref(), Some("id:00001014"));
        assert_eq!(info.tpm_model.as_deref(), Some("swtpm"));
        let ak_key = AkKey::new(ak_public).unwrap();
        assert_eq!(ak_key.name(), ak.name.as_slice());
        let secret = b"per-node join token, 32 bytes!!";
        let cred = make_credential(&ek_public, ak_key.name(), secret).unwrap();

        // Node side again.
        let got = tpm
            .activate_credential(
                ak.handle,
                ek.key.handle,
                ek.template.auth(),
                &cred.id_object,
                &cred.encrypted_secret,
            )
            .unwrap();
        assert_eq!(got, secret);
    }
    for ek in &eks {
        ek.release(&mut tpm).unwrap();
    }
}

#[test]
fn ek_certificate_from_an_unknown_ca_is_refused() {
    if !crate::swtpm::available() {
        return;
    }
    let (_sw, mut tpm) = Swtpm::started();
    let eks = endorsement_keys(&mut tpm).unwrap();
    let ek = &eks[0];
    let cert = ek.certificate.as_deref().unwrap();
    let now = SystemTime::now();

    // No roots at all.
    let err = verify_ek_certificate(cert, &ek.key.public, &EkTrust::new(), now).unwrap_err();
    assert!(matches!(err, EkError::UnknownIssuer { .. }), "{err}");
    assert!(err.to_string().contains("CN=swtpm-localca"), "{err}");

    // The intermediate alone, without the root it chains to.
    let (_, intermediate) = local_ca_pem();
    let mut only_intermediate = EkTrust::new();
    only_intermediate
        .add_intermediates_pem(&intermediate)
        .unwrap();
    let err = verify_ek_certificate(cert, &ek.key.public, &only_intermediate, now).unwrap_err();
    assert!(matches!(err, EkError::UnknownIssuer { .. }), "{err}");

    // Another CA with the same names: the signature does not verify.
    let (other_root, other_intermediate) = impostor_ca_pem();
    assert_ne!(other_root, local_ca_pem().0);
    let mut impostor = EkTrust::new();
    impostor.add_roots_pem(&other_root).unwrap();
    impostor.add_intermediates_pem(&other_intermediate).unwrap();
    let err = verify_ek_certificate(cert, &ek.key.public, &impostor, now).unwrap_err();
    assert!(matches!(err, EkError::BadSignature { .. }), "{err}");

    // Valid chain, but checked at a time before the CA existed.
    let past = SystemTime::UNIX_EPOCH;
    let err = verify_ek_certificate(cert, &ek.key.public, &local_ca_trust(), past).unwrap_err();
    assert!(matches!(err, EkError::NotYetValid { .. }), "{err}");
}

#[test]
fn ek_certificate_for_another_key_is_refused() {
    if !crate::swtpm::available() {
        return;
    }
    let (_sw, mut tpm) = Swtpm::started();
    let eks = endorsement_keys(&mut tpm).unwrap();
    let trust = local_ca_trust();
    let now = SystemTime::now();
    // The RSA certificate presented with the ECC EK, and vice versa.
    let (rsa, ecc) = (&eks[0], &eks[1]);
    for (cert_of, key_of) in [(rsa, ecc), (ecc, rsa)] {
        let err = verify_ek_certificate(
            cert_of.certificate.as_deref().unwrap(),
            &key_of.key.public,
            &trust,
            now,
        )
        .unwrap_err();
        assert_eq!(err, EkError::KeyMismatch);
    }
    // Another RSA EK (a P-256 one derived here, uncertified) is not the
    // certified one either.
    let p256 = tpm
        .create_primary(rh::ENDORSEMENT, &EkTemplate::EccP256.public())
        .unwrap();
    let err = verify_ek_certificate(
        ecc.certificate.as_deref().unwrap(),
        &p256.public,
        &trust,
        now,
    )
    .unwrap_err();
    assert_eq!(err, EkError::KeyMismatch);
}

/// Re-issues the TPM's EK certificate with GnuTLS certtool from the
/// template's local CA, with `extra` template lines.
fn reissue(ek_cert_der: &[u8], extra: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let ca = crate::swtpm::template().join("ca");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("certtool")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("run certtool (gnutls-bin)");
        assert!(
            out.status.success(),
            "certtool {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(dir.path().join("ek.der"), ek_cert_der).unwrap();
    run(&[
        "--certificate-info",
        "--inder",
        "--infile",
        "ek.der",
        "--outfile",
        "ek.pem",
    ]);
    run(&[
        "--pubkey-info",
        "--load-certificate",
        "ek.pem",
        "--outfile",
        "ek.pub",
    ]);
    std::fs::write(
        dir.path().join("template"),
        format!("cn = \"reissued EK\"\nserial = 77\nexpiration_days = 30\nencryption_key\n{extra}"),
    )
    .unwrap();
    let issuer = ca.join("issuercert.pem");
    let signkey = ca.join("signkey.pem");
    run(&[
        "--generate-certificate",
        "--load-pubkey",
        "ek.pub",
        "--load-ca-certificate",
        issuer.to_str().unwrap(),
        "--load-ca-privkey",
        signkey.to_str().unwrap(),
        "--template",
        "template",
        "--outder",
        "--outfile",
        "new.der",
    ]);
    std::fs::read(dir.path().join("new.der")).unwrap()
}

#[test]
fn unknown_critical_extension_is_refused() {
    if !crate::swtpm::available() {
        return;
    }
    let (_sw, mut tpm) = Swtpm::started();
    let eks = endorsement_keys(&mut tpm).unwrap();
    let ek = &eks[0];
    let trust = local_ca_trust();
    // certtool sets notBefore to the second it issues, after this line
    // runs: judge an hour later (the certificates live 30 days), or a
    // second boundary in between reads as "not yet valid".
    let now = SystemTime::now() + std::time::Duration::from_secs(3600);
    // Control: the re-issued certificate is accepted as it is.
    let plain = reissue(ek.certificate.as_deref().unwrap(), "");
    verify_ek_certificate(&plain, &ek.key.public, &trust, now).unwrap();
    // With a private critical extension it is not.
    let critical = reissue(
        ek.certificate.as_deref().unwrap(),
        "add_critical_extension = \"1.3.6.1.4.1.99999.1 0x0500\"\n",
    );
    let err = verify_ek_certificate(&critical, &ek.key.public, &trust, now).unwrap_err();
    assert_eq!(
        err,
        EkError::UnknownCriticalExtension {
            subject: "CN=reissued EK".into(),
            oid: "1.3.6.1.4.1.99999.1".into()
        }
    );
    // The same extension, not critical, is fine.
    let noncritical = reissue(
        ek.certificate.as_deref().unwrap(),
        "add_extension = \"1.3.6.1.4.1.99999.1 0x0500\"\n",
    );
    verify_ek_certificate(&noncritical, &ek.key.public, &trust, now).unwrap();
}

/// A TPM in dictionary-attack lockout (as after a few power cuts without
/// TPM2_Shutdown) still lets ironrack's AK quote: the AK is noDA. The
/// lockout is made for real (maxTries = 0), and a DA-protected key made
/// the old way is refused in the same state, so the test can fail.
#[test]
fn the_ak_quotes_in_dictionary_attack_lockout() {
    use ironrack_pxe::attest::tpm::PcrSelection;
    use ironrack_pxe::attest::tpm::template::AK_ATTRIBUTES_V1;
    if !crate::swtpm::available() {
        return;
    }
    let (_sw, mut tpm) = Swtpm::started();
    let ak = tpm
        .load_or_create_ak(AkTemplate::default(), AK_PERSISTENT_HANDLE)
        .unwrap();
    let mut old = AkTemplate::default().public();
    old.attributes = AK_ATTRIBUTES_V1;
    let old = tpm.create_primary(rh::ENDORSEMENT, &old).unwrap();
    tpm.dictionary_attack_parameters(0, 1000, 1000).unwrap();
    let selection = PcrSelection::sha256_boot();
    let err = tpm.quote(old.handle, &[1; 32], &selection).unwrap_err();
    assert!(err.to_string().contains("LOCKOUT"), "{err}");
    tpm.quote(ak.key.handle, &[1; 32], &selection)
        .expect("the noDA AK quotes in lockout");
    // And ActivateCredential (where the lab first met the lockout) works.
    let ek = endorsement_keys(&mut tpm).unwrap().remove(0);
    let ek_public = Public::from_bytes(&ek.key.public.to_bytes()).unwrap();
    let ak_key = AkKey::new(ak.key.public.clone()).unwrap();
    let cred = make_credential(&ek_public, ak_key.name(), b"a secret").unwrap();
    let got = tpm
        .activate_credential(
            ak.key.handle,
            ek.key.handle,
            ek.template.auth(),
            &cred.id_object,
            &cred.encrypted_secret,
        )
        .expect("ActivateCredential in lockout");
    assert_eq!(got, b"a secret");
}

/// An AK an earlier ironrack persisted (without noDA) at ironrack's handle
/// is replaced by the current one; anything else there is left alone.
#[test]
fn an_earlier_ironrack_ak_is_replaced() {
    use ironrack_pxe::attest::tpm::template::{AK_ATTRIBUTES, AK_ATTRIBUTES_V1};
    if !crate::swtpm::available() {
        return;
    }
    let (_sw, mut tpm) = Swtpm::started();
    let mut old = AkTemplate::default().public();
    old.attributes = AK_ATTRIBUTES_V1;
    let old = tpm.create_primary(rh::ENDORSEMENT, &old).unwrap();
    tpm.evict_control(old.handle, AK_PERSISTENT_HANDLE).unwrap();
    let ak = tpm
        .load_or_create_ak(AkTemplate::default(), AK_PERSISTENT_HANDLE)
        .unwrap();
    assert!(ak.persistent);
    let (public, _) = tpm.read_public(AK_PERSISTENT_HANDLE).unwrap();
    assert_eq!(public.attributes, AK_ATTRIBUTES);
}
