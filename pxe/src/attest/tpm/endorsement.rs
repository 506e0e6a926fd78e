//! Finding the node's endorsement keys: read the EK certificates the
//! manufacturer stored in NV, and load the matching EKs.
//!
//! A persistent EK (TCG provisioning puts them at 0x81010001 and up) is
//! used when its public area matches the template, which saves the seconds
//! a discrete TPM needs to re-derive an RSA key; otherwise CreatePrimary
//! derives it from the template. A manufacturer template stored at the
//! profile's template index replaces the default one.

use super::client::{LoadedKey, Tpm};
use super::constants::rh;
use super::public::Public;
use super::template::EkTemplate;
use super::transport::Transport;
use super::{TpmError, constants::object};

/// An EK ready for ActivateCredential, with its certificate if the TPM has one.
#[derive(Debug, Clone)]
pub struct EndorsementKey {
    /// Which profile template it follows.
    pub template: EkTemplate,
    /// Handle, public area and Name.
    pub key: LoadedKey,
    /// Whether `key.handle` is a persistent EK (never flush it).
    pub persistent: bool,
    /// The DER EK certificate from NV, when present.
    pub certificate: Option<Vec<u8>>,
}

impl EndorsementKey {
    /// Releases the handle if it is transient.
    pub fn release<T: Transport>(&self, tpm: &mut Tpm<T>) -> Result<(), TpmError> {
        if self.persistent {
            Ok(())
        } else {
            tpm.flush(self.key.handle)
        }
    }
}

/// Whether the error says the handle or NV index does not exist.
fn is_absent(e: &TpmError) -> bool {
    e.response_code().is_some_and(|rc| {
        let base = rc.base();
        // TPM_RC_HANDLE (format 1), or TPM_RC_REFERENCE_Hn / NV_UNINITIALIZED.
        base == 0x08b || (0x910..=0x916).contains(&rc.0) || base == 0x14a
    })
}

fn read_optional<T: Transport>(tpm: &mut Tpm<T>, index: u32) -> Result<Option<Vec<u8>>, TpmError> {
    match tpm.nv_read(index) {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_absent(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The EKs the agent reports: one per template whose certificate is in NV.
/// When the TPM carries no EK certificate at all, the ECC P-256 EK alone
/// (quick to derive), uncertified: the server then keeps the node pending
/// until an operator approves it.
pub fn endorsement_keys<T: Transport>(tpm: &mut Tpm<T>) -> Result<Vec<EndorsementKey>, TpmError> {
    let mut found = Vec::new();
    for template in EkTemplate::ALL {
        if let Some(cert) = read_optional(tpm, template.cert_index())? {
            found.push((template, Some(cert)));
        }
    }
    if found.is_empty() {
        found.push((EkTemplate::EccP256, None));
    }
    let persistent = match tpm.handles(rh::PERSISTENT_FIRST) {
        Ok(h) => h,
        Err(e) => {
            tracing::debug!(error = %e, "listing persistent handles failed; deriving EKs");
            Vec::new()
        }
    };
    let mut out = Vec::new();
    for (template, certificate) in found {
        let public = match read_optional(tpm, template.template_index())? {
            Some(bytes) => manufacturer_template(template, &bytes),
            None => template.public(),
        };
        let (key, is_persistent) = match find_persistent(tpm, &persistent, &public)? {
            Some(key) => (key, true),
            None => (tpm.create_primary(rh::ENDORSEMENT, &public)?, false),
        };
        tracing::debug!(
            template = template.label(),
            handle = key.handle,
            is_persistent,
            "EK loaded"
        );
        out.push(EndorsementKey {
            template,
            key,
            persistent: is_persistent,
            certificate,
        });
    }
    Ok(out)
}

/// A manufacturer's template from NV, if it parses as a restricted
/// decryption key; the profile default otherwise.
fn manufacturer_template(template: EkTemplate, bytes: &[u8]) -> Public {
    match Public::from_bytes(bytes) {
        Ok(p) if p.has(object::RESTRICTED | object::DECRYPT) => p,
        Ok(_) | Err(_) => {
            tracing::warn!(
                index = template.template_index(),
                "EK template in NV is not a restricted decryption key; using the profile default"
            );
            template.public()
        }
    }
}

/// A persistent EK made from the same template (the server still checks
/// that the certificate certifies exactly this key).
fn find_persistent<T: Transport>(
    tpm: &mut Tpm<T>,
    handles: &[u32],
    public: &Public,
) -> Result<Option<LoadedKey>, TpmError> {
    // Only the EK range of the provisioning guidance.
    for &handle in handles
        .iter()
        .filter(|h| (0x8101_0000..0x8101_8000).contains(*h))
    {
        let (p, name) = tpm.read_public(handle)?;
        if same_template(&p, public) {
            return Ok(Some(LoadedKey {
                handle,
                public: p,
                name,
            }));
        }
    }
    Ok(None)
}

/// Same type, attributes, policy and parameters as a custom template.
fn same_template(a: &Public, b: &Public) -> bool {
    use super::public::KeyParams;
    let params = match (&a.params, &b.params) {
        (
            KeyParams::Rsa {
                symmetric: s1,
                key_bits: k1,
                ..
            },
            KeyParams::Rsa {
                symmetric: s2,
                key_bits: k2,
                ..
            },
        ) => s1 == s2 && k1 == k2,
        (
            KeyParams::Ecc {
                symmetric: s1,
                curve: c1,
                ..
            },
            KeyParams::Ecc {
                symmetric: s2,
                curve: c2,
                ..
            },
        ) => s1 == s2 && c1 == c2,
        _ => false,
    };
    params
        && a.name_alg == b.name_alg
        && a.attributes == b.attributes
        && a.auth_policy == b.auth_policy
}
