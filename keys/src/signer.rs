//! The signing interface: everything that signs (the trust file, manifests,
//! plain files) goes through [`Signer`], so a hardware-backed key (PKCS#11,
//! TPM) can replace the file key without touching the callers.

use ed25519_dalek::Signature;

use crate::error::Error;
use crate::keyid::KeyId;
use crate::minisign::PublicKey;

/// An Ed25519 signing key with a minisign key id.
///
/// [`crate::SecretKey`] (a minisign secret key file) is the implementation
/// today.
pub trait Signer {
    /// The key id written into signatures.
    fn key_id(&self) -> KeyId;

    /// The public key that verifies this signer's signatures.
    fn public_key(&self) -> PublicKey;

    /// A pure Ed25519 signature (RFC 8032, no prehash) over `message`.
    fn sign(&self, message: &[u8]) -> Result<Signature, Error>;
}
