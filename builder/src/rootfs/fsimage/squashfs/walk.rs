//! The source tree, read once: every entry's metadata, link target,
//! device number and extended attributes, in SquashFS's order (children
//! sorted by the bytes of their names), without following symlinks.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::error::{Error, Unsupported};
use super::format::{NO_XATTR, encode_device, split_device};
use super::{Mtime, Options};

/// A node of the tree; `nodes[0]` is the root.
#[derive(Debug)]
pub(crate) struct Node {
    /// The entry's name in its directory (empty for the root).
    pub name: Box<[u8]>,
    /// Permission bits (`0o7777`), the type lives in [`Kind`].
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    /// Already clamped or fixed per [`Options::mtime`].
    pub mtime: u32,
    /// Index into [`Tree::xattr_sets`], or [`NO_XATTR`].
    pub xattrs: u32,
    /// Names in the tree that lead to this inode (hard links).
    pub nlink: u32,
    pub kind: Kind,
}

#[derive(Debug)]
pub(crate) enum Kind {
    /// Children, sorted by name.
    Dir(Vec<u32>),
    /// Index into [`Tree::files`].
    File(u32),
    Symlink(Box<[u8]>),
    /// SquashFS's 32-bit device number.
    BlockDev(u32),
    CharDev(u32),
    Fifo,
    Socket,
    /// A further name for the inode of another node (a hard link).
    Link(u32),
}

/// A regular file whose data goes into the image, in data order.
#[derive(Debug)]
pub(crate) struct Source {
    pub path: PathBuf,
    pub size: u64,
    pub dev: u64,
    pub ino: u64,
}

/// One extended attribute: SquashFS prefix id (0 user, 1 trusted,
/// 2 security), the name without its prefix, the value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Xattr {
    pub prefix: u16,
    pub name: Box<[u8]>,
    pub value: Box<[u8]>,
}

#[derive(Debug, Default)]
pub(crate) struct Tree {
    pub nodes: Vec<Node>,
    pub files: Vec<Source>,
    /// Distinct attribute sets, each sorted, in order of first use.
    pub xattr_sets: Vec<Vec<Xattr>>,
    /// Attributes left out (namespaces SquashFS cannot store).
    pub xattrs_dropped: u64,
}

impl Tree {
    /// The node holding the inode `id` names.
    pub(crate) fn inode_of(&self, id: u32) -> u32 {
        match self.nodes[id as usize].kind {
            Kind::Link(target) => target,
            _ => id,
        }
    }
}

struct Frame {
    id: u32,
    path: PathBuf,
    names: Vec<OsString>,
    next: usize,
}

/// Read the tree under `root` (which must be a directory, not a symlink).
pub(crate) fn walk(root: &Path, options: &Options) -> Result<Tree, Error> {
    let meta = fs::symlink_metadata(root).map_err(|source| read_error(root, source))?;
    if !meta.is_dir() {
        return Err(read_error(
            root,
            io::Error::from(io::ErrorKind::NotADirectory),
        ));
    }
    let mut walker = Walker {
        tree: Tree::default(),
        options,
        hard_links: HashMap::new(),
        xattr_sets: HashMap::new(),
    };
    let root_id = walker.add(root, Box::default(), &meta)?;
    let mut stack = vec![Frame {
        id: root_id,
        path: root.to_path_buf(),
        names: sorted_names(root)?,
        next: 0,
    }];
    while let Some(frame) = stack.last_mut() {
        let Some(name) = frame.names.get(frame.next).cloned() else {
            stack.pop();
            continue;
        };
        frame.next += 1;
        let (parent, path) = (frame.id, frame.path.join(&name));
        if name.len() > 256 {
            return Err(unsupported(&path, Unsupported::NameLength));
        }
        let meta = fs::symlink_metadata(&path).map_err(|source| read_error(&path, source))?;
        let id = walker.add(&path, name.as_bytes().into(), &meta)?;
        if let Kind::Dir(children) = &mut walker.tree.nodes[parent as usize].kind {
            children.push(id);
        }
        if meta.is_dir() {
            let names = sorted_names(&path)?;
            stack.push(Frame {
                id,
                path,
                names,
                next: 0,
            });
        }
    }
    Ok(walker.tree)
}

/// A directory's entry names in byte order (SquashFS requires it; the
/// kernel's lookup stops early on it).
fn sorted_names(dir: &Path) -> Result<Vec<OsString>, Error> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|source| read_error(dir, source))? {
        names.push(entry.map_err(|source| read_error(dir, source))?.file_name());
    }
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

struct Walker<'a> {
    tree: Tree,
    options: &'a Options,
    hard_links: HashMap<(u64, u64), u32>,
    xattr_sets: HashMap<Vec<Xattr>, u32>,
}

impl Walker<'_> {
    fn add(&mut self, path: &Path, name: Box<[u8]>, meta: &Metadata) -> Result<u32, Error> {
        let id = u32::try_from(self.tree.nodes.len()).map_err(|_| Error::TooLarge {
            root: path.to_owned(),
            problem: "more than 2^32 entries",
        })?;
        if !meta.is_dir() && meta.nlink() > 1 {
            if let Some(&target) = self.hard_links.get(&(meta.dev(), meta.ino())) {
                self.tree.nodes[target as usize].nlink += 1;
                self.tree.nodes.push(Node {
                    kind: Kind::Link(target),
                    ..self.node(name, meta, NO_XATTR)
                });
                return Ok(id);
            }
            self.hard_links.insert((meta.dev(), meta.ino()), id);
        }
        let kind = self.kind(path, meta)?;
        let xattrs = self.xattrs(path)?;
        self.tree.nodes.push(Node {
            kind,
            ..self.node(name, meta, xattrs)
        });
        Ok(id)
    }

    fn node(&self, name: Box<[u8]>, meta: &Metadata, xattrs: u32) -> Node {
        let mtime = match self.options.mtime {
            Mtime::Fixed(t) => t,
            Mtime::Clamp(limit) => {
                u32::try_from(meta.mtime().clamp(0, i64::from(limit))).unwrap_or(limit)
            }
        };
        Node {
            name,
            mode: (meta.mode() & 0o7777) as u16,
            uid: meta.uid(),
            gid: meta.gid(),
            mtime,
            xattrs,
            nlink: 1,
            kind: Kind::Fifo,
        }
    }

    fn kind(&mut self, path: &Path, meta: &Metadata) -> Result<Kind, Error> {
        let t = meta.file_type();
        Ok(if t.is_dir() {
            Kind::Dir(Vec::new())
        } else if t.is_file() {
            let index = self.tree.files.len() as u32;
            self.tree.files.push(Source {
                path: path.to_owned(),
                size: meta.len(),
                dev: meta.dev(),
                ino: meta.ino(),
            });
            Kind::File(index)
        } else if t.is_symlink() {
            let target = fs::read_link(path).map_err(|source| read_error(path, source))?;
            Kind::Symlink(target.as_os_str().as_bytes().into())
        } else if t.is_block_device() || t.is_char_device() {
            let (major, minor) = split_device(meta.rdev());
            let dev = encode_device(major, minor)
                .ok_or_else(|| unsupported(path, Unsupported::Device { major, minor }))?;
            if t.is_block_device() {
                Kind::BlockDev(dev)
            } else {
                Kind::CharDev(dev)
            }
        } else if t.is_fifo() {
            Kind::Fifo
        } else if t.is_socket() {
            Kind::Socket
        } else {
            return Err(unsupported(path, Unsupported::FileType));
        })
    }

    /// The entry's attribute set (deduplicated across the tree).
    fn xattrs(&mut self, path: &Path) -> Result<u32, Error> {
        let mut set = read_xattrs(
            path,
            self.options.strict_xattrs,
            &mut self.tree.xattrs_dropped,
        )?;
        if set.is_empty() {
            return Ok(NO_XATTR);
        }
        set.sort();
        let next = self.tree.xattr_sets.len() as u32;
        let index = *self.xattr_sets.entry(set).or_insert_with_key(|set| {
            self.tree.xattr_sets.push(set.clone());
            next
        });
        Ok(index)
    }
}

/// The extended attributes of `path` itself (never of a symlink's target).
fn read_xattrs(path: &Path, strict: bool, dropped: &mut u64) -> Result<Vec<Xattr>, Error> {
    let names = match query(
        || rustix::fs::llistxattr_query(path),
        |buf| rustix::fs::llistxattr(path, buf),
    ) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::OPNOTSUPP.raw_os_error()) => {
            return Ok(Vec::new());
        }
        Err(source) => return Err(read_error(path, source)),
    };
    let mut set = Vec::new();
    for full in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let value = match query(
            || rustix::fs::lgetxattr_query(path, full),
            |buf| rustix::fs::lgetxattr(path, full, buf),
        ) {
            Ok(value) => value,
            // Removed since the listing: it is not there any more.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NODATA.raw_os_error()) => {
                continue;
            }
            Err(source) => return Err(read_error(path, source)),
        };
        let name_text = String::from_utf8_lossy(full).into_owned();
        let found = [(0u16, &b"user."[..]), (1, b"trusted."), (2, b"security.")]
            .into_iter()
            .find_map(|(id, p)| full.strip_prefix(p).map(|rest| (id, rest)));
        let Some((prefix, rest)) = found else {
            if strict {
                return Err(unsupported(
                    path,
                    Unsupported::XattrNamespace { name: name_text },
                ));
            }
            // e.g. system.posix_acl_access, which systemd-tmpfiles sets on
            // /var/log/journal: the kernel's squashfs has no handler for it.
            tracing::warn!(path = %path.display(), name = %name_text, "extended attribute dropped: squashfs cannot store it");
            *dropped += 1;
            continue;
        };
        if rest.len() > usize::from(u16::MAX) || u32::try_from(value.len()).is_err() {
            return Err(unsupported(
                path,
                Unsupported::XattrSize { name: name_text },
            ));
        }
        set.push(Xattr {
            prefix,
            name: rest.into(),
            value: value.into(),
        });
    }
    Ok(set)
}

/// Call a size-then-fill xattr syscall until the buffer is big enough.
fn query(
    size: impl Fn() -> rustix::io::Result<usize>,
    mut call: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    loop {
        let size = size()?;
        if size == 0 {
            return Ok(buf);
        }
        buf.resize(size, 0);
        match call(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            // Grew between the two calls: ask again.
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn read_error(path: &Path, source: io::Error) -> Error {
    Error::Read {
        path: path.to_owned(),
        source,
    }
}

fn unsupported(path: &Path, problem: Unsupported) -> Error {
    Error::Unsupported {
        path: path.to_owned(),
        problem,
    }
}
