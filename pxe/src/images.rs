//! The image store: built images (`<dir>/<name>/<version>/`) that passed
//! signature and digest verification, and nothing else.
//!
//! Every load (start and each reload) verifies each image's
//! `manifest.json.minisig` through the trust root (keys crate) and every
//! artifact's size and SHA-256. An image that fails is kept out of the
//! store as a [`RefusedImage`] with its reason (logged, shown by the API
//! and `ironrack nodes`). Nothing of a refused image is ever served.
//!
//! # Serving exactly the verified bytes
//!
//! An artifact is hashed from a file descriptor the store then keeps open
//! ([`VerifiedArtifact`]). Small artifacts (up to `[http]
//! memory-cache-bytes` in all, smallest first: kernels, initrds, UKIs) are
//! read into memory during that hash and served from there: what is served
//! is what was hashed, whatever happens on disk. Larger ones (root file
//! systems) are served from the kept descriptor, so a file replaced by a
//! rename is never seen (the descriptor still names the verified inode);
//! a file rewritten in place changes its ctime, which the kernel sets and
//! no one can forge, so every chunk read is followed by an identity check
//! (device, inode, size, mtime, ctime) and a mismatch aborts the response
//! before the chunk leaves: the client gets a short body, never wrong
//! bytes with a right length. A reload re-verifies; an unchanged file
//! (same identity) is not hashed again.
//!
//! # Versions and rollback
//!
//! The store holds every verified version of an image; a node boots the
//! newest unless its site entry pins one. Rollback is judged per node
//! (the inventory keeps the highest version served to each node), not
//! store-wide with the keys crate's `RollbackStore`: that one refuses
//! loading any version below the highest seen, and an operator keeps
//! older versions beside newer ones to roll back to on purpose.

mod artifact;
mod buffers;
mod ipxe;
mod load;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use artifact::{ArtifactContent, ArtifactError, VerifiedArtifact};
/// The largest read [`VerifiedArtifact::read_at`] makes of a file.
pub use buffers::BUFFER as MAX_READ;
pub use ipxe::{IpxeBinaries, IpxeBinary, IpxeError};
pub use load::LoadOptions;

use ironrack_keys::Sha256Digest;

use crate::attest::image::ReleasedImage;

/// One verified image version.
#[derive(Debug)]
pub struct Image {
    /// Image name (`gpu-node`).
    pub name: String,
    /// Release channel.
    pub channel: String,
    /// Monotonic version.
    pub version: u64,
    /// The directory it was loaded from.
    pub dir: PathBuf,
    /// Name of the delegated key that signed it.
    pub signer: String,
    /// Its key id.
    pub key_id: String,
    /// SHA-256 of `manifest.json`.
    pub manifest_sha256: Sha256Digest,
    /// The kernel command line of the image (`payload.kernel.cmdline` in
    /// the manifest; empty when absent).
    pub cmdline: String,
    /// Verified artifacts by file name.
    pub artifacts: BTreeMap<String, Arc<VerifiedArtifact>>,
    /// `manifest.json` and its `.minisig`, exactly as verified, so the
    /// node's agent can check the image against the same signature.
    pub signed_files: BTreeMap<String, Arc<VerifiedArtifact>>,
    /// What the attestation service checks a node's quote against, or why
    /// this image cannot be attested (no single rootfs, bad measurements):
    /// such an image still boots, but its nodes are refused `image-unknown`.
    pub released: Result<Arc<ReleasedImage>, String>,
}

impl Image {
    /// `name@version`, for messages and the inventory.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// The file called `name` served at `/images/<name>/<version>/`: an
    /// artifact the manifest lists, or the manifest or its signature.
    pub fn served_file(&self, name: &str) -> Option<&Arc<VerifiedArtifact>> {
        self.artifacts
            .get(name)
            .or_else(|| self.signed_files.get(name))
    }

    /// The artifact called `name`, if the manifest lists it.
    pub fn artifact(&self, name: &str) -> Option<&Arc<VerifiedArtifact>> {
        self.artifacts.get(name)
    }
}

/// An image directory that failed verification, and why.
#[derive(Debug, Clone)]
pub struct RefusedImage {
    /// The directory.
    pub dir: PathBuf,
    /// Image name (from the directory layout).
    pub name: String,
    /// Version (from the directory layout), when it parses.
    pub version: Option<u64>,
    /// What failed, with the file or artifact at fault.
    pub reason: String,
}

/// The verified images, by name and version, and the refused ones.
#[derive(Debug, Default)]
pub struct ImageStore {
    images: BTreeMap<String, BTreeMap<u64, Arc<Image>>>,
    refused: Vec<RefusedImage>,
}

impl ImageStore {
    /// The newest verified version of `name`.
    pub fn latest(&self, name: &str) -> Option<&Arc<Image>> {
        self.images.get(name)?.values().next_back()
    }

    /// Version `version` of `name`, if verified.
    pub fn get(&self, name: &str, version: u64) -> Option<&Arc<Image>> {
        self.images.get(name)?.get(&version)
    }

    /// Every verified image, by name then version.
    pub fn images(&self) -> impl Iterator<Item = &Arc<Image>> {
        self.images.values().flat_map(BTreeMap::values)
    }

    /// Every refused image directory.
    pub fn refused(&self) -> &[RefusedImage] {
        &self.refused
    }

    /// The refusals of image `name` (any version).
    pub fn refusals_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a RefusedImage> {
        self.refused.iter().filter(move |r| r.name == name)
    }

    fn insert(&mut self, image: Image) {
        self.images
            .entry(image.name.clone())
            .or_default()
            .insert(image.version, Arc::new(image));
    }
}
