//! Trust roots and delegation: TUF's semantics without TUF.
//!
//! `trust.json` is canonical JSON:
//!
//! ```json
//! {"signatures":[{"keyid":"…","sig":"base64"}],
//!  "signed":{"expires":"2026-06-01T00:00:00Z",
//!            "revoked":["…"],
//!            "roots":{"keys":[{"id":"…","public":"RWQ…"}],"threshold":2},
//!            "signers":[{"expires":"…","id":"…","name":"ci","public":"RWQ…",
//!                        "scope":["channel:stable","image:gpu-*"]}],
//!            "type":"ironrack-trust/1","version":3}}
//! ```
//!
//! Offline root keys sign `signed`; a threshold of them makes it valid.
//! `signed` delegates to signing keys, each with an expiry and a scope of
//! images and channels (manifests) and/or mirrors (`mirror:site`: the
//! signed Release of a local package mirror's snapshots). Each root signature is Ed25519 over
//! `"ironrack-trust/1\n" ‖ canonical JSON of signed`: the prefix keeps a root
//! signature from ever being mistaken for a signature over some other file.
//!
//! [`Trust`] is a trust state a verifier holds; see there for the rules.

mod scope;
mod state;

pub use scope::Scope;
pub use state::Trust;

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signature;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::canonical;
use crate::error::{Error, Item, Quorum};
use crate::keyid::KeyId;
use crate::minisign::PublicKey;
use crate::signer::Signer;
use crate::time::Timestamp;

/// The `type` of a trust file.
pub const TRUST_TYPE: &str = "ironrack-trust/1";
/// Prefix of every message a root key signs.
const SIGNING_CONTEXT: &[u8] = b"ironrack-trust/1\n";
/// Far larger than any real trust file.
pub(crate) const FILE_LIMIT: u64 = 4 << 20;

/// A trust file as stored: the signed body and the root signatures over it.
/// Parsing checks its form; [`Trust`] checks its signatures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrustFile {
    /// What the roots sign.
    pub signed: TrustBody,
    /// Root signatures over `signed`.
    pub signatures: Vec<RootSignature>,
}

/// The signed part of a trust file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrustBody {
    /// Always [`TRUST_TYPE`].
    #[serde(rename = "type")]
    pub doc_type: String,
    /// Increases with every change; verifiers refuse to go back.
    pub version: u64,
    /// After this instant the file authorizes nothing.
    pub expires: Timestamp,
    /// The root keys and how many must sign.
    pub roots: Roots,
    /// Keys delegated to sign manifests.
    pub signers: Vec<Delegation>,
    /// Keys that must never be accepted again.
    pub revoked: Vec<KeyId>,
}

/// The root keys of a trust file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Roots {
    /// Number of distinct root keys that must sign.
    pub threshold: u32,
    /// The root public keys.
    pub keys: Vec<KeyEntry>,
}

/// A public key with its id spelled out for readers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KeyEntry {
    /// The key id (must equal the id inside `public`).
    pub id: KeyId,
    /// The minisign public key, base64 (what `minisign -P` takes).
    pub public: PublicKey,
}

/// A key delegated to sign manifests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Delegation {
    /// A name for people (`ci`, `release-2025`).
    pub name: String,
    /// The key id (must equal the id inside `public`).
    pub id: KeyId,
    /// The minisign public key.
    pub public: PublicKey,
    /// After this instant the key signs nothing valid.
    pub expires: Timestamp,
    /// Images and channels (manifests) and mirrors (snapshots) it may sign.
    pub scope: Vec<Scope>,
}

/// One root signature over the signed body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RootSignature {
    /// The signing root key.
    pub keyid: KeyId,
    /// Ed25519 signature, base64.
    #[serde(with = "signature_base64")]
    pub sig: Signature,
}

impl KeyEntry {
    /// The entry for a public key.
    pub fn new(public: PublicKey) -> KeyEntry {
        KeyEntry {
            id: public.key_id(),
            public,
        }
    }
}

impl TrustFile {
    /// A first trust file (version 1) with these roots and nothing delegated.
    pub fn new(
        roots: Vec<PublicKey>,
        threshold: u32,
        expires: Timestamp,
    ) -> Result<TrustFile, Error> {
        let file = TrustFile {
            signed: TrustBody {
                doc_type: TRUST_TYPE.to_owned(),
                version: 1,
                expires,
                roots: Roots {
                    threshold,
                    keys: roots.into_iter().map(KeyEntry::new).collect(),
                },
                signers: Vec::new(),
                revoked: Vec::new(),
            },
            signatures: Vec::new(),
        };
        file.signed.validate()?;
        Ok(file)
    }

    /// Parse a trust file. It must be exactly in canonical form, so every
    /// byte of the file is either signed or a signature.
    pub fn parse(bytes: &[u8]) -> Result<TrustFile, Error> {
        if bytes.len() as u64 > FILE_LIMIT {
            return Err(Error::TooLarge {
                what: Item::Trust,
                limit: FILE_LIMIT,
            });
        }
        let value = canonical::parse_value(bytes, Item::Trust)?;
        let file: TrustFile = canonical::from_value(value, Item::Trust)?;
        // Typed values can have only one spelling too (key ids in upper
        // case, timestamps in Z form...): re-encoding must give the input.
        let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        if canonical::to_vec(&file, Item::Trust)? != body {
            return Err(Error::NotCanonical { what: Item::Trust });
        }
        file.signed.validate()?;
        Ok(file)
    }

    /// The file's bytes: canonical JSON and a newline.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        let mut bytes = canonical::to_vec(self, Item::Trust)?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// The next version of this file: same content, version + 1, no
    /// signatures yet.
    pub fn next_version(&self) -> Result<TrustFile, Error> {
        let mut next = self.clone();
        next.signed.version = self
            .signed
            .version
            .checked_add(1)
            .ok_or(Error::TrustNotNewer {
                current: self.signed.version,
                offered: self.signed.version,
            })?;
        next.signatures.clear();
        Ok(next)
    }

    /// Add (or replace) the signature of `signer` over the body. Whether the
    /// signer counts is decided when the file is verified.
    pub fn sign(&mut self, signer: &dyn Signer) -> Result<(), Error> {
        self.signed.validate()?;
        let message = self.signed.signing_message()?;
        let sig = signer.sign(&message)?;
        if !signer.public_key().verify_raw(&message, &sig) {
            return Err(Error::SignatureInvalid {
                key_id: signer.key_id(),
            });
        }
        let keyid = signer.key_id();
        self.signatures.retain(|s| s.keyid != keyid);
        self.signatures.push(RootSignature { keyid, sig });
        self.signatures.sort_by_key(|s| s.keyid);
        Ok(())
    }

    /// The distinct keys of `keys` with a valid signature on this file.
    pub fn valid_signers(&self, keys: &[KeyEntry]) -> Result<BTreeSet<KeyId>, Error> {
        let message = self.signed.signing_message()?;
        let mut valid = BTreeSet::new();
        for sig in &self.signatures {
            if let Some(key) = keys.iter().find(|k| k.id == sig.keyid)
                && key.public.verify_raw(&message, &sig.sig)
            {
                valid.insert(key.id);
            }
        }
        Ok(valid)
    }

    /// Fail unless `threshold` distinct keys of `keys` signed this file.
    /// Keys are unique per trust file, so distinct ids are distinct keys.
    pub(crate) fn check_threshold(
        &self,
        keys: &[KeyEntry],
        threshold: u32,
        quorum: Quorum,
    ) -> Result<(), Error> {
        let valid = self.valid_signers(keys)?.len();
        if valid < threshold as usize {
            return Err(Error::ThresholdNotMet {
                version: self.signed.version,
                quorum,
                valid,
                threshold,
            });
        }
        Ok(())
    }
}

impl TrustBody {
    /// What root keys sign.
    pub(crate) fn signing_message(&self) -> Result<Vec<u8>, Error> {
        let mut message = SIGNING_CONTEXT.to_vec();
        message.extend_from_slice(&canonical::to_vec(self, Item::Trust)?);
        Ok(message)
    }

    /// Structural rules every trust file obeys, signed or not.
    pub fn validate(&self) -> Result<(), Error> {
        if self.doc_type != TRUST_TYPE {
            return Err(Error::DocumentType {
                what: Item::Trust,
                got: self.doc_type.chars().take(64).collect(),
                want: TRUST_TYPE,
            });
        }
        let roots = &self.roots.keys;
        if self.roots.threshold == 0 || self.roots.threshold as usize > roots.len() {
            return Err(Error::ThresholdInvalid {
                threshold: self.roots.threshold,
                roots: roots.len(),
            });
        }
        let mut ids = BTreeSet::new();
        let mut publics = BTreeSet::new();
        let entries = roots
            .iter()
            .map(|k| (k.id, &k.public))
            .chain(self.signers.iter().map(|s| (s.id, &s.public)));
        for (i, (id, public)) in entries.enumerate() {
            if id != public.key_id() {
                return Err(Error::ListedIdMismatch {
                    listed: id,
                    embedded: public.key_id(),
                });
            }
            // One key under two ids would count twice toward a threshold.
            let fresh_id = ids.insert(id);
            let fresh_key = publics.insert(*public.verifying_key().as_bytes());
            if !(fresh_id && fresh_key) {
                return Err(
                    if i >= roots.len() && roots.iter().any(|r| r.id == id || r.public == *public) {
                        Error::RootAsSigner { key_id: id }
                    } else {
                        Error::DuplicateKey { key_id: id }
                    },
                );
            }
        }
        let mut names = BTreeSet::new();
        for signer in &self.signers {
            check_name(&signer.name, Item::Trust, "signer name")?;
            if !names.insert(signer.name.as_str()) {
                return Err(Error::DuplicateSignerName {
                    name: signer.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// The delegation of `key_id`, if it is a current signer.
    pub fn signer(&self, key_id: KeyId) -> Option<&Delegation> {
        self.signers.iter().find(|s| s.id == key_id)
    }

    /// Whether `key_id` is revoked.
    pub fn is_revoked(&self, key_id: KeyId) -> bool {
        self.revoked.contains(&key_id)
    }

    /// Is `key_id` one of the roots?
    pub fn is_root(&self, key_id: KeyId) -> bool {
        self.roots.keys.iter().any(|k| k.id == key_id)
    }

    /// Delegate to a new signer. Its key must not be a root, a current
    /// signer or revoked, and its name must be free.
    pub fn add_signer(&mut self, signer: Delegation) -> Result<(), Error> {
        if !Scope::is_complete(&signer.scope) {
            return Err(Error::IncompleteScope { name: signer.name });
        }
        if self.is_root(signer.id) {
            return Err(Error::IsARoot { key_id: signer.id });
        }
        if self.is_revoked(signer.id) {
            return Err(Error::RevokedKeyReuse { key_id: signer.id });
        }
        if self
            .signers
            .iter()
            .any(|s| s.id == signer.id || s.name == signer.name)
        {
            return Err(Error::SignerExists {
                name: signer.name,
                key_id: signer.id,
            });
        }
        self.signers.push(signer);
        self.signers.sort_by(|a, b| a.name.cmp(&b.name));
        self.validate()
    }

    /// Revoke a signer: it leaves `signers` and joins `revoked` for good.
    pub fn revoke(&mut self, key_id: KeyId) -> Result<(), Error> {
        if self.is_root(key_id) {
            return Err(Error::IsARoot { key_id });
        }
        if self.signer(key_id).is_none() {
            return Err(Error::NotASigner { key_id });
        }
        self.signers.retain(|s| s.id != key_id);
        self.revoked.push(key_id);
        self.revoked.sort();
        Ok(())
    }
}

/// Names in signed documents: plain, so they print and compare cleanly.
pub(crate) fn check_name(value: &str, what: Item, field: &'static str) -> Result<(), Error> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Name {
            what,
            field,
            value: value.chars().take(64).collect(),
        })
    }
}

mod signature_base64 {
    use super::*;

    pub fn serialize<S: Serializer>(sig: &Signature, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(sig.to_bytes()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Signature, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = crate::minisign::decode_base64(text.as_bytes(), 64, Item::Trust, 1)
            .map_err(|_| serde::de::Error::custom("signature is not base64 of 64 bytes"))?;
        let mut buf = [0u8; 64];
        buf.copy_from_slice(&bytes);
        Ok(Signature::from_bytes(&buf))
    }
}
