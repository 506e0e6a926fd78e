//! minisign signatures (`.minisig`):
//!
//! ```text
//! untrusted comment: <anything>
//! base64(alg ‖ key id ‖ 64-byte signature)
//! trusted comment: <text>
//! base64(64-byte global signature over signature ‖ text)
//! ```
//!
//! alg `Ed` signs the file itself; `ED` signs its BLAKE2b-512 hash (plain
//! Ed25519 over the hash, not RFC 8032 Ed25519ph). We write `Ed`, which
//! `signify-openbsd` also verifies, and read both.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use blake2::{Blake2b512, Digest};
use ed25519_dalek::Signature;

use super::{
    ALG_ED, ALG_ED_HASHED, Lines, PublicKey, TRUSTED_MAX, TRUSTED_PREFIX, UNTRUSTED_MAX,
    UNTRUSTED_PREFIX, check_comment, comment_ok, encode_base64,
};
use crate::error::{AlgorithmId, Error, Item};
use crate::files::{self, PUBLIC_MODE};
use crate::keyid::KeyId;
use crate::signer::Signer;
use crate::time::Timestamp;

const BLOB_LEN: usize = 2 + 8 + 64;
/// Four lines, the longest being the 8 KiB trusted comment.
const FILE_LIMIT: usize = 16 * 1024;

/// What a signature signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    /// `Ed`: the raw file (minisign -l, signify).
    Legacy,
    /// `ED`: the BLAKE2b-512 hash of the file (minisign's default).
    Prehashed,
}

/// A parsed minisign signature file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MinisignSignature {
    /// What is signed.
    pub algorithm: SignatureAlgorithm,
    /// The signing key's id.
    pub key_id: KeyId,
    /// Ed25519 signature over the file (or its hash).
    pub signature: Signature,
    /// The untrusted comment: not signed, shown for information only.
    pub untrusted_comment: String,
    /// The trusted comment, covered by the global signature.
    pub trusted_comment: String,
    /// Ed25519 signature over `signature ‖ trusted_comment`.
    pub global_signature: Signature,
}

impl MinisignSignature {
    /// Sign `message` with the legacy `Ed` algorithm. The result is checked
    /// against the signer's public key before it is returned, as minisign
    /// does, so a faulty signer cannot produce a bad signature file.
    pub fn sign(
        signer: &dyn Signer,
        message: &[u8],
        trusted_comment: &str,
        untrusted_comment: &str,
    ) -> Result<MinisignSignature, Error> {
        check_comment(trusted_comment, "trusted comment", TRUSTED_MAX)?;
        check_comment(untrusted_comment, "untrusted comment", UNTRUSTED_MAX)?;
        let signature = signer.sign(message)?;
        let global_signature = signer.sign(&global_message(&signature, trusted_comment))?;
        let sig = MinisignSignature {
            algorithm: SignatureAlgorithm::Legacy,
            key_id: signer.key_id(),
            signature,
            untrusted_comment: untrusted_comment.to_owned(),
            trusted_comment: trusted_comment.to_owned(),
            global_signature,
        };
        sig.verify(&signer.public_key(), message)?;
        Ok(sig)
    }

    /// Parse a signature file.
    pub fn parse(bytes: &[u8]) -> Result<MinisignSignature, Error> {
        let what = Item::Signature;
        let mut lines = Lines::new(bytes, what, FILE_LIMIT)?;
        let untrusted = lines.next_prefixed(UNTRUSTED_PREFIX, "untrusted comment")?;
        let blob = lines.next_base64(BLOB_LEN, "base64 signature")?;
        let trusted = lines.next_prefixed(TRUSTED_PREFIX, "trusted comment")?;
        let global = lines.next_base64(64, "base64 global signature")?;
        lines.end()?;

        let algorithm = match [blob[0], blob[1]] {
            ALG_ED => SignatureAlgorithm::Legacy,
            ALG_ED_HASHED => SignatureAlgorithm::Prehashed,
            other => {
                return Err(Error::Algorithm {
                    what,
                    got: AlgorithmId(other),
                    want: "\"Ed\" or \"ED\"",
                });
            }
        };
        // minisign refuses unprintable trusted comments; so do we, so that
        // what we print is what was signed.
        let trusted_comment = std::str::from_utf8(trusted)
            .ok()
            .filter(|text| comment_ok(text, TRUSTED_MAX))
            .ok_or(Error::Comment {
                what,
                field: "trusted comment",
                max: TRUSTED_MAX,
            })?;
        let mut key_id = [0u8; 8];
        key_id.copy_from_slice(&blob[2..10]);
        Ok(MinisignSignature {
            algorithm,
            key_id: KeyId(key_id),
            signature: signature_from(&blob[10..74]),
            untrusted_comment: String::from_utf8_lossy(untrusted).into_owned(),
            trusted_comment: trusted_comment.to_owned(),
            global_signature: signature_from(&global),
        })
    }

    /// The signature file text.
    pub fn to_file_text(&self) -> String {
        let alg = match self.algorithm {
            SignatureAlgorithm::Legacy => ALG_ED,
            SignatureAlgorithm::Prehashed => ALG_ED_HASHED,
        };
        let mut blob = Vec::with_capacity(BLOB_LEN);
        blob.extend_from_slice(&alg);
        blob.extend_from_slice(self.key_id.as_bytes());
        blob.extend_from_slice(&self.signature.to_bytes());
        format!(
            "untrusted comment: {}\n{}\ntrusted comment: {}\n{}\n",
            self.untrusted_comment,
            encode_base64(&blob),
            self.trusted_comment,
            encode_base64(&self.global_signature.to_bytes()),
        )
    }

    /// Verify against `message`: key ids must match, then the signature over
    /// the message (or its BLAKE2b-512 hash), then the global signature over
    /// the trusted comment.
    pub fn verify(&self, key: &PublicKey, message: &[u8]) -> Result<(), Error> {
        match self.algorithm {
            SignatureAlgorithm::Legacy => self.verify_signed_bytes(key, message),
            SignatureAlgorithm::Prehashed => {
                self.verify_signed_bytes(key, &Blake2b512::digest(message))
            }
        }
    }

    /// Verify against a stream, hashing it in chunks for `ED` signatures
    /// (legacy `Ed` needs the whole message in memory, as in minisign).
    pub fn verify_reader(
        &self,
        key: &PublicKey,
        mut reader: impl Read,
        path: &Path,
    ) -> Result<(), Error> {
        let read_error = |source| Error::Read {
            path: path.to_owned(),
            source,
        };
        match self.algorithm {
            SignatureAlgorithm::Legacy => {
                let mut message = Vec::new();
                reader.read_to_end(&mut message).map_err(read_error)?;
                self.verify_signed_bytes(key, &message)
            }
            SignatureAlgorithm::Prehashed => {
                let mut hasher = Blake2b512::new();
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = reader.read(&mut buf).map_err(read_error)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                }
                self.verify_signed_bytes(key, &hasher.finalize())
            }
        }
    }

    fn verify_signed_bytes(&self, key: &PublicKey, signed: &[u8]) -> Result<(), Error> {
        if self.key_id != key.key_id() {
            return Err(Error::KeyIdMismatch {
                signature: self.key_id,
                public_key: key.key_id(),
            });
        }
        if !key.verify_raw(signed, &self.signature) {
            return Err(Error::SignatureInvalid {
                key_id: self.key_id,
            });
        }
        let global = global_message(&self.signature, &self.trusted_comment);
        if !key.verify_raw(&global, &self.global_signature) {
            return Err(Error::GlobalSignatureInvalid {
                key_id: self.key_id,
            });
        }
        Ok(())
    }
}

fn signature_from(bytes: &[u8]) -> Signature {
    let mut buf = [0u8; 64];
    buf.copy_from_slice(bytes);
    Signature::from_bytes(&buf)
}

fn global_message(signature: &Signature, trusted_comment: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(64 + trusted_comment.len());
    message.extend_from_slice(&signature.to_bytes());
    message.extend_from_slice(trusted_comment.as_bytes());
    message
}

/// minisign's default trusted comment: `timestamp:<unix>\tfile:<name>`.
pub fn default_trusted_comment(path: &Path, now: Timestamp) -> String {
    let name: String = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    format!("timestamp:{}\tfile:{name}", now.unix())
}

/// The signature path minisign uses by default: `FILE.minisig`.
fn default_sig_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".minisig");
    PathBuf::from(name)
}

/// Sign a file with the legacy `Ed` algorithm and write `FILE.minisig`
/// atomically, replacing an older signature. Returns the signature's path.
pub fn sign_file(
    signer: &dyn Signer,
    path: &Path,
    trusted_comment: Option<&str>,
) -> Result<PathBuf, Error> {
    let message = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let default_comment;
    let trusted_comment = match trusted_comment {
        Some(text) => text,
        None => {
            default_comment = default_trusted_comment(path, Timestamp::now());
            &default_comment
        }
    };
    let untrusted = format!("signature from ironrack key {}", signer.key_id());
    let sig = MinisignSignature::sign(signer, &message, trusted_comment, &untrusted)?;
    let sig_path = default_sig_path(path);
    files::replace(&sig_path, sig.to_file_text().as_bytes(), PUBLIC_MODE)?;
    Ok(sig_path)
}

/// Verify `path` against its signature (`sig_path`, default
/// `FILE.minisig`). Returns the parsed signature, whose trusted comment is
/// now authenticated.
pub fn verify_file(
    key: &PublicKey,
    path: &Path,
    sig_path: Option<&Path>,
) -> Result<MinisignSignature, Error> {
    let sig_path = sig_path.map_or_else(|| default_sig_path(path), Path::to_path_buf);
    let bytes = files::read_limited(&sig_path, Item::Signature, FILE_LIMIT as u64)?;
    let sig = MinisignSignature::parse(&bytes).map_err(|err| err.in_file(&sig_path))?;
    let file = File::open(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    sig.verify_reader(key, file, path)
        .map_err(|err| match err {
            Error::Read { .. } => err,
            other => other.in_file(path),
        })?;
    Ok(sig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretKey;

    // Captured from minisign 0.11 on this machine, signing "hello\n": a
    // default (ED) signature and a legacy (-l) one, with their public keys.
    // The interop tests repeat this live against the installed minisign.
    const ED_PUB: &str = "RWQnYNd9O/154XFFvkxLNUT1aZ2309hnIhQtrxjHTayY8RRJghP90+WM";
    const ED_SIG: &str = "untrusted comment: signature from minisign secret key\n\
        RUQnYNd9O/154cUX2qZkPD05ExnkHWMCN9j9HVwES7BDIU7+APYKsjWkbZiHv86/4hN9eRwaJQ5Lw/QMqBUz8dZ8dMfZ1h2zNwc=\n\
        trusted comment: tc here\n\
        hAMym0meRT+df92zXcSHVAW0v290wukfC883C8OQDH1KoD3htXWTwYBxHPBkXHEwMyuAR7nUnHOA3TlM2d0tCg==\n";
    const LEGACY_PUB: &str = "RWQuOcBYp3MMODJnBHODQN18EkTWIkAub0WO2lDAs+n2pXAaY4RYguBp";
    const LEGACY_SIG: &str = "untrusted comment: signature from minisign secret key\n\
        RWQuOcBYp3MMOL7TziuVWCHEOwJrXN2hnFASq4hfIJn/z3b4nMkPAa1YakSwtUO6okc8X8gsc7re6CPMBHV/WnsbYjnaiIO7ogM=\n\
        trusted comment: timestamp:1795500750\tfile:f\n\
        Y7dSKvB4e2FvijVSljsH0WOImXBQARhV9nWjizow2NWNFG4EtA/mLznBHtYWadIouZJtUF4AzI2ggFb61263Bg==\n";

    #[test]
    fn verifies_minisign_signatures_of_both_kinds() {
        for (public, text, algorithm) in [
            (ED_PUB, ED_SIG, SignatureAlgorithm::Prehashed),
            (LEGACY_PUB, LEGACY_SIG, SignatureAlgorithm::Legacy),
        ] {
            let key = PublicKey::from_base64(public).unwrap();
            let sig = MinisignSignature::parse(text.as_bytes()).unwrap();
            assert_eq!(sig.algorithm, algorithm);
            sig.verify(&key, b"hello\n").unwrap();
            sig.verify_reader(&key, &b"hello\n"[..], Path::new("f"))
                .unwrap();
            assert_eq!(sig.to_file_text(), text);
            let err = sig.verify(&key, b"hello!").unwrap_err();
            assert!(matches!(err, Error::SignatureInvalid { .. }), "{err}");
        }
    }

    #[test]
    fn key_id_mismatch_is_reported_before_anything_else() {
        let sig = MinisignSignature::parse(ED_SIG.as_bytes()).unwrap();
        let other = PublicKey::from_base64(LEGACY_PUB).unwrap();
        let err = sig.verify(&other, b"hello\n").unwrap_err();
        assert!(
            matches!(err, Error::KeyIdMismatch { signature, public_key }
                if signature.to_string() == "E179FD3B7DD76027" && public_key == other.key_id()),
            "{err}"
        );
    }

    #[test]
    fn the_trusted_comment_is_signed() {
        let key = SecretKey::generate().unwrap();
        let mut sig = MinisignSignature::sign(&key, b"data", "version 1", "u").unwrap();
        sig.verify(&key.public_key(), b"data").unwrap();
        sig.trusted_comment = "version 2".into();
        let err = sig.verify(&key.public_key(), b"data").unwrap_err();
        assert!(matches!(err, Error::GlobalSignatureInvalid { .. }), "{err}");
        let err = MinisignSignature::sign(&key, b"data", "two\nlines", "u").unwrap_err();
        assert!(matches!(err, Error::InvalidComment { .. }), "{err}");
    }
}
