//! Ed25519 keys, minisign-format signatures, trust roots with delegation,
//! and signed manifests: the trust model under the builder and the PXE
//! service.
//!
//! - [`minisign`]: public keys, secret keys (minisign's exact format,
//!   scrypt-encrypted or not) and signatures that the `minisign` and
//!   `signify-openbsd` tools read and write.
//! - [`Signer`]: what signs; [`SecretKey`] is the file-key implementation.
//! - [`trust`]: `trust.json`, root keys with a threshold delegating to
//!   signing keys with expiry and scope; [`Trust`] is a verified state.
//! - [`manifest`]: [`SignedManifest`], verified through a [`Trust`], with
//!   rollback protection ([`RollbackStore`]) and artifact digests.
//! - [`canonical`]: the canonical JSON every signed document uses.

pub mod canonical;
pub mod digest;
mod error;
pub mod files;
mod keyid;
mod keypair;
pub mod manifest;
pub mod minisign;
mod passphrase;
pub mod rollback;
mod signer;
pub mod time;
pub mod trust;

pub use digest::Sha256Digest;
pub use ed25519_dalek::Signature;
pub use error::{AlgorithmId, Error, Item, Quorum, Result};
pub use keyid::KeyId;
pub use keypair::{KeyPairFiles, generate_key_pair};
pub use manifest::{
    Artifact, SignedManifest, VerifiedManifest, sign_manifest, write_signed_manifest,
};
pub use minisign::{KdfLimits, MinisignSignature, Protection, PublicKey, SecretKey};
pub use passphrase::Passphrase;
pub use rollback::RollbackStore;
pub use signer::Signer;
pub use time::Timestamp;
pub use trust::{Trust, TrustFile};

/// Write a file atomically (temporary file in the same directory, fsync,
/// rename), replacing an older one. For callers that publish signed files.
pub fn write_file_atomically(path: &std::path::Path, contents: &[u8]) -> Result<()> {
    files::replace(path, contents, files::PUBLIC_MODE)
}

/// Create a file atomically, refusing to replace an existing one.
pub fn write_new_file(path: &std::path::Path, contents: &[u8]) -> Result<()> {
    files::create_new(path, contents, files::PUBLIC_MODE)
}
