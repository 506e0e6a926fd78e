//! The error type of the root filesystem stages.
//!
//! Variants name the operation and carry the package, path or command at
//! fault, so an operator reading a failed build knows which input to look
//! at without re-running it.

use std::io;
use std::path::PathBuf;

/// An error installing, configuring, normalising or writing a root
/// filesystem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A package file could not be read (bad archive, I/O error).
    #[error("reading package {package}: {source}")]
    Package {
        /// The package (name or file).
        package: String,
        /// What the reader said.
        source: Box<crate::source::Error>,
    },
    /// A data.tar entry the extractor refuses: it would leave the root or
    /// cannot be represented faithfully.
    #[error("package {package}: refusing data.tar entry {entry:?}: {problem}")]
    UnsafeEntry {
        /// The package.
        package: String,
        /// The entry name as stored in the archive.
        entry: PathBuf,
        /// Why it is refused.
        problem: EntryProblem,
    },
    /// Writing one entry into the target failed.
    #[error("package {package}: extracting {entry:?}: {source}")]
    Extract {
        /// The package.
        package: String,
        /// The entry name as stored in the archive.
        entry: PathBuf,
        /// The system error.
        source: io::Error,
    },
    /// Two packages ship the same non-directory path and neither declares
    /// `Replaces` on the other (dpkg refuses this too).
    #[error("{path} is shipped by both {first} and {second}, and neither replaces the other")]
    FileConflict {
        /// The path inside the image.
        path: String,
        /// One package.
        first: String,
        /// The other.
        second: String,
    },
    /// One package ships a directory where another ships a file or link.
    #[error("{path} is a directory in {directory_in} but not in {other_in}")]
    TypeConflict {
        /// The path inside the image.
        path: String,
        /// The package shipping the directory.
        directory_in: String,
        /// The package shipping something else.
        other_in: String,
    },
    /// The same package name appears twice in the install set.
    #[error("package {package} is listed twice in the install set")]
    DuplicatePackage {
        /// The package.
        package: String,
    },
    /// A filesystem operation on the target root failed.
    #[error("{operation} {path:?} in target {root}: {source}")]
    Target {
        /// What was being done (`creating`, `writing`, `removing`, ...).
        operation: &'static str,
        /// The path inside the root.
        path: PathBuf,
        /// The target root.
        root: PathBuf,
        /// The system error.
        source: io::Error,
    },
    /// The sandbox could not be set up or its command not started.
    #[error("starting the sandbox in {root} for {command}: {source}")]
    Sandbox {
        /// The target root.
        root: PathBuf,
        /// The command that was to run.
        command: String,
        /// The system error.
        source: io::Error,
    },
    /// A maintainer script failed (preinst run by us, or a script dpkg ran
    /// during `--configure`).
    #[error("{step} failed for package {package} ({status}); last output:\n{output}")]
    MaintainerScript {
        /// `preinst install` or `dpkg --configure`.
        step: &'static str,
        /// The package whose script failed (`?` when the output does not say).
        package: String,
        /// The exit status.
        status: String,
        /// The tail of the sandbox output.
        output: String,
    },
    /// The configured image does not check out (`dpkg --audit` not clean,
    /// or the installed set differs from the requested one).
    #[error("checking the installed packages: {problem}")]
    Audit {
        /// What was found.
        problem: String,
    },
    /// An image customisation from the spec that cannot be applied.
    #[error("applying {what}: {problem}")]
    Customize {
        /// What (`user ops`, `overlay /x/y`, `unit foo.service`, ...).
        what: String,
        /// Why not.
        problem: String,
    },
    /// Writing an image file (tar, digest) failed.
    #[error("writing {path}: {source}")]
    Image {
        /// The output file.
        path: PathBuf,
        /// The system error.
        source: io::Error,
    },
}

/// Why a data.tar entry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryProblem {
    /// A `..` component: the entry names a path above where it claims to be.
    #[error("it has a `..` component")]
    ParentComponent,
    /// An absolute name: Debian packages store `./`-relative names.
    #[error("it is an absolute path")]
    AbsolutePath,
    /// A hard link whose target is unsafe in the same way.
    #[error("its hard-link target {0:?} is unsafe")]
    UnsafeLinkTarget(PathBuf),
    /// A hard link or symlink without a target.
    #[error("it is a link without a target")]
    MissingLinkTarget,
    /// A tar type the image cannot hold (e.g. a GNU sparse or volume header).
    #[error("tar entry type {0:?} is not supported")]
    UnsupportedType(char),
    /// An extended attribute on something other than a file or directory.
    #[error("extended attribute {0} on an entry that is neither a file nor a directory")]
    UnsupportedXattr(String),
    /// The directory it goes into does not exist (no entry made it).
    #[error("its parent directory does not exist")]
    MissingParent,
}

impl Error {
    pub(crate) fn target(
        operation: &'static str,
        root: &std::path::Path,
        path: impl Into<PathBuf>,
        source: io::Error,
    ) -> Self {
        Self::Target {
            operation,
            path: path.into(),
            root: root.to_owned(),
            source,
        }
    }
}
