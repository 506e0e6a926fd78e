//! Quote structures: TPML_PCR_SELECTION, TPMS_ATTEST and TPMT_SIGNATURE.

use super::constants::{TPM_GENERATED_VALUE, alg, st};
use super::wire::{Reader, WireError, Writer};

/// Most banks a selection may list (real TPMs have at most a handful).
const MAX_BANKS: usize = 16;
/// Largest sizeofSelect accepted: 8 bytes = 64 PCRs.
const MAX_SELECT_BYTES: usize = 8;
/// The sizeofSelect TPMs require at least (PCR_SELECT_MIN: 24 PCRs).
const MIN_SELECT_BYTES: usize = 3;

/// One bank of a TPML_PCR_SELECTION.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BankSelection {
    /// The bank's hash algorithm.
    pub hash: u16,
    /// The bitmap: bit (i % 8) of byte (i / 8) selects PCR i.
    pub bitmap: Vec<u8>,
}

impl BankSelection {
    /// The selected PCR indices, ascending.
    pub fn indices(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for (byte_index, byte) in self.bitmap.iter().enumerate() {
            for bit in 0..8 {
                if byte & (1 << bit) != 0 {
                    out.push((byte_index * 8 + bit) as u32);
                }
            }
        }
        out
    }

    /// Whether nothing is selected.
    pub fn is_empty(&self) -> bool {
        self.bitmap.iter().all(|b| *b == 0)
    }
}

/// TPML_PCR_SELECTION.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PcrSelection {
    /// The banks, in wire order.
    pub banks: Vec<BankSelection>,
}

impl PcrSelection {
    /// A selection of `pcrs` in one bank.
    ///
    /// # Panics
    /// If a PCR index is 64 or more (no TPM has that many).
    pub fn new(hash: u16, pcrs: impl IntoIterator<Item = u32>) -> Self {
        let mut bitmap = vec![0u8; MIN_SELECT_BYTES];
        for pcr in pcrs {
            let byte = (pcr / 8) as usize;
            assert!(byte < MAX_SELECT_BYTES, "PCR index {pcr} out of range");
            if byte >= bitmap.len() {
                bitmap.resize(byte + 1, 0);
            }
            bitmap[byte] |= 1 << (pcr % 8);
        }
        PcrSelection {
            banks: vec![BankSelection { hash, bitmap }],
        }
    }

    /// PCRs 0-15 of the SHA-256 bank: what every ironrack quote covers.
    pub fn sha256_boot() -> Self {
        Self::new(alg::SHA256, 0..16)
    }

    /// (bank, pcr) pairs in the order the TPM hashes them into pcrDigest:
    /// banks in list order, PCRs ascending within a bank.
    pub fn pairs(&self) -> Vec<(u16, u32)> {
        self.banks
            .iter()
            .flat_map(|b| b.indices().into_iter().map(move |i| (b.hash, i)))
            .collect()
    }

    /// Whether no PCR is selected in any bank.
    pub fn is_empty(&self) -> bool {
        self.banks.iter().all(BankSelection::is_empty)
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.u32(self.banks.len() as u32);
        for b in &self.banks {
            w.u16(b.hash).u8(b.bitmap.len() as u8).bytes(&b.bitmap);
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let n = r.count("TPML_PCR_SELECTION.count", MAX_BANKS, 3)?;
        let mut banks = Vec::with_capacity(n);
        for _ in 0..n {
            let hash = r.u16("TPMS_PCR_SELECTION.hash")?;
            let size = usize::from(r.u8("TPMS_PCR_SELECTION.sizeofSelect")?);
            if size > MAX_SELECT_BYTES {
                return Err(WireError::TooLarge {
                    what: "TPMS_PCR_SELECTION.sizeofSelect",
                    size,
                    max: MAX_SELECT_BYTES,
                });
            }
            let bitmap = r.take(size, "TPMS_PCR_SELECTION.pcrSelect")?.to_vec();
            banks.push(BankSelection { hash, bitmap });
        }
        Ok(PcrSelection { banks })
    }

    /// The marshalled TPML_PCR_SELECTION.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.finish()
    }
}

/// TPMS_CLOCK_INFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered, persisted now and then.
    pub clock: u64,
    /// TPM resets (reboots) since the last Clear.
    pub reset_count: u32,
    /// Restarts (resume from hibernate) since the last reset.
    pub restart_count: u32,
    /// Whether `clock` is known not to have been reported lower before.
    pub safe: bool,
}

/// The type-specific part of TPMS_ATTEST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attested {
    /// TPMS_QUOTE_INFO.
    Quote {
        /// The PCRs quoted.
        selection: PcrSelection,
        /// Hash (with the AK's scheme hash) of the selected PCR values.
        pcr_digest: Vec<u8>,
    },
    /// Any other attestation type; its body is not parsed.
    Other {
        /// The TPMI_ST_ATTEST tag.
        tag: u16,
    },
}

/// TPMS_ATTEST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attest {
    /// Should be TPM_GENERATED_VALUE; checked by the verifier, not here.
    pub magic: u32,
    /// The qualified Name of the signing key.
    pub qualified_signer: Vec<u8>,
    /// The caller's qualifying data (the server nonce).
    pub extra_data: Vec<u8>,
    /// Clock and reset counters at signing time.
    pub clock_info: ClockInfo,
    /// Vendor firmware version.
    pub firmware_version: u64,
    /// What was attested.
    pub attested: Attested,
}

impl Attest {
    /// Parses TPMS_ATTEST. A quote must fill `bytes` exactly; other types
    /// stop after the common header.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes);
        let magic = r.u32("TPMS_ATTEST.magic")?;
        let tag = r.u16("TPMS_ATTEST.type")?;
        let qualified_signer = r.tpm2b_max("TPMS_ATTEST.qualifiedSigner", 2 + 64)?.to_vec();
        let extra_data = r.tpm2b_max("TPMS_ATTEST.extraData", 64)?.to_vec();
        let clock_info = ClockInfo {
            clock: r.u64("TPMS_CLOCK_INFO.clock")?,
            reset_count: r.u32("TPMS_CLOCK_INFO.resetCount")?,
            restart_count: r.u32("TPMS_CLOCK_INFO.restartCount")?,
            safe: match r.u8("TPMS_CLOCK_INFO.safe")? {
                0 => false,
                1 => true,
                v => {
                    return Err(WireError::Unexpected {
                        what: "TPMS_CLOCK_INFO.safe",
                        value: u32::from(v),
                    });
                }
            },
        };
        let firmware_version = r.u64("TPMS_ATTEST.firmwareVersion")?;
        let attested = if tag == st::ATTEST_QUOTE {
            let selection = PcrSelection::read(&mut r)?;
            let pcr_digest = r.tpm2b_max("TPMS_QUOTE_INFO.pcrDigest", 64)?.to_vec();
            r.finish("TPMS_ATTEST")?;
            Attested::Quote {
                selection,
                pcr_digest,
            }
        } else {
            Attested::Other { tag }
        };
        Ok(Attest {
            magic,
            qualified_signer,
            extra_data,
            clock_info,
            firmware_version,
            attested,
        })
    }

    /// Marshals a quote TPMS_ATTEST (used by the software TPM model).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        let tag = match self.attested {
            Attested::Quote { .. } => st::ATTEST_QUOTE,
            Attested::Other { tag } => tag,
        };
        w.u32(self.magic).u16(tag);
        w.tpm2b(&self.qualified_signer).tpm2b(&self.extra_data);
        let c = &self.clock_info;
        w.u64(c.clock)
            .u32(c.reset_count)
            .u32(c.restart_count)
            .u8(u8::from(c.safe));
        w.u64(self.firmware_version);
        if let Attested::Quote {
            selection,
            pcr_digest,
        } = &self.attested
        {
            selection.write(&mut w);
            w.tpm2b(pcr_digest);
        }
        w.finish()
    }

    /// Whether the magic is TPM_GENERATED_VALUE.
    pub fn is_tpm_generated(&self) -> bool {
        self.magic == TPM_GENERATED_VALUE
    }
}

/// TPMT_SIGNATURE for the schemes an AK may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// RSASSA-PKCS1-v1_5.
    RsaSsa {
        /// Hash algorithm signed with.
        hash: u16,
        /// The signature, big-endian, modulus-sized.
        sig: Vec<u8>,
    },
    /// ECDSA.
    Ecdsa {
        /// Hash algorithm signed with.
        hash: u16,
        /// r, big-endian.
        r: Vec<u8>,
        /// s, big-endian.
        s: Vec<u8>,
    },
}

impl Signature {
    /// Parses a TPMT_SIGNATURE filling `bytes` exactly.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes);
        let s = Self::read(&mut r)?;
        r.finish("TPMT_SIGNATURE")?;
        Ok(s)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let sig_alg = r.u16("TPMT_SIGNATURE.sigAlg")?;
        match sig_alg {
            alg::RSASSA => Ok(Signature::RsaSsa {
                hash: r.u16("TPMS_SIGNATURE_RSA.hash")?,
                sig: r.tpm2b_max("TPMS_SIGNATURE_RSA.sig", 512)?.to_vec(),
            }),
            alg::ECDSA => Ok(Signature::Ecdsa {
                hash: r.u16("TPMS_SIGNATURE_ECC.hash")?,
                r: r.tpm2b_max("TPMS_SIGNATURE_ECC.signatureR", 66)?.to_vec(),
                s: r.tpm2b_max("TPMS_SIGNATURE_ECC.signatureS", 66)?.to_vec(),
            }),
            other => Err(WireError::Unexpected {
                what: "TPMT_SIGNATURE.sigAlg",
                value: u32::from(other),
            }),
        }
    }

    /// The marshalled TPMT_SIGNATURE.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Signature::RsaSsa { hash, sig } => {
                w.u16(alg::RSASSA).u16(*hash).tpm2b(sig);
            }
            Signature::Ecdsa { hash, r, s } => {
                w.u16(alg::ECDSA).u16(*hash).tpm2b(r).tpm2b(s);
            }
        }
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_selection_is_pcrs_0_to_15() {
        let s = PcrSelection::sha256_boot();
        assert_eq!(s.banks[0].bitmap, [0xff, 0xff, 0x00]);
        assert_eq!(s.pairs().len(), 16);
        let bytes = s.to_bytes();
        let mut r = Reader::new(&bytes);
        let back = PcrSelection::read(&mut r).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn quote_attest_round_trips() {
        let a = Attest {
            magic: TPM_GENERATED_VALUE,
            qualified_signer: vec![0, 0x0b, 1, 2],
            extra_data: b"nonce".to_vec(),
            clock_info: ClockInfo {
                clock: 5,
                reset_count: 1,
                restart_count: 2,
                safe: true,
            },
            firmware_version: 9,
            attested: Attested::Quote {
                selection: PcrSelection::sha256_boot(),
                pcr_digest: vec![7; 32],
            },
        };
        assert_eq!(Attest::from_bytes(&a.to_bytes()).unwrap(), a);
    }
}
