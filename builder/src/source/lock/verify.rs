//! The `--locked` check: a build uses exactly what the lock names.

use std::io::{self, Read};

use sha2::{Digest, Sha256};

use super::{FileMismatch, Lock, LockError, LockedPackage, spec_digest};

/// Where a lock's files are: a mirror snapshot (the mirror stage
/// implements this for its `Snapshot`) or a plain repository tree
/// ([`super::RepoDir`]).
pub trait LockedFiles {
    /// The snapshot id: SHA-256 hex of the snapshot's Release.
    fn snapshot_id(&self) -> &str;

    /// Opens a file named by an index `Filename` (relative to the root).
    /// `NotFound` means the repository lacks it.
    fn open(&self, filename: &str) -> io::Result<Box<dyn Read + '_>>;
}

impl Lock {
    /// The `--locked` check: fails if `spec_bytes` is not the spec the
    /// lock was made from, if `files` is another snapshot, if a locked
    /// file is missing, or if a file's size or sha256 differs. Each error
    /// names the file and package.
    pub fn verify_against(
        &self,
        spec_bytes: &[u8],
        files: &dyn LockedFiles,
    ) -> Result<(), LockError> {
        let actual = spec_digest(spec_bytes);
        if actual != self.spec_sha256 {
            return Err(LockError::SpecChanged {
                locked: self.spec_sha256.clone(),
                actual,
            });
        }
        if files.snapshot_id() != self.snapshot {
            return Err(LockError::SnapshotMismatch {
                locked: self.snapshot.clone(),
                actual: files.snapshot_id().to_owned(),
            });
        }
        for p in &self.packages {
            verify_file(p, files)?;
        }
        Ok(())
    }
}

/// Checks one locked file's size and sha256.
pub(super) fn verify_file(p: &LockedPackage, files: &dyn LockedFiles) -> Result<(), LockError> {
    let missing = |source| LockError::MissingFile {
        set: p.set,
        package: p.name.clone(),
        version: p.version.clone(),
        filename: p.filename.clone(),
        source,
    };
    let mut reader = files.open(&p.filename).map_err(missing)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(missing(e)),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let actual = hex::encode(hasher.finalize());
    if actual != p.sha256 || size != p.size {
        return Err(LockError::HashMismatch(Box::new(FileMismatch {
            set: p.set,
            package: p.name.clone(),
            version: p.version.clone(),
            filename: p.filename.clone(),
            locked: p.sha256.clone(),
            actual,
            locked_size: p.size,
            actual_size: size,
        })));
    }
    Ok(())
}
