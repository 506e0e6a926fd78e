//! Errors of making, reading and checking lock files.

use std::fmt;
use std::path::PathBuf;

use crate::source::error::Error as SourceError;
use crate::source::resolve::ResolveError;
use crate::spec::{PackageSet, SpecError};

/// An error making, reading or verifying a lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Reading a lock file failed.
    #[error("reading lock {path}", path = path.display())]
    Read {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Writing a lock file failed (the old one, if any, is untouched).
    #[error("writing lock {path}", path = path.display())]
    Write {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not TOML, or not a lock's shape.
    #[error("{path}:{line}: {message}", path = path.display())]
    Syntax {
        /// The lock file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What the TOML reader said.
        message: String,
    },
    /// A well-formed lock with a bad entry.
    #[error("{path}: {package}: {problem}", path = path.display())]
    Invalid {
        /// The lock file.
        path: PathBuf,
        /// `name version` of the entry, or `(header)`.
        package: String,
        /// What is wrong.
        problem: LockProblem,
    },
    /// The spec is not the one the lock was made from.
    #[error(
        "the spec changed since it was locked (sha256 {actual}, locked {locked}): run `ironrack lock` again"
    )]
    SpecChanged {
        /// The digest in the lock.
        locked: String,
        /// The digest of the spec now.
        actual: String,
    },
    /// The repository is not the snapshot the lock was made from.
    #[error("the lock was made from snapshot {locked}, not {actual}")]
    SnapshotMismatch {
        /// The snapshot in the lock.
        locked: String,
        /// The snapshot given.
        actual: String,
    },
    /// A locked file is not in the repository.
    #[error("{set}: {package} {version}: {filename} is missing from the repository")]
    MissingFile {
        /// The package set.
        set: PackageSet,
        /// The package.
        package: String,
        /// Its version.
        version: String,
        /// The pool path.
        filename: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A locked file has another size or sha256.
    #[error("{0}")]
    HashMismatch(Box<FileMismatch>),
    /// The index gives no SHA256 for a package to lock.
    #[error("{package} {version}: the index has no SHA256 for {filename}; it cannot be locked")]
    NoHash {
        /// The package.
        package: String,
        /// Its version.
        version: String,
        /// The pool path.
        filename: String,
    },
    /// Reading the repository's Release or indexes failed.
    #[error("reading repository {root}", root = root.display())]
    Repository {
        /// The repository root.
        root: PathBuf,
        /// What failed.
        source: SourceError,
    },
    /// An index whose hash is not the one its Release lists.
    #[error("{path}: sha256 {actual} differs from the Release ({listed})", path = path.display())]
    IndexMismatch {
        /// The index file.
        path: PathBuf,
        /// The Release's sha256.
        listed: String,
        /// The file's sha256.
        actual: String,
    },
    /// The repository has no index for the architecture.
    #[error("repository {root} has no Packages index for suite {suite}, architecture {arch}", root = root.display())]
    NoIndex {
        /// The repository root.
        root: PathBuf,
        /// The suite.
        suite: String,
        /// The architecture.
        arch: String,
    },
    /// A set could not be resolved.
    #[error("resolving the {set} set")]
    Resolve {
        /// The package set.
        set: PackageSet,
        /// Why.
        source: ResolveError,
    },
    /// The spec is unusable.
    #[error(transparent)]
    Spec(Box<SpecError>),
    /// `lock --update NAME` for a package the lock does not have.
    #[error(
        "{name} is not in the lock; nothing to update (add it to the spec and run `ironrack lock`)"
    )]
    NotLocked {
        /// The name.
        name: String,
    },
    /// `lock --update NAME` for a package the spec pins.
    #[error("{name} is pinned to {version} in the spec; change the pin instead")]
    Pinned {
        /// The name.
        name: String,
        /// The pinned version.
        version: String,
    },
}

/// A locked file that is not what the lock says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMismatch {
    /// The package set.
    pub set: PackageSet,
    /// The package.
    pub package: String,
    /// Its version.
    pub version: String,
    /// The pool path.
    pub filename: String,
    /// The locked sha256.
    pub locked: String,
    /// The file's sha256.
    pub actual: String,
    /// The locked size.
    pub locked_size: u64,
    /// The file's size.
    pub actual_size: u64,
}

impl fmt::Display for FileMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} {}: {} does not match the lock (size {}, sha256 {}; locked size {}, sha256 {})",
            self.set,
            self.package,
            self.version,
            self.filename,
            self.actual_size,
            self.actual,
            self.locked_size,
            self.locked
        )
    }
}

impl From<SpecError> for LockError {
    fn from(e: SpecError) -> Self {
        Self::Spec(Box::new(e))
    }
}

impl LockError {
    /// Whether this is a check that found something wrong (a changed spec,
    /// another snapshot, a missing or different file) rather than a
    /// failure to do the work.
    pub fn is_verification_failure(&self) -> bool {
        matches!(
            self,
            Self::SpecChanged { .. }
                | Self::SnapshotMismatch { .. }
                | Self::MissingFile { .. }
                | Self::HashMismatch { .. }
                | Self::IndexMismatch { .. }
        )
    }
}

/// What is wrong with a lock entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockProblem {
    /// Another lock format version.
    UnsupportedVersion {
        /// The version found.
        found: u32,
        /// The version this builder reads.
        supported: u32,
    },
    /// A digest that is not 64 lowercase hex digits.
    BadDigest {
        /// The field.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// Not a Debian package name.
    BadName,
    /// Not a Debian version.
    BadVersion {
        /// Why dpkg rejects it.
        reason: String,
    },
    /// An absolute path, or one with `..`.
    BadFilename {
        /// The value.
        value: String,
    },
    /// The same package twice in a set.
    Duplicate {
        /// The set.
        set: PackageSet,
    },
}

impl fmt::Display for LockProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedVersion { found, supported } => write!(
                f,
                "lock format version {found} is not supported (this builder reads {supported})"
            ),
            Self::BadDigest { field, value } => {
                write!(
                    f,
                    "{field} {value:?} is not a sha256 (64 lowercase hex digits)"
                )
            }
            Self::BadName => f.write_str("not a Debian package name"),
            Self::BadVersion { reason } => write!(f, "bad version: {reason}"),
            Self::BadFilename { value } => write!(
                f,
                "filename {value:?} must be a relative path inside the repository"
            ),
            Self::Duplicate { set } => write!(f, "listed twice in the {set} set"),
        }
    }
}
