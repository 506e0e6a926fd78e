//! Every TPM command of the client, against swtpm.

use ironrack_pxe::attest::tpm::constants::{alg, cap, rh};
use ironrack_pxe::attest::tpm::pcr::extend;
use ironrack_pxe::attest::tpm::public::KeyParams;
use ironrack_pxe::attest::tpm::{
    AK_PERSISTENT_HANDLE, AkTemplate, EkTemplate, PcrSelection, ResponseCode, Tpm, TpmError,
    Transport,
};
use sha2::{Digest, Sha256};

use crate::swtpm::Swtpm;

#[test]
fn startup_is_idempotent() {
    if !crate::swtpm::available() {
        return;
    }
    let sw = Swtpm::start();
    let mut tpm = sw.connect();
    assert!(tpm.startup().unwrap(), "first Startup runs");
    assert!(
        !tpm.startup().unwrap(),
        "second Startup reports already started"
    );
}

#[test]
fn commands_before_startup_fail_with_initialize() {
    if !crate::swtpm::available() {
        return;
    }
    let sw = Swtpm::start();
    let mut tpm = sw.connect();
    let err = tpm.pcr_banks().unwrap_err();
    assert_eq!(err.response_code(), Some(ResponseCode::INITIALIZE));
    assert!(err.to_string().contains("TPM_RC_INITIALIZE"), "{err}");
}

#[test]
fn get_capability_algorithms_banks_handles_properties() {
    if !crate::swtpm::available() {
        return;
    }
    let (_sw, mut tpm) = Swtpm::started();
    let algs: Vec<u16> = tpm.algorithms().unwrap().into_iter().map(|a| a.0).collect();
    for needed in [
        alg::RSA,
        alg::ECC,
        alg::SHA256,
        alg::AES,
        alg::CFB,
        alg::ECDSA,
        alg::RSASSA,
    ] {
        assert!(algs.contains(&needed), "TPM lacks {}", alg::name(needed));
    }
    let banks = tpm.pcr_banks().unwrap();
    let allocated: Vec<u16> = banks
        .banks
        .iter()
        .filter(|b| !b.is_empty())
        .map(|b| b.hash)
        .collect();
    assert_eq!(
        allocated,
        [alg::SHA1, alg::SHA256],
        "manufactured with sha1,sha256"
    );
    assert_eq!(banks.banks[1].indices().len(), 24);

    // swtpm_setup made the EKs persistent and wrote their certificates.
    let persistent = tpm.handles(rh::PERSISTENT_FIRST).unwrap();
    assert_eq!(persistent, [0x8101_0001, 0x8101_0016]);
    let nv = tpm.handles(rh::NV_INDEX_FIRST).unwrap();
    for index in [0x01c0_0002, 0x01c0_0016, 0x01c0_8000] {
        assert!(
            nv.contains(&index),
            "NV index {index:#x} missing from {nv:x?}"
        );
    }
    let buffer_max = tpm.property(cap::PT_NV_BUFFER_MAX).unwrap().unwrap();
    assert!(buffer_max >= 512, "NV buffer max {buffer_max}");
    let manufacturer = tpm.property(cap::PT_MANUFACTURER).unwrap().unwrap();
    assert_eq!(&manufacturer.to_be_bytes(), b"IBM\0");
}

/// Counts exchanges, to see PCR_Read split into several calls.
struct Counting<T> {
    inner: T,
    calls: std::rc::Rc<std::cell::Cell<usize>>,
}

impl<T: Transport> Transport for Counting<T> {
    fn transmit(&mut self, command: &[u8]) -> std::io::Result<Vec<u8>> {
        self.calls.set(self.calls.get() + 1);
        self.inner.transmit(command)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[test]
fn pcr_read_beyond_eight_digests() {
    if !crate::swtpm::available() {
        return;
    }
    let sw = Swtpm::start();
    let calls = std::rc::Rc::new(std::cell::Cell::new(0));
    let mut tpm = Tpm::new(Counting {
        inner: sw.socket(),
        calls: calls.clone(),
    });
    tpm.startup().unwrap();
    calls.set(0);
    // 24 SHA-256 + 24 SHA-1 PCRs: six calls' worth at 8 per call.
    let mut selection = PcrSelection::new(alg::SHA256, 0..24);
    selection
        .banks
        .extend(PcrSelection::new(alg::SHA1, 0..24).banks);
    let values = tpm.pcr_read(&selection).unwrap();
    assert_eq!(values.len(), 48);
    assert_eq!(calls.get(), 6, "8 digests per PCR_Read");
    // After Startup(CLEAR) without firmware, PCRs 0-16 and 23 are zero,
    // 17-22 (locality-reset PCRs) are all ones.
    assert_eq!(values.get(alg::SHA256, 0).unwrap(), [0u8; 32]);
    assert_eq!(values.get(alg::SHA256, 17).unwrap(), [0xffu8; 32]);
    assert_eq!(values.get(alg::SHA1, 23).unwrap(), [0u8; 20]);
}

#[test]
fn pcr_extend_matches_software_extend() {
    if !crate::swtpm::available() {
        return;
    }
    let (_sw, mut tpm) = Swtpm::started();
    let sel = PcrSelection::new(alg::SHA256, [15]);
    let before = tpm.pcr_read(&sel).unwrap();
    let m1 = Sha256::digest(b"manifest digest");
    let m2 = Sha256::digest(b"rootfs digest");
    tpm.pcr_extend(15, &[(alg::SHA256, m1.as_slice())]).unwrap();
    tpm.pcr_extend(15, &[(alg::SHA256, m2.as_slice())]).unwrap();
    let after = tpm.pcr_read(&sel).unwrap();
    let expected = extend(
        alg::SHA256,
        &extend(alg::SHA256, before.get(alg::SHA256, 15).unwrap(), &m1).unwrap(),
        &m2,
    )
    .unwrap();
    assert_eq!(after.get(alg::SHA256, 15).unwrap(), expected.as_slice());
    assert_ne!(after, before);
}

#[test]
fn pcr_extend_of_a_missing_bank_names_the_parameter() {
    if !crate::swtpm::available() {
        return;
    }
    let (_sw, mut tpm) = Swtpm::started();
    // A digest of the wrong size for its bank: the TPM refuses it.
    let err = tpm
        .pcr_extend(15, &[(alg::SHA256, &[0u8; 20])])
        .unwrap_err();
    let rc = err.response_code().expect("TPM error");
    assert!(rc.is_format_one() || rc.0 & 0x100 != 0, "{rc}");
    assert!(err.to_string().starts_with("TPM swtpm socket"), "{err}");
}

/// The EK CreatePrimary derives from the default template must be the key
/// swtpm_setup persisted and certified.
#[test]
fn create_primary_ek_matches_the_persistent_ek() {
    if !crate::swtpm::available() {
        return;
    }
    let (_sw, mut tpm) = Swtpm::started();
    for (template, persistent) in [
        (EkTemplate::Rsa2048, 0x8101_0001),
        (EkTemplate::EccP384, 0x8101_0016),
    ] {
        let (stored, stored_name) = tpm.read_public(persistent).unwrap();
        assert!(template.matches(&stored), "{template:?} vs {stored:?}");
        let ek = tpm
            .create_primary(rh::ENDORSEMENT, &template.public())
            .unwrap();
        assert_eq!(ek.public, stored, "{template:?}");
        assert_eq!(ek.name, stored_name);
        assert_eq!(
            ek.name,
            ek.public.name().unwrap(),
            "Name computed in software"
        );
        let (again, _) = tpm.read_public(ek.handle).unwrap();
        assert_eq!(again, ek.public);
        tpm.flush(ek.handle).unwrap();
    }
    // The `unique` field is part of the derivation: padding it (as the
    // low-range templates do) gives another key than the certified one.
    let mut padded = EkTemplate::EccP384.public();
    if let KeyParams::Ecc { x, y, .. } = &mut padded.params {
        *x = vec![0; 48];
        *y = vec![0; 48];
    }
    let other = tpm.create_primary(rh::ENDORSEMENT, &padded).unwrap();
    let (swtpm_p384, _) = tpm.read_public(0x8101_0016).unwrap();
    assert_ne!(other.public, swtpm_p384);
    tpm.flush(other.handle).unwrap();
    // The P-256 template works too (no certificate for it on swtpm 0.7).
    let p256 = tpm
        .create_primary(rh::ENDORSEMENT, &EkTemplate::EccP256.public())
        .unwrap();
    assert!(EkTemplate::EccP256.matches(&p256.public));
    tpm.flush(p256.handle).unwrap();
}

#[test]
fn ak_is_the_same_key_every_boot() {
    if !crate::swtpm::available() {
        return;
    }
    let sw = Swtpm::start();
    let mut names = Vec::new();
    for _boot in 0..2 {
        let mut tpm: Tpm<_> = sw.connect();
        tpm.startup().unwrap();
        for t in [AkTemplate::EccP256, AkTemplate::Rsa2048] {
            let ak = tpm.create_primary(rh::ENDORSEMENT, &t.public()).unwrap();
            names.push(ak.name.clone());
            tpm.flush(ak.handle).unwrap();
        }
    }
    assert_eq!(names[0], names[2]);
    assert_eq!(names[1], names[3]);
    assert_ne!(names[0], names[1]);
}

#[test]
fn flushed_handles_are_gone() {
    if !crate::swtpm::available() {
        return;
    }
    let (_sw, mut tpm) = Swtpm::started();
    let ak = tpm
        .create_primary(rh::ENDORSEMENT, &AkTemplate::EccP256.public())
        .unwrap();
    tpm.flush(ak.handle).unwrap();
    let err = tpm.read_public(ak.handle).unwrap_err();
    let rc = err.response_code().unwrap();
    // A transient handle that is not loaded: a warning naming handle 0.
    assert_eq!(rc.name(), "TPM_RC_REFERENCE_H0", "{rc}");
    let err = tpm.flush(ak.handle).unwrap_err();
    assert!(err.response_code().is_some());
}

#[test]
fn nv_read_public_and_chunked_read_of_ek_certificates() {
    if !crate::swtpm::available() {
        return;
    }
    let (_sw, mut tpm) = Swtpm::started();
    let chunk = tpm.property(cap::PT_NV_BUFFER_MAX).unwrap().unwrap() as usize;
    for index in [0x01c0_0002, 0x01c0_0016] {
        let public = tpm.nv_read_public(index).unwrap();
        assert_eq!(public.index, index);
        let cert = tpm.nv_read(index).unwrap();
        assert_eq!(cert.len(), usize::from(public.data_size));
        assert_eq!(cert[0], 0x30, "DER SEQUENCE");
        // Small chunks (an odd size, so the last one is partial) give the
        // same bytes as the TPM's own maximum.
        assert!(cert.len() > 3 * 97);
        assert_eq!(tpm.nv_read_in_chunks(index, 97).unwrap(), cert);
        assert!(chunk >= 512);
    }
    let err = tpm.nv_read_public(0x01c0_000a).unwrap_err();
    assert_eq!(err.response_code().unwrap().name(), "TPM_RC_HANDLE");
}

/// The AK is created and persisted once; after a power cycle it is read
/// back from its persistent handle, the same key.
#[test]
fn ak_is_persisted_once_and_reused_after_a_power_cycle() {
    if !crate::swtpm::available() {
        return;
    }
    let mut sw = Swtpm::start();
    let mut tpm = sw.connect();
    tpm.startup().unwrap();
    assert!(tpm.read_public(AK_PERSISTENT_HANDLE).is_err(), "no AK yet");
    let first = tpm
        .load_or_create_ak(AkTemplate::Rsa2048, AK_PERSISTENT_HANDLE)
        .unwrap();
    assert!(first.persistent);
    assert_eq!(first.key.handle, AK_PERSISTENT_HANDLE);
    assert!(
        tpm.handles(rh::PERSISTENT_FIRST)
            .unwrap()
            .contains(&AK_PERSISTENT_HANDLE)
    );
    drop(tpm);

    sw.restart();
    let mut tpm = sw.connect();
    assert!(tpm.startup().unwrap());
    let again = tpm
        .load_or_create_ak(AkTemplate::Rsa2048, AK_PERSISTENT_HANDLE)
        .unwrap();
    assert!(again.persistent);
    assert_eq!(again.key.name, first.key.name);
    // It quotes like a freshly created one.
    let quote = tpm
        .quote(again.key.handle, b"n", &PcrSelection::sha256_boot())
        .unwrap();
    assert!(!quote.attest.is_empty());
    again.release(&mut tpm).unwrap();
    assert!(
        tpm.read_public(AK_PERSISTENT_HANDLE).is_ok(),
        "release keeps a persistent AK"
    );

    // Asking for the other kind at the same handle does not evict the AK.
    let err = tpm
        .load_or_create_ak(AkTemplate::EccP256, AK_PERSISTENT_HANDLE)
        .unwrap_err();
    assert!(matches!(err, TpmError::HandleTaken { .. }), "{err}");
    let (still, _) = tpm.read_public(AK_PERSISTENT_HANDLE).unwrap();
    assert!(AkTemplate::Rsa2048.matches(&still));
}

/// Oversized input from the network is refused before it reaches the TPM
/// (and never overflows a TPM2B size field).
#[test]
fn oversized_arguments_are_refused() {
    if !crate::swtpm::available() {
        return;
    }
    let (_sw, mut tpm) = Swtpm::started();
    let ak = tpm.create_ak(AkTemplate::EccP256).unwrap();
    let err = tpm
        .quote(ak.handle, &[0u8; 70_000], &PcrSelection::sha256_boot())
        .unwrap_err();
    assert!(
        matches!(
            err,
            TpmError::ArgumentTooLarge {
                what: "quote nonce",
                ..
            }
        ),
        "{err}"
    );
    let err = tpm
        .activate_credential(
            ak.handle,
            ak.handle,
            EkTemplate::Rsa2048.auth(),
            &[0; 70_000],
            &[],
        )
        .unwrap_err();
    assert!(matches!(err, TpmError::ArgumentTooLarge { .. }), "{err}");
    // At the boundary: a 64-byte nonce is quoted, 65 bytes refused.
    let quote = tpm
        .quote(ak.handle, &[7u8; 64], &PcrSelection::sha256_boot())
        .unwrap();
    assert!(quote.attest.windows(64).any(|w| w == [7u8; 64]));
    let err = tpm
        .quote(ak.handle, &[7u8; 65], &PcrSelection::sha256_boot())
        .unwrap_err();
    assert!(
        matches!(err, TpmError::ArgumentTooLarge { len: 65, .. }),
        "{err}"
    );
    tpm.flush(ak.handle).unwrap();
}
