//! TPMT_PUBLIC for RSA and ECC keys, and object Names.
//!
//! Only asymmetric keys are modelled: the EK, the AK and the templates used
//! to create them. A keyed-hash or symmetric object is refused with a clear
//! error rather than half-parsed.

use sha2::{Digest, Sha256, Sha384, Sha512};

use super::constants::alg;
use super::wire::{Reader, WireError, Writer};

/// Largest RSA modulus accepted (4096 bits).
const MAX_RSA_BYTES: usize = 512;
/// Largest ECC coordinate accepted (P-521).
const MAX_ECC_BYTES: usize = 66;
/// Largest policy digest (SHA-512).
const MAX_DIGEST: usize = 64;

/// TPMT_SYM_DEF_OBJECT: the symmetric algorithm of a storage/EK key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymDef {
    /// TPM_ALG_AES or TPM_ALG_NULL.
    pub alg: u16,
    /// Key bits (ignored for NULL).
    pub key_bits: u16,
    /// Mode, e.g. TPM_ALG_CFB (ignored for NULL).
    pub mode: u16,
}

impl SymDef {
    /// No symmetric algorithm (signing keys).
    pub const NULL: SymDef = SymDef {
        alg: alg::NULL,
        key_bits: 0,
        mode: 0,
    };

    /// AES in CFB mode with the given key size.
    pub const fn aes_cfb(key_bits: u16) -> SymDef {
        SymDef {
            alg: alg::AES,
            key_bits,
            mode: alg::CFB,
        }
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.u16(self.alg);
        if self.alg != alg::NULL {
            w.u16(self.key_bits).u16(self.mode);
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let a = r.u16("TPMT_SYM_DEF_OBJECT.algorithm")?;
        if a == alg::NULL {
            return Ok(Self::NULL);
        }
        Ok(SymDef {
            alg: a,
            key_bits: r.u16("TPMT_SYM_DEF_OBJECT.keyBits")?,
            mode: r.u16("TPMT_SYM_DEF_OBJECT.mode")?,
        })
    }
}

/// A signing/encryption scheme with its hash (TPMT_RSA_SCHEME,
/// TPMT_ECC_SCHEME, TPMT_KDF_SCHEME, TPMT_SIG_SCHEME share this shape for
/// the schemes used here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheme {
    /// The scheme, e.g. TPM_ALG_RSASSA, or TPM_ALG_NULL.
    pub alg: u16,
    /// Its hash (ignored for NULL).
    pub hash: u16,
}

impl Scheme {
    /// No scheme.
    pub const NULL: Scheme = Scheme {
        alg: alg::NULL,
        hash: 0,
    };

    pub(crate) fn write(&self, w: &mut Writer) {
        w.u16(self.alg);
        if self.alg != alg::NULL {
            w.u16(self.hash);
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>, what: &'static str) -> Result<Self, WireError> {
        let a = r.u16(what)?;
        match a {
            alg::NULL => Ok(Self::NULL),
            // Schemes whose details are exactly one hash algorithm. ECDAA
            // (with a count) and others are refused, not misread.
            alg::RSASSA | alg::RSAPSS | alg::OAEP | alg::ECDSA | alg::ECDH | 0x0020 | 0x0022 => {
                Ok(Scheme {
                    alg: a,
                    hash: r.u16(what)?,
                })
            }
            other => Err(WireError::Unexpected {
                what,
                value: u32::from(other),
            }),
        }
    }
}

/// The type-specific half of TPMT_PUBLIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyParams {
    /// An RSA key.
    Rsa {
        /// Symmetric algorithm (storage and EK keys).
        symmetric: SymDef,
        /// Signing or decryption scheme.
        scheme: Scheme,
        /// Modulus size in bits.
        key_bits: u16,
        /// Public exponent; 0 means 65537.
        exponent: u32,
        /// The modulus (`unique`), big-endian.
        modulus: Vec<u8>,
    },
    /// An ECC key.
    Ecc {
        /// Symmetric algorithm (storage and EK keys).
        symmetric: SymDef,
        /// Signing or key-exchange scheme.
        scheme: Scheme,
        /// TPM_ECC_CURVE.
        curve: u16,
        /// Key derivation scheme (NULL for everything here).
        kdf: Scheme,
        /// X coordinate (`unique.x`), big-endian.
        x: Vec<u8>,
        /// Y coordinate (`unique.y`), big-endian.
        y: Vec<u8>,
    },
}

/// TPMT_PUBLIC of an RSA or ECC key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Public {
    /// Hash algorithm of the Name.
    pub name_alg: u16,
    /// TPMA_OBJECT.
    pub attributes: u32,
    /// Policy digest (empty when none).
    pub auth_policy: Vec<u8>,
    /// Type, parameters and unique field.
    pub params: KeyParams,
}

impl Public {
    /// The marshalled TPMT_PUBLIC (without the TPM2B size).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.finish()
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        let ty = match self.params {
            KeyParams::Rsa { .. } => alg::RSA,
            KeyParams::Ecc { .. } => alg::ECC,
        };
        w.u16(ty).u16(self.name_alg).u32(self.attributes);
        w.tpm2b(&self.auth_policy);
        match &self.params {
            KeyParams::Rsa {
                symmetric,
                scheme,
                key_bits,
                exponent,
                modulus,
            } => {
                symmetric.write(w);
                scheme.write(w);
                w.u16(*key_bits).u32(*exponent).tpm2b(modulus);
            }
            KeyParams::Ecc {
                symmetric,
                scheme,
                curve,
                kdf,
                x,
                y,
            } => {
                symmetric.write(w);
                scheme.write(w);
                w.u16(*curve);
                kdf.write(w);
                w.tpm2b(x).tpm2b(y);
            }
        }
    }

    /// Parses a TPMT_PUBLIC that fills `bytes` exactly.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes);
        let p = Self::read(&mut r)?;
        r.finish("TPMT_PUBLIC")?;
        Ok(p)
    }

    /// Parses a TPM2B_PUBLIC (u16 size, then TPMT_PUBLIC filling it).
    pub fn read_tpm2b(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let inner = r.tpm2b("TPM2B_PUBLIC")?;
        Self::from_bytes(inner)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let ty = r.u16("TPMT_PUBLIC.type")?;
        let name_alg = r.u16("TPMT_PUBLIC.nameAlg")?;
        let attributes = r.u32("TPMT_PUBLIC.objectAttributes")?;
        let auth_policy = r.tpm2b_max("TPMT_PUBLIC.authPolicy", MAX_DIGEST)?.to_vec();
        let params = match ty {
            alg::RSA => {
                let symmetric = SymDef::read(r)?;
                let scheme = Scheme::read(r, "TPMS_RSA_PARMS.scheme")?;
                let key_bits = r.u16("TPMS_RSA_PARMS.keyBits")?;
                let exponent = r.u32("TPMS_RSA_PARMS.exponent")?;
                let modulus = r.tpm2b_max("TPM2B_PUBLIC_KEY_RSA", MAX_RSA_BYTES)?.to_vec();
                KeyParams::Rsa {
                    symmetric,
                    scheme,
                    key_bits,
                    exponent,
                    modulus,
                }
            }
            alg::ECC => {
                let symmetric = SymDef::read(r)?;
                let scheme = Scheme::read(r, "TPMS_ECC_PARMS.scheme")?;
                let curve = r.u16("TPMS_ECC_PARMS.curveID")?;
                let kdf = Scheme::read(r, "TPMS_ECC_PARMS.kdf")?;
                let x = r.tpm2b_max("TPMS_ECC_POINT.x", MAX_ECC_BYTES)?.to_vec();
                let y = r.tpm2b_max("TPMS_ECC_POINT.y", MAX_ECC_BYTES)?.to_vec();
                KeyParams::Ecc {
                    symmetric,
                    scheme,
                    curve,
                    kdf,
                    x,
                    y,
                }
            }
            other => {
                return Err(WireError::Unexpected {
                    what: "TPMT_PUBLIC.type",
                    value: u32::from(other),
                });
            }
        };
        Ok(Public {
            name_alg,
            attributes,
            auth_policy,
            params,
        })
    }

    /// The object's Name: nameAlg ‖ H_nameAlg(TPMT_PUBLIC).
    pub fn name(&self) -> Result<Vec<u8>, WireError> {
        let digest = hash(self.name_alg, &self.to_bytes()).ok_or(WireError::Unexpected {
            what: "TPMT_PUBLIC.nameAlg",
            value: u32::from(self.name_alg),
        })?;
        let mut name = self.name_alg.to_be_bytes().to_vec();
        name.extend_from_slice(&digest);
        Ok(name)
    }

    /// Whether all `bits` of TPMA_OBJECT are set.
    pub fn has(&self, bits: u32) -> bool {
        self.attributes & bits == bits
    }
}

/// Hashes `data` with a TPM hash algorithm; None for an unsupported one.
pub fn hash(alg_id: u16, data: &[u8]) -> Option<Vec<u8>> {
    Some(match alg_id {
        alg::SHA256 => Sha256::digest(data).to_vec(),
        alg::SHA384 => Sha384::digest(data).to_vec(),
        alg::SHA512 => Sha512::digest(data).to_vec(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::tpm::template::EkTemplate;

    #[test]
    fn ek_template_round_trips() {
        for t in [
            EkTemplate::Rsa2048,
            EkTemplate::EccP256,
            EkTemplate::EccP384,
        ] {
            let p = t.public();
            let bytes = p.to_bytes();
            assert_eq!(Public::from_bytes(&bytes).unwrap(), p);
            let mut extra = bytes.clone();
            extra.push(0);
            assert!(matches!(
                Public::from_bytes(&extra),
                Err(WireError::Trailing { count: 1, .. })
            ));
        }
    }
}
