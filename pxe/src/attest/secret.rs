//! A node's secret (its join token, say), released only to the TPM that
//! just passed attestation.
//!
//! TPM2_MakeCredential carries at most one digest (32 bytes for a SHA-256
//! EK), so it carries a fresh random key instead of the secret itself:
//!
//! - `key` = 32 random bytes, sealed by [`make_credential`] to the node's
//!   EK for its AK's Name: only TPM2_ActivateCredential in the TPM that
//!   holds both keys recovers it;
//! - `enc` = KDFa(SHA-256, key, "IRONRACK SECRET", "encrypt", AK Name, 256),
//!   `mac` = KDFa(SHA-256, key, "IRONRACK SECRET", "integrity", AK Name, 256);
//! - `ciphertext` = AES-256-CFB(enc, zero IV, secret): the zero IV is safe
//!   because the key is never used twice;
//! - `tag` = HMAC-SHA-256(mac, node id ‖ ciphertext): encrypt-then-MAC, so a
//!   blob for one node cannot be replayed as another's.
//!
//! The same KDFa, AES-CFB and HMAC serve the credential itself
//! ([`crate::attest::tpm::kdf`]), tested against swtpm.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::attest::credential::{CredentialError, make_credential};
use crate::attest::protocol::{Bytes, NodeId};
use crate::attest::tpm::Public;
use crate::attest::tpm::constants::alg;
use crate::attest::tpm::kdf;

/// The largest secret the server releases (a token or a key file, not a
/// disk image).
pub const MAX_SECRET: usize = 64 * 1024;

const LABEL: &str = "IRONRACK SECRET";
const KEY_LEN: usize = 32;

/// A secret on its way to one node: the credential for its TPM and the
/// secret encrypted under the key the credential carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SealedSecret {
    /// TPM2B_ID_OBJECT payload for TPM2_ActivateCredential.
    pub id_object: Bytes,
    /// TPM2B_ENCRYPTED_SECRET payload for TPM2_ActivateCredential.
    pub encrypted_secret: Bytes,
    /// The secret, AES-256-CFB encrypted.
    pub ciphertext: Bytes,
    /// HMAC-SHA-256 over the node id and the ciphertext.
    pub tag: Bytes,
}

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Larger than [`MAX_SECRET`].
    #[error("the secret is {len} bytes; at most {MAX_SECRET} are released")]
    TooLarge {
        /// Its size.
        len: usize,
    },
    /// The AK's Name could not be computed.
    #[error("the AK's Name: {reason}")]
    AkName {
        /// Why.
        reason: String,
    },
    /// MakeCredential failed (the EK is unusable).
    #[error("sealing to the EK")]
    Credential(#[from] CredentialError),
    /// The key the TPM returned is not a release key.
    #[error("ActivateCredential returned {len} bytes, expected a {KEY_LEN}-byte key")]
    KeyLength {
        /// What came back.
        len: usize,
    },
    /// The blob was altered, is for another node, or the key is wrong.
    #[error("the sealed secret does not authenticate for node {node}")]
    Forged {
        /// The node that opened it.
        node: NodeId,
    },
    /// The OS random source failed.
    #[error("random number generator failed: {reason}")]
    Random {
        /// The error.
        reason: String,
    },
}

struct Keys {
    enc: Zeroizing<Vec<u8>>,
    mac: Zeroizing<Vec<u8>>,
}

fn derive(key: &[u8], ak_name: &[u8]) -> Keys {
    // SHA-256 is implemented: kdfa cannot fail on it.
    let kdfa = |purpose: &str| {
        Zeroizing::new(
            kdf::kdfa(
                alg::SHA256,
                key,
                LABEL,
                purpose.as_bytes(),
                ak_name,
                (KEY_LEN * 8) as u32,
            )
            .unwrap_or_default(),
        )
    };
    Keys {
        enc: kdfa("encrypt"),
        mac: kdfa("integrity"),
    }
}

fn tag(keys: &Keys, node: &NodeId, ciphertext: &[u8]) -> Vec<u8> {
    let id = node.as_str().as_bytes();
    let len = (id.len() as u16).to_be_bytes();
    kdf::hmac(alg::SHA256, &keys.mac, &[&len, id, ciphertext]).unwrap_or_default()
}

fn ak_name(ak: &Public) -> Result<Vec<u8>, SecretError> {
    ak.name().map_err(|e| SecretError::AkName {
        reason: e.to_string(),
    })
}

/// Seals `secret` for `node`: readable only by the TPM holding `ek` and `ak`.
pub fn seal(
    ek: &Public,
    ak: &Public,
    node: &NodeId,
    secret: &[u8],
) -> Result<SealedSecret, SecretError> {
    if secret.len() > MAX_SECRET {
        return Err(SecretError::TooLarge { len: secret.len() });
    }
    let name = ak_name(ak)?;
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    getrandom::fill(&mut key[..]).map_err(|e| SecretError::Random {
        reason: e.to_string(),
    })?;
    let credential = make_credential(ek, &name, &key[..])?;
    let keys = derive(&key[..], &name);
    let mut ciphertext = secret.to_vec();
    kdf::aes_cfb_zero_iv(&keys.enc, &mut ciphertext, true).unwrap_or_default();
    let tag = tag(&keys, node, &ciphertext);
    Ok(SealedSecret {
        id_object: Bytes(credential.id_object),
        encrypted_secret: Bytes(credential.encrypted_secret),
        ciphertext: Bytes(ciphertext),
        tag: Bytes(tag),
    })
}

/// Opens `sealed` with the key TPM2_ActivateCredential returned; the tag
/// is checked (in constant time) before anything is decrypted.
pub fn open(
    sealed: &SealedSecret,
    key: &[u8],
    ak: &Public,
    node: &NodeId,
) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    if key.len() != KEY_LEN {
        return Err(SecretError::KeyLength { len: key.len() });
    }
    let keys = derive(key, &ak_name(ak)?);
    let want = tag(&keys, node, &sealed.ciphertext);
    if !constant_time_eq(&want, &sealed.tag) {
        return Err(SecretError::Forged { node: node.clone() });
    }
    let mut plain = Zeroizing::new(sealed.ciphertext.0.clone());
    kdf::aes_cfb_zero_iv(&keys.enc, &mut plain, false).unwrap_or_default();
    Ok(plain)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::tpm::model::SimulatedTpm;

    fn node(id: &str) -> NodeId {
        NodeId::new(id).unwrap()
    }

    /// The software TPM model opens the credential (the swtpm test of the
    /// same path is tests/serve_attest.rs and the qemu boot).
    fn activate(tpm: &SimulatedTpm, sealed: &SealedSecret) -> Vec<u8> {
        tpm.activate_credential(tpm.ak_name(), &sealed.id_object, &sealed.encrypted_secret)
            .unwrap()
    }

    fn model() -> SimulatedTpm {
        SimulatedTpm::new(crate::attest::tpm::AkTemplate::default()).unwrap()
    }

    #[test]
    fn only_the_right_node_opens_its_secret() {
        let tpm = model();
        let (ek, ak) = (tpm.ek_public().clone(), tpm.ak_public().clone());
        let n1 = node("52:54:00:12:00:41");
        let secret = b"join-token: 8f2c\n".repeat(100);
        let sealed = seal(&ek, &ak, &n1, &secret).unwrap();
        assert!(!sealed.ciphertext.0.windows(10).any(|w| w == b"join-token"));
        let key = activate(&tpm, &sealed);
        assert_eq!(&open(&sealed, &key, &ak, &n1).unwrap()[..], &secret[..]);

        let other = node("52:54:00:12:00:42");
        assert!(matches!(
            open(&sealed, &key, &ak, &other),
            Err(SecretError::Forged { .. })
        ));
        let mut flipped = sealed.clone();
        flipped.ciphertext.0[3] ^= 1;
        assert!(matches!(
            open(&flipped, &key, &ak, &n1),
            Err(SecretError::Forged { .. })
        ));
        // Another TPM cannot even recover the key.
        let stranger = model();
        assert!(
            stranger
                .activate_credential(tpm.ak_name(), &sealed.id_object, &sealed.encrypted_secret)
                .is_err()
        );
        assert!(matches!(
            open(&sealed, &key[..16], &ak, &n1),
            Err(SecretError::KeyLength { len: 16 })
        ));
    }

    #[test]
    fn too_large_a_secret_is_refused() {
        let tpm = model();
        let err = seal(
            tpm.ek_public(),
            tpm.ak_public(),
            &node("n1"),
            &vec![0; MAX_SECRET + 1],
        )
        .unwrap_err();
        assert!(err.to_string().contains("at most 65536"), "{err}");
    }
}
