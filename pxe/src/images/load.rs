//! Scanning image directories and verifying what is found.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ironrack_keys::manifest::{MANIFEST_FILE, SIGNATURE_FILE};
use ironrack_keys::{SignedManifest, Timestamp, Trust};
use sha2::{Digest, Sha256};

use super::{Image, ImageStore, RefusedImage, VerifiedArtifact};
use crate::attest::image::ReleasedImage;

/// Manifests and signatures are small; bound what a hostile file can make
/// the server read.
const MANIFEST_LIMIT: u64 = 64 << 20;
const SIGNATURE_LIMIT: u64 = 16 << 10;

/// What a load needs besides the directories.
#[derive(Debug)]
pub struct LoadOptions<'a> {
    /// The trust root, or why it could not be loaded (then every image is
    /// refused with that reason).
    pub trust: Result<&'a Trust, String>,
    /// Verification time (expiry of keys and manifests).
    pub now: Timestamp,
    /// Bytes of artifacts to hold in memory, in all.
    pub memory_budget: u64,
    /// The store being replaced: unchanged artifacts are not hashed again.
    pub previous: Option<&'a ImageStore>,
}

impl ImageStore {
    /// Scans `dirs` (each holding `<name>/<version>/`) and verifies every
    /// image found. Never fails as a whole: each problem becomes a
    /// [`RefusedImage`]; a configured directory that cannot be read is one
    /// too.
    pub fn load(dirs: &[PathBuf], options: &LoadOptions<'_>) -> ImageStore {
        let mut store = ImageStore::default();
        let mut budget = options.memory_budget;
        let reused = previous_artifacts(options.previous);
        for (dir, name, version) in scan(dirs, &mut store.refused) {
            let result = match &options.trust {
                Ok(trust) => load_one(&dir, &name, version, trust, options, &reused, &mut budget),
                Err(why) => Err(format!("trust root: {why}")),
            };
            match result {
                Ok(image) => {
                    tracing::info!(image = %image.label(), dir = %dir.display(), signer = %image.signer, artifacts = image.artifacts.len(), "image verified");
                    store.insert(image);
                }
                Err(reason) => {
                    tracing::error!(dir = %dir.display(), reason = %reason, "image refused: not served");
                    store.refused.push(RefusedImage {
                        dir,
                        name,
                        version,
                        reason,
                    });
                }
            }
        }
        store
    }
}

/// Every `<dir>/<name>/<version>` directory, sorted; unreadable configured
/// directories are recorded as refusals.
fn scan(dirs: &[PathBuf], refused: &mut Vec<RefusedImage>) -> Vec<(PathBuf, String, Option<u64>)> {
    let mut found = Vec::new();
    for root in dirs {
        let names = match sorted_subdirs(root) {
            Ok(names) => names,
            Err(e) => {
                tracing::error!(dir = %root.display(), error = %e, "image directory unreadable");
                refused.push(RefusedImage {
                    dir: root.clone(),
                    name: String::new(),
                    version: None,
                    reason: format!("reading image directory {}: {e}", root.display()),
                });
                continue;
            }
        };
        for name in names {
            let name_dir = root.join(&name);
            let Ok(versions) = sorted_subdirs(&name_dir) else {
                continue;
            };
            for version in versions {
                found.push((name_dir.join(&version), name.clone(), version.parse().ok()));
            }
        }
    }
    found
}

fn sorted_subdirs(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir()
            && let Ok(name) = entry.file_name().into_string()
            && !name.starts_with('.')
        {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

fn previous_artifacts(previous: Option<&ImageStore>) -> HashMap<PathBuf, Arc<VerifiedArtifact>> {
    previous
        .into_iter()
        .flat_map(ImageStore::images)
        .flat_map(|image| image.artifacts.values())
        .map(|a| (a.path.clone(), Arc::clone(a)))
        .collect()
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    if bytes.len() as u64 > limit {
        return Err(format!("{}: larger than {limit} bytes", path.display()));
    }
    Ok(bytes)
}

fn load_one(
    dir: &Path,
    name: &str,
    version: Option<u64>,
    trust: &Trust,
    options: &LoadOptions<'_>,
    reused: &HashMap<PathBuf, Arc<VerifiedArtifact>>,
    budget: &mut u64,
) -> Result<Image, String> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest = read_limited(&manifest_path, MANIFEST_LIMIT)?;
    let signature = read_limited(&dir.join(SIGNATURE_FILE), SIGNATURE_LIMIT)?;
    let verified = <SignedManifest>::verify(trust, &manifest, &signature, None, options.now)
        .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    let m = &verified.manifest;
    if m.name != name || version != Some(m.version) {
        return Err(format!(
            "{}: directory says {name}/{}, the signed manifest says {}/{}",
            dir.display(),
            version.map_or_else(|| "?".to_owned(), |v| v.to_string()),
            m.name,
            m.version
        ));
    }
    let cmdline = m
        .payload
        .pointer("/kernel/cmdline")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    if !crate::net::http::script::cmdline_is_script_safe(&cmdline) {
        return Err(format!(
            "{}: kernel command line {cmdline:?} holds characters an iPXE script would interpret ($ & | # quotes backslash or control characters)",
            manifest_path.display()
        ));
    }
    let released = ReleasedImage::from_manifest(&manifest, m)
        .map(Arc::new)
        .map_err(|e| e.to_string());
    if let Err(why) = &released {
        tracing::warn!(dir = %dir.display(), reason = %why, "image served but cannot be attested");
    }
    let mut order: Vec<_> = m.artifacts.iter().collect();
    order.sort_by_key(|a| a.size);
    let mut artifacts = std::collections::BTreeMap::new();
    for artifact in order {
        let verified_artifact = match reused
            .get(&dir.join(&artifact.name))
            .and_then(|old| old.reuse_if_unchanged(dir, artifact))
        {
            Some(same) => same,
            None => {
                let in_memory = artifact.size <= *budget;
                VerifiedArtifact::verify(dir, artifact, in_memory).map_err(|e| e.to_string())?
            }
        };
        if verified_artifact.in_memory() {
            *budget = budget.saturating_sub(verified_artifact.size);
        }
        artifacts.insert(artifact.name.clone(), Arc::new(verified_artifact));
    }
    Ok(Image {
        name: m.name.clone(),
        channel: m.channel.clone(),
        version: m.version,
        dir: dir.to_owned(),
        signer: verified.signer.clone(),
        key_id: verified.key_id.to_string(),
        manifest_sha256: ironrack_keys::Sha256Digest(Sha256::digest(&manifest).into()),
        cmdline,
        artifacts,
        signed_files: signed_files(dir, manifest, signature),
        released,
    })
}

/// The manifest and signature bytes that were verified, served from memory
/// (a later change on disk cannot reach a node).
fn signed_files(
    dir: &Path,
    manifest: Vec<u8>,
    signature: Vec<u8>,
) -> std::collections::BTreeMap<String, Arc<VerifiedArtifact>> {
    [(MANIFEST_FILE, manifest), (SIGNATURE_FILE, signature)]
        .into_iter()
        .map(|(name, bytes)| {
            let sha256 = ironrack_keys::Sha256Digest(Sha256::digest(&bytes).into());
            let file = VerifiedArtifact::from_memory(name, bytes.into(), sha256, dir.join(name));
            (name.to_owned(), Arc::new(file))
        })
        .collect()
}
