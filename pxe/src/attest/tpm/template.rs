//! Key templates: the endorsement keys of the TCG EK Credential Profile and
//! ironrack's attestation key.
//!
//! An EK is a primary key: the TPM derives it from the endorsement seed and
//! the template, so the template must match the manufacturer's bit for bit
//! (attributes, policy digest, symmetric algorithm, `unique` padding) or the
//! key will not match the EK certificate.
//!
//! The AK is also a primary key in the endorsement hierarchy. A stateless
//! node keeps no key blob between boots; re-deriving the same AK from the
//! same seed and template on every boot gives the server one AK per node
//! for as long as the endorsement seed lives (TPM2_Clear does not change it).

use super::constants::{alg, curve, object};
use super::public::{KeyParams, Public, Scheme, SymDef};

/// PolicySecret(TPM_RH_ENDORSEMENT) with SHA-256: the EK Credential
/// Profile's "policy A" for the low-range templates.
pub const POLICY_A_SHA256: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
];

/// "Policy B" with SHA-384 (PolicyOR of PolicySecret(endorsement) and the
/// NV-based policy), used by the high-range SHA-384 templates.
pub const POLICY_B_SHA384: [u8; 48] = [
    0xb2, 0x6e, 0x7d, 0x28, 0xd1, 0x1a, 0x50, 0xbc, 0x53, 0xd8, 0x82, 0xbc, 0xf5, 0xfd, 0x3a, 0x1a,
    0x07, 0x41, 0x48, 0xbb, 0x35, 0xd3, 0xb4, 0xe4, 0xcb, 0x1c, 0x0a, 0xd9, 0xbd, 0xe4, 0x19, 0xca,
    0xcb, 0x47, 0xba, 0x09, 0x69, 0x96, 0x46, 0x15, 0x0f, 0x9f, 0xc0, 0x00, 0xf3, 0xf8, 0x0e, 0x12,
];

/// fixedTPM, fixedParent, sensitiveDataOrigin, adminWithPolicy, restricted,
/// decrypt: the low-range EK attributes (0x000300b2).
const EK_ATTRS_LOW: u32 = object::FIXED_TPM
    | object::FIXED_PARENT
    | object::SENSITIVE_DATA_ORIGIN
    | object::ADMIN_WITH_POLICY
    | object::RESTRICTED
    | object::DECRYPT;

/// The high-range templates add userWithAuth (0x000300f2).
const EK_ATTRS_HIGH: u32 = EK_ATTRS_LOW | object::USER_WITH_AUTH;

/// How the USER role of an EK is authorized (ActivateCredential's keyHandle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EkAuth {
    /// A policy session satisfied by PolicySecret(TPM_RH_ENDORSEMENT).
    PolicySecretEndorsement,
    /// userWithAuth is set: a password session with the (empty) authValue.
    Password,
}

/// The EK kinds this code knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EkTemplate {
    /// RSA 2048, template L-1; certificate at NV 0x01c00002.
    Rsa2048,
    /// ECC NIST P-256, template L-2; certificate at NV 0x01c0000a.
    EccP256,
    /// ECC NIST P-384, template H-3 (SHA-384 Names, AES-256, policy B,
    /// userWithAuth, empty `unique`); certificate at NV 0x01c00016. This is
    /// the ECC EK swtpm 0.7 certifies.
    EccP384,
}

impl EkTemplate {
    /// Every template, in the order the agent tries them.
    pub const ALL: [EkTemplate; 3] = [
        EkTemplate::Rsa2048,
        EkTemplate::EccP256,
        EkTemplate::EccP384,
    ];

    /// NV index of the EK certificate.
    pub fn cert_index(self) -> u32 {
        match self {
            EkTemplate::Rsa2048 => 0x01c0_0002,
            EkTemplate::EccP256 => 0x01c0_000a,
            EkTemplate::EccP384 => 0x01c0_0016,
        }
    }

    /// NV index where a manufacturer may store a non-default template.
    pub fn template_index(self) -> u32 {
        match self {
            EkTemplate::Rsa2048 => 0x01c0_0004,
            EkTemplate::EccP256 => 0x01c0_000c,
            EkTemplate::EccP384 => 0x01c0_0017,
        }
    }

    /// Short name for logs and records.
    pub fn label(self) -> &'static str {
        match self {
            EkTemplate::Rsa2048 => "rsa2048",
            EkTemplate::EccP256 => "ecc-p256",
            EkTemplate::EccP384 => "ecc-p384",
        }
    }

    /// How ActivateCredential authorizes this EK.
    pub fn auth(self) -> EkAuth {
        match self {
            EkTemplate::Rsa2048 | EkTemplate::EccP256 => EkAuth::PolicySecretEndorsement,
            EkTemplate::EccP384 => EkAuth::Password,
        }
    }

    /// The template (TPMT_PUBLIC with the `unique` field as the profile
    /// prescribes).
    pub fn public(self) -> Public {
        match self {
            EkTemplate::Rsa2048 => Public {
                name_alg: alg::SHA256,
                attributes: EK_ATTRS_LOW,
                auth_policy: POLICY_A_SHA256.to_vec(),
                params: KeyParams::Rsa {
                    symmetric: SymDef::aes_cfb(128),
                    scheme: Scheme::NULL,
                    key_bits: 2048,
                    exponent: 0,
                    modulus: vec![0; 256],
                },
            },
            EkTemplate::EccP256 => ecc_ek(EK_ATTRS_LOW, alg::SHA256, &POLICY_A_SHA256, 128, 32),
            EkTemplate::EccP384 => ecc_ek(EK_ATTRS_HIGH, alg::SHA384, &POLICY_B_SHA384, 256, 0),
        }
    }

    /// Whether `public` (as the TPM reports it) was made from this template:
    /// everything but the `unique` field matches.
    pub fn matches(self, public: &Public) -> bool {
        let t = self.public();
        let same_params = match (&t.params, &public.params) {
            (
                KeyParams::Rsa {
                    symmetric: s1,
                    scheme: c1,
                    key_bits: b1,
                    exponent: e1,
                    ..
                },
                KeyParams::Rsa {
                    symmetric: s2,
                    scheme: c2,
                    key_bits: b2,
                    exponent: e2,
                    ..
                },
            ) => s1 == s2 && c1 == c2 && b1 == b2 && e1 == e2,
            (
                KeyParams::Ecc {
                    symmetric: s1,
                    scheme: c1,
                    curve: v1,
                    kdf: k1,
                    ..
                },
                KeyParams::Ecc {
                    symmetric: s2,
                    scheme: c2,
                    curve: v2,
                    kdf: k2,
                    ..
                },
            ) => s1 == s2 && c1 == c2 && v1 == v2 && k1 == k2,
            _ => false,
        };
        same_params
            && t.name_alg == public.name_alg
            && t.attributes == public.attributes
            && t.auth_policy == public.auth_policy
    }
}

fn ecc_ek(attributes: u32, name_alg: u16, policy: &[u8], sym_bits: u16, pad: usize) -> Public {
    let curve_id = if name_alg == alg::SHA384 {
        curve::NIST_P384
    } else {
        curve::NIST_P256
    };
    Public {
        name_alg,
        attributes,
        auth_policy: policy.to_vec(),
        params: KeyParams::Ecc {
            symmetric: SymDef::aes_cfb(sym_bits),
            scheme: Scheme::NULL,
            curve: curve_id,
            kdf: Scheme::NULL,
            x: vec![0; pad],
            y: vec![0; pad],
        },
    }
}

/// Attributes of ironrack's AK: fixedTPM, fixedParent, sensitiveDataOrigin,
/// userWithAuth, noDA, restricted, sign. Restricted means the TPM signs
/// only digests it computed itself over structures starting with
/// TPM_GENERATED_VALUE, so the AK cannot be made to sign a forged quote.
///
/// noDA: a TPM counts every power loss without TPM2_Shutdown as a failed
/// authorization, and after a few (a rack power event, `lab down`) it is
/// in dictionary-attack lockout, which refuses every authorization with a
/// DA-protected key until its recovery time passes (the lab hit
/// TPM_RC_LOCKOUT in ActivateCredential on its third run). The AK's
/// authValue is empty, so DA protection guards nothing for it.
pub const AK_ATTRIBUTES: u32 = AK_ATTRIBUTES_V1 | object::NO_DA;

/// The AK attributes of ironrack before noDA: such an AK at ironrack's
/// handle is ironrack's own, and is replaced.
pub const AK_ATTRIBUTES_V1: u32 = object::FIXED_TPM
    | object::FIXED_PARENT
    | object::SENSITIVE_DATA_ORIGIN
    | object::USER_WITH_AUTH
    | object::RESTRICTED
    | object::SIGN;

/// Bytes mixed into the AK's `unique` field so it differs from any other
/// primary key created from the endorsement seed.
const AK_UNIQUE: &[u8] = b"ironrack attestation key v1";

/// The attestation key kinds.
///
/// RSA-2048 is the default because the server verifies it about four
/// times faster than ECDSA P-256 with the pure-Rust crates (see the
/// `attest` benchmark), which is what a boot storm is bound by. Its one
/// drawback, RSA key generation taking seconds on discrete TPMs, is paid
/// once: [`super::Tpm::load_or_create_ak`] keeps the AK at a persistent
/// handle, so later boots only read it back. ECDSA P-256 remains
/// available for TPMs or sites that prefer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AkTemplate {
    /// RSASSA-PKCS1-v1_5 2048 with SHA-256.
    #[default]
    Rsa2048,
    /// ECDSA P-256 with SHA-256.
    EccP256,
}

/// Where ironrack keeps its AK: in the endorsement-hierarchy persistent
/// range, above the handles the TCG reserves for EKs (0x81010000-0x810100FF)
/// and outside the range the EK discovery scans.
pub const AK_PERSISTENT_HANDLE: u32 = 0x8101_8000;

impl AkTemplate {
    /// Whether `public` (as the TPM reports it) was made from this
    /// template: everything but the `unique` field (the key) matches.
    pub fn matches(self, public: &Public) -> bool {
        self.matches_attributes(public, AK_ATTRIBUTES)
    }

    /// Whether `public` is this template as an earlier ironrack made it
    /// (without noDA): ironrack's own AK, to be replaced.
    pub fn is_earlier(self, public: &Public) -> bool {
        self.matches_attributes(public, AK_ATTRIBUTES_V1)
    }

    fn matches_attributes(self, public: &Public, attributes: u32) -> bool {
        let mut t = self.public();
        t.attributes = attributes;
        let mut p = public.clone();
        for k in [&mut t, &mut p] {
            match &mut k.params {
                KeyParams::Rsa { modulus, .. } => modulus.clear(),
                KeyParams::Ecc { x, y, .. } => {
                    x.clear();
                    y.clear();
                }
            }
        }
        t == p
    }

    /// The template for CreatePrimary in the endorsement hierarchy.
    pub fn public(self) -> Public {
        match self {
            AkTemplate::EccP256 => Public {
                name_alg: alg::SHA256,
                attributes: AK_ATTRIBUTES,
                auth_policy: Vec::new(),
                params: KeyParams::Ecc {
                    symmetric: SymDef::NULL,
                    scheme: Scheme {
                        alg: alg::ECDSA,
                        hash: alg::SHA256,
                    },
                    curve: curve::NIST_P256,
                    kdf: Scheme::NULL,
                    x: AK_UNIQUE.to_vec(),
                    y: Vec::new(),
                },
            },
            AkTemplate::Rsa2048 => Public {
                name_alg: alg::SHA256,
                attributes: AK_ATTRIBUTES,
                auth_policy: Vec::new(),
                params: KeyParams::Rsa {
                    symmetric: SymDef::NULL,
                    scheme: Scheme {
                        alg: alg::RSASSA,
                        hash: alg::SHA256,
                    },
                    key_bits: 2048,
                    exponent: 0,
                    modulus: AK_UNIQUE.to_vec(),
                },
            },
        }
    }

    /// Short name for logs and records.
    pub fn label(self) -> &'static str {
        match self {
            AkTemplate::EccP256 => "ecdsa-p256-sha256",
            AkTemplate::Rsa2048 => "rsassa-2048-sha256",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// Policy A is PolicySecret(TPM_RH_ENDORSEMENT) from a zero digest:
    /// H(0^32 ‖ TPM_CC_PolicySecret ‖ Name(TPM_RH_ENDORSEMENT)) then
    /// H(that ‖ policyRef = empty).
    #[test]
    fn policy_a_is_policy_secret_endorsement() {
        let mut h = Sha256::new();
        h.update([0u8; 32]);
        h.update(0x0000_0151u32.to_be_bytes());
        h.update(0x4000_000bu32.to_be_bytes());
        let step = h.finalize();
        let policy = Sha256::digest(step);
        assert_eq!(policy.as_slice(), POLICY_A_SHA256);
    }

    #[test]
    fn ek_attributes_are_the_profile_values() {
        assert_eq!(EK_ATTRS_LOW, 0x0003_00b2);
        assert_eq!(EK_ATTRS_HIGH, 0x0003_00f2);
        assert_eq!(AK_ATTRIBUTES_V1, 0x0005_0072);
        // noDA is bit 10.
        assert_eq!(AK_ATTRIBUTES, 0x0005_0472);
    }
}
