//! TPM hash algorithm identifiers (TPM_ALG_ID) and digests as they appear in
//! event logs.

use std::fmt;

use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha384, Sha512};

/// The largest digest any TPM bank uses (SHA-512, SHA3-512).
pub const MAX_DIGEST_SIZE: usize = 64;

/// A TPM 2.0 hash algorithm identifier (`TPM_ALG_ID`).
///
/// Logs may name algorithms this crate cannot compute (SM3, SHA-3): they
/// still parse, and replay reports them as skipped.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AlgorithmId(pub u16);

impl AlgorithmId {
    /// SHA-1 (`TPM_ALG_SHA1`).
    pub const SHA1: Self = Self(0x0004);
    /// SHA-256 (`TPM_ALG_SHA256`), the bank ironrack attests.
    pub const SHA256: Self = Self(0x000B);
    /// SHA-384 (`TPM_ALG_SHA384`).
    pub const SHA384: Self = Self(0x000C);
    /// SHA-512 (`TPM_ALG_SHA512`).
    pub const SHA512: Self = Self(0x000D);
    /// SM3-256 (`TPM_ALG_SM3_256`); parsed, not computed.
    pub const SM3_256: Self = Self(0x0012);
    /// SHA3-256 (`TPM_ALG_SHA3_256`); parsed, not computed.
    pub const SHA3_256: Self = Self(0x0027);
    /// SHA3-384 (`TPM_ALG_SHA3_384`); parsed, not computed.
    pub const SHA3_384: Self = Self(0x0028);
    /// SHA3-512 (`TPM_ALG_SHA3_512`); parsed, not computed.
    pub const SHA3_512: Self = Self(0x0029);

    /// The algorithm's name, for the ones the TCG registry defines.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::SHA1 => "sha1",
            Self::SHA256 => "sha256",
            Self::SHA384 => "sha384",
            Self::SHA512 => "sha512",
            Self::SM3_256 => "sm3_256",
            Self::SHA3_256 => "sha3_256",
            Self::SHA3_384 => "sha3_384",
            Self::SHA3_512 => "sha3_512",
            _ => return None,
        })
    }

    /// The digest size the algorithm defines, when it is a known one.
    pub fn standard_digest_size(self) -> Option<usize> {
        Some(match self {
            Self::SHA1 => 20,
            Self::SHA256 | Self::SM3_256 | Self::SHA3_256 => 32,
            Self::SHA384 | Self::SHA3_384 => 48,
            Self::SHA512 | Self::SHA3_512 => 64,
            _ => return None,
        })
    }

    /// Whether this crate can compute the algorithm (and so replay its bank).
    pub fn is_computable(self) -> bool {
        self.hasher().is_some()
    }

    /// A streaming hasher, for the algorithms this crate computes.
    pub fn hasher(self) -> Option<Hasher> {
        Some(Hasher(match self {
            Self::SHA1 => HasherState::Sha1(Sha1::new()),
            Self::SHA256 => HasherState::Sha256(Sha256::new()),
            Self::SHA384 => HasherState::Sha384(Sha384::new()),
            Self::SHA512 => HasherState::Sha512(Sha512::new()),
            _ => return None,
        }))
    }

    /// The digest of `data`, for the algorithms this crate computes.
    pub fn hash(self, data: &[u8]) -> Option<Digest> {
        let mut hasher = self.hasher()?;
        hasher.update(data);
        Some(hasher.finish())
    }
}

impl fmt::Display for AlgorithmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "alg {:#06x}", self.0),
        }
    }
}

impl fmt::Debug for AlgorithmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A streaming hash of one of the computable algorithms.
#[derive(Clone)]
pub struct Hasher(HasherState);

#[derive(Clone)]
enum HasherState {
    Sha1(Sha1),
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Hasher").field(&self.algorithm()).finish()
    }
}

impl Hasher {
    /// The algorithm this hasher computes.
    pub fn algorithm(&self) -> AlgorithmId {
        match self.0 {
            HasherState::Sha1(_) => AlgorithmId::SHA1,
            HasherState::Sha256(_) => AlgorithmId::SHA256,
            HasherState::Sha384(_) => AlgorithmId::SHA384,
            HasherState::Sha512(_) => AlgorithmId::SHA512,
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            HasherState::Sha1(h) => h.update(data),
            HasherState::Sha256(h) => h.update(data),
            HasherState::Sha384(h) => h.update(data),
            HasherState::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        let alg = self.algorithm();
        let mut bytes = [0u8; MAX_DIGEST_SIZE];
        let len = match self.0 {
            HasherState::Sha1(h) => copy_into(&mut bytes, &h.finalize()),
            HasherState::Sha256(h) => copy_into(&mut bytes, &h.finalize()),
            HasherState::Sha384(h) => copy_into(&mut bytes, &h.finalize()),
            HasherState::Sha512(h) => copy_into(&mut bytes, &h.finalize()),
        };
        Digest { alg, len, bytes }
    }
}

fn copy_into(out: &mut [u8; MAX_DIGEST_SIZE], digest: &[u8]) -> u8 {
    out[..digest.len()].copy_from_slice(digest);
    digest.len() as u8
}

/// One digest of one bank: the algorithm and up to [`MAX_DIGEST_SIZE`] bytes,
/// stored inline so events and PCR banks need no allocation per digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest {
    alg: AlgorithmId,
    len: u8,
    bytes: [u8; MAX_DIGEST_SIZE],
}

impl Digest {
    /// A digest from its bytes; `None` when longer than [`MAX_DIGEST_SIZE`].
    pub fn from_slice(alg: AlgorithmId, bytes: &[u8]) -> Option<Self> {
        let len = u8::try_from(bytes.len())
            .ok()
            .filter(|&l| usize::from(l) <= MAX_DIGEST_SIZE)?;
        let mut inline = [0u8; MAX_DIGEST_SIZE];
        inline[..bytes.len()].copy_from_slice(bytes);
        Some(Self {
            alg,
            len,
            bytes: inline,
        })
    }

    /// All-zero bytes of the given size (clamped to [`MAX_DIGEST_SIZE`]).
    pub fn zeroed(alg: AlgorithmId, size: usize) -> Self {
        Self::filled(alg, size, 0)
    }

    /// `size` bytes all equal to `byte` (clamped to [`MAX_DIGEST_SIZE`]).
    pub(crate) fn filled(alg: AlgorithmId, size: usize, byte: u8) -> Self {
        let size = size.min(MAX_DIGEST_SIZE);
        let mut bytes = [0u8; MAX_DIGEST_SIZE];
        bytes[..size].fill(byte);
        Self {
            alg,
            len: size as u8,
            bytes,
        }
    }

    /// The algorithm of this digest.
    pub fn algorithm(&self) -> AlgorithmId {
        self.alg
    }

    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Lower-case hex of the digest bytes.
    pub fn to_hex(&self) -> String {
        hex::encode(self.as_bytes())
    }

    /// `self` extended with `measured`: H(self ‖ measured), the TPM's
    /// PCR_Extend. `None` when the algorithm cannot be computed here.
    pub fn extended(&self, measured: &[u8]) -> Option<Self> {
        let mut hasher = self.alg.hasher()?;
        hasher.update(self.as_bytes());
        hasher.update(measured);
        Some(hasher.finish())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.alg, self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_is_hash_of_concatenation() {
        let zero = Digest::zeroed(AlgorithmId::SHA256, 32);
        let measured = AlgorithmId::SHA256.hash(b"abc").unwrap();
        let mut concatenated = vec![0u8; 32];
        concatenated.extend_from_slice(measured.as_bytes());
        assert_eq!(
            zero.extended(measured.as_bytes()).unwrap(),
            AlgorithmId::SHA256.hash(&concatenated).unwrap()
        );
    }

    #[test]
    fn known_sizes_match_computed_sizes() {
        for alg in [
            AlgorithmId::SHA1,
            AlgorithmId::SHA256,
            AlgorithmId::SHA384,
            AlgorithmId::SHA512,
        ] {
            assert_eq!(
                alg.hash(b"").unwrap().as_bytes().len(),
                alg.standard_digest_size().unwrap()
            );
        }
        assert!(AlgorithmId::SM3_256.hash(b"").is_none());
        assert!(Digest::from_slice(AlgorithmId(0x99), &[0; 65]).is_none());
    }
}
