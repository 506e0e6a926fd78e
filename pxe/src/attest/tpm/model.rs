//! A software TPM model for load generation: the boot-storm simulator
//! (`ironrack lab storm`) gives each simulated node one, so that the
//! server's enrollment and quote verification do the real work (real key
//! pairs, real TPMS_ATTEST, real signatures, real credential activation).
//!
//! This is NOT a TPM and not a test double for one: its keys live in
//! process memory, and it attests whatever PCR values it is told. Tests of
//! the attestation protocol itself run against swtpm; this model is only
//! checked against swtpm for wire compatibility (its quotes and credential
//! handling must be indistinguishable to the server).

use p256::ecdsa::signature::Signer as _;
use sha2::Sha256;
use std::time::Instant;

use super::attest::{Attest, Attested, ClockInfo, PcrSelection, Signature};
use super::client::Quote;
use super::constants::{TPM_GENERATED_VALUE, alg, curve, rh};
use super::kdf;
use super::pcr::{PcrValues, extend};
use super::public::{KeyParams, Public};
use super::template::{AkTemplate, EkTemplate};
use super::wire::{Reader, WireError};

/// Why the model could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The OS random source failed.
    #[error("random number generator failed: {reason}")]
    Random {
        /// The error.
        reason: String,
    },
    /// RSA key generation or signing failed.
    #[error("RSA operation failed: {reason}")]
    Rsa {
        /// The error.
        reason: String,
    },
    /// The credential blob does not parse.
    #[error("credential does not parse")]
    Malformed(#[from] WireError),
    /// The credential's integrity HMAC does not verify (wrong AK Name or
    /// another EK), as TPM_RC_INTEGRITY on a real TPM.
    #[error("credential integrity check failed")]
    Integrity,
    /// The ephemeral point is not on the EK's curve.
    #[error("credential secret is not a valid P-256 point")]
    BadPoint,
    /// A nonce longer than TPM2B_DATA allows (64 bytes here).
    #[error("nonce of {len} bytes is too long")]
    NonceTooLong {
        /// Its length.
        len: usize,
    },
    /// An unknown PCR or a digest of the wrong size.
    #[error("cannot extend PCR {pcr}")]
    BadPcr {
        /// The PCR.
        pcr: u32,
    },
}

enum AkSigner {
    Ecdsa(p256::ecdsa::SigningKey),
    Rsa(rsa::pkcs1v15::SigningKey<Sha256>),
}

/// One simulated node's TPM: an ECC P-256 EK (template L-2), an AK, a
/// SHA-256 PCR bank and the clock counters.
pub struct SimulatedTpm {
    ek_secret: p256::SecretKey,
    ek_public: Public,
    ak: AkSigner,
    ak_public: Public,
    ak_name: Vec<u8>,
    pcrs: PcrValues,
    started: Instant,
    reset_count: u32,
}

impl std::fmt::Debug for SimulatedTpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedTpm")
            .field("ak_name", &hex::encode(&self.ak_name))
            .field("reset_count", &self.reset_count)
            .finish_non_exhaustive()
    }
}

fn random_p256() -> Result<p256::SecretKey, ModelError> {
    loop {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| ModelError::Random {
            reason: e.to_string(),
        })?;
        if let Ok(k) = p256::SecretKey::from_slice(&bytes) {
            return Ok(k);
        }
    }
}

fn p256_public(template: Public, key: &p256::PublicKey) -> Public {
    use p256::elliptic_curve::sec1::ToSec1Point;
    let point = key.to_sec1_point(false);
    let mut public = template;
    if let KeyParams::Ecc { x, y, .. } = &mut public.params {
        *x = point.x().expect("uncompressed").to_vec();
        *y = point.y().expect("uncompressed").to_vec();
    }
    public
}

impl SimulatedTpm {
    /// A fresh model with new random keys; PCRs 0-23 of SHA-256 at zero.
    pub fn new(ak_kind: AkTemplate) -> Result<Self, ModelError> {
        let ek_secret = random_p256()?;
        let ek_public = p256_public(EkTemplate::EccP256.public(), &ek_secret.public_key());
        let (ak, ak_public) = match ak_kind {
            AkTemplate::EccP256 => {
                let key = p256::ecdsa::SigningKey::from(random_p256()?);
                let public = p256_public(
                    ak_kind.public(),
                    &p256::PublicKey::from(key.verifying_key()),
                );
                (AkSigner::Ecdsa(key), public)
            }
            AkTemplate::Rsa2048 => {
                let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).map_err(|e| {
                    ModelError::Rsa {
                        reason: e.to_string(),
                    }
                })?;
                use rsa::traits::PublicKeyParts;
                let mut public = ak_kind.public();
                if let KeyParams::Rsa { modulus, .. } = &mut public.params {
                    *modulus = key.n().to_be_bytes().to_vec();
                }
                (AkSigner::Rsa(rsa::pkcs1v15::SigningKey::new(key)), public)
            }
        };
        let ak_name = ak_public.name().expect("SHA-256 name");
        let mut tpm = SimulatedTpm {
            ek_secret,
            ek_public,
            ak,
            ak_public,
            ak_name,
            pcrs: PcrValues::new(),
            started: Instant::now(),
            reset_count: 0,
        };
        tpm.reset_pcrs();
        Ok(tpm)
    }

    fn reset_pcrs(&mut self) {
        for pcr in 0..24 {
            self.pcrs.insert(alg::SHA256, pcr, vec![0; 32]);
        }
    }

    /// A reboot: PCRs back to zero, resetCount up.
    pub fn reboot(&mut self) {
        self.reset_pcrs();
        self.reset_count += 1;
    }

    /// The EK public area (ECC P-256, template L-2).
    pub fn ek_public(&self) -> &Public {
        &self.ek_public
    }

    /// The AK public area.
    pub fn ak_public(&self) -> &Public {
        &self.ak_public
    }

    /// The AK Name.
    pub fn ak_name(&self) -> &[u8] {
        &self.ak_name
    }

    /// Current SHA-256 PCR values.
    pub fn pcrs(&self) -> &PcrValues {
        &self.pcrs
    }

    /// Extends a SHA-256 PCR.
    pub fn extend(&mut self, pcr: u32, digest: &[u8]) -> Result<(), ModelError> {
        let old = self
            .pcrs
            .get(alg::SHA256, pcr)
            .ok_or(ModelError::BadPcr { pcr })?;
        if digest.len() != 32 {
            return Err(ModelError::BadPcr { pcr });
        }
        let new = extend(alg::SHA256, old, digest).expect("SHA-256");
        self.pcrs.insert(alg::SHA256, pcr, new);
        Ok(())
    }

    /// A quote over `selection` (SHA-256 bank) with `nonce`, structured and
    /// signed exactly as a TPM does it.
    pub fn quote(&self, nonce: &[u8], selection: &PcrSelection) -> Result<Quote, ModelError> {
        if nonce.len() > 64 {
            return Err(ModelError::NonceTooLong { len: nonce.len() });
        }
        let pcr_digest = self
            .pcrs
            .quote_digest(selection, alg::SHA256)
            .map_err(|m| ModelError::BadPcr { pcr: m.pcr })?
            .expect("SHA-256");
        let attest = Attest {
            magic: TPM_GENERATED_VALUE,
            qualified_signer: primary_qualified_name(rh::ENDORSEMENT, &self.ak_name),
            extra_data: nonce.to_vec(),
            clock_info: ClockInfo {
                clock: self.started.elapsed().as_millis() as u64,
                reset_count: self.reset_count,
                restart_count: 0,
                safe: true,
            },
            firmware_version: 0x2024_0001,
            attested: Attested::Quote {
                selection: selection.clone(),
                pcr_digest,
            },
        }
        .to_bytes();
        let signature = match &self.ak {
            AkSigner::Ecdsa(key) => {
                let sig: p256::ecdsa::Signature = key.sign(&attest);
                let (r, s) = sig.split_bytes();
                Signature::Ecdsa {
                    hash: alg::SHA256,
                    r: r.to_vec(),
                    s: s.to_vec(),
                }
            }
            AkSigner::Rsa(key) => {
                let sig = key.try_sign(&attest).map_err(|e| ModelError::Rsa {
                    reason: e.to_string(),
                })?;
                Signature::RsaSsa {
                    hash: alg::SHA256,
                    sig: Box::<[u8]>::from(sig).to_vec(),
                }
            }
        };
        Ok(Quote { attest, signature })
    }

    /// TPM2_ActivateCredential with the model's EK, for the object named
    /// `name` (a real TPM takes the Name from the loaded AK).
    pub fn activate_credential(
        &self,
        name: &[u8],
        id_object: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, ModelError> {
        let mut r = Reader::new(encrypted_secret);
        let ex = r.tpm2b_max("TPMS_ECC_POINT.x", 32)?;
        let ey = r.tpm2b_max("TPMS_ECC_POINT.y", 32)?;
        r.finish("TPMS_ECC_POINT")?;
        let point = crate::attest::credential::sec1_point::<32>(ex, ey)
            .map_err(|_| ModelError::BadPoint)?;
        let ephemeral =
            p256::PublicKey::from_sec1_bytes(&point).map_err(|_| ModelError::BadPoint)?;
        let shared =
            p256::ecdh::diffie_hellman(self.ek_secret.to_nonzero_scalar(), ephemeral.as_affine());
        let KeyParams::Ecc {
            x: ek_x, curve: c, ..
        } = &self.ek_public.params
        else {
            unreachable!("the model's EK is ECC")
        };
        debug_assert_eq!(*c, curve::NIST_P256);
        let seed = kdf::kdfe(
            alg::SHA256,
            shared.raw_secret_bytes(),
            "IDENTITY",
            ex,
            ek_x,
            256,
        )
        .expect("SHA-256");
        let mut r = Reader::new(id_object);
        let integrity = r.tpm2b_max("TPM2B_ID_OBJECT.integrityHMAC", 32)?;
        let enc_identity = r.take(r.remaining(), "TPM2B_ID_OBJECT.encIdentity")?;
        let hmac_key = kdf::kdfa(alg::SHA256, &seed, "INTEGRITY", &[], &[], 256).expect("SHA-256");
        let expected = kdf::hmac(alg::SHA256, &hmac_key, &[enc_identity, name]).expect("SHA-256");
        if !constant_time_eq(&expected, integrity) {
            return Err(ModelError::Integrity);
        }
        let sym_key = kdf::kdfa(alg::SHA256, &seed, "STORAGE", name, &[], 128).expect("SHA-256");
        let mut plain = enc_identity.to_vec();
        kdf::aes_cfb_zero_iv(&sym_key, &mut plain, false).expect("AES-128");
        let mut r = Reader::new(&plain);
        let secret = r.tpm2b_max("credential", 32)?.to_vec();
        r.finish("encIdentity")?;
        Ok(secret)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The qualified Name of a primary object (SHA-256 Name): nameAlg ‖
/// H(hierarchy handle ‖ Name).
pub fn primary_qualified_name(hierarchy: u32, name: &[u8]) -> Vec<u8> {
    let mut out = alg::SHA256.to_be_bytes().to_vec();
    out.extend(kdf::digest(alg::SHA256, &[&hierarchy.to_be_bytes(), name]).expect("SHA-256"));
    out
}
