//! Fetching the image the command line names: `manifest.json` and its
//! signature first, verified with the trust root baked into the
//! initramfs for the image and channel of agent.json (expired, rolled
//! back, or another image's manifest refused); then the root filesystem
//! the manifest lists, streamed to the tmpfs through
//! [`fetch_verified`](super::fetch_verified) against the manifest's size
//! and SHA-256. Nothing unverified is left where the next stage looks.

use std::path::{Path, PathBuf};

use ironrack_keys::manifest::{MANIFEST_FILE, SIGNATURE_FILE};
use ironrack_keys::{Timestamp, Trust};

use super::fetch::{FetchError, FetchedFile, fetch_verified};
use super::http::{HttpClient, HttpError};
use crate::attest::image::{ImageError, ReleasedImage};

/// Largest manifest read (module tables and reports, not more).
const MANIFEST_CAP: u64 = 16 << 20;
/// Largest signature read.
const SIGNATURE_CAP: u64 = 16 << 10;

/// `NAME@VERSION` from `ironrack.image=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRequest {
    /// Image name.
    pub name: String,
    /// Manifest version.
    pub version: u64,
}

impl ImageRequest {
    /// Parses `NAME@VERSION` (the form the server's iPXE script writes).
    pub fn parse(text: &str) -> Result<ImageRequest, DownloadError> {
        let bad = || DownloadError::Request {
            given: text.chars().take(100).collect(),
        };
        let (name, version) = text.rsplit_once('@').ok_or_else(bad)?;
        let plain = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        if !plain(name) || !version.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let version = version.parse().map_err(|_| bad())?;
        Ok(ImageRequest {
            name: name.to_owned(),
            version,
        })
    }

    /// `/images/NAME/VERSION/FILE`.
    pub fn path(&self, file: &str) -> String {
        format!("/images/{}/{}/{file}", self.name, self.version)
    }
}

impl std::fmt::Display for ImageRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// Why the image was not fetched.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// `ironrack.image=` is not `NAME@VERSION`.
    #[error("ironrack.image={given:?} is not NAME@VERSION")]
    Request {
        /// The value given.
        given: String,
    },
    /// The command line asks for another image than this initramfs is
    /// built (and trusted) to boot.
    #[error("the command line asks for image {requested}, this initramfs boots {configured}")]
    OtherImage {
        /// From the command line.
        requested: String,
        /// From agent.json.
        configured: String,
    },
    /// A request to the server failed.
    #[error("fetching {what}")]
    Http {
        /// The file.
        what: String,
        /// The client's error.
        #[source]
        source: HttpError,
    },
    /// The manifest did not verify (signature, trust, scope, expiry,
    /// rollback, rootfs entry).
    #[error("manifest of {image} does not verify")]
    Manifest {
        /// The image requested.
        image: String,
        /// Why.
        #[source]
        source: ImageError,
    },
    /// A valid manifest of something else than what was asked for.
    #[error("{path} holds a manifest signed for {got}, expected {want}")]
    Substituted {
        /// Where it came from.
        path: String,
        /// `name@version on channel`, as signed.
        got: String,
        /// What was asked for.
        want: String,
    },
    /// The root filesystem did not arrive intact.
    #[error("root filesystem {name}")]
    Rootfs {
        /// The artifact.
        name: String,
        /// Why.
        #[source]
        source: FetchError,
    },
}

/// The verified manifest and the root filesystem that matched it.
#[derive(Debug, Clone)]
pub struct FetchedImage {
    /// What the manifest says (name, version, digests).
    pub image: ReleasedImage,
    /// The manifest's bytes, as signed.
    pub manifest: Vec<u8>,
    /// The root filesystem file, complete and matching.
    pub rootfs: FetchedFile,
}

/// Verifies a manifest fetched for `request`: signature through `trust`
/// (the delegated key's scope must cover the name and channel), not
/// expired at `now`, no version below the requested one, and exactly the
/// image, version and channel asked for.
pub fn verify_manifest(
    trust: &Trust,
    channel: &str,
    request: &ImageRequest,
    manifest: &[u8],
    signature: &[u8],
    now: Timestamp,
) -> Result<ReleasedImage, DownloadError> {
    let image = ReleasedImage::verify(trust, manifest, signature, Some(request.version), now)
        .map_err(|source| DownloadError::Manifest {
            image: request.to_string(),
            source,
        })?;
    if image.name != request.name || image.version != request.version || image.channel != channel {
        return Err(DownloadError::Substituted {
            path: request.path(MANIFEST_FILE),
            got: format!("{}@{} on {}", image.name, image.version, image.channel),
            want: format!("{request} on {channel}"),
        });
    }
    Ok(image)
}

/// Fetches and verifies the manifest, then streams the root filesystem
/// into `dir` (the tmpfs). `image_name` and `channel` come from
/// agent.json: the request must name the same image.
pub fn fetch_image(
    client: &HttpClient,
    trust: &Trust,
    (image_name, channel): (&str, &str),
    request: &ImageRequest,
    dir: &Path,
    now: Timestamp,
) -> Result<FetchedImage, DownloadError> {
    if request.name != image_name {
        return Err(DownloadError::OtherImage {
            requested: request.to_string(),
            configured: image_name.to_owned(),
        });
    }
    let get = |file: &str, cap| {
        client
            .get_bytes(&request.path(file), cap)
            .map_err(|source| DownloadError::Http {
                what: file.to_owned(),
                source,
            })
    };
    let manifest = get(MANIFEST_FILE, MANIFEST_CAP)?;
    let signature = get(SIGNATURE_FILE, SIGNATURE_CAP)?;
    let image = verify_manifest(trust, channel, request, &manifest, &signature, now)?;
    let name = image.rootfs_name.clone();
    let body = client
        .get(&request.path(&name), image.rootfs_size)
        .map_err(|source| DownloadError::Http {
            what: name.clone(),
            source,
        })?;
    let dest: PathBuf = dir.join(&name);
    let rootfs = fetch_verified(body, &name, image.rootfs_size, image.rootfs_sha256, &dest)
        .map_err(|source| DownloadError::Rootfs { name, source })?;
    Ok(FetchedImage {
        image,
        manifest,
        rootfs,
    })
}

#[cfg(test)]
#[path = "download_tests.rs"]
mod tests;
