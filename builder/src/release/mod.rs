//! The signed release of an image: `manifest.json` (the keys crate's
//! signed manifest with the builder's [`ImagePayload`]), its minisign
//! signature, `sbom.spdx.json` (SPDX 2.3) and `provenance.intoto.json` (an
//! in-toto statement with a SLSA v1 predicate in a DSSE envelope signed by
//! the same key), and [`verify`] which re-checks all of it offline.
//!
//! Everything written here is deterministic (canonical JSON, the build's
//! SOURCE_DATE_EPOCH, Ed25519's deterministic signatures), so two builds
//! of the same lock sign to the same bytes.

pub mod dsse;
mod error;
pub mod license;
pub mod provenance;
pub mod sbom;
mod verify;

use std::collections::BTreeMap;
use std::path::Path;

use ironrack_keys::manifest::{Artifact, MANIFEST_FILE, SIGNATURE_FILE};
use ironrack_keys::{Item, SignedManifest, Signer, Timestamp, canonical};
use serde::{Deserialize, Serialize};

pub use error::ReleaseError;
pub use verify::{Check, Outcome, VerifyReport, verify};

/// The SBOM's file name.
pub const SBOM_FILE: &str = "sbom.spdx.json";
/// The provenance envelope's file name.
pub const PROVENANCE_FILE: &str = "provenance.intoto.json";
/// Files of an image directory that are not part of the signed image:
/// `build.json` is the local build's log (stage times, paths), different
/// on every run; nothing serves or boots it.
pub const UNSIGNED_FILES: &[&str] = &["build.json"];

/// What the builder adds to a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImagePayload {
    /// The inputs, by digest.
    pub build: BuildRecord,
    /// The kernel, when the image has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelRecord>,
    /// Every kernel module of the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<ModuleRecord>,
    /// The NVIDIA driver chain, when the spec has an `[nvidia]` section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nvidia: Option<NvidiaRecord>,
    /// What a node booting this image will measure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurements: Option<Measurements>,
    /// The agent in the initramfs, and the image libraries shipped for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentRecord>,
    /// How many packages the image has (the SBOM lists them).
    pub packages: u64,
}

/// The build's inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BuildRecord {
    /// SHA-256 of the spec file.
    pub spec_sha256: String,
    /// SHA-256 of the lock file.
    pub lock_sha256: String,
    /// The mirror snapshot id.
    pub snapshot: String,
    /// SOURCE_DATE_EPOCH (the snapshot's Release date).
    pub source_date_epoch: i64,
    /// The ironrack version that built it.
    pub builder_version: String,
}

/// The image's kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KernelRecord {
    /// `uname -r` of the image kernel.
    pub release: String,
    /// Its package and version.
    pub package: String,
    /// The package version.
    pub version: String,
    /// The kernel command line baked into the UKI.
    pub cmdline: String,
}

/// One kernel module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ModuleRecord {
    /// Path in the image (`/usr/lib/modules/...`).
    pub path: String,
    /// SHA-256 of the file as installed.
    pub sha256: String,
    /// modinfo `vermagic`.
    pub vermagic: String,
    /// Whether a module signature is appended.
    pub signed: bool,
}

/// The NVIDIA driver chain and how each coupling was checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NvidiaRecord {
    /// The driver release.
    pub version: String,
    /// `open` or `proprietary`.
    pub flavour: String,
    /// `built` from the source package, or `precompiled`.
    pub modules_from: String,
    /// Patches applied to the module source, by digest.
    #[serde(default)]
    pub patches: Vec<PatchRecord>,
    /// Each coupling: what was expected and what was found.
    pub checks: Vec<ChainCheck>,
    /// Userspace packages of their own source (not coupled to the driver
    /// release, e.g. nvidia-persistenced): name → version.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub independent: std::collections::BTreeMap<String, String>,
}

/// A driver patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PatchRecord {
    /// File name under images/NAME/patches/.
    pub name: String,
    /// Its SHA-256.
    pub sha256: String,
}

/// One checked coupling (`nvidia.ko vermagic` = `kernel release`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ChainCheck {
    /// What was compared.
    pub check: String,
    /// The value it must have.
    pub expected: String,
    /// The value found.
    pub found: String,
}

/// The initramfs's `/init`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AgentRecord {
    /// SHA-256 of the agent binary (the ironrack that built the image).
    pub sha256: String,
    /// Libraries shipped for a dynamic agent, from the image.
    #[serde(default)]
    pub libraries: Vec<AgentLibraryRecord>,
}

/// One library of the agent's closure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AgentLibraryRecord {
    /// Path in the initramfs.
    pub path: String,
    /// SHA-256 of its bytes.
    pub sha256: String,
    /// The image package (`libc6 2.36-9+deb12u14`) that ships it.
    pub package: String,
}

/// Expected measurements of a boot of this image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Measurements {
    /// The UKI's file name among the artifacts.
    pub uki: String,
    /// Authenticode SHA-256 of the UKI (the firmware's PCR 4 event).
    pub uki_authenticode: String,
    /// PCR 11 after systemd-stub measured the UKI's sections.
    pub pcr11: String,
    /// Authenticode SHA-256 of the UKI's `.linux` (the PCR 4 event when
    /// the stub starts the kernel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_authenticode: Option<String>,
    /// The PCR the agent extends with the manifest and rootfs digests.
    pub agent_pcr: u32,
}

/// What a release is.
#[derive(Debug, Clone)]
pub struct ReleaseInput<'a> {
    /// Image name, channel, version.
    pub name: &'a str,
    /// Channel.
    pub channel: &'a str,
    /// Version.
    pub version: u64,
    /// The manifest's expiry.
    pub expires: Timestamp,
    /// The payload.
    pub payload: ImagePayload,
    /// SBOM inputs.
    pub suite: &'a str,
    /// The image's packages.
    pub packages: &'a [sbom::SbomPackage],
    /// Provenance inputs.
    pub provenance: provenance::BuildInputs<'a>,
}

/// Writes the SBOM, the provenance envelope and the signed manifest into
/// `dir`, next to the artifacts already there (every regular file of `dir`
/// becomes an artifact). `dir` is the build's staging directory: the
/// caller publishes it by renaming it whole.
pub fn write_release(
    dir: &Path,
    input: &ReleaseInput<'_>,
    signer: &dyn Signer,
) -> Result<(), ReleaseError> {
    let created =
        Timestamp::from_unix(input.payload.build.source_date_epoch).ok_or(ReleaseError::Epoch {
            value: input.payload.build.source_date_epoch,
        })?;
    let doc = sbom::document(&sbom::SbomInput {
        image: input.name,
        version: input.version,
        suite: input.suite,
        lock_sha256: &input.payload.build.lock_sha256,
        created,
        tool_version: &input.payload.build.builder_version,
        packages: input.packages,
        patches: input
            .payload
            .nvidia
            .as_ref()
            .map(|n| n.patches.as_slice())
            .unwrap_or_default(),
    });
    write_json(dir, SBOM_FILE, &doc)?;

    // Every file is hashed once: the provenance names them all (but
    // itself), the manifest names them and the provenance.
    let mut artifacts = hash_artifacts(dir, &[PROVENANCE_FILE])?;
    let subjects: BTreeMap<String, String> = artifacts
        .iter()
        .map(|a| (a.name.clone(), a.sha256.to_string()))
        .collect();
    let statement = provenance::statement(&input.provenance, &subjects);
    let payload =
        canonical::to_vec(&statement, Item::Manifest).map_err(|source| ReleaseError::Json {
            file: PROVENANCE_FILE,
            source,
        })?;
    let envelope = dsse::sign(dsse::IN_TOTO_PAYLOAD_TYPE, &payload, signer)?;
    write_json(dir, PROVENANCE_FILE, &envelope)?;

    artifacts.push(
        Artifact::from_file(dir, PROVENANCE_FILE)
            .map_err(|source| ReleaseError::Manifest { source })?,
    );
    artifacts.sort_by(|a, b| a.name.cmp(&b.name));
    let manifest = SignedManifest {
        doc_type: ironrack_keys::manifest::MANIFEST_TYPE.to_owned(),
        name: input.name.to_owned(),
        channel: input.channel.to_owned(),
        version: input.version,
        expires: input.expires,
        artifacts,
        payload: input.payload.clone(),
    };
    ironrack_keys::manifest::write_signed_manifest(dir, signer, &manifest)
        .map_err(|source| ReleaseError::Manifest { source })
}

/// Canonical JSON, written atomically.
fn write_json<T: Serialize>(dir: &Path, name: &'static str, value: &T) -> Result<(), ReleaseError> {
    let bytes = canonical::to_vec(value, Item::Manifest)
        .map_err(|source| ReleaseError::Json { file: name, source })?;
    ironrack_keys::write_file_atomically(&dir.join(name), &bytes)
        .map_err(|source| ReleaseError::Manifest { source })
}

/// The artifact files of a release directory: every regular file but
/// the manifest and its signature, sorted.
fn artifact_names(dir: &Path) -> Result<Vec<String>, ReleaseError> {
    let read = |source| ReleaseError::ReadDir {
        dir: dir.to_owned(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read)? {
        let entry = entry.map_err(read)?;
        if !entry.file_type().map_err(read)?.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != MANIFEST_FILE
            && name != SIGNATURE_FILE
            && !UNSIGNED_FILES.contains(&name.as_str())
            && !name.starts_with('.')
        {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Every artifact of `dir` but `skip`, hashed, sorted by name.
fn hash_artifacts(dir: &Path, skip: &[&str]) -> Result<Vec<Artifact>, ReleaseError> {
    artifact_names(dir)?
        .iter()
        .filter(|name| !skip.contains(&name.as_str()))
        .map(|name| Artifact::from_file(dir, name))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| ReleaseError::Manifest { source })
}
