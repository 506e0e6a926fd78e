//! minisign secret keys.
//!
//! The base64 blob (158 bytes) is, as minisign's `SeckeyStruct`:
//! sig alg "Ed" ‖ kdf alg ("Sc" scrypt, or two zero bytes when unencrypted)
//! ‖ checksum alg "B2" ‖ 32-byte salt ‖ opslimit u64 LE ‖ memlimit u64 LE ‖
//! key id (8) ‖ Ed25519 secret key (64: seed ‖ public key) ‖ checksum (32,
//! BLAKE2b-256 of sig alg ‖ key id ‖ secret key). When encrypted, the last
//! 104 bytes are XORed with the scrypt output for the passphrase.

use std::fmt;
use std::path::Path;

use blake2::{Blake2b256, Digest};
use ed25519_dalek::{Signature, SigningKey};
use zeroize::{Zeroize, Zeroizing};

use super::kdf::{self, KdfLimits};
use super::{ALG_ED, Lines, UNTRUSTED_MAX, UNTRUSTED_PREFIX, check_comment, encode_base64};
use crate::error::{AlgorithmId, Error, Item};
use crate::files;
use crate::keyid::KeyId;
use crate::minisign::PublicKey;
use crate::passphrase::Passphrase;
use crate::signer::Signer;

const KDF_SCRYPT: [u8; 2] = *b"Sc";
const KDF_NONE: [u8; 2] = [0, 0];
const CHK_BLAKE2B: [u8; 2] = *b"B2";

const BLOB_LEN: usize = 158;
const SALT: std::ops::Range<usize> = 6..38;
const OPSLIMIT: std::ops::Range<usize> = 38..46;
const MEMLIMIT: std::ops::Range<usize> = 46..54;
/// key id ‖ secret key ‖ checksum: the part the passphrase encrypts.
const ENCRYPTED: std::ops::Range<usize> = 54..158;
const KEY_ID: std::ops::Range<usize> = 54..62;
const SECRET: std::ops::Range<usize> = 62..126;
const CHECKSUM: std::ops::Range<usize> = 126..158;
const FILE_LIMIT: usize = 4096;

/// How a secret key is stored on disk.
#[derive(Debug, Clone, Copy)]
pub enum Protection<'a> {
    /// No encryption, as `minisign -G -W` (for CI keys kept in a secret store).
    Unencrypted,
    /// Encrypted with a passphrase through scrypt with these limits.
    Passphrase(&'a Passphrase, KdfLimits),
}

/// An Ed25519 secret key with its minisign key id. The key material is
/// wiped when dropped and never shown by `Debug`.
pub struct SecretKey {
    key_id: KeyId,
    signing: SigningKey,
}

impl SecretKey {
    /// A fresh key pair with a random key id, from the OS random generator.
    pub fn generate() -> Result<SecretKey, Error> {
        let mut id = [0u8; 8];
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut id).map_err(Error::Random)?;
        getrandom::fill(seed.as_mut()).map_err(Error::Random)?;
        Ok(SecretKey {
            key_id: KeyId(id),
            signing: SigningKey::from_bytes(&seed),
        })
    }

    /// The key id.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::new(self.key_id, self.signing.verifying_key())
    }

    /// Parse a minisign secret key file, decrypting it with `passphrase`
    /// when it is encrypted.
    pub fn parse(bytes: &[u8], passphrase: Option<&Passphrase>) -> Result<SecretKey, Error> {
        let mut lines = Lines::new(bytes, Item::SecretKey, FILE_LIMIT)?;
        lines.next_prefixed(UNTRUSTED_PREFIX, "untrusted comment")?;
        let blob = Zeroizing::new(lines.next_base64(BLOB_LEN, "base64 secret key")?);
        lines.end()?;
        Self::from_blob(blob, passphrase)
    }

    fn from_blob(
        mut blob: Zeroizing<Vec<u8>>,
        passphrase: Option<&Passphrase>,
    ) -> Result<SecretKey, Error> {
        let alg =
            |range: std::ops::Range<usize>| AlgorithmId([blob[range.start], blob[range.start + 1]]);
        if alg(0..2).0 != ALG_ED {
            return Err(Error::Algorithm {
                what: Item::SecretKey,
                got: alg(0..2),
                want: "\"Ed\"",
            });
        }
        if alg(4..6).0 != CHK_BLAKE2B {
            return Err(Error::ChecksumAlgorithm { got: alg(4..6) });
        }
        let encrypted = match alg(2..4).0 {
            KDF_SCRYPT => true,
            KDF_NONE => false,
            _ => return Err(Error::KdfAlgorithm { got: alg(2..4) }),
        };
        if encrypted {
            let passphrase = passphrase.ok_or(Error::PassphraseRequired)?;
            let limits = KdfLimits {
                opslimit: le64(&blob[OPSLIMIT]),
                memlimit: le64(&blob[MEMLIMIT]),
            };
            let mut stream = Zeroizing::new([0u8; ENCRYPTED.end - ENCRYPTED.start]);
            kdf::derive(passphrase, &blob[SALT], limits, stream.as_mut())?;
            xor(&mut blob[ENCRYPTED], stream.as_ref());
        }
        let mut checksum = checksum(&blob[KEY_ID], &blob[SECRET]);
        let checksum_ok = checksum == blob[CHECKSUM];
        // `minisign -G -W` leaves the checksum of unencrypted keys zeroed.
        let zero_ok = !encrypted && blob[CHECKSUM].iter().all(|&b| b == 0);
        checksum.zeroize();
        if !checksum_ok && !zero_ok {
            return Err(if encrypted {
                Error::WrongPassphrase
            } else {
                Error::SecretKeyCorrupt
            });
        }
        let mut keypair = Zeroizing::new([0u8; 64]);
        keypair.copy_from_slice(&blob[SECRET]);
        let signing =
            SigningKey::from_keypair_bytes(&keypair).map_err(|_| Error::SecretKeyCorrupt)?;
        let mut id = [0u8; 8];
        id.copy_from_slice(&blob[KEY_ID]);
        Ok(SecretKey {
            key_id: KeyId(id),
            signing,
        })
    }

    /// The secret key file text. With a passphrase the key is encrypted
    /// exactly as minisign does it (random salt, scrypt stream XOR).
    pub fn to_file_text(
        &self,
        comment: &str,
        protection: Protection<'_>,
    ) -> Result<Zeroizing<String>, Error> {
        check_comment(comment, "untrusted comment", UNTRUSTED_MAX)?;
        let mut blob = Zeroizing::new(vec![0u8; BLOB_LEN]);
        blob[0..2].copy_from_slice(&ALG_ED);
        blob[4..6].copy_from_slice(&CHK_BLAKE2B);
        blob[KEY_ID].copy_from_slice(self.key_id.as_bytes());
        let keypair = Zeroizing::new(self.signing.to_keypair_bytes());
        blob[SECRET].copy_from_slice(keypair.as_ref());
        let mut sum = checksum(&blob[KEY_ID], &blob[SECRET]);
        blob[CHECKSUM].copy_from_slice(&sum);
        sum.zeroize();
        match protection {
            Protection::Unencrypted => blob[2..4].copy_from_slice(&KDF_NONE),
            Protection::Passphrase(passphrase, limits) => {
                blob[2..4].copy_from_slice(&KDF_SCRYPT);
                getrandom::fill(&mut blob[SALT]).map_err(Error::Random)?;
                blob[OPSLIMIT].copy_from_slice(&limits.opslimit.to_le_bytes());
                blob[MEMLIMIT].copy_from_slice(&limits.memlimit.to_le_bytes());
                let mut stream = Zeroizing::new([0u8; ENCRYPTED.end - ENCRYPTED.start]);
                kdf::derive(passphrase, &blob[SALT], limits, stream.as_mut())?;
                xor(&mut blob[ENCRYPTED], stream.as_ref());
            }
        }
        let encoded = Zeroizing::new(encode_base64(&blob));
        let mut text = Zeroizing::new(String::with_capacity(comment.len() + encoded.len() + 32));
        text.push_str("untrusted comment: ");
        text.push_str(comment);
        text.push('\n');
        text.push_str(&encoded);
        text.push('\n');
        Ok(text)
    }

    /// Load a secret key file. Refused when group or others can access it
    /// (as ssh refuses), before anything is read from it.
    pub fn load(path: &Path, passphrase: Option<&Passphrase>) -> Result<SecretKey, Error> {
        let bytes = files::read_secret(path, Item::SecretKey, FILE_LIMIT as u64)?;
        SecretKey::parse(&bytes, passphrase).map_err(|err| err.in_file(path))
    }
}

impl Signer for SecretKey {
    fn key_id(&self) -> KeyId {
        self.key_id
    }

    fn public_key(&self) -> PublicKey {
        SecretKey::public_key(self)
    }

    fn sign(&self, message: &[u8]) -> Result<Signature, Error> {
        Ok(ed25519_dalek::Signer::sign(&self.signing, message))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn checksum(key_id: &[u8], secret: &[u8]) -> [u8; 32] {
    let mut hasher = Blake2b256::new();
    hasher.update(ALG_ED);
    hasher.update(key_id);
    hasher.update(secret);
    hasher.finalize().into()
}

fn le64(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(bytes);
    u64::from_le_bytes(buf)
}

fn xor(data: &mut [u8], stream: &[u8]) {
    for (d, s) in data.iter_mut().zip(stream) {
        *d ^= s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made by `minisign -G -W` (0.11) on this machine; its checksum is zero.
    const MINISIGN_W_KEY: &str = "untrusted comment: minisign encrypted secret key\n\
        RWQAAEIyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAALjnAWKdzDDj40cO1/kms9kHdA92iOkWQXH6P5ZaIRdtNLFehXjvW0jJnBHODQN18EkTWIkAub0WO2lDAs+n2pXAaY4RYguBpAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";

    #[test]
    fn reads_an_unencrypted_minisign_key() {
        let key = SecretKey::parse(MINISIGN_W_KEY.as_bytes(), None).unwrap();
        assert_eq!(
            key.public_key().to_base64(),
            "RWQuOcBYp3MMODJnBHODQN18EkTWIkAub0WO2lDAs+n2pXAaY4RYguBp"
        );
    }

    #[test]
    fn encrypted_round_trip_and_wrong_passphrase() {
        let key = SecretKey::generate().unwrap();
        let pass = Passphrase::new(b"correct horse").unwrap();
        let text = key
            .to_file_text(
                "test",
                Protection::Passphrase(&pass, KdfLimits::INTERACTIVE),
            )
            .unwrap();
        let back = SecretKey::parse(text.as_bytes(), Some(&pass)).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        let err = SecretKey::parse(text.as_bytes(), None).unwrap_err();
        assert!(matches!(err, Error::PassphraseRequired), "{err}");
        let wrong = Passphrase::new(b"correct horsf").unwrap();
        let err = SecretKey::parse(text.as_bytes(), Some(&wrong)).unwrap_err();
        assert!(matches!(err, Error::WrongPassphrase), "{err}");
    }

    #[test]
    fn unencrypted_keys_carry_a_checked_checksum() {
        let key = SecretKey::generate().unwrap();
        let text = key.to_file_text("test", Protection::Unencrypted).unwrap();
        let back = SecretKey::parse(text.as_bytes(), None).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        assert!(!format!("{back:?}").contains(&encode_base64(&key.signing.to_bytes())));
    }
}
