//! Software MakeCredential against swtpm's ActivateCredential.

use ironrack_pxe::attest::credential::make_credential;
use ironrack_pxe::attest::tpm::constants::rh;
use ironrack_pxe::attest::tpm::{AkTemplate, EkTemplate};

use crate::swtpm::Swtpm;

/// For every EK kind and both AK kinds: the TPM recovers exactly the
/// secret the server sealed, and refuses a credential made for another
/// AK Name.
#[test]
fn make_credential_is_accepted_by_activate_credential() {
    if !crate::swtpm::available() {
        return;
    }
    let (_sw, mut tpm) = Swtpm::started();
    for ek_kind in EkTemplate::ALL {
        let ek = tpm
            .create_primary(rh::ENDORSEMENT, &ek_kind.public())
            .unwrap();
        for ak_kind in [AkTemplate::EccP256, AkTemplate::Rsa2048] {
            let ak = tpm
                .create_primary(rh::ENDORSEMENT, &ak_kind.public())
                .unwrap();
            let secret = format!("join token for {ek_kind:?}/{ak_kind:?}");
            let secret = &secret.as_bytes()[..32.min(secret.len())];
            let cred = make_credential(&ek.public, &ak.name, secret).unwrap();
            let got = tpm
                .activate_credential(
                    ak.handle,
                    ek.handle,
                    ek_kind.auth(),
                    &cred.id_object,
                    &cred.encrypted_secret,
                )
                .unwrap_or_else(|e| panic!("{ek_kind:?}/{ak_kind:?}: {e}"));
            assert_eq!(got, secret, "{ek_kind:?}/{ak_kind:?}");
            tpm.flush(ak.handle).unwrap();
        }
        tpm.flush(ek.handle).unwrap();
    }
}

#[test]
fn credential_for_another_ak_name_is_refused() {
    if !crate::swtpm::available() {
        return;
    }
    let (_sw, mut tpm) = Swtpm::started();
    for ek_kind in [EkTemplate::Rsa2048, EkTemplate::EccP384] {
        let ek = tpm
            .create_primary(rh::ENDORSEMENT, &ek_kind.public())
            .unwrap();
        let ak = tpm
            .create_primary(rh::ENDORSEMENT, &AkTemplate::EccP256.public())
            .unwrap();
        let mut other_name = ak.name.clone();
        *other_name.last_mut().unwrap() ^= 1;
        let cred = make_credential(&ek.public, &other_name, b"secret").unwrap();
        let err = tpm
            .activate_credential(
                ak.handle,
                ek.handle,
                ek_kind.auth(),
                &cred.id_object,
                &cred.encrypted_secret,
            )
            .unwrap_err();
        // The integrity HMAC covers the Name: the TPM reports an integrity
        // failure on the credential blob (parameter 1).
        let rc = err.response_code().expect("TPM refused");
        assert_eq!(rc.name(), "TPM_RC_INTEGRITY", "{ek_kind:?}: {rc}");
        assert!(rc.to_string().contains("parameter 1"), "{rc}");

        // A credential made for another TPM's EK does not open either.
        let other_ek = tpm
            .create_primary(rh::ENDORSEMENT, &EkTemplate::EccP256.public())
            .unwrap();
        let foreign = make_credential(&other_ek.public, &ak.name, b"secret");
        let foreign = foreign.unwrap();
        let err = tpm.activate_credential(
            ak.handle,
            ek.handle,
            ek_kind.auth(),
            &foreign.id_object,
            &foreign.encrypted_secret,
        );
        assert!(
            err.is_err(),
            "{ek_kind:?}: credential for another EK opened"
        );
        for h in [ak.handle, ek.handle, other_ek.handle] {
            tpm.flush(h).unwrap();
        }
    }
}
