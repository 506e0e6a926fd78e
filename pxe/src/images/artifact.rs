//! One artifact, verified once and then served from what was verified.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use ironrack_keys::{Artifact, Sha256Digest};
use nix::fcntl::OFlag;
use sha2::{Digest, Sha256};

use crate::net::tftp::FileIdentity;

/// Bytes hashed per read while verifying.
const VERIFY_CHUNK: usize = 1 << 20;

/// Where a verified artifact's bytes come from.
#[derive(Debug, Clone)]
pub enum ArtifactContent {
    /// Read into memory while hashing: served exactly as hashed.
    Memory(Bytes),
    /// The verified file, kept open; checked against `identity` after each
    /// read.
    File {
        /// The open descriptor.
        file: Arc<File>,
        /// Its identity when it was hashed.
        identity: FileIdentity,
    },
}

/// An artifact whose size and SHA-256 matched the signed manifest.
#[derive(Debug)]
pub struct VerifiedArtifact {
    /// File name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 (the HTTP ETag).
    pub sha256: Sha256Digest,
    /// The path it was verified at.
    pub path: PathBuf,
    /// The bytes.
    pub content: ArtifactContent,
    /// For memory-backed artifacts: the file's identity when hashed, so a
    /// reload knows whether it must hash again.
    memory_identity: Option<FileIdentity>,
}

/// Why an artifact failed verification or a served read.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// Missing, unreadable, or not a regular file.
    #[error("artifact {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A symlink, directory, device or FIFO.
    #[error("artifact {path}: not a regular file")]
    NotRegular {
        /// The file.
        path: PathBuf,
    },
    /// Size differs from the manifest.
    #[error("artifact {path}: size {actual}, manifest says {expected}")]
    Size {
        /// The file.
        path: PathBuf,
        /// From the manifest.
        expected: u64,
        /// On disk.
        actual: u64,
    },
    /// SHA-256 differs from the manifest.
    #[error("artifact {path}: sha256 {actual}, manifest says {expected}")]
    Digest {
        /// The file.
        path: PathBuf,
        /// From the manifest.
        expected: Sha256Digest,
        /// Computed.
        actual: Sha256Digest,
    },
    /// The file changed while it was hashed, or after (served reads).
    #[error("artifact {path} changed on disk after verification")]
    Changed {
        /// The file.
        path: PathBuf,
    },
}

impl VerifiedArtifact {
    /// Opens `dir/<artifact.name>` (never through a symlink), hashes it and
    /// checks size and digest against the manifest entry. When `in_memory`
    /// the bytes hashed are kept and served.
    pub fn verify(
        dir: &Path,
        artifact: &Artifact,
        in_memory: bool,
    ) -> Result<VerifiedArtifact, ArtifactError> {
        let path = dir.join(&artifact.name);
        let (file, identity) = open_regular(&path)?;
        if identity.len != artifact.size {
            return Err(ArtifactError::Size {
                path,
                expected: artifact.size,
                actual: identity.len,
            });
        }
        let io = |source| ArtifactError::Open {
            path: path.clone(),
            source,
        };
        let mut hasher = Sha256::new();
        let mut kept = Vec::with_capacity(if in_memory { artifact.size as usize } else { 0 });
        let mut buf = vec![0u8; VERIFY_CHUNK];
        let mut total = 0u64;
        let mut reader = &file;
        loop {
            let n = reader.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            if in_memory {
                kept.extend_from_slice(&buf[..n]);
            }
            total += n as u64;
        }
        let after = FileIdentity::of(&file.metadata().map_err(io)?);
        if after != identity || total != artifact.size {
            return Err(ArtifactError::Changed { path });
        }
        let actual = Sha256Digest(hasher.finalize().into());
        if actual != artifact.sha256 {
            return Err(ArtifactError::Digest {
                path,
                expected: artifact.sha256,
                actual,
            });
        }
        let memory_identity = in_memory.then_some(identity);
        let content = if in_memory {
            ArtifactContent::Memory(Bytes::from(kept))
        } else {
            ArtifactContent::File {
                file: Arc::new(file),
                identity,
            }
        };
        Ok(VerifiedArtifact {
            name: artifact.name.clone(),
            size: artifact.size,
            sha256: artifact.sha256,
            path,
            content,
            memory_identity,
        })
    }

    /// The same verified content under a new manifest entry, when the file
    /// at `path` is still the one verified (a reload of an unchanged image:
    /// no second hash).
    pub fn reuse_if_unchanged(&self, dir: &Path, artifact: &Artifact) -> Option<VerifiedArtifact> {
        let path = dir.join(&artifact.name);
        if path != self.path || artifact.sha256 != self.sha256 || artifact.size != self.size {
            return None;
        }
        let (_, identity) = open_regular(&path).ok()?;
        let same = match &self.content {
            ArtifactContent::Memory(_) => self.memory_identity == Some(identity),
            ArtifactContent::File { identity: kept, .. } => *kept == identity,
        };
        same.then(|| VerifiedArtifact {
            name: self.name.clone(),
            size: self.size,
            sha256: self.sha256,
            path,
            content: self.content.clone(),
            memory_identity: self.memory_identity,
        })
    }

    /// Reads `len` bytes (at most 1 MiB) at `offset` of a file-backed
    /// artifact and checks the file is still the verified one after the
    /// read. Memory-backed artifacts are sliced. Blocking: call from a
    /// blocking task.
    pub fn read_at(&self, offset: u64, len: usize) -> Result<Bytes, ArtifactError> {
        match &self.content {
            ArtifactContent::Memory(bytes) => {
                let start = (offset as usize).min(bytes.len());
                let end = start.saturating_add(len).min(bytes.len());
                Ok(bytes.slice(start..end))
            }
            ArtifactContent::File { file, identity } => {
                let len = len.min(super::buffers::BUFFER);
                let mut buf = super::buffers::take();
                file.read_exact_at(&mut buf[..len], offset)
                    .map_err(|source| ArtifactError::Open {
                        path: self.path.clone(),
                        source,
                    })?;
                self.still_verified(file, identity)?;
                Ok(super::buffers::freeze(buf, len))
            }
        }
    }

    /// Reads at `offset` only what the page cache already holds
    /// (`preadv2` with `RWF_NOWAIT`), so an async task may call it: `None`
    /// when the read would wait for the disk (or the file system cannot
    /// say), and the caller reads with [`read_at`](Self::read_at) on the
    /// blocking pool instead. May return fewer than `len` bytes.
    pub fn read_cached(&self, offset: u64, len: usize) -> Option<Result<Bytes, ArtifactError>> {
        let (file, identity) = match &self.content {
            ArtifactContent::Memory(_) => return Some(self.read_at(offset, len)),
            ArtifactContent::File { file, identity } => (file, identity),
        };
        let len = len.min(super::buffers::BUFFER);
        let mut buf = super::buffers::take();
        let read = rustix::io::preadv2(
            file,
            &mut [std::io::IoSliceMut::new(&mut buf[..len])],
            offset,
            rustix::io::ReadWriteFlags::NOWAIT,
        );
        // EAGAIN (not cached), EOPNOTSUPP (no NOWAIT here), 0 (cached
        // nothing, or the end): the blocking read decides.
        let Some(n) = read.ok().filter(|&n| n > 0) else {
            super::buffers::put(buf);
            return None;
        };
        Some(
            self.still_verified(file, identity)
                .map(|()| super::buffers::freeze(buf, n)),
        )
    }

    /// After a read: the open file is still the one hashed (same identity:
    /// device, inode, size, mtime, ctime), so the bytes read are verified.
    fn still_verified(&self, file: &File, identity: &FileIdentity) -> Result<(), ArtifactError> {
        let now = file.metadata().map(|m| FileIdentity::of(&m));
        if now.ok().as_ref() == Some(identity) {
            Ok(())
        } else {
            Err(ArtifactError::Changed {
                path: self.path.clone(),
            })
        }
    }

    /// An artifact whose bytes were verified by other means (the iPXE
    /// binaries, read from their package into memory).
    pub fn from_memory(
        name: &str,
        bytes: Bytes,
        sha256: Sha256Digest,
        path: PathBuf,
    ) -> VerifiedArtifact {
        VerifiedArtifact {
            name: name.to_owned(),
            size: bytes.len() as u64,
            sha256,
            path,
            content: ArtifactContent::Memory(bytes),
            memory_identity: None,
        }
    }

    /// Whether the bytes are held in memory.
    pub fn in_memory(&self) -> bool {
        matches!(self.content, ArtifactContent::Memory(_))
    }
}

/// Opens a regular file without following a final symlink and without
/// blocking on a FIFO; returns it with its identity.
fn open_regular(path: &Path) -> Result<(File, FileIdentity), ArtifactError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits())
        .open(path)
        .map_err(|source| match source.raw_os_error() {
            Some(code) if code == nix::errno::Errno::ELOOP as i32 => ArtifactError::NotRegular {
                path: path.to_owned(),
            },
            _ => ArtifactError::Open {
                path: path.to_owned(),
                source,
            },
        })?;
    let meta = file.metadata().map_err(|source| ArtifactError::Open {
        path: path.to_owned(),
        source,
    })?;
    if !meta.is_file() {
        return Err(ArtifactError::NotRegular {
            path: path.to_owned(),
        });
    }
    Ok((file, FileIdentity::of(&meta)))
}

#[cfg(test)]
impl VerifiedArtifact {
    /// A small in-memory artifact for unit tests of its users.
    pub(crate) fn for_tests(name: &str) -> VerifiedArtifact {
        VerifiedArtifact {
            name: name.to_owned(),
            size: 1,
            sha256: Sha256Digest([0; 32]),
            path: PathBuf::from(name),
            content: ArtifactContent::Memory(Bytes::from_static(b"x")),
            memory_identity: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_backed(dir: &Path, bytes: &[u8]) -> VerifiedArtifact {
        let mut f = File::create(dir.join("rootfs")).unwrap();
        f.write_all(bytes).unwrap();
        f.sync_all().unwrap();
        let entry = Artifact {
            name: "rootfs".into(),
            size: bytes.len() as u64,
            sha256: Sha256Digest(Sha256::digest(bytes).into()),
        };
        VerifiedArtifact::verify(dir, &entry, false).unwrap()
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    #[test]
    fn a_read_from_the_page_cache_is_the_verified_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = pattern(3 << 20);
        let artifact = file_backed(dir.path(), &bytes);
        // Just hashed, so cached on any file system that can say so.
        for (offset, len) in [(0usize, 1 << 20), (4095, 5000), ((3 << 20) - 10, 1 << 20)] {
            let read = artifact.read_cached(offset as u64, len);
            let Some(read) = read else {
                let fs = nix::sys::statfs::statfs(dir.path())
                    .unwrap()
                    .filesystem_type();
                assert!(
                    fs != nix::sys::statfs::EXT4_SUPER_MAGIC && fs != nix::sys::statfs::TMPFS_MAGIC,
                    "ext4 and tmpfs answer RWF_NOWAIT reads of cached pages"
                );
                continue;
            };
            let read = read.unwrap();
            assert!(!read.is_empty() && read.len() <= len);
            assert!(
                read[..] == bytes[offset..offset + read.len()],
                "bytes at {offset}"
            );
        }
        // Past the end: nothing cached to give, the blocking read decides.
        assert!(artifact.read_cached(bytes.len() as u64, 10).is_none());
    }

    #[test]
    fn a_read_the_disk_must_serve_is_left_to_the_blocking_pool() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = pattern(2 << 20);
        let artifact = file_backed(dir.path(), &bytes);
        let ArtifactContent::File { file, .. } = &artifact.content else {
            panic!("file-backed")
        };
        nix::fcntl::posix_fadvise(
            file,
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        )
        .unwrap();
        let fs = nix::sys::statfs::statfs(dir.path())
            .unwrap()
            .filesystem_type();
        match artifact.read_cached(0, 1 << 20) {
            // ext4 drops clean pages on DONTNEED: the read would wait.
            None => {}
            Some(read) => {
                assert!(
                    fs != nix::sys::statfs::EXT4_SUPER_MAGIC,
                    "ext4 dropped the pages"
                );
                assert!(
                    read.unwrap()[..] == bytes[..],
                    "whatever was cached is the right bytes"
                );
            }
        }
        // The blocking read serves it either way.
        assert!(artifact.read_at(0, 1 << 20).unwrap()[..] == bytes[..1 << 20]);
    }

    #[test]
    fn a_cached_read_of_a_file_changed_after_verification_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = pattern(1 << 20);
        let artifact = file_backed(dir.path(), &bytes);
        // Rewritten in place: same inode, new content and mtime.
        let mut f = OpenOptions::new()
            .write(true)
            .open(dir.path().join("rootfs"))
            .unwrap();
        f.write_all(&pattern(1 << 20).iter().map(|b| !b).collect::<Vec<_>>())
            .unwrap();
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        drop(f);
        match artifact.read_cached(0, 4096) {
            Some(Err(ArtifactError::Changed { path })) => assert!(path.ends_with("rootfs")),
            other => panic!("expected Changed, got {other:?}"),
        }
        assert!(matches!(
            artifact.read_at(0, 4096),
            Err(ArtifactError::Changed { .. })
        ));
    }
}
