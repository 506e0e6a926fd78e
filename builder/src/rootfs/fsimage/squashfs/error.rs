//! What can go wrong writing a SquashFS image; every variant names the
//! path at fault (a source entry or the image being written).

use std::io;
use std::path::PathBuf;

/// An error writing a SquashFS image. Nothing is left at the output path
/// when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The options cannot describe a valid image.
    #[error("squashfs options: {problem}")]
    Options {
        /// What is wrong with them.
        problem: &'static str,
    },
    /// Reading a source entry's metadata, directory, link target or data.
    #[error("reading {path}: {source}")]
    Read {
        /// The source entry.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// A source file's size or identity changed between the walk and the read.
    #[error("{path} changed while the image was being written")]
    Changed {
        /// The source file.
        path: PathBuf,
    },
    /// A source entry SquashFS cannot store as it is.
    #[error("{path}: {problem}")]
    Unsupported {
        /// The source entry.
        path: PathBuf,
        /// Why it does not fit the format.
        problem: Unsupported,
    },
    /// Compressing a block (only fails on an allocation or library error).
    #[error("compressing data of {path}: {source}")]
    Compress {
        /// The file whose data (or the table) was being compressed.
        path: PathBuf,
        /// What the compressor said.
        source: io::Error,
    },
    /// A compression worker failed on this file (a bug: reported, not hung on).
    #[error("processing {path}: the compression worker failed")]
    Worker {
        /// The file it was working on.
        path: PathBuf,
    },
    /// Writing, syncing or renaming the image.
    #[error("writing {path}: {source}")]
    Write {
        /// The image (or its temporary file).
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The tree does not fit the format's limits.
    #[error("{root}: {problem}")]
    TooLarge {
        /// The source root.
        root: PathBuf,
        /// Which limit.
        problem: &'static str,
    },
}

/// Why a source entry does not fit SquashFS.
#[derive(Debug, thiserror::Error)]
pub enum Unsupported {
    /// An extended attribute outside the namespaces the kernel's squashfs
    /// reads (`user.`, `trusted.`, `security.`), with `strict_xattrs` set.
    #[error("extended attribute {name:?} is outside user./trusted./security.")]
    XattrNamespace {
        /// The attribute's full name.
        name: String,
    },
    /// An attribute name or value longer than the format's 16/32-bit fields.
    #[error("extended attribute {name:?} is too large")]
    XattrSize {
        /// The attribute's full name.
        name: String,
    },
    /// A device number that does not fit SquashFS's 32-bit encoding.
    #[error("device number {major}:{minor} does not fit (major < 4096, minor < 2^20)")]
    Device {
        /// Major number.
        major: u64,
        /// Minor number.
        minor: u64,
    },
    /// A file name longer than 256 bytes.
    #[error("name longer than 256 bytes")]
    NameLength,
    /// A file type SquashFS has no inode for.
    #[error("unknown file type")]
    FileType,
}
