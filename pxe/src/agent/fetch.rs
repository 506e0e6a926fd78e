//! Streaming an artifact to a file while hashing it, so the agent never
//! mounts or measures bytes that differ from the signed manifest.
//!
//! The bytes go to a hidden temporary file beside the destination (same
//! file system, e.g. the tmpfs that will hold the rootfs), which is renamed
//! to its final name only after size and SHA-256 matched and the data was
//! flushed. On any failure the temporary file is removed, so a file at the
//! destination path is always a complete, verified one.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// Read size: large enough that syscalls vanish in the hashing cost.
const CHUNK: usize = 1 << 20;

/// Why a download was refused.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The source stream failed.
    #[error("reading {name} from the server")]
    Read {
        /// The artifact.
        name: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Writing the file failed.
    #[error("writing {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The stream is longer than the manifest says.
    #[error("{name}: more than the {expected} bytes the manifest lists")]
    TooLong {
        /// The artifact.
        name: String,
        /// The manifest's size.
        expected: u64,
    },
    /// The stream is shorter than the manifest says.
    #[error("{name}: {got} bytes, the manifest lists {expected}")]
    TooShort {
        /// The artifact.
        name: String,
        /// The manifest's size.
        expected: u64,
        /// Bytes received.
        got: u64,
    },
    /// The content is not what was signed.
    #[error("{name}: SHA-256 is {got}, the manifest lists {expected}")]
    DigestMismatch {
        /// The artifact.
        name: String,
        /// The manifest's digest, hex.
        expected: String,
        /// The digest of what arrived, hex.
        got: String,
    },
}

/// A file that arrived complete and matched the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its size.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
}

/// Streams `source` into `dest`, refusing anything but exactly `size`
/// bytes with SHA-256 `sha256`. `name` names the artifact in errors.
pub fn fetch_verified(
    mut source: impl Read,
    name: &str,
    size: u64,
    sha256: [u8; 32],
    dest: &Path,
) -> Result<FetchedFile, FetchError> {
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| FetchError::Write { path, source }
    };
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let file_name = dest
        .file_name()
        .map_or_else(|| name.to_owned(), |n| n.to_string_lossy().into_owned());
    // Removed on drop unless persisted: no partial file survives an error.
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(write_err(dir))?;
    let mut hasher = Sha256::new();
    let mut got = 0u64;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(FetchError::Read {
                    name: name.to_owned(),
                    source,
                });
            }
        };
        got += n as u64;
        if got > size {
            return Err(FetchError::TooLong {
                name: name.to_owned(),
                expected: size,
            });
        }
        hasher.update(&buf[..n]);
        temp.write_all(&buf[..n]).map_err(write_err(temp.path()))?;
    }
    if got != size {
        return Err(FetchError::TooShort {
            name: name.to_owned(),
            expected: size,
            got,
        });
    }
    let digest: [u8; 32] = hasher.finalize().into();
    if digest != sha256 {
        return Err(FetchError::DigestMismatch {
            name: name.to_owned(),
            expected: hex::encode(sha256),
            got: hex::encode(digest),
        });
    }
    temp.as_file().sync_all().map_err(write_err(temp.path()))?;
    temp.persist(dest).map_err(|e| FetchError::Write {
        path: dest.to_owned(),
        source: e.error,
    })?;
    // The rename itself must survive a crash of a disk-backed node.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    tracing::info!(name, size, dest = %dest.display(), "artifact fetched and verified");
    Ok(FetchedFile {
        path: dest.to_owned(),
        size,
        sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn good_stream_lands_complete() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let dest = dir.path().join("rootfs.squashfs");
        let got = fetch_verified(
            &data[..],
            "rootfs.squashfs",
            data.len() as u64,
            digest(&data),
            &dest,
        )
        .unwrap();
        assert_eq!(got.size, data.len() as u64);
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        assert_eq!(leftovers(dir.path()), ["rootfs.squashfs"]);
    }

    #[test]
    fn every_mismatch_leaves_nothing_behind() {
        let data = vec![0x5a; 10_000];
        let mut flipped = data.clone();
        flipped[4321] ^= 1;
        let cases: [(&[u8], u64, &str); 3] = [
            (&flipped, data.len() as u64, "SHA-256 is"),
            (&data[..9_999], data.len() as u64, "9999 bytes"),
            (&data, 9_000, "more than the 9000 bytes"),
        ];
        for (stream, size, message) in cases {
            let dir = tempfile::tempdir().unwrap();
            let dest = dir.path().join("rootfs.squashfs");
            let err =
                fetch_verified(stream, "rootfs.squashfs", size, digest(&data), &dest).unwrap_err();
            assert!(err.to_string().contains(message), "{err}");
            assert!(err.to_string().contains("rootfs.squashfs"), "{err}");
            assert!(
                leftovers(dir.path()).is_empty(),
                "{:?}",
                leftovers(dir.path())
            );
        }
    }
}
