//! DSSE envelopes (the in-toto signing wrapper): the payload is signed
//! through its pre-authentication encoding, so the type cannot be swapped
//! under the signature.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ironrack_keys::{KeyId, PublicKey, Signature, Signer};
use serde::{Deserialize, Serialize};

use super::error::ReleaseError;

/// The payload type of in-toto statements.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Envelope {
    /// Base64 of the payload bytes.
    pub payload: String,
    /// What the payload is.
    pub payload_type: String,
    /// One or more signatures over PAE(payloadType, payload).
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    /// The minisign key id (hex), as manifests name signers.
    pub keyid: String,
    /// Base64 of the Ed25519 signature.
    pub sig: String,
}

/// `DSSEv1 SP LEN(type) SP type SP LEN(body) SP body`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Signs `payload` (Ed25519 is deterministic: same input, same envelope).
pub fn sign(
    payload_type: &str,
    payload: &[u8],
    signer: &dyn Signer,
) -> Result<Envelope, ReleaseError> {
    let sig = signer
        .sign(&pae(payload_type, payload))
        .map_err(|source| ReleaseError::Sign {
            what: "provenance envelope",
            source,
        })?;
    Ok(Envelope {
        payload: STANDARD.encode(payload),
        payload_type: payload_type.to_owned(),
        signatures: vec![EnvelopeSignature {
            keyid: signer.key_id().to_string(),
            sig: STANDARD.encode(sig.to_bytes()),
        }],
    })
}

impl Envelope {
    /// The payload bytes if a signature by `key` verifies.
    pub fn verify(&self, key: &PublicKey) -> Result<Vec<u8>, ReleaseError> {
        let bad = |why: &'static str| ReleaseError::Envelope { why };
        let payload = STANDARD
            .decode(&self.payload)
            .map_err(|_| bad("payload is not base64"))?;
        let message = pae(&self.payload_type, &payload);
        let id: KeyId = key.key_id();
        let ours = self
            .signatures
            .iter()
            .find(|s| s.keyid == id.to_string())
            .ok_or(bad("no signature by the manifest's signing key"))?;
        let bytes = STANDARD
            .decode(&ours.sig)
            .map_err(|_| bad("signature is not base64"))?;
        let sig = Signature::from_slice(&bytes).map_err(|_| bad("signature is not 64 bytes"))?;
        key.verifying_key()
            .verify_strict(&message, &sig)
            .map_err(|_| bad("signature does not verify"))?;
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // The worked example of the DSSE protocol description.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }
}
