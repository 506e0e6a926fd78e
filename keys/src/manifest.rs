//! Signed manifests: what an image (or any published set of files) is,
//! signed by a delegated key, verified through the trust file.
//!
//! `manifest.json` is canonical JSON; `manifest.json.minisig` is a detached
//! minisign `Ed` signature over its bytes, so `minisign -Vm manifest.json -p
//! KEY.pub` and `signify-openbsd -V` check it too. Version and expiry live in
//! the signed JSON, never in comments.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::canonical;
use crate::digest::{Sha256Digest, sha256_reader};
use crate::error::{Error, Item};
use crate::files::{self, PUBLIC_MODE};
use crate::keyid::KeyId;
use crate::minisign::MinisignSignature;
use crate::rollback::RollbackStore;
use crate::signer::Signer;
use crate::time::Timestamp;
use crate::trust::{Trust, check_name};

/// The `type` of a manifest.
pub const MANIFEST_TYPE: &str = "ironrack-manifest/1";
/// File name of the manifest in an artifact directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// File name of its signature.
pub const SIGNATURE_FILE: &str = "manifest.json.minisig";
/// Manifests carry module tables and reports, but not this much.
const FILE_LIMIT: u64 = 64 << 20;
const SIGNATURE_LIMIT: u64 = 16 << 10;

/// A manifest: what `name` version `version` on `channel` consists of.
///
/// `payload` is whatever the producer adds (the builder: kernel, module
/// table, NVIDIA report, predicted measurements...). It is generic so the
/// builder and the PXE server can share one typed payload; the default,
/// `serde_json::Value`, takes any payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SignedManifest<P = serde_json::Value> {
    /// Always [`MANIFEST_TYPE`].
    #[serde(rename = "type")]
    pub doc_type: String,
    /// Image (or snapshot) name, e.g. `gpu-node`.
    pub name: String,
    /// Release channel, e.g. `stable`.
    pub channel: String,
    /// Monotonic per name and channel; verifiers refuse lower versions.
    pub version: u64,
    /// After this instant the manifest is refused.
    pub expires: Timestamp,
    /// Every file the manifest vouches for.
    pub artifacts: Vec<Artifact>,
    /// Producer-specific content, signed with the rest.
    pub payload: P,
}

/// A file named by a manifest, relative to the manifest's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Artifact {
    /// A plain file name (no directories).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content.
    pub sha256: Sha256Digest,
}

/// A manifest that passed [`SignedManifest::verify`].
#[derive(Debug, Clone)]
pub struct VerifiedManifest<P = serde_json::Value> {
    /// The manifest.
    pub manifest: SignedManifest<P>,
    /// Name of the delegated signer.
    pub signer: String,
    /// Its key id.
    pub key_id: KeyId,
    /// The signature's trusted comment.
    pub trusted_comment: String,
}

impl Artifact {
    /// Describe `dir/name` as it is now (the builder's side).
    pub fn from_file(dir: &Path, name: &str) -> Result<Artifact, Error> {
        check_artifact_name(name)?;
        let (size, sha256) = crate::digest::sha256_file(&dir.join(name))?;
        Ok(Artifact {
            name: name.to_owned(),
            size,
            sha256,
        })
    }

    /// Check `dir/name` against this entry: present, a regular file (not a
    /// symlink), the right size, the right SHA-256.
    pub fn verify_in(&self, dir: &Path) -> Result<(), Error> {
        check_artifact_name(&self.name)?;
        let path = dir.join(&self.name);
        let read_error = |source| Error::Read {
            path: path.clone(),
            source,
        };
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::ArtifactMissing {
                    name: self.name.clone(),
                    path,
                });
            }
            Err(err) => return Err(read_error(err)),
        };
        let file = File::open(&path).map_err(read_error)?;
        let opened = file.metadata().map_err(read_error)?;
        // The file opened must be the regular file inspected, not a symlink
        // or something swapped in between.
        if !meta.is_file() || (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
            return Err(Error::NotAFile {
                path,
                what: Item::Artifact,
            });
        }
        let size_error = |actual| Error::ArtifactSizeMismatch {
            name: self.name.clone(),
            expected: self.size,
            actual,
        };
        if opened.len() != self.size {
            return Err(size_error(opened.len()));
        }
        let (len, digest) = sha256_reader(file).map_err(read_error)?;
        if len != self.size {
            return Err(size_error(len));
        }
        if digest != self.sha256 {
            return Err(Error::ArtifactDigestMismatch {
                name: self.name.clone(),
                expected: self.sha256.to_string(),
                actual: digest.to_string(),
            });
        }
        Ok(())
    }
}

impl<P> SignedManifest<P> {
    /// A manifest of this type with these fields.
    pub fn new(
        name: &str,
        channel: &str,
        version: u64,
        expires: Timestamp,
        artifacts: Vec<Artifact>,
        payload: P,
    ) -> SignedManifest<P> {
        SignedManifest {
            doc_type: MANIFEST_TYPE.to_owned(),
            name: name.to_owned(),
            channel: channel.to_owned(),
            version,
            expires,
            artifacts,
            payload,
        }
    }

    /// Structural rules: type, plain names, unique plain artifact names.
    pub fn validate(&self) -> Result<(), Error> {
        if self.doc_type != MANIFEST_TYPE {
            return Err(Error::DocumentType {
                what: Item::Manifest,
                got: self.doc_type.chars().take(64).collect(),
                want: MANIFEST_TYPE,
            });
        }
        check_name(&self.name, Item::Manifest, "name")?;
        check_name(&self.channel, Item::Manifest, "channel")?;
        let mut seen = BTreeSet::new();
        for artifact in &self.artifacts {
            check_artifact_name(&artifact.name)?;
            if !seen.insert(artifact.name.as_str()) {
                return Err(Error::DuplicateArtifact {
                    name: artifact.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Refuse a version below the highest seen for this name and channel.
    /// The same version again is accepted: re-verifying is not a rollback.
    pub fn check_rollback(&self, highest_seen: Option<u64>) -> Result<(), Error> {
        match highest_seen {
            Some(highest_seen) if self.version < highest_seen => Err(Error::Rollback {
                name: self.name.clone(),
                channel: self.channel.clone(),
                version: self.version,
                highest_seen,
            }),
            _ => Ok(()),
        }
    }

    /// Check every artifact in `dir` (see [`Artifact::verify_in`]).
    pub fn verify_artifacts(&self, dir: &Path) -> Result<(), Error> {
        for artifact in &self.artifacts {
            artifact.verify_in(dir)?;
        }
        Ok(())
    }
}

impl<P: Serialize> SignedManifest<P> {
    /// The manifest's bytes: canonical JSON and a newline.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        self.validate()?;
        let mut bytes = canonical::to_vec(self, Item::Manifest)?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

impl<P: DeserializeOwned> SignedManifest<P> {
    /// Parse manifest bytes (canonical JSON), without checking any signature.
    pub fn parse(bytes: &[u8]) -> Result<SignedManifest<P>, Error> {
        if bytes.len() as u64 > FILE_LIMIT {
            return Err(Error::TooLarge {
                what: Item::Manifest,
                limit: FILE_LIMIT,
            });
        }
        let manifest: SignedManifest<P> = canonical::from_slice(bytes, Item::Manifest)?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Verify a manifest and its minisign signature through `trust`.
    ///
    /// In order: the signature file parses; the key is not revoked and is a
    /// delegated signer; the signature (and trusted comment) verify over the
    /// exact bytes; the manifest parses; the trust state is current; the key
    /// has not expired and its scope covers this name and channel; the
    /// manifest has not expired; its version is not below `highest_seen`
    /// (the caller keeps that, e.g. in a [`RollbackStore`]). Artifacts are
    /// checked separately with [`SignedManifest::verify_artifacts`].
    pub fn verify(
        trust: &Trust,
        manifest: &[u8],
        signature: &[u8],
        highest_seen: Option<u64>,
        now: Timestamp,
    ) -> Result<VerifiedManifest<P>, Error> {
        let sig = MinisignSignature::parse(signature)?;
        let delegation = trust.delegation(sig.key_id)?;
        sig.verify(&delegation.public, manifest)?;
        let parsed = SignedManifest::<P>::parse(manifest)?;
        let signer = trust.authorize(sig.key_id, &parsed.name, &parsed.channel, now)?;
        if parsed.expires <= now {
            return Err(Error::ManifestExpired {
                name: parsed.name,
                version: parsed.version,
                expires: parsed.expires,
            });
        }
        parsed.check_rollback(highest_seen)?;
        Ok(VerifiedManifest {
            signer: signer.name.clone(),
            key_id: sig.key_id,
            trusted_comment: sig.trusted_comment,
            manifest: parsed,
        })
    }

    /// Verify `dir/manifest.json` with its signature, then every artifact in
    /// `dir`, against the highest version in `store`; on success record the
    /// version there.
    pub fn verify_dir(
        trust: &Trust,
        dir: &Path,
        store: &mut RollbackStore,
        now: Timestamp,
    ) -> Result<VerifiedManifest<P>, Error> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let sig_path = dir.join(SIGNATURE_FILE);
        let manifest = files::read_limited(&manifest_path, Item::Manifest, FILE_LIMIT)?;
        let signature = files::read_limited(&sig_path, Item::Signature, SIGNATURE_LIMIT)?;
        let verified = Self::verify(trust, &manifest, &signature, None, now)
            .map_err(|err| err.in_file(&manifest_path))?;
        let m = &verified.manifest;
        m.check_rollback(store.highest(&m.name, &m.channel))?;
        verified.manifest.verify_artifacts(dir)?;
        store.record(&m.name, &m.channel, m.version)?;
        Ok(verified)
    }
}

/// Sign a manifest: its canonical bytes and their `Ed` signature.
///
/// Ed25519 is deterministic and the trusted comment is derived from the
/// manifest (no timestamp), so the same manifest and key always give the
/// same two files: signed outputs stay bit-for-bit reproducible.
pub fn sign_manifest<P: Serialize>(
    signer: &dyn Signer,
    manifest: &SignedManifest<P>,
) -> Result<(Vec<u8>, MinisignSignature), Error> {
    let bytes = manifest.to_bytes()?;
    let trusted = format!(
        "file:{MANIFEST_FILE}\tname:{}\tchannel:{}\tversion:{}",
        manifest.name, manifest.channel, manifest.version
    );
    let untrusted = format!("signature from ironrack key {}", signer.key_id());
    let sig = MinisignSignature::sign(signer, &bytes, &trusted, &untrusted)?;
    Ok((bytes, sig))
}

/// Write `dir/manifest.json` and `dir/manifest.json.minisig`, each
/// atomically (the manifest first).
pub fn write_signed_manifest<P: Serialize>(
    dir: &Path,
    signer: &dyn Signer,
    manifest: &SignedManifest<P>,
) -> Result<(), Error> {
    let (bytes, sig) = sign_manifest(signer, manifest)?;
    files::replace(&dir.join(MANIFEST_FILE), &bytes, PUBLIC_MODE)?;
    files::replace(
        &dir.join(SIGNATURE_FILE),
        sig.to_file_text().as_bytes(),
        PUBLIC_MODE,
    )?;
    tracing::info!(
        name = %manifest.name,
        channel = %manifest.channel,
        version = manifest.version,
        key_id = %signer.key_id(),
        "signed manifest"
    );
    Ok(())
}

/// Artifact names are single plain path components.
fn check_artifact_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0', '\\'])
        && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(Error::ArtifactName {
            name: name.chars().take(64).collect(),
        })
    }
}
