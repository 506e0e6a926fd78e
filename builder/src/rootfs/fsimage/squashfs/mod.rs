//! A deterministic SquashFS 4.0 writer for node root filesystems.
//!
//! Our own rather than backhand's: backhand 0.25's writer drops extended
//! attributes, and a root filesystem without `security.capability` has a
//! `ping` that cannot open a raw socket. mksquashfs (squashfs-tools) is the
//! reference reader and writer the tests compare against; the kernel mounts
//! what this writes.
//!
//! The same tree and [`Options`] give the same bytes, whatever the thread
//! count, the path of the tree, the clock or the order the directory was
//! read in. Format decisions:
//! - Entries sorted by the bytes of their names (the kernel's lookup
//!   relies on it). Inodes written bottom-up and numbered in that order,
//!   the root last; the root's parent number is the inode count + 1.
//! - Basic inodes unless a field needs the extended one: files over 4 GiB
//!   or past 4 GiB in the image, hard-linked, sparse or with xattrs;
//!   directories with xattrs, a listing over 64 KiB or an index. Listings
//!   get a new header at each metadata block boundary and an index entry
//!   per such header, so lookups in big directories read one block.
//! - Data: full blocks compressed on worker threads, stored raw when
//!   compression does not shrink them, all-zero blocks stored as sparse
//!   (size 0). Every file's tail (and every file under one block) is packed
//!   into fragment blocks in file order; fragment blocks follow all file
//!   data. With [`Options::dedup`], a file with the same size and sha256 as
//!   an earlier one points at that file's blocks and fragment.
//! - Extended attributes of the `user.`, `trusted.` and `security.`
//!   namespaces (the ones the kernel's squashfs reads; so file capabilities
//!   and SELinux labels are kept). Others (POSIX ACLs: `system.posix_acl_*`,
//!   which systemd-tmpfiles puts on /var/log/journal) cannot be stored: they
//!   are dropped with a warning and counted in [`Summary::xattrs_dropped`],
//!   as mksquashfs drops them, or refused with [`Options::strict_xattrs`].
//!   Identical attribute sets are stored once; a repeated value longer than
//!   8 bytes is stored out of line.
//! - No NFS export table (images are not exported over NFS); no compressor
//!   options block (xz dictionaries are capped at the block size, which is
//!   the kernel's default; zstd needs none). Padded to 4 KiB.
//! - mtimes per [`Mtime`]; the superblock time is [`Options::modification_time`].

mod compress;
pub(crate) mod data;
mod error;
mod format;
mod metadata;
// The EROFS writer reads the same tree and writes through the same output.
pub(crate) mod output;
mod tables;
pub(crate) mod walk;

use std::path::Path;

pub use error::{Error, Unsupported};

use compress::Compressor;
use format::{
    COMP_XZ, COMP_ZSTD, FLAG_ALWAYS_FRAGMENTS, FLAG_DUPLICATES, INVALID_TABLE, Put,
    SUPERBLOCK_SIZE, Superblock,
};
use metadata::lookup_table;
use output::Output;
use tables::{Ids, TableError};

/// How blocks and tables are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// zstd (kernel 4.14 and later; the Debian 12 cloud kernel has it).
    /// mksquashfs's default level is 15: on a 185 MiB minbase tree it gives
    /// an image 12% smaller than level 3 for 20 times the CPU time.
    Zstd {
        /// 1 to 22.
        level: i32,
    },
    /// xz (LZMA2, CRC32 check); slower, a little smaller.
    Xz {
        /// Preset 0 to 9.
        level: u32,
    },
}

/// The modification time stored for every entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mtime {
    /// The entry's own mtime, but never later than this (SOURCE_DATE_EPOCH).
    Clamp(u32),
    /// This time for every entry.
    Fixed(u32),
}

/// How to write an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Data block size: a power of two from 4 KiB to 1 MiB.
    pub block_size: u32,
    pub compression: Compression,
    pub mtime: Mtime,
    /// The superblock's modification time.
    pub modification_time: u32,
    /// Compression threads; 0 = one per available core. The image does not
    /// depend on it.
    pub threads: usize,
    /// Store identical files once.
    pub dedup: bool,
    /// Refuse (rather than drop with a warning) extended attributes that
    /// SquashFS cannot store.
    pub strict_xattrs: bool,
}

impl Options {
    /// 128 KiB blocks, zstd level 3 (a build's time matters more than a few
    /// MB on a rack's network; see [`Compression::Zstd`]), dedup on, mtimes clamped to
    /// `source_date_epoch`, which is also the superblock time; attributes
    /// SquashFS cannot store are dropped with a warning.
    pub fn new(source_date_epoch: u32) -> Self {
        Self {
            block_size: 128 * 1024,
            compression: Compression::Zstd { level: 3 },
            mtime: Mtime::Clamp(source_date_epoch),
            modification_time: source_date_epoch,
            threads: 0,
            dedup: true,
            strict_xattrs: false,
        }
    }

    fn check(&self) -> Result<(), Error> {
        let problem =
            if !self.block_size.is_power_of_two() || !(4096..=1 << 20).contains(&self.block_size) {
                "block size must be a power of two from 4 KiB to 1 MiB"
            } else {
                match self.compression {
                    Compression::Zstd { level } if !(1..=22).contains(&level) => {
                        "zstd level must be 1 to 22"
                    }
                    Compression::Xz { level } if level > 9 => "xz level must be 0 to 9",
                    _ => return Ok(()),
                }
            };
        Err(Error::Options { problem })
    }
}

/// What was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Inodes in the image (hard links counted once).
    pub inodes: u32,
    /// Bytes of regular-file data read.
    pub bytes_in: u64,
    /// Size of the image file.
    pub bytes_out: u64,
    /// sha256 of the image file.
    pub sha256: [u8; 32],
    /// Files stored as references to an identical earlier file.
    pub deduplicated: u64,
    /// Fragment blocks written.
    pub fragments: u32,
    /// Extended attributes left out: outside the namespaces SquashFS
    /// stores (see the module docs).
    pub xattrs_dropped: u64,
}

impl Summary {
    /// The image digest as lowercase hex.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// Write the tree under `root` as a SquashFS image at `out` (replacing
/// it atomically). `progress` is called on this thread with the bytes of
/// file data written so far.
pub fn write_dir(
    root: &Path,
    out: &Path,
    options: &Options,
    progress: &dyn Fn(u64),
) -> Result<Summary, Error> {
    options.check()?;
    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let mut compressor =
        Compressor::new(options.compression, options.block_size).map_err(|_| Error::Options {
            problem: "compression level not accepted by the compressor",
        })?;
    let tree = walk::walk(root, options)?;
    let ids = Ids::collect(&tree).ok_or_else(|| Error::TooLarge {
        root: root.to_owned(),
        problem: "more than 65536 distinct uids and gids",
    })?;
    let mut output = Output::create(out, SUPERBLOCK_SIZE)?;
    let data = data::write(&tree.files, options, threads, &mut output, progress)?;
    let table_error = |e: TableError| match e {
        TableError::Compress(source) => Error::Compress {
            path: out.to_owned(),
            source,
        },
        TableError::TooLarge(problem) => Error::TooLarge {
            root: root.to_owned(),
            problem,
        },
    };
    let built = tables::build(&tree, &data.files, &ids, &mut compressor).map_err(table_error)?;
    let compress_error = |source| Error::Compress {
        path: out.to_owned(),
        source,
    };
    let xattrs = tables::xattr_tables(&tree.xattr_sets, &mut compressor).map_err(compress_error)?;

    let mut sb = Superblock {
        inode_count: built.inode_count,
        modification_time: options.modification_time,
        block_size: options.block_size,
        fragment_count: data.fragments.len() as u32,
        compression: match options.compression {
            Compression::Zstd { .. } => COMP_ZSTD,
            Compression::Xz { .. } => COMP_XZ,
        },
        flags: FLAG_ALWAYS_FRAGMENTS | if options.dedup { FLAG_DUPLICATES } else { 0 },
        id_count: ids.values.len() as u16,
        root_inode: built.root,
        export_table: INVALID_TABLE,
        xattr_id_table: INVALID_TABLE,
        ..Superblock::default()
    };
    sb.inode_table = output.position();
    output.write(&built.inode_table)?;
    sb.directory_table = output.position();
    output.write(&built.directory_table)?;

    let mut fragments = Vec::with_capacity(data.fragments.len() * 16);
    for &(start, size) in &data.fragments {
        fragments.u64(start);
        fragments.u32(size);
        fragments.u32(0);
    }
    let (bytes, at) = lookup_table(&mut compressor, &fragments, output.position(), &[])
        .map_err(compress_error)?;
    output.write(&bytes)?;
    sb.fragment_table = at;

    let mut id_entries = Vec::with_capacity(ids.values.len() * 4);
    for &id in &ids.values {
        id_entries.u32(id);
    }
    let (bytes, at) = lookup_table(&mut compressor, &id_entries, output.position(), &[])
        .map_err(compress_error)?;
    output.write(&bytes)?;
    sb.id_table = at;

    if !tree.xattr_sets.is_empty() {
        let (kv, id_entries) = xattrs;
        let kv_start = output.position();
        output.write(&kv)?;
        let mut header = Vec::with_capacity(16);
        header.u64(kv_start);
        header.u32(tree.xattr_sets.len() as u32);
        header.u32(0);
        let (bytes, at) = lookup_table(&mut compressor, &id_entries, output.position(), &header)
            .map_err(compress_error)?;
        output.write(&bytes)?;
        sb.xattr_id_table = at;
    }
    sb.bytes_used = output.position();
    let (bytes_out, sha256) = output.commit(&sb.encode())?;
    let summary = Summary {
        inodes: built.inode_count,
        bytes_in: data.bytes_in,
        bytes_out,
        sha256,
        deduplicated: data.deduplicated,
        fragments: sb.fragment_count,
        xattrs_dropped: tree.xattrs_dropped,
    };
    tracing::debug!(
        root = %root.display(),
        image = %out.display(),
        inodes = summary.inodes,
        bytes_in = summary.bytes_in,
        bytes_out = summary.bytes_out,
        sha256 = %summary.sha256_hex(),
        "squashfs written"
    );
    Ok(summary)
}
