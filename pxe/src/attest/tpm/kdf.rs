//! The TPM's key derivation functions (Part 1 §11.4.10) and the
//! credential-protection primitives built on them (Part 1 §24).
//!
//! Shared by the server's MakeCredential and the software TPM model's
//! ActivateCredential, so both directions use one implementation and the
//! swtpm tests check it against a real TPM.

use aes::cipher::KeyIvInit;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::constants::alg;

/// An algorithm this module does not implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unsupported algorithm {alg:#06x} ({})", super::constants::alg::name(*alg))]
pub struct Unsupported {
    /// The TPM_ALG_ID.
    pub alg: u16,
}

/// HMAC over the concatenation of `parts`.
pub fn hmac(hash_alg: u16, key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, Unsupported> {
    fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        // HMAC takes keys of any length.
        let mut m = <M as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().to_vec()
    }
    Ok(match hash_alg {
        alg::SHA256 => run::<Hmac<Sha256>>(key, parts),
        alg::SHA384 => run::<Hmac<Sha384>>(key, parts),
        alg::SHA512 => run::<Hmac<Sha512>>(key, parts),
        other => return Err(Unsupported { alg: other }),
    })
}

/// A hash over the concatenation of `parts`.
pub fn digest(hash_alg: u16, parts: &[&[u8]]) -> Result<Vec<u8>, Unsupported> {
    fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
        let mut d = D::new();
        for p in parts {
            d.update(p);
        }
        d.finalize().to_vec()
    }
    Ok(match hash_alg {
        alg::SHA256 => run::<Sha256>(parts),
        alg::SHA384 => run::<Sha384>(parts),
        alg::SHA512 => run::<Sha512>(parts),
        other => return Err(Unsupported { alg: other }),
    })
}

/// The label as the KDFs use it: the string with its terminating NUL.
fn nul_terminated(label: &str) -> Vec<u8> {
    let mut v = label.as_bytes().to_vec();
    v.push(0);
    v
}

/// KDFa: SP 800-108 counter-mode KDF with HMAC. Returns `bits / 8` bytes.
pub fn kdfa(
    hash_alg: u16,
    key: &[u8],
    label: &str,
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Result<Vec<u8>, Unsupported> {
    let label = nul_terminated(label);
    let want = (bits / 8) as usize;
    let mut out = Vec::with_capacity(want + 64);
    let mut counter = 1u32;
    while out.len() < want {
        out.extend(hmac(
            hash_alg,
            key,
            &[
                &counter.to_be_bytes(),
                &label,
                context_u,
                context_v,
                &bits.to_be_bytes(),
            ],
        )?);
        counter += 1;
    }
    out.truncate(want);
    Ok(out)
}

/// KDFe: SP 800-56A concatenation KDF over a shared ECDH secret `z`.
pub fn kdfe(
    hash_alg: u16,
    z: &[u8],
    label: &str,
    party_u: &[u8],
    party_v: &[u8],
    bits: u32,
) -> Result<Vec<u8>, Unsupported> {
    let label = nul_terminated(label);
    let want = (bits / 8) as usize;
    let mut out = Vec::with_capacity(want + 64);
    let mut counter = 1u32;
    while out.len() < want {
        out.extend(digest(
            hash_alg,
            &[&counter.to_be_bytes(), z, &label, party_u, party_v],
        )?);
        counter += 1;
    }
    out.truncate(want);
    Ok(out)
}

/// AES-CFB with a zero IV, in place, as the TPM protects credentials.
/// `encrypt` false decrypts.
pub fn aes_cfb_zero_iv(key: &[u8], buf: &mut [u8], encrypt: bool) -> Result<(), Unsupported> {
    let iv = [0u8; 16];
    macro_rules! run {
        ($cipher:ty) => {
            if encrypt {
                cfb_mode::Encryptor::<$cipher>::new_from_slices(key, &iv)
                    .expect("key length checked by the match")
                    .encrypt(buf)
            } else {
                cfb_mode::Decryptor::<$cipher>::new_from_slices(key, &iv)
                    .expect("key length checked by the match")
                    .decrypt(buf)
            }
        };
    }
    match key.len() {
        16 => run!(aes::Aes128),
        24 => run!(aes::Aes192),
        32 => run!(aes::Aes256),
        _ => return Err(Unsupported { alg: alg::AES }),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdfa_truncates_and_counts() {
        let a = kdfa(alg::SHA256, b"key", "STORAGE", b"u", b"", 128).unwrap();
        let b = kdfa(alg::SHA256, b"key", "STORAGE", b"u", b"", 512).unwrap();
        assert_eq!(a.len(), 16);
        assert_eq!(b.len(), 64);
        // Different `bits` are part of the input, so prefixes differ.
        assert_ne!(a[..], b[..16]);
        // The first block is HMAC(key, 1 ‖ "STORAGE\0" ‖ u ‖ bits).
        let manual = hmac(
            alg::SHA256,
            b"key",
            &[
                &1u32.to_be_bytes(),
                b"STORAGE\0",
                b"u",
                &128u32.to_be_bytes(),
            ],
        )
        .unwrap();
        assert_eq!(a[..], manual[..16]);
    }

    #[test]
    fn cfb_round_trips() {
        let mut buf = b"credential bytes, any length".to_vec();
        let orig = buf.clone();
        aes_cfb_zero_iv(&[7; 16], &mut buf, true).unwrap();
        assert_ne!(buf, orig);
        aes_cfb_zero_iv(&[7; 16], &mut buf, false).unwrap();
        assert_eq!(buf, orig);
    }
}
