//! The signature `scripts/sign-file` appends to a module: the signature
//! data, a 12-byte `struct module_signature`, and the magic trailer
//! `~Module signature appended~\n`. The kernel checks it against its
//! keyring; here it is only found, measured and split off, so the ELF
//! parser sees the unsigned object.

use sha2::{Digest as _, Sha256};

/// The trailer that ends a signed module.
pub const SIGNATURE_MAGIC: &[u8] = b"~Module signature appended~\n";
const INFO_SIZE: usize = 12;

/// How the signer is identified (`id_type` of `struct module_signature`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureKind {
    /// PKEY_ID_PGP (0).
    Pgp,
    /// PKEY_ID_X509 (1).
    X509,
    /// PKEY_ID_PKCS7 (2): what sign-file writes today.
    Pkcs7,
    /// Any other value.
    Unknown(u8),
}

/// An appended module signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSignature {
    /// The identifier type.
    pub kind: SignatureKind,
    /// Length of the signature data (for PKCS#7: the DER message).
    pub signature_len: u32,
    /// SHA-256 of the signature data, to tell signers' outputs apart in a
    /// report without carrying the blob.
    pub signature_sha256: [u8; 32],
}

/// Why the trailer is there but the signature around it is not sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The file ends with the magic but is too short for the info block.
    #[error("module signature trailer without its 12-byte info block")]
    Truncated,
    /// The lengths in the info block exceed the file.
    #[error("module signature of {claimed} bytes does not fit the {available} bytes before it")]
    TooLong {
        /// signer_len + key_id_len + sig_len.
        claimed: u64,
        /// Bytes before the info block.
        available: u64,
    },
}

/// Splits `bytes` into the module proper and its appended signature, if
/// any. A file without the trailer is returned whole with `None`.
pub fn split_signature(bytes: &[u8]) -> Result<(&[u8], Option<ModuleSignature>), SignatureError> {
    let Some(body) = bytes.strip_suffix(SIGNATURE_MAGIC) else {
        return Ok((bytes, None));
    };
    let info_at = body
        .len()
        .checked_sub(INFO_SIZE)
        .ok_or(SignatureError::Truncated)?;
    let info = &body[info_at..];
    let kind = match info[2] {
        0 => SignatureKind::Pgp,
        1 => SignatureKind::X509,
        2 => SignatureKind::Pkcs7,
        other => SignatureKind::Unknown(other),
    };
    let signature_len = u32::from_be_bytes([info[8], info[9], info[10], info[11]]);
    let claimed = u64::from(info[3]) + u64::from(info[4]) + u64::from(signature_len);
    let available = info_at as u64;
    if claimed > available {
        return Err(SignatureError::TooLong { claimed, available });
    }
    let module_end = info_at - claimed as usize;
    let signature_start = info_at - signature_len as usize;
    let signature = ModuleSignature {
        kind,
        signature_len,
        signature_sha256: Sha256::digest(&body[signature_start..info_at]).into(),
    };
    Ok((&bytes[..module_end], Some(signature)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(module: &[u8], sig: &[u8]) -> Vec<u8> {
        let mut out = module.to_vec();
        out.extend_from_slice(sig);
        out.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&(sig.len() as u32).to_be_bytes());
        out.extend_from_slice(SIGNATURE_MAGIC);
        out
    }

    #[test]
    fn splits_a_signed_module() {
        let file = signed(b"\x7fELF-body", b"pkcs7");
        let (body, sig) = split_signature(&file).unwrap();
        assert_eq!(body, b"\x7fELF-body");
        let sig = sig.unwrap();
        assert_eq!((sig.kind, sig.signature_len), (SignatureKind::Pkcs7, 5));
    }

    #[test]
    fn unsigned_is_whole() {
        assert_eq!(split_signature(b"abc").unwrap(), (&b"abc"[..], None));
    }

    #[test]
    fn lying_lengths_are_errors() {
        let mut file = signed(b"x", b"sig");
        let at = file.len() - SIGNATURE_MAGIC.len() - 4;
        file[at..at + 4].copy_from_slice(&1000u32.to_be_bytes());
        assert!(matches!(
            split_signature(&file),
            Err(SignatureError::TooLong { .. })
        ));
        assert_eq!(
            split_signature(SIGNATURE_MAGIC),
            Err(SignatureError::Truncated)
        );
    }
}
