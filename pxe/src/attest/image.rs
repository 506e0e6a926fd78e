//! What attestation needs to know about a signed image: the digest of its
//! manifest, its root filesystem artifact, and the measurements the builder
//! predicted. Both ends read it from the same signed `manifest.json`: the
//! agent to check what it downloads and measures, the server to judge the
//! node's quote.
//!
//! The manifest's payload belongs to the builder (`ImagePayload`); this
//! crate reads only its `measurements` member, with the same field names,
//! and ignores the rest of the payload (the signature already covers it).

use ironrack_keys::{SignedManifest, Timestamp, Trust, VerifiedManifest};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::attest::eventlog::agent::AGENT_PCR;

/// The builder's `payload.measurements`: what a node booting the image
/// measures.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImageMeasurements {
    /// The UKI's artifact name.
    pub uki: String,
    /// Authenticode SHA-256 of the UKI, hex (the firmware's PCR 4 event).
    pub uki_authenticode: String,
    /// PCR 11 after systemd-stub measured the UKI, hex.
    pub pcr11: String,
    /// Authenticode SHA-256 of the kernel the stub starts, hex (older
    /// manifests have none).
    #[serde(default)]
    pub kernel_authenticode: Option<String>,
    /// The PCR the agent extends.
    pub agent_pcr: u32,
}

/// The part of the builder's payload read here.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct PayloadView {
    #[serde(default)]
    measurements: Option<ImageMeasurements>,
}

/// An image manifest that verified, reduced to what attestation checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasedImage {
    /// Image name.
    pub name: String,
    /// Channel.
    pub channel: String,
    /// Manifest version.
    pub version: u64,
    /// SHA-256 of the manifest file's bytes (the agent's first PCR 15 event).
    pub manifest_sha256: [u8; 32],
    /// The root filesystem artifact's name.
    pub rootfs_name: String,
    /// Its size in bytes.
    pub rootfs_size: u64,
    /// Its SHA-256 (the agent's second PCR 15 event).
    pub rootfs_sha256: [u8; 32],
    /// The predicted measurements, when the image has a UKI.
    pub measurements: Option<ImageMeasurements>,
}

/// Why a manifest cannot serve attestation.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Signature, trust, expiry or rollback check failed.
    #[error("manifest signature check failed")]
    Verify(#[source] ironrack_keys::Error),
    /// The manifest lists no root filesystem image, or several.
    #[error(
        "manifest {name} v{version}: {found} root filesystem artifacts (*.squashfs, *.erofs), expected one"
    )]
    Rootfs {
        /// Image name.
        name: String,
        /// Version.
        version: u64,
        /// How many were found.
        found: usize,
    },
    /// `payload.measurements` does not parse.
    #[error("manifest {name} v{version}: payload.measurements: {reason}")]
    Measurements {
        /// Image name.
        name: String,
        /// Version.
        version: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Whether an artifact name is a root filesystem image.
pub fn is_rootfs(name: &str) -> bool {
    name.ends_with(".squashfs") || name.ends_with(".erofs")
}

impl ReleasedImage {
    /// Verifies `manifest` and its minisign `signature` through `trust`
    /// (refusing a version below `highest_seen`), then reduces it.
    pub fn verify(
        trust: &Trust,
        manifest: &[u8],
        signature: &[u8],
        highest_seen: Option<u64>,
        now: Timestamp,
    ) -> Result<ReleasedImage, ImageError> {
        let verified: VerifiedManifest =
            SignedManifest::verify(trust, manifest, signature, highest_seen, now)
                .map_err(ImageError::Verify)?;
        Self::from_manifest(manifest, &verified.manifest)
    }

    /// Reduces an already verified manifest (`bytes` are the file's bytes).
    pub fn from_manifest(
        bytes: &[u8],
        manifest: &SignedManifest,
    ) -> Result<ReleasedImage, ImageError> {
        let rootfs: Vec<_> = manifest
            .artifacts
            .iter()
            .filter(|a| is_rootfs(&a.name))
            .collect();
        let [rootfs] = rootfs.as_slice() else {
            return Err(ImageError::Rootfs {
                name: manifest.name.clone(),
                version: manifest.version,
                found: rootfs.len(),
            });
        };
        let bad = |reason: String| ImageError::Measurements {
            name: manifest.name.clone(),
            version: manifest.version,
            reason,
        };
        let view: PayloadView =
            serde_json::from_value(manifest.payload.clone()).map_err(|e| bad(e.to_string()))?;
        if let Some(m) = &view.measurements {
            for (field, value) in [
                ("uki-authenticode", &m.uki_authenticode),
                ("pcr11", &m.pcr11),
            ] {
                if hex32(value).is_none() {
                    return Err(bad(format!("{field} is not 64 hex digits")));
                }
            }
            if m.kernel_authenticode
                .as_deref()
                .is_some_and(|k| hex32(k).is_none())
            {
                return Err(bad("kernel-authenticode is not 64 hex digits".into()));
            }
            if m.agent_pcr != AGENT_PCR {
                return Err(bad(format!(
                    "agent-pcr is {}, the agent extends PCR {AGENT_PCR}",
                    m.agent_pcr
                )));
            }
        }
        Ok(ReleasedImage {
            name: manifest.name.clone(),
            channel: manifest.channel.clone(),
            version: manifest.version,
            manifest_sha256: Sha256::digest(bytes).into(),
            rootfs_name: rootfs.name.clone(),
            rootfs_size: rootfs.size,
            rootfs_sha256: rootfs.sha256.0,
            measurements: view.measurements,
        })
    }
}

/// 32 bytes from 64 hex digits (either case).
pub fn hex32(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}
