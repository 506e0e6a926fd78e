//! The inode and directory tables (built together, bottom-up), and the
//! id and xattr tables they index into.
//!
//! Inodes are written in post-order (a directory after everything under
//! it), as mksquashfs does: a directory's listing needs its children's
//! inode references, and its inode needs the listing's position. Inode
//! numbers follow the same order, assigned in a first pass because a
//! directory inode names its parent's number.

use std::collections::HashMap;
use std::io;

use super::compress::Compressor;
use super::data::FileData;
use super::format::{DIR_RUN_MAX, Header, InodeType, NO_FRAGMENT, NO_XATTR, Put};
use super::metadata::{BLOCK, Table};
use super::walk::{Kind, Tree, Xattr};

/// The two tables and what the superblock needs from them.
#[derive(Debug)]
pub(crate) struct Tables {
    pub inode_table: Vec<u8>,
    pub directory_table: Vec<u8>,
    pub root: u64,
    pub inode_count: u32,
}

/// The id table's values (sorted) and each value's index.
#[derive(Debug)]
pub(crate) struct Ids {
    pub values: Vec<u32>,
    index: HashMap<u32, u16>,
}

impl Ids {
    /// Every uid and gid of the tree; `None` past the format's 65536.
    pub(crate) fn collect(tree: &Tree) -> Option<Self> {
        let mut values: Vec<u32> = tree.nodes.iter().flat_map(|n| [n.uid, n.gid]).collect();
        values.sort_unstable();
        values.dedup();
        let index = values
            .iter()
            .enumerate()
            .map(|(i, &v)| u16::try_from(i).ok().map(|i| (v, i)))
            .collect::<Option<_>>()?;
        Some(Self { values, index })
    }

    fn get(&self, id: u32) -> u16 {
        self.index[&id]
    }
}

/// A directory index entry: the header's offset in the listing, the
/// metadata block it starts in, the name of its first entry.
struct IndexEntry<'a> {
    offset: u32,
    block: u32,
    name: &'a [u8],
}

struct Entry<'a> {
    name: &'a [u8],
    reference: u64,
    number: u32,
    basic_type: u16,
}

struct Builder<'a> {
    tree: &'a Tree,
    files: &'a [FileData],
    ids: &'a Ids,
    compressor: &'a mut Compressor,
    numbers: Vec<u32>,
    references: Vec<Option<u64>>,
    inodes: Table,
    dirs: Table,
}

/// Build both tables for `tree`, whose file data is described by `files`.
pub(crate) fn build(
    tree: &Tree,
    files: &[FileData],
    ids: &Ids,
    compressor: &mut Compressor,
) -> Result<Tables, TableError> {
    let mut numbers = vec![0; tree.nodes.len()];
    let mut next = 0;
    number(tree, 0, &mut next, &mut numbers);
    let mut builder = Builder {
        tree,
        files,
        ids,
        compressor,
        numbers,
        references: vec![None; tree.nodes.len()],
        inodes: Table::default(),
        dirs: Table::default(),
    };
    // The root's parent is one past the last inode, as mksquashfs writes it.
    let root = builder.directory(0, next + 1)?;
    let Builder {
        inodes,
        dirs,
        compressor,
        ..
    } = builder;
    Ok(Tables {
        inode_table: inodes.finish(compressor)?.0,
        directory_table: dirs.finish(compressor)?.0,
        root,
        inode_count: next,
    })
}

/// Post-order inode numbers, 1-based; hard links share their first
/// name's number.
fn number(tree: &Tree, dir: u32, next: &mut u32, numbers: &mut [u32]) {
    if let Kind::Dir(children) = &tree.nodes[dir as usize].kind {
        for &child in children {
            let inode = tree.inode_of(child);
            if matches!(tree.nodes[inode as usize].kind, Kind::Dir(_)) {
                number(tree, inode, next, numbers);
            } else if numbers[inode as usize] == 0 {
                *next += 1;
                numbers[inode as usize] = *next;
            }
        }
    }
    *next += 1;
    numbers[dir as usize] = *next;
}

impl Builder<'_> {
    fn header(&self, id: u32) -> Header {
        let node = &self.tree.nodes[id as usize];
        Header {
            mode: node.mode,
            uid_index: self.ids.get(node.uid),
            gid_index: self.ids.get(node.gid),
            mtime: node.mtime,
            number: self.numbers[id as usize],
        }
    }

    /// Write everything under `dir`, its listing, then its inode.
    fn directory(&mut self, dir: u32, parent: u32) -> Result<u64, TableError> {
        let tree = self.tree;
        let Kind::Dir(children) = &tree.nodes[dir as usize].kind else {
            unreachable!("directory() is only called on directories")
        };
        let mut entries = Vec::with_capacity(children.len());
        let mut subdirs = 0u32;
        for &child in children {
            let inode = tree.inode_of(child);
            let node = &tree.nodes[inode as usize];
            let reference = match (&node.kind, self.references[inode as usize]) {
                (Kind::Dir(_), _) => {
                    subdirs += 1;
                    self.directory(inode, self.numbers[dir as usize])?
                }
                (_, Some(reference)) => reference,
                (_, None) => self.leaf(inode)?,
            };
            entries.push(Entry {
                name: &tree.nodes[child as usize].name,
                reference,
                number: self.numbers[inode as usize],
                basic_type: basic_type(&node.kind),
            });
        }
        let start = self.dirs.position();
        let (size, index) = self.listing(&entries)?;
        let node = &tree.nodes[dir as usize];
        let reference = self.inodes.position().reference();
        let mut out = Vec::with_capacity(40);
        let file_size = size + 3;
        let nlink = 2 + subdirs;
        let block =
            u32::try_from(start.block).map_err(|_| too_large("directory table over 4 GiB"))?;
        if index.is_empty() && node.xattrs == NO_XATTR && file_size <= u32::from(u16::MAX) {
            self.header(dir).put(&mut out, InodeType::Dir.basic());
            out.u32(block);
            out.u32(nlink);
            out.u16(file_size as u16);
            out.u16(start.offset);
            out.u32(parent);
        } else {
            let count = u16::try_from(index.len())
                .map_err(|_| too_large("directory index over 65535 entries"))?;
            self.header(dir).put(&mut out, InodeType::Dir.extended());
            out.u32(nlink);
            out.u32(file_size);
            out.u32(block);
            out.u32(parent);
            out.u16(count);
            out.u16(start.offset);
            out.u32(node.xattrs);
            for entry in index {
                out.u32(entry.offset);
                out.u32(entry.block);
                out.u32(entry.name.len() as u32 - 1);
                out.extend_from_slice(entry.name);
            }
        }
        self.inodes.write(self.compressor, &out)?;
        Ok(reference)
    }

    /// Write a directory's entries in runs under headers. A run ends at
    /// 256 entries, when the inodes' metadata block changes, when the
    /// inode number is too far from the header's, or when the listing
    /// crosses a metadata block; each run starting in a new block gets an
    /// index entry (listing offset, block, first name) for lookups.
    fn listing<'e>(
        &mut self,
        entries: &[Entry<'e>],
    ) -> Result<(u32, Vec<IndexEntry<'e>>), TableError> {
        let mut size = 0u32;
        let mut index = Vec::new();
        let mut last_block = self.dirs.position().block;
        let mut i = 0;
        while i < entries.len() {
            let here = self.dirs.position();
            if here.block != last_block {
                let block = u32::try_from(here.block)
                    .map_err(|_| too_large("directory table over 4 GiB"))?;
                index.push(IndexEntry {
                    offset: size,
                    block,
                    name: entries[i].name,
                });
                last_block = here.block;
            }
            let first = &entries[i];
            let mut run = Vec::new();
            let mut j = i;
            while j < entries.len() && j - i < DIR_RUN_MAX {
                let e = &entries[j];
                let delta = i64::from(e.number) - i64::from(first.number);
                let crosses = usize::from(here.offset) + 12 + run.len() >= BLOCK;
                if e.reference >> 16 != first.reference >> 16
                    || i16::try_from(delta).is_err()
                    || (j > i && crosses)
                {
                    break;
                }
                run.u16((e.reference & 0xffff) as u16);
                run.u16(delta as i16 as u16);
                run.u16(e.basic_type);
                run.u16(e.name.len() as u16 - 1);
                run.extend_from_slice(e.name);
                j += 1;
            }
            let mut header = Vec::with_capacity(12 + run.len());
            header.u32((j - i - 1) as u32);
            header.u32(
                u32::try_from(first.reference >> 16)
                    .map_err(|_| too_large("inode table over 4 GiB"))?,
            );
            header.u32(first.number);
            header.extend_from_slice(&run);
            self.dirs.write(self.compressor, &header)?;
            size = size
                .checked_add(header.len() as u32)
                .ok_or_else(|| too_large("directory listing over 4 GiB"))?;
            i = j;
        }
        Ok((size, index))
    }

    /// Write a non-directory inode; returns its reference.
    fn leaf(&mut self, id: u32) -> Result<u64, TableError> {
        let node = &self.tree.nodes[id as usize];
        let header = self.header(id);
        let reference = self.inodes.position().reference();
        let xattr = node.xattrs;
        let extended = xattr != NO_XATTR;
        let basic = basic_type_of(&node.kind);
        let mut out = Vec::with_capacity(64);
        match &node.kind {
            Kind::File(index) => {
                let data = &self.files[*index as usize];
                let size = self.tree.files[*index as usize].size;
                let big = data.blocks_start > u64::from(u32::MAX) || size > u64::from(u32::MAX);
                if extended || big || node.nlink > 1 || data.sparse > 0 {
                    header.put(&mut out, basic.extended());
                    out.u64(data.blocks_start);
                    out.u64(size);
                    out.u64(data.sparse);
                    out.u32(node.nlink);
                    out.u32(data.fragment);
                    out.u32(if data.fragment == NO_FRAGMENT {
                        0
                    } else {
                        data.fragment_offset
                    });
                    out.u32(xattr);
                } else {
                    header.put(&mut out, basic.basic());
                    out.u32(data.blocks_start as u32);
                    out.u32(data.fragment);
                    out.u32(if data.fragment == NO_FRAGMENT {
                        0
                    } else {
                        data.fragment_offset
                    });
                    out.u32(size as u32);
                }
                for &b in &data.block_sizes {
                    out.u32(b);
                }
            }
            Kind::Symlink(target) => {
                header.put(
                    &mut out,
                    if extended {
                        basic.extended()
                    } else {
                        basic.basic()
                    },
                );
                out.u32(node.nlink);
                out.u32(target.len() as u32);
                out.extend_from_slice(target);
                if extended {
                    out.u32(xattr);
                }
            }
            Kind::BlockDev(dev) | Kind::CharDev(dev) => {
                header.put(
                    &mut out,
                    if extended {
                        basic.extended()
                    } else {
                        basic.basic()
                    },
                );
                out.u32(node.nlink);
                out.u32(*dev);
                if extended {
                    out.u32(xattr);
                }
            }
            Kind::Fifo | Kind::Socket => {
                header.put(
                    &mut out,
                    if extended {
                        basic.extended()
                    } else {
                        basic.basic()
                    },
                );
                out.u32(node.nlink);
                if extended {
                    out.u32(xattr);
                }
            }
            Kind::Dir(_) | Kind::Link(_) => {
                unreachable!("leaf() is called on inodes that are not directories")
            }
        }
        self.inodes.write(self.compressor, &out)?;
        self.references[id as usize] = Some(reference);
        Ok(reference)
    }
}

fn basic_type_of(kind: &Kind) -> InodeType {
    match kind {
        Kind::Dir(_) => InodeType::Dir,
        Kind::File(_) => InodeType::File,
        Kind::Symlink(_) => InodeType::Symlink,
        Kind::BlockDev(_) => InodeType::BlockDev,
        Kind::CharDev(_) => InodeType::CharDev,
        Kind::Fifo => InodeType::Fifo,
        Kind::Socket => InodeType::Socket,
        // Directory entries resolve links first.
        Kind::Link(_) => InodeType::File,
    }
}

fn basic_type(kind: &Kind) -> u16 {
    basic_type_of(kind).basic()
}

/// Why the tables could not be built.
#[derive(Debug)]
pub(crate) enum TableError {
    /// The compressor failed.
    Compress(io::Error),
    /// A format limit was reached.
    TooLarge(&'static str),
}

impl From<io::Error> for TableError {
    fn from(e: io::Error) -> Self {
        Self::Compress(e)
    }
}

fn too_large(problem: &'static str) -> TableError {
    TableError::TooLarge(problem)
}

/// The xattr key/value metadata and the xattr id entries (one per set,
/// same order). A value seen before and longer than a reference is
/// stored out of line: a reference to its first copy.
pub(crate) fn xattr_tables(
    sets: &[Vec<Xattr>],
    compressor: &mut Compressor,
) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let mut kv = Table::default();
    let mut ids = Vec::with_capacity(sets.len() * 16);
    let mut values: HashMap<&[u8], u64> = HashMap::new();
    for set in sets {
        let start = kv.position();
        let mut size = 0u32;
        for x in set {
            let mut key = Vec::with_capacity(8 + x.name.len());
            let out_of_line = if x.value.len() > 8 {
                values.get(&x.value[..]).copied()
            } else {
                None
            };
            key.u16(x.prefix | if out_of_line.is_some() { 0x0100 } else { 0 });
            key.u16(x.name.len() as u16);
            key.extend_from_slice(&x.name);
            kv.write(compressor, &key)?;
            let value_at = kv.position();
            let mut value = Vec::with_capacity(4 + x.value.len());
            match out_of_line {
                Some(reference) => {
                    value.u32(8);
                    value.u64(reference);
                }
                None => {
                    value.u32(x.value.len() as u32);
                    value.extend_from_slice(&x.value);
                    values.entry(&x.value[..]).or_insert(value_at.reference());
                }
            }
            kv.write(compressor, &value)?;
            size = size.saturating_add((key.len() + value.len()) as u32);
        }
        ids.u64(start.reference());
        ids.u32(set.len() as u32);
        ids.u32(size);
    }
    Ok((kv.finish(compressor)?.0, ids))
}
