//! minisign public keys: `untrusted comment: ...` then
//! base64("Ed" ‖ key id ‖ 32-byte Ed25519 key).

use std::fmt;
use std::path::Path;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{ALG_ED, Lines, UNTRUSTED_MAX, UNTRUSTED_PREFIX, check_comment, encode_base64};
use crate::error::{AlgorithmId, Error, Item};
use crate::files;
use crate::keyid::KeyId;

const BLOB_LEN: usize = 2 + 8 + 32;
/// No public key file is anywhere near this big.
const FILE_LIMIT: usize = 4096;

/// An Ed25519 public key with its minisign key id.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key_id: KeyId,
    key: VerifyingKey,
}

impl PublicKey {
    /// A public key from its parts.
    pub fn new(key_id: KeyId, key: VerifyingKey) -> PublicKey {
        PublicKey { key_id, key }
    }

    /// The key id.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The Ed25519 key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Parse the base64 blob alone, as `minisign -P` takes it.
    pub fn from_base64(text: &str) -> Result<PublicKey, Error> {
        let blob = super::decode_base64(text.as_bytes(), BLOB_LEN, Item::PublicKey, 1)?;
        Self::from_blob(&blob)
    }

    fn from_blob(blob: &[u8]) -> Result<PublicKey, Error> {
        let alg = [blob[0], blob[1]];
        if alg != ALG_ED {
            return Err(Error::Algorithm {
                what: Item::PublicKey,
                got: AlgorithmId(alg),
                want: "\"Ed\"",
            });
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&blob[2..10]);
        let mut key = [0u8; 32];
        key.copy_from_slice(&blob[10..42]);
        let key = VerifyingKey::from_bytes(&key).map_err(|_| Error::InvalidPoint {
            what: Item::PublicKey,
        })?;
        if key.is_weak() {
            return Err(Error::InvalidPoint {
                what: Item::PublicKey,
            });
        }
        Ok(PublicKey {
            key_id: KeyId(id),
            key,
        })
    }

    /// The base64 blob alone (what `minisign -P` takes).
    pub fn to_base64(&self) -> String {
        let mut blob = Vec::with_capacity(BLOB_LEN);
        blob.extend_from_slice(&ALG_ED);
        blob.extend_from_slice(self.key_id.as_bytes());
        blob.extend_from_slice(self.key.as_bytes());
        encode_base64(&blob)
    }

    /// Parse a public key file.
    pub fn parse(bytes: &[u8]) -> Result<PublicKey, Error> {
        let mut lines = Lines::new(bytes, Item::PublicKey, FILE_LIMIT)?;
        lines.next_prefixed(UNTRUSTED_PREFIX, "untrusted comment")?;
        let blob = lines.next_base64(BLOB_LEN, "base64 public key")?;
        lines.end()?;
        Self::from_blob(&blob)
    }

    /// The public key file text, with an untrusted comment.
    pub fn to_file_text(&self, comment: &str) -> Result<String, Error> {
        check_comment(comment, "untrusted comment", UNTRUSTED_MAX)?;
        Ok(format!(
            "untrusted comment: {comment}\n{}\n",
            self.to_base64()
        ))
    }

    /// Load a public key file.
    pub fn load(path: &Path) -> Result<PublicKey, Error> {
        let bytes = files::read_limited(path, Item::PublicKey, FILE_LIMIT as u64)?;
        PublicKey::parse(&bytes).map_err(|err| err.in_file(path))
    }

    /// Check an Ed25519 signature the way libsodium does (canonical S, no
    /// small-order R or key).
    pub(crate) fn verify_raw(&self, message: &[u8], signature: &Signature) -> bool {
        self.key.verify_strict(message, signature).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} {})", self.key_id, self.to_base64())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PublicKey::from_base64(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made by `minisign -G -W` (0.11) on this machine.
    const MINISIGN_PUB: &str = "untrusted comment: minisign public key 380C73A758C0392E\n\
                                RWQuOcBYp3MMODJnBHODQN18EkTWIkAub0WO2lDAs+n2pXAaY4RYguBp\n";

    #[test]
    fn reads_a_minisign_public_key() {
        let key = PublicKey::parse(MINISIGN_PUB.as_bytes()).unwrap();
        assert_eq!(key.key_id().to_string(), "380C73A758C0392E");
        assert_eq!(
            key.to_base64(),
            "RWQuOcBYp3MMODJnBHODQN18EkTWIkAub0WO2lDAs+n2pXAaY4RYguBp"
        );
        let text = key
            .to_file_text("minisign public key 380C73A758C0392E")
            .unwrap();
        assert_eq!(text, MINISIGN_PUB);
    }

    #[test]
    fn refuses_wrong_algorithm_and_length() {
        let wrong_alg = MINISIGN_PUB.replace("RWQu", "RUQu");
        let err = PublicKey::parse(wrong_alg.as_bytes()).unwrap_err();
        assert!(matches!(err, Error::Algorithm { .. }), "{err}");
        let short = MINISIGN_PUB.replace("guBp", "");
        let err = PublicKey::parse(short.as_bytes()).unwrap_err();
        assert!(
            matches!(err, Error::Length { .. } | Error::Base64 { .. }),
            "{err}"
        );
        let no_comment = MINISIGN_PUB.replace("untrusted comment: ", "");
        let err = PublicKey::parse(no_comment.as_bytes()).unwrap_err();
        assert!(matches!(err, Error::LinePrefix { line: 1, .. }), "{err}");
    }
}
