//! EK certificate checks on the server: the certificate chains to a CA
//! root the operator trusts, and certifies the very key the TPM reported.
//!
//! EK certificates have quirks a generic X.509 verifier trips on: the
//! subject is often empty and the TPM identity sits in a critical
//! subjectAltName directoryName (TCG OIDs 2.23.133.2.1-3), and a
//! subjectDirectoryAttributes extension carries the TPM specification.
//! Critical extensions are therefore accepted from a known list; any other
//! critical extension fails, as RFC 5280 requires.

use std::time::SystemTime;

use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256, Sha384, Sha512};
use x509_cert::Certificate;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, SubjectAltName};

use crate::attest::credential::sec1_point;
use crate::attest::tpm::constants::curve;
use crate::attest::tpm::public::{KeyParams, Public};

/// Longest chain walked (leaf, intermediates, root).
const MAX_CHAIN: usize = 8;

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const TCG_TPM_MANUFACTURER: &str = "2.23.133.2.1";
const TCG_TPM_MODEL: &str = "2.23.133.2.2";
const TCG_TPM_VERSION: &str = "2.23.133.2.3";

/// Extensions that may be marked critical in an EK certificate chain.
const KNOWN_CRITICAL: [&str; 7] = [
    "2.5.29.15", // keyUsage
    "2.5.29.17", // subjectAltName (TPM identity, critical when the subject is empty)
    "2.5.29.19", // basicConstraints
    "2.5.29.32", // certificatePolicies
    "2.5.29.37", // extendedKeyUsage
    "2.5.29.9",  // subjectDirectoryAttributes (TPM specification)
    "2.5.29.30", // nameConstraints
];

/// Why an EK certificate was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EkError {
    /// The DER does not parse.
    #[error("{what} does not parse: {reason}")]
    Parse {
        /// Which certificate.
        what: &'static str,
        /// The decoder's message.
        reason: String,
    },
    /// The certificate's key is not the EK the TPM reported.
    #[error("EK certificate certifies another key than the TPM's EK")]
    KeyMismatch,
    /// A key type or curve this code does not handle.
    #[error("certificate {subject}: unsupported public key: {reason}")]
    UnsupportedKey {
        /// The certificate subject.
        subject: String,
        /// What is unsupported.
        reason: &'static str,
    },
    /// A critical extension not in the known list.
    #[error("certificate {subject}: unknown critical extension {oid}")]
    UnknownCriticalExtension {
        /// The certificate subject.
        subject: String,
        /// The extension OID.
        oid: String,
    },
    /// Not valid yet.
    #[error("certificate {subject} is not valid before {not_before}")]
    NotYetValid {
        /// The certificate subject.
        subject: String,
        /// Its notBefore.
        not_before: String,
    },
    /// Expired.
    #[error("certificate {subject} expired at {not_after}")]
    Expired {
        /// The certificate subject.
        subject: String,
        /// Its notAfter.
        not_after: String,
    },
    /// No trusted or intermediate certificate issued this one.
    #[error("certificate {subject}: issuer {issuer} is not a trusted EK CA")]
    UnknownIssuer {
        /// The certificate subject.
        subject: String,
        /// Its issuer name.
        issuer: String,
    },
    /// The issuer's signature does not verify.
    #[error("certificate {subject}: signature by {issuer} does not verify")]
    BadSignature {
        /// The certificate subject.
        subject: String,
        /// The issuer whose key was tried.
        issuer: String,
    },
    /// A signature algorithm this code does not verify.
    #[error("certificate {subject}: unsupported signature algorithm {oid}")]
    UnsupportedSignature {
        /// The certificate subject.
        subject: String,
        /// The algorithm OID.
        oid: String,
    },
    /// An intermediate without CA basic constraints, or a leaf claiming CA.
    #[error("certificate {subject}: wrong CA flag for its place in the chain")]
    CaFlag {
        /// The certificate subject.
        subject: String,
    },
    /// The chain did not reach a root within the limit.
    #[error("EK certificate chain longer than {MAX_CHAIN}")]
    ChainTooLong,
}

/// The operator's EK CA roots, plus intermediates that may be needed to
/// reach them (vendors publish intermediates; TPMs store only the leaf).
#[derive(Debug, Clone, Default)]
pub struct EkTrust {
    roots: Vec<Certificate>,
    intermediates: Vec<Certificate>,
}

impl EkTrust {
    /// An empty trust store: every EK certificate is from an unknown CA.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds trusted roots from DER.
    pub fn add_root_der(&mut self, der: &[u8]) -> Result<(), EkError> {
        self.roots.push(parse(der, "CA root certificate")?);
        Ok(())
    }

    /// Adds untrusted intermediates from DER (trusted only through a root).
    pub fn add_intermediate_der(&mut self, der: &[u8]) -> Result<(), EkError> {
        self.intermediates
            .push(parse(der, "CA intermediate certificate")?);
        Ok(())
    }

    /// Adds every certificate of a PEM bundle as a root.
    pub fn add_roots_pem(&mut self, pem: &str) -> Result<(), EkError> {
        self.roots.extend(parse_pem(pem, "CA root bundle")?);
        Ok(())
    }

    /// Adds every certificate of a PEM bundle as an intermediate.
    pub fn add_intermediates_pem(&mut self, pem: &str) -> Result<(), EkError> {
        self.intermediates
            .extend(parse_pem(pem, "CA intermediate bundle")?);
        Ok(())
    }

    /// Number of roots.
    pub fn root_count(&self) -> usize {
        self.roots.len()
    }
}

/// What an accepted EK certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EkCertificateInfo {
    /// Subjects from the EK certificate up to the root.
    pub chain: Vec<String>,
    /// TPM manufacturer from the subjectAltName (e.g. "id:00001014").
    pub tpm_manufacturer: Option<String>,
    /// TPM model.
    pub tpm_model: Option<String>,
    /// TPM firmware version.
    pub tpm_version: Option<String>,
}

fn parse(der: &[u8], what: &'static str) -> Result<Certificate, EkError> {
    Certificate::from_der(der).map_err(|e| EkError::Parse {
        what,
        reason: e.to_string(),
    })
}

fn parse_pem(pem: &str, what: &'static str) -> Result<Vec<Certificate>, EkError> {
    Certificate::load_pem_chain(pem.as_bytes()).map_err(|e| EkError::Parse {
        what,
        reason: e.to_string(),
    })
}

fn subject(c: &Certificate) -> String {
    let s = c.tbs_certificate().subject().to_string();
    if s.is_empty() {
        "(empty subject)".into()
    } else {
        s
    }
}

/// Checks an EK certificate (DER, as read from TPM NV) against `trust` at
/// time `now`, and that it certifies `ek` (the EK public the TPM reported).
pub fn verify_ek_certificate(
    cert_der: &[u8],
    ek: &Public,
    trust: &EkTrust,
    now: SystemTime,
) -> Result<EkCertificateInfo, EkError> {
    let leaf = parse(cert_der, "EK certificate")?;
    if !certifies(&leaf, ek)? {
        return Err(EkError::KeyMismatch);
    }
    let mut chain = vec![subject(&leaf)];
    let mut current = leaf.clone();
    check_common(&current, now, false)?;
    for _ in 0..MAX_CHAIN {
        let issuer_name = current.tbs_certificate().issuer();
        let candidates = trust
            .roots
            .iter()
            .map(|c| (c, true))
            .chain(trust.intermediates.iter().map(|c| (c, false)))
            .filter(|(c, _)| c.tbs_certificate().subject() == issuer_name);
        let mut found = None;
        let mut last_error = None;
        for (issuer, is_root) in candidates {
            match verify_signature(&current, issuer) {
                Ok(()) => {
                    found = Some((issuer, is_root));
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let Some((issuer, is_root)) = found else {
            return Err(last_error.unwrap_or_else(|| EkError::UnknownIssuer {
                subject: subject(&current),
                issuer: issuer_name.to_string(),
            }));
        };
        check_common(issuer, now, true)?;
        chain.push(subject(issuer));
        if is_root {
            let san = tpm_identity(&leaf);
            return Ok(EkCertificateInfo {
                chain,
                tpm_manufacturer: san.0,
                tpm_model: san.1,
                tpm_version: san.2,
            });
        }
        current = issuer.clone();
    }
    Err(EkError::ChainTooLong)
}

/// Validity period, critical extensions, and the CA flag expected here.
fn check_common(c: &Certificate, now: SystemTime, must_be_ca: bool) -> Result<(), EkError> {
    let tbs = c.tbs_certificate();
    let validity = tbs.validity();
    if now < validity.not_before.to_system_time() {
        return Err(EkError::NotYetValid {
            subject: subject(c),
            not_before: validity.not_before.to_string(),
        });
    }
    if now > validity.not_after.to_system_time() {
        return Err(EkError::Expired {
            subject: subject(c),
            not_after: validity.not_after.to_string(),
        });
    }
    for ext in tbs.extensions().into_iter().flatten() {
        let oid = ext.extn_id.to_string();
        if ext.critical && !KNOWN_CRITICAL.contains(&oid.as_str()) {
            return Err(EkError::UnknownCriticalExtension {
                subject: subject(c),
                oid,
            });
        }
    }
    let is_ca = matches!(
        tbs.get_extension::<BasicConstraints>(),
        Ok(Some((_, BasicConstraints { ca: true, .. })))
    );
    // A v1 root has no extensions at all; accept it as a CA only as a root
    // the operator installed, which is where it is reached from.
    let v1_root = must_be_ca && tbs.extensions().is_none();
    if must_be_ca != is_ca && !v1_root {
        return Err(EkError::CaFlag {
            subject: subject(c),
        });
    }
    Ok(())
}

fn verify_signature(cert: &Certificate, issuer: &Certificate) -> Result<(), EkError> {
    // The der crate decodes strict DER only, so re-encoding the parsed
    // TBSCertificate gives back exactly the signed bytes.
    let tbs = cert
        .tbs_certificate()
        .to_der()
        .map_err(|e| EkError::Parse {
            what: "certificate",
            reason: e.to_string(),
        })?;
    let tbs = tbs.as_slice();
    let sig = cert.signature().as_bytes().unwrap_or(&[]);
    let alg = cert.signature_algorithm().oid.to_string();
    let bad = || EkError::BadSignature {
        subject: subject(cert),
        issuer: subject(issuer),
    };
    let spki = issuer.tbs_certificate().subject_public_key_info();
    let key_bytes = spki.subject_public_key.as_bytes().unwrap_or(&[]);
    let (hash, is_rsa): (Vec<u8>, bool) = match alg.as_str() {
        "1.2.840.113549.1.1.11" => (Sha256::digest(tbs).to_vec(), true),
        "1.2.840.113549.1.1.12" => (Sha384::digest(tbs).to_vec(), true),
        "1.2.840.113549.1.1.13" => (Sha512::digest(tbs).to_vec(), true),
        "1.2.840.10045.4.3.2" => (Sha256::digest(tbs).to_vec(), false),
        "1.2.840.10045.4.3.3" => (Sha384::digest(tbs).to_vec(), false),
        _ => {
            return Err(EkError::UnsupportedSignature {
                subject: subject(cert),
                oid: alg,
            });
        }
    };
    if is_rsa {
        if spki.algorithm.oid.to_string() != OID_RSA {
            return Err(bad());
        }
        let key = rsa::PublicKey::from_pkcs1_der(key_bytes).map_err(|_| bad())?;
        let scheme = match alg.as_str() {
            "1.2.840.113549.1.1.11" => rsa::Pkcs1v15Sign::new::<Sha256>(),
            "1.2.840.113549.1.1.12" => rsa::Pkcs1v15Sign::new::<Sha384>(),
            _ => rsa::Pkcs1v15Sign::new::<Sha512>(),
        };
        return key.verify(scheme, &hash, sig).map_err(|_| bad());
    }
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    match ec_curve(spki).map_err(|_| bad())? {
        OID_P256 => {
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes).map_err(|_| bad())?;
            let sig = p256::ecdsa::Signature::from_der(sig).map_err(|_| bad())?;
            key.verify_prehash(&hash, &sig).map_err(|_| bad())
        }
        _ => {
            let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes).map_err(|_| bad())?;
            let sig = p384::ecdsa::Signature::from_der(sig).map_err(|_| bad())?;
            key.verify_prehash(&hash, &sig).map_err(|_| bad())
        }
    }
}

/// The named curve of an EC SubjectPublicKeyInfo (P-256 or P-384 only).
fn ec_curve(spki: &x509_cert::spki::SubjectPublicKeyInfoOwned) -> Result<&'static str, ()> {
    if spki.algorithm.oid.to_string() != OID_EC {
        return Err(());
    }
    let params = spki.algorithm.parameters.as_ref().ok_or(())?;
    let oid: ObjectIdentifier = params.decode_as().map_err(|_| ())?;
    match oid.to_string().as_str() {
        OID_P256 => Ok(OID_P256),
        OID_P384 => Ok(OID_P384),
        _ => Err(()),
    }
}

/// Whether `cert`'s public key is the EK `ek`.
pub fn certifies(cert: &Certificate, ek: &Public) -> Result<bool, EkError> {
    let spki = cert.tbs_certificate().subject_public_key_info();
    let key_bytes = spki.subject_public_key.as_bytes().unwrap_or(&[]);
    let unsupported = |reason| EkError::UnsupportedKey {
        subject: subject(cert),
        reason,
    };
    match &ek.params {
        KeyParams::Rsa {
            exponent, modulus, ..
        } => {
            if spki.algorithm.oid.to_string() != OID_RSA {
                return Ok(false);
            }
            let key = rsa::PublicKey::from_pkcs1_der(key_bytes)
                .map_err(|_| unsupported("RSA key does not decode"))?;
            let e = if *exponent == 0 { 65537 } else { *exponent };
            let n = key.n().to_be_bytes();
            Ok(strip_zeros(&n) == strip_zeros(modulus)
                && strip_zeros(&key.e().to_be_bytes()) == strip_zeros(&e.to_be_bytes()))
        }
        KeyParams::Ecc { curve: c, x, y, .. } => {
            let Ok(named) = ec_curve(spki) else {
                return Ok(false);
            };
            let expected = match (*c, named) {
                (curve::NIST_P256, OID_P256) => sec1_point::<32>(x, y),
                (curve::NIST_P384, OID_P384) => sec1_point::<48>(x, y),
                _ => return Ok(false),
            }
            .map_err(|_| unsupported("EK coordinates longer than the field"))?;
            Ok(key_bytes == expected.as_slice())
        }
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    &b[first..]
}

/// TPM manufacturer, model and version from the subjectAltName
/// directoryName, when present and readable.
fn tpm_identity(cert: &Certificate) -> (Option<String>, Option<String>, Option<String>) {
    let mut out = (None, None, None);
    let Ok(Some((_, san))) = cert.tbs_certificate().get_extension::<SubjectAltName>() else {
        return out;
    };
    for name in san.0 {
        let GeneralName::DirectoryName(dn) = name else {
            continue;
        };
        for atv in dn.iter() {
            let value = atv.value.decode_as::<String>().ok().or_else(|| {
                atv.value
                    .decode_as::<x509_cert::der::asn1::PrintableStringRef<'_>>()
                    .ok()
                    .map(|s| s.to_string())
            });
            match atv.oid.to_string().as_str() {
                TCG_TPM_MANUFACTURER => out.0 = value,
                TCG_TPM_MODEL => out.1 = value,
                TCG_TPM_VERSION => out.2 = value,
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_a_parse_error() {
        let ek = crate::attest::tpm::EkTemplate::Rsa2048.public();
        let err = verify_ek_certificate(b"not der", &ek, &EkTrust::new(), SystemTime::now());
        assert!(matches!(err, Err(EkError::Parse { .. })));
    }
}
