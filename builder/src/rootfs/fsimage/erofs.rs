//! A deterministic, uncompressed EROFS writer of the same shape as
//! [`super::squashfs::write_dir`]: same tree walk (sorted, symlinks never
//! followed, mtimes clamped or fixed), same atomic output and [`Summary`].
//!
//! Layout (4 KiB blocks): block 0 holds the superblock at 1024 and the
//! metadata area right after it (`meta_blkaddr` 0, so the root's nid is
//! 36); every inode is the 64-byte extended form (32-bit ids, per-inode
//! mtime and link count), followed by its inline xattrs (`user.`,
//! `trusted.`, `security.`) and, when inode + xattrs + tail fit in the
//! inode's block, the tail of its data (`FLAT_INLINE`); otherwise the data
//! is `FLAT_PLAIN`. File and directory blocks follow the metadata in inode
//! order. No compression, no shared xattrs, no checksum feature.
//! Directory entries, `.` and `..` included, are sorted by name bytes
//! across blocks, as the kernel's binary search needs. POSIX ACLs are
//! dropped by the shared walk (counted in [`Summary::xattrs_dropped`]).

use std::os::unix::fs::FileExt;
use std::path::Path;

use super::squashfs::data::open_walked;
use super::squashfs::output::Output;
use super::squashfs::walk::{self, Kind, Tree};
use super::squashfs::{Error, Mtime, Summary, Unsupported};

const BLOCK: u64 = 4096;
const SUPERBLOCK_AT: usize = 1024;
/// Metadata starts right after the 128-byte superblock.
const META_START: u64 = 1024 + 128;
const INODE_SIZE: u64 = 64;
const MAGIC: u32 = 0xE0F5_E1E2;
const FLAT_PLAIN: u16 = 0;
const FLAT_INLINE: u16 = 2;

/// How to write an EROFS image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub mtime: Mtime,
    /// The superblock's build time.
    pub build_time: u32,
    /// The volume UUID (derive it from the build's inputs).
    pub uuid: [u8; 16],
}

impl Options {
    /// mtimes clamped to `source_date_epoch`, which is also the build time;
    /// an all-zero UUID.
    pub fn new(source_date_epoch: u32) -> Self {
        Self {
            mtime: Mtime::Clamp(source_date_epoch),
            build_time: source_date_epoch,
            uuid: [0; 16],
        }
    }
}

/// Where an inode and its data go.
struct Placed {
    node: u32,
    pos: u64,
    size: u64,
    xattrs: Vec<u8>,
    inline: bool,
    /// Data blocks in the data area (full blocks; all blocks if not inline).
    blocks: u64,
    /// First data block, relative to the data area.
    first_block: u64,
}

/// Write the tree under `root` as an EROFS image at `out` (replacing it
/// atomically). `progress` gets the bytes of file data written so far.
pub fn write_dir(
    root: &Path,
    out: &Path,
    options: &Options,
    progress: &dyn Fn(u64),
) -> Result<Summary, Error> {
    let walk_options = super::squashfs::Options {
        mtime: options.mtime,
        ..super::squashfs::Options::new(options.build_time)
    };
    let tree = walk::walk(root, &walk_options)?;
    let (order, parents) = inode_order(&tree);
    let mut slot = vec![u32::MAX; tree.nodes.len()];
    for (i, &id) in order.iter().enumerate() {
        slot[id as usize] = i as u32;
    }
    // Pass 1: sizes and places. Directory sizes depend on names only.
    let mut placed = Vec::with_capacity(order.len());
    let (mut pos, mut data_blocks) = (META_START, 0u64);
    for &id in &order {
        let node = &tree.nodes[id as usize];
        let size = match &node.kind {
            Kind::Dir(_) => dir_bytes(&tree, id, parents[id as usize], &|_| 0).len() as u64,
            Kind::File(f) => tree.files[*f as usize].size,
            Kind::Symlink(target) => target.len() as u64,
            _ => 0,
        };
        let xattrs = xattr_body(&tree, id, root)?;
        let tail = size % BLOCK;
        let inline = tail > 0 && INODE_SIZE + xattrs.len() as u64 + tail <= BLOCK;
        let need = INODE_SIZE + xattrs.len() as u64 + if inline { tail } else { 0 };
        if need <= BLOCK && pos % BLOCK + need > BLOCK {
            pos = pos.div_ceil(BLOCK) * BLOCK;
        }
        let blocks = if inline {
            size / BLOCK
        } else {
            size.div_ceil(BLOCK)
        };
        placed.push(Placed {
            node: id,
            pos,
            size,
            xattrs,
            inline,
            blocks,
            first_block: data_blocks,
        });
        data_blocks += blocks;
        pos = (pos + need).div_ceil(32) * 32;
    }
    let data_start = pos.div_ceil(BLOCK);
    if u32::try_from(data_start + data_blocks).is_err() {
        return Err(Error::TooLarge {
            root: root.to_owned(),
            problem: "more than 2^32 blocks of 4 KiB",
        });
    }
    let nid = |id: u32| placed[slot[tree.inode_of(id) as usize] as usize].pos / 32;

    // Pass 2: metadata, then data blocks, in the same order.
    let mut output = Output::create(out, META_START)?;
    let mut bytes_in = 0u64;
    for (number, p) in placed.iter().enumerate() {
        output.write(&vec![0; (p.pos - output.position()) as usize])?;
        // Fits: the total block count was checked above.
        let start = if p.blocks > 0 {
            (data_start + p.first_block) as u32
        } else {
            0
        };
        output.write(&inode(&tree, p, number as u32 + 1, start))?;
        output.write(&p.xattrs)?;
        if p.inline {
            let tail = p.size % BLOCK;
            let bytes = content(&tree, p, p.size - tail, tail as usize, &parents, &nid)?;
            output.write(&bytes)?;
        }
    }
    output.write(&vec![0; (data_start * BLOCK - output.position()) as usize])?;
    for p in &placed {
        let mut offset = 0;
        let end = p.blocks * BLOCK;
        while offset < end {
            let len = (end - offset).min(1 << 20);
            let want = len.min(p.size.saturating_sub(offset)) as usize;
            let mut bytes = content(&tree, p, offset, want, &parents, &nid)?;
            bytes.resize(len as usize, 0);
            output.write(&bytes)?;
            offset += len;
        }
        if let Kind::File(_) = tree.nodes[p.node as usize].kind {
            bytes_in += p.size;
            progress(bytes_in);
        }
    }
    let mut header = vec![0u8; META_START as usize];
    header[SUPERBLOCK_AT..].copy_from_slice(&superblock(
        options,
        &placed,
        data_start + data_blocks,
        nid(0),
    ));
    let (bytes_out, sha256) = output.commit(&header)?;
    Ok(Summary {
        inodes: placed.len() as u32,
        bytes_in,
        bytes_out,
        sha256,
        deduplicated: 0,
        fragments: 0,
        xattrs_dropped: tree.xattrs_dropped,
    })
}

/// Inode-holding nodes in depth-first order, the root first (its nid must
/// fit 16 bits); and each directory's parent.
fn inode_order(tree: &Tree) -> (Vec<u32>, Vec<u32>) {
    let mut order = Vec::new();
    let mut parents = vec![0u32; tree.nodes.len()];
    let mut seen = vec![false; tree.nodes.len()];
    let mut stack = vec![0u32];
    while let Some(id) = stack.pop() {
        order.push(id);
        if let Kind::Dir(children) = &tree.nodes[id as usize].kind {
            for &child in children.iter().rev() {
                let inode = tree.inode_of(child);
                if matches!(tree.nodes[inode as usize].kind, Kind::Dir(_)) {
                    parents[inode as usize] = id;
                }
                if !seen[inode as usize] {
                    seen[inode as usize] = true;
                    stack.push(inode);
                }
            }
        }
    }
    (order, parents)
}

/// `len` bytes at `offset` of an inode's data: file contents, directory
/// blocks or symlink target.
fn content(
    tree: &Tree,
    p: &Placed,
    offset: u64,
    len: usize,
    parents: &[u32],
    nid: &dyn Fn(u32) -> u64,
) -> Result<Vec<u8>, Error> {
    let node = &tree.nodes[p.node as usize];
    Ok(match &node.kind {
        Kind::File(f) => {
            let source = &tree.files[*f as usize];
            let file = open_walked(source)?;
            let mut buf = vec![0; len];
            file.read_exact_at(&mut buf, offset)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => Error::Changed {
                        path: source.path.clone(),
                    },
                    _ => Error::Read {
                        path: source.path.clone(),
                        source: e,
                    },
                })?;
            buf
        }
        Kind::Dir(_) => {
            let bytes = dir_bytes(tree, p.node, parents[p.node as usize], nid);
            bytes[offset as usize..offset as usize + len].to_vec()
        }
        Kind::Symlink(target) => target[offset as usize..offset as usize + len].to_vec(),
        _ => Vec::new(),
    })
}

/// A directory's blocks: each starts with its dirents (nid, name offset,
/// type) then the names; entries sorted by name, `.` and `..` included.
fn dir_bytes(tree: &Tree, dir: u32, parent: u32, nid: &dyn Fn(u32) -> u64) -> Vec<u8> {
    let Kind::Dir(children) = &tree.nodes[dir as usize].kind else {
        return Vec::new();
    };
    let mut entries: Vec<(&[u8], u64, u8)> = vec![(b".", nid(dir), 2), (b"..", nid(parent), 2)];
    for &child in children {
        let inode = tree.inode_of(child);
        entries.push((
            &tree.nodes[child as usize].name,
            nid(inode),
            file_type(&tree.nodes[inode as usize].kind),
        ));
    }
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        let (mut n, mut used) = (0, 0);
        while i + n < entries.len() && used + 12 + entries[i + n].0.len() <= BLOCK as usize {
            used += 12 + entries[i + n].0.len();
            n += 1;
        }
        let block_start = out.len();
        let mut nameoff = 12 * n;
        for (name, nid, ftype) in &entries[i..i + n] {
            out.extend_from_slice(&nid.to_le_bytes());
            out.extend_from_slice(&(nameoff as u16).to_le_bytes());
            out.push(*ftype);
            out.push(0);
            nameoff += name.len();
        }
        for (name, _, _) in &entries[i..i + n] {
            out.extend_from_slice(name);
        }
        i += n;
        if i < entries.len() {
            out.resize(block_start + BLOCK as usize, 0);
        }
    }
    out
}

fn file_type(kind: &Kind) -> u8 {
    match kind {
        Kind::File(_) | Kind::Link(_) => 1,
        Kind::Dir(_) => 2,
        Kind::CharDev(_) => 3,
        Kind::BlockDev(_) => 4,
        Kind::Fifo => 5,
        Kind::Socket => 6,
        Kind::Symlink(_) => 7,
    }
}

fn mode_type(kind: &Kind) -> u16 {
    match kind {
        Kind::File(_) | Kind::Link(_) => 0o100000,
        Kind::Dir(_) => 0o040000,
        Kind::CharDev(_) => 0o020000,
        Kind::BlockDev(_) => 0o060000,
        Kind::Fifo => 0o010000,
        Kind::Socket => 0o140000,
        Kind::Symlink(_) => 0o120000,
    }
}

/// The inline xattr body: header (no name filter, no shared xattrs),
/// then each entry 4-byte aligned.
fn xattr_body(tree: &Tree, id: u32, root: &Path) -> Result<Vec<u8>, Error> {
    let node = &tree.nodes[id as usize];
    let Some(set) = tree.xattr_sets.get(node.xattrs as usize) else {
        return Ok(Vec::new());
    };
    let mut out = vec![0u8; 12];
    for x in set {
        let index = [1u8, 4, 6][x.prefix as usize];
        let (Ok(name_len), Ok(value_len)) =
            (u8::try_from(x.name.len()), u16::try_from(x.value.len()))
        else {
            let name = String::from_utf8_lossy(&x.name).into_owned();
            // The walk does not keep entry paths; name the tree and the attribute.
            return Err(Error::Unsupported {
                path: root.to_owned(),
                problem: Unsupported::XattrSize { name },
            });
        };
        out.push(name_len);
        out.push(index);
        out.extend_from_slice(&value_len.to_le_bytes());
        out.extend_from_slice(&x.name);
        out.extend_from_slice(&x.value);
        out.resize(out.len().div_ceil(4) * 4, 0);
    }
    Ok(out)
}

fn inode(tree: &Tree, p: &Placed, number: u32, start_block: u32) -> Vec<u8> {
    let node = &tree.nodes[p.node as usize];
    let layout = if p.inline { FLAT_INLINE } else { FLAT_PLAIN };
    let icount = if p.xattrs.is_empty() {
        0
    } else {
        (p.xattrs.len() - 12) / 4 + 1
    };
    let (nlink, i_u) = match &node.kind {
        Kind::Dir(children) => {
            let subdirs = children
                .iter()
                .filter(|&&c| matches!(tree.nodes[tree.inode_of(c) as usize].kind, Kind::Dir(_)))
                .count() as u32;
            (2 + subdirs, start_block)
        }
        Kind::BlockDev(dev) | Kind::CharDev(dev) => (node.nlink, *dev),
        Kind::Fifo | Kind::Socket => (node.nlink, 0),
        _ => (node.nlink, start_block),
    };
    let mut out = Vec::with_capacity(INODE_SIZE as usize);
    out.extend_from_slice(&(1 | (layout << 1)).to_le_bytes());
    out.extend_from_slice(&(icount as u16).to_le_bytes());
    out.extend_from_slice(&(mode_type(&node.kind) | node.mode).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&p.size.to_le_bytes());
    out.extend_from_slice(&i_u.to_le_bytes());
    out.extend_from_slice(&number.to_le_bytes());
    out.extend_from_slice(&node.uid.to_le_bytes());
    out.extend_from_slice(&node.gid.to_le_bytes());
    out.extend_from_slice(&u64::from(node.mtime).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&nlink.to_le_bytes());
    out.resize(INODE_SIZE as usize, 0);
    out
}

fn superblock(options: &Options, placed: &[Placed], blocks: u64, root_nid: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // checksum: feature not set
    out.extend_from_slice(&0u32.to_le_bytes()); // feature_compat
    out.push(12); // blkszbits
    out.push(0); // sb_extslots
    out.extend_from_slice(&(root_nid as u16).to_le_bytes());
    out.extend_from_slice(&(placed.len() as u64).to_le_bytes());
    out.extend_from_slice(&u64::from(options.build_time).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // build_time_nsec
    out.extend_from_slice(&(blocks as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // meta_blkaddr
    out.extend_from_slice(&0u32.to_le_bytes()); // xattr_blkaddr
    out.extend_from_slice(&options.uuid);
    out.extend_from_slice(&[0; 16]); // volume name
    out.resize(128, 0); // no incompat features, devices or prefixes
    out
}
