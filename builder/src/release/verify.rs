//! `ironrack verify`: re-check a release offline.
//!
//! The manifest's signature through the trust chain comes first; nothing
//! else is believed without it. Then each claim is re-derived from the
//! files and compared: every artifact's size and digest, the provenance
//! envelope's signature and subjects, the SBOM against the manifest, the
//! UKI's Authenticode digest and PCR 11 prediction.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use ironrack_keys::manifest::{MANIFEST_FILE, SIGNATURE_FILE};
use ironrack_keys::{Item, SignedManifest, Timestamp, Trust, canonical};
use serde_json::Value;

use super::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use super::{ImagePayload, PROVENANCE_FILE, ReleaseError, SBOM_FILE};
use crate::boot::measure::{SYSTEMD_STUB_252, predict_pcr11};
use crate::boot::pe::PeImage;

/// Companions are small; a larger file is damage.
const JSON_LIMIT: u64 = 256 << 20;

/// How one check came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It holds; what was seen.
    Ok(String),
    /// It does not; what differs.
    Failed(String),
}

/// One check of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// The outcome.
    pub outcome: Outcome,
}

/// Everything `verify` found.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// The verified manifest.
    pub manifest: SignedManifest<ImagePayload>,
    /// The trust file's name of the signer.
    pub signer: String,
    /// The checks after the signature, in order.
    pub checks: Vec<Check>,
}

impl VerifyReport {
    /// True when every check holds.
    pub fn passed(&self) -> bool {
        self.checks
            .iter()
            .all(|c| matches!(c.outcome, Outcome::Ok(_)))
    }

    fn push(&mut self, name: impl Into<String>, result: Result<String, String>) {
        self.checks.push(Check {
            name: name.into(),
            outcome: match result {
                Ok(s) => Outcome::Ok(s),
                Err(s) => Outcome::Failed(s),
            },
        });
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.manifest;
        writeln!(
            f,
            "{} version {} (channel {}), signed by {}, expires {}",
            m.name, m.version, m.channel, self.signer, m.expires
        )?;
        for c in &self.checks {
            match &c.outcome {
                Outcome::Ok(s) => writeln!(f, "  ok      {}: {s}", c.name)?,
                Outcome::Failed(s) => writeln!(f, "  FAILED  {}: {s}", c.name)?,
            }
        }
        Ok(())
    }
}

/// Verifies the release in `dir` with `trust` at `now`, refusing versions
/// below `highest_seen`. A manifest that does not verify is an error; any
/// later check that fails is in the report (see [`VerifyReport::passed`]).
pub fn verify(
    dir: &Path,
    trust: &Trust,
    highest_seen: Option<u64>,
    now: Timestamp,
) -> Result<VerifyReport, ReleaseError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest = read(dir, MANIFEST_FILE)?;
    let signature = read(dir, SIGNATURE_FILE)?;
    let verified =
        SignedManifest::<ImagePayload>::verify(trust, &manifest, &signature, highest_seen, now)
            .map_err(|e| ReleaseError::Manifest {
                source: e.in_file(&manifest_path),
            })?;
    let key = trust
        .delegation(verified.key_id)
        .map_err(|source| ReleaseError::Manifest { source })?
        .public
        .clone();
    let mut report = VerifyReport {
        manifest: verified.manifest,
        signer: verified.signer,
        checks: Vec::new(),
    };

    let mut digests = BTreeMap::new();
    for a in report.manifest.artifacts.clone() {
        let result = ironrack_keys::manifest::Artifact::from_file(dir, &a.name)
            .map_err(|e| e.to_string())
            .and_then(|found| {
                digests.insert(a.name.clone(), a.sha256.to_string());
                if found == a {
                    Ok(format!("{} bytes, sha256 {}", a.size, a.sha256))
                } else {
                    Err(format!(
                        "manifest says {} bytes sha256 {}, file has {} bytes sha256 {}",
                        a.size, a.sha256, found.size, found.sha256
                    ))
                }
            });
        report.push(format!("artifact {}", a.name), result);
    }
    let listed: Vec<String> = std::fs::read_dir(dir)
        .map_err(|source| ReleaseError::ReadDir {
            dir: dir.to_owned(),
            source,
        })?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != MANIFEST_FILE && n != SIGNATURE_FILE && !digests.contains_key(n))
        .collect();
    if !listed.is_empty() {
        report.push(
            "no unlisted files",
            Err(format!("not in the manifest: {}", listed.join(", "))),
        );
    }

    let provenance = check_provenance(dir, &key, &report.manifest, &digests);
    report.push("provenance", provenance);
    let sbom = check_sbom(dir, &report.manifest.payload);
    report.push("sbom", sbom);
    if let Some(m) = report.manifest.payload.measurements.clone() {
        let (authenticode, pcr11) = check_uki(dir, &m.uki);
        report.push(
            format!("{} Authenticode", m.uki),
            authenticode.and_then(|d| same("Authenticode SHA-256", &m.uki_authenticode, &d)),
        );
        report.push(
            format!("{} PCR 11", m.uki),
            pcr11.and_then(|d| same("PCR 11", &m.pcr11, &d)),
        );
    }
    if let Some(nv) = &report.manifest.payload.nvidia {
        let bad: Vec<String> = nv
            .checks
            .iter()
            .filter(|c| c.expected != c.found)
            .map(|c| format!("{}: expected {}, found {}", c.check, c.expected, c.found))
            .collect();
        let result = if bad.is_empty() {
            Ok(format!(
                "{} couplings hold for {}",
                nv.checks.len(),
                nv.version
            ))
        } else {
            Err(bad.join("; "))
        };
        report.push("nvidia chain", result);
    }
    Ok(report)
}

fn same(what: &str, expected: &str, found: &str) -> Result<String, String> {
    if expected == found {
        Ok(found.to_owned())
    } else {
        Err(format!(
            "{what}: manifest says {expected}, recomputed {found}"
        ))
    }
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, ReleaseError> {
    let item = if name == SIGNATURE_FILE {
        Item::Signature
    } else {
        Item::Manifest
    };
    ironrack_keys::files::read_limited(&dir.join(name), item, JSON_LIMIT)
        .map_err(|source| ReleaseError::Manifest { source })
}

fn check_provenance(
    dir: &Path,
    key: &ironrack_keys::PublicKey,
    manifest: &SignedManifest<ImagePayload>,
    digests: &BTreeMap<String, String>,
) -> Result<String, String> {
    let bytes = read(dir, PROVENANCE_FILE).map_err(|e| format!("{e:#}"))?;
    let envelope: Envelope =
        serde_json::from_slice(&bytes).map_err(|e| format!("{PROVENANCE_FILE}: {e}"))?;
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(format!("payload type {}", envelope.payload_type));
    }
    let payload = envelope.verify(key).map_err(|e| e.to_string())?;
    let statement = canonical::parse_value(&payload, Item::Manifest).map_err(|e| e.to_string())?;
    let mut subjects = BTreeMap::new();
    for s in statement["subject"].as_array().into_iter().flatten() {
        let name = s["name"].as_str().unwrap_or_default().to_owned();
        let sha = s["digest"]["sha256"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        subjects.insert(name, sha);
    }
    let mut expected = digests.clone();
    expected.remove(PROVENANCE_FILE);
    if subjects != expected {
        return Err(format!(
            "subjects {:?} differ from the manifest's artifacts {:?}",
            subjects.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>()
        ));
    }
    let internal = &statement["predicate"]["buildDefinition"]["internalParameters"];
    let build = &manifest.payload.build;
    if internal["snapshot"].as_str() != Some(build.snapshot.as_str()) {
        return Err(format!(
            "snapshot {} differs from the manifest's {}",
            internal["snapshot"], build.snapshot
        ));
    }
    let deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .map_or(0, Vec::len);
    Ok(format!(
        "DSSE signature by the manifest's key; {} subjects; {deps} dependencies",
        subjects.len()
    ))
}

fn check_sbom(dir: &Path, payload: &ImagePayload) -> Result<String, String> {
    let bytes = read(dir, SBOM_FILE).map_err(|e| format!("{e:#}"))?;
    let doc: Value = serde_json::from_slice(&bytes).map_err(|e| format!("{SBOM_FILE}: {e}"))?;
    if doc["spdxVersion"] != "SPDX-2.3" {
        return Err(format!("spdxVersion {}", doc["spdxVersion"]));
    }
    let namespace = doc["documentNamespace"].as_str().unwrap_or_default();
    if !namespace.ends_with(&payload.build.lock_sha256) {
        return Err(format!(
            "namespace {namespace} is not the lock's ({})",
            payload.build.lock_sha256
        ));
    }
    let packages = doc["packages"]
        .as_array()
        .map_or(0, |p| p.len().saturating_sub(1));
    if packages as u64 != payload.packages {
        return Err(format!(
            "{packages} packages, the manifest says {}",
            payload.packages
        ));
    }
    Ok(format!("SPDX 2.3, {packages} packages"))
}

/// The UKI's Authenticode digest and PCR 11 prediction, recomputed.
fn check_uki(dir: &Path, uki: &str) -> (Result<String, String>, Result<String, String>) {
    let bytes = match std::fs::read(dir.join(uki)) {
        Ok(b) => b,
        Err(e) => {
            let e = format!("reading {uki}: {e}");
            return (Err(e.clone()), Err(e));
        }
    };
    let image = match PeImage::parse(&bytes) {
        Ok(i) => i,
        Err(e) => {
            let e = format!("{uki}: {e}");
            return (Err(e.clone()), Err(e));
        }
    };
    let authenticode = Ok(hex::encode(image.authenticode_sha256()));
    let pcr11 = predict_pcr11(&image, &SYSTEMD_STUB_252)
        .map(|p| hex::encode(p.value))
        .map_err(|e| format!("{uki}: {e}"));
    (authenticode, pcr11)
}
