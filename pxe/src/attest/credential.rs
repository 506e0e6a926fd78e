//! TPM2_MakeCredential in software (Part 1 §24, Part 3 §12.6).
//!
//! The server seals a secret to an EK for one AK Name. Only the TPM holding
//! that EK can recover it, and only by TPM2_ActivateCredential with a
//! loaded object whose Name is the AK Name: success proves the AK lives in
//! the same TPM as the EK (and has the attributes its Name commits to).
//!
//! seed: random and RSA-OAEP encrypted to the EK (label "IDENTITY"), or
//! derived with KDFe from an ephemeral ECDH exchange with the EK.
//! symKey = KDFa(seed, "STORAGE", AK Name), HMAC key = KDFa(seed,
//! "INTEGRITY"); the blob is HMAC(encIdentity ‖ AK Name) ‖ encIdentity,
//! encIdentity = AES-CFB(symKey, IV 0, TPM2B(secret)).

use rsa::{BoxedUint, Oaep, PublicKey as RsaPublicKey};
use sha2::{Sha256, Sha384, Sha512};

use crate::attest::tpm::constants::{alg, curve, object};
use crate::attest::tpm::kdf::{self, Unsupported};
use crate::attest::tpm::public::{KeyParams, Public};
use crate::attest::tpm::wire::Writer;

/// What MakeCredential produces: the two TPM2B payloads the agent passes
/// to TPM2_ActivateCredential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// TPM2B_ID_OBJECT payload: TPM2B(integrity HMAC) ‖ encIdentity.
    pub id_object: Vec<u8>,
    /// TPM2B_ENCRYPTED_SECRET payload: the OAEP ciphertext (RSA EK) or the
    /// ephemeral TPMS_ECC_POINT (ECC EK).
    pub encrypted_secret: Vec<u8>,
}

/// Why a credential could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The EK is not a restricted decryption key with AES-CFB protection.
    #[error("EK is not usable for MakeCredential: {reason}")]
    UnsuitableEk {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The secret is longer than the EK's name-hash digest.
    #[error("credential of {len} bytes exceeds the EK's digest size {max}")]
    SecretTooLong {
        /// Secret length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The EK public key is not a valid key.
    #[error("EK public key is invalid: {reason}")]
    BadEkKey {
        /// What the crypto library said.
        reason: String,
    },
    /// An algorithm the EK names is not implemented.
    #[error("EK uses an unsupported algorithm")]
    Unsupported(#[from] Unsupported),
    /// The OS random source failed.
    #[error("random number generator failed: {reason}")]
    Random {
        /// The error.
        reason: String,
    },
}

/// Makes a credential carrying `secret` for the object named `ak_name`,
/// readable only by the TPM holding `ek`.
pub fn make_credential(
    ek: &Public,
    ak_name: &[u8],
    secret: &[u8],
) -> Result<Credential, CredentialError> {
    if !ek.has(object::RESTRICTED | object::DECRYPT) || ek.has(object::SIGN) {
        return Err(CredentialError::UnsuitableEk {
            reason: "not a restricted decryption key",
        });
    }
    let name_alg = ek.name_alg;
    let digest_len = alg::digest_size(name_alg).ok_or(Unsupported { alg: name_alg })?;
    if secret.len() > digest_len {
        return Err(CredentialError::SecretTooLong {
            len: secret.len(),
            max: digest_len,
        });
    }
    let (seed, encrypted_secret, symmetric) = match &ek.params {
        KeyParams::Rsa {
            symmetric,
            exponent,
            modulus,
            ..
        } => {
            let mut seed = vec![0u8; digest_len];
            random(&mut seed)?;
            let encrypted = rsa_oaep_identity(name_alg, *exponent, modulus, &seed)?;
            (seed, encrypted, *symmetric)
        }
        KeyParams::Ecc {
            symmetric,
            curve: curve_id,
            x,
            y,
            ..
        } => {
            let ex = ecdh_ephemeral(*curve_id, x, y)?;
            // partyUInfo = the ephemeral x, partyVInfo = the EK's x.
            let seed = kdf::kdfe(
                name_alg,
                &ex.z,
                "IDENTITY",
                &ex.x,
                x,
                (digest_len * 8) as u32,
            )?;
            let mut point = Writer::new();
            point.tpm2b(&ex.x).tpm2b(&ex.y);
            (seed, point.finish(), *symmetric)
        }
    };
    if symmetric.alg != alg::AES || symmetric.mode != alg::CFB {
        return Err(CredentialError::UnsuitableEk {
            reason: "symmetric algorithm is not AES-CFB",
        });
    }
    let id_object = protect(
        name_alg,
        &seed,
        u32::from(symmetric.key_bits),
        ak_name,
        secret,
    )?;
    Ok(Credential {
        id_object,
        encrypted_secret,
    })
}

/// The symmetric half of MakeCredential: from a
/// seed, encrypt and integrity-protect `secret` for `name`.
fn protect(
    name_alg: u16,
    seed: &[u8],
    sym_bits: u32,
    name: &[u8],
    secret: &[u8],
) -> Result<Vec<u8>, Unsupported> {
    let digest_bits = (alg::digest_size(name_alg).ok_or(Unsupported { alg: name_alg })? * 8) as u32;
    let sym_key = kdf::kdfa(name_alg, seed, "STORAGE", name, &[], sym_bits)?;
    let mut enc_identity = Writer::new();
    enc_identity.tpm2b(secret);
    let mut enc_identity = enc_identity.finish();
    kdf::aes_cfb_zero_iv(&sym_key, &mut enc_identity, true)?;
    let hmac_key = kdf::kdfa(name_alg, seed, "INTEGRITY", &[], &[], digest_bits)?;
    let integrity = kdf::hmac(name_alg, &hmac_key, &[&enc_identity, name])?;
    let mut blob = Writer::new();
    blob.tpm2b(&integrity).bytes(&enc_identity);
    Ok(blob.finish())
}

fn random(buf: &mut [u8]) -> Result<(), CredentialError> {
    getrandom::fill(buf).map_err(|e| CredentialError::Random {
        reason: e.to_string(),
    })
}

/// RSA-OAEP with the EK's name hash and the label "IDENTITY\0".
fn rsa_oaep_identity(
    name_alg: u16,
    exponent: u32,
    modulus: &[u8],
    seed: &[u8],
) -> Result<Vec<u8>, CredentialError> {
    let bad = |e: rsa::Error| CredentialError::BadEkKey {
        reason: e.to_string(),
    };
    let bits = (modulus.len() * 8) as u32;
    let n = BoxedUint::from_be_slice(modulus, bits).map_err(|_| CredentialError::BadEkKey {
        reason: "modulus does not decode".into(),
    })?;
    let e = if exponent == 0 { 65537 } else { exponent };
    let e = BoxedUint::from_be_slice(&e.to_be_bytes(), 32).expect("u32 fits 32 bits");
    let key = RsaPublicKey::new(n, e).map_err(bad)?;
    let label = b"IDENTITY\0".to_vec();
    let mut rng = getrandom::SysRng;
    match name_alg {
        alg::SHA256 => key.encrypt(&mut rng, Oaep::<Sha256>::new_with_label(label), seed),
        alg::SHA384 => key.encrypt(&mut rng, Oaep::<Sha384>::new_with_label(label), seed),
        alg::SHA512 => key.encrypt(&mut rng, Oaep::<Sha512>::new_with_label(label), seed),
        other => return Err(Unsupported { alg: other }.into()),
    }
    .map_err(bad)
}

/// The result of an ephemeral ECDH exchange with the EK.
struct Exchange {
    /// Z: the x coordinate of the shared point.
    z: Vec<u8>,
    /// The ephemeral public point, sent to the TPM.
    x: Vec<u8>,
    y: Vec<u8>,
}

/// An ephemeral ECDH exchange with the EK.
fn ecdh_ephemeral(curve_id: u16, x: &[u8], y: &[u8]) -> Result<Exchange, CredentialError> {
    macro_rules! exchange {
        ($c:ident, $size:expr) => {{
            use $c::elliptic_curve::sec1::ToSec1Point;
            let point = sec1_point::<$size>(x, y)?;
            let ek =
                $c::PublicKey::from_sec1_bytes(&point).map_err(|_| CredentialError::BadEkKey {
                    reason: "EK point is not on the curve".into(),
                })?;
            let secret = loop {
                let mut bytes = [0u8; $size];
                random(&mut bytes)?;
                let repr = $c::FieldBytes::from(bytes);
                if let Some(s) =
                    Option::<$c::NonZeroScalar>::from($c::NonZeroScalar::from_repr(repr))
                {
                    break s;
                }
            };
            let ephemeral = $c::PublicKey::from_secret_scalar(&secret).to_sec1_point(false);
            let shared = $c::ecdh::diffie_hellman(secret, ek.as_affine());
            Exchange {
                z: shared.raw_secret_bytes().to_vec(),
                x: ephemeral.x().expect("uncompressed point").to_vec(),
                y: ephemeral.y().expect("uncompressed point").to_vec(),
            }
        }};
    }
    Ok(match curve_id {
        curve::NIST_P256 => exchange!(p256, 32),
        curve::NIST_P384 => exchange!(p384, 48),
        other => {
            return Err(CredentialError::UnsuitableEk {
                reason: if other == 0 {
                    "no curve"
                } else {
                    "curve is neither P-256 nor P-384"
                },
            });
        }
    })
}

/// The SEC1 uncompressed encoding 04 ‖ x ‖ y, coordinates left-padded to
/// the field size.
pub(crate) fn sec1_point<const N: usize>(x: &[u8], y: &[u8]) -> Result<Vec<u8>, CredentialError> {
    if x.len() > N || y.len() > N {
        return Err(CredentialError::BadEkKey {
            reason: "EK coordinate longer than the field".into(),
        });
    }
    let mut out = vec![0u8; 1 + 2 * N];
    out[0] = 0x04;
    out[1 + N - x.len()..1 + N].copy_from_slice(x);
    out[1 + 2 * N - y.len()..].copy_from_slice(y);
    Ok(out)
}
