//! Walking a finished root, in a fixed order, without following links;
//! and the tree manifest: one line per entry with everything an image
//! keeps (type, mode, owner, mtime, size, content digest, link target,
//! device numbers, xattrs, hard-link identity), whose digest names the tree.
//!
//! The order is depth-first, each directory's entries sorted bytewise, a
//! directory before its contents. The manifest digest is what the
//! reproducibility tests compare, and the manifest lines are what they
//! diff when two trees differ.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, SFlag};
use sha2::{Digest, Sha256};

use super::error::Error;
use super::sys;
use super::target::{Target, file_type, list_dir, open_nofollow};

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Regular file.
    File,
    /// Directory.
    Directory,
    /// Symbolic link.
    Symlink,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Named pipe.
    Fifo,
    /// Socket.
    Socket,
}

impl Kind {
    fn of(st: &FileStat) -> Self {
        match file_type(st) {
            SFlag::S_IFDIR => Self::Directory,
            SFlag::S_IFLNK => Self::Symlink,
            SFlag::S_IFCHR => Self::CharDevice,
            SFlag::S_IFBLK => Self::BlockDevice,
            SFlag::S_IFIFO => Self::Fifo,
            SFlag::S_IFSOCK => Self::Socket,
            _ => Self::File,
        }
    }

    fn letter(self) -> char {
        match self {
            Self::File => 'f',
            Self::Directory => 'd',
            Self::Symlink => 'l',
            Self::CharDevice => 'c',
            Self::BlockDevice => 'b',
            Self::Fifo => 'p',
            Self::Socket => 's',
        }
    }
}

/// One entry met by [`walk`].
#[derive(Debug)]
pub struct Entry<'a> {
    /// Path relative to the root (empty for the root itself).
    pub path: &'a Path,
    /// The directory holding it (the root's own descriptor for the root).
    pub dir: BorrowedFd<'a>,
    /// Its name in `dir` (`.` for the root).
    pub name: &'a OsStr,
    /// `lstat` of it.
    pub stat: FileStat,
    /// What it is.
    pub kind: Kind,
    /// A symlink's target.
    pub link: Option<OsString>,
    /// Extended attributes (files and directories), sorted by name.
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// For the second and later names of a hard-linked file: the first.
    pub hard_link_of: Option<PathBuf>,
    /// A regular file, opened for reading (the first name of its inode).
    pub file: Option<File>,
}

/// Visits every entry of `target` in the fixed order (see the module
/// documentation). Sockets are visited too; images usually skip them.
pub fn walk(
    target: &Target,
    visit: &mut dyn FnMut(Entry<'_>) -> Result<(), Error>,
) -> Result<(), Error> {
    walk_with(target, true, visit)
}

/// [`walk`] with `contents` false: no file is opened, no xattr read
/// (`file` and `xattrs` stay empty), for passes over metadata only.
pub fn walk_with(
    target: &Target,
    contents: bool,
    visit: &mut dyn FnMut(Entry<'_>) -> Result<(), Error>,
) -> Result<(), Error> {
    let root = open_nofollow(
        &target.fd(),
        OsStr::new("."),
        OFlag::O_DIRECTORY | OFlag::O_RDONLY,
    )
    .map_err(|e| target.error("walking", Path::new("/"), e))?;
    let mut links = HashMap::new();
    let stat = nix::sys::stat::fstat(&root)
        .map_err(|e| target.error("walking", Path::new("/"), e.into()))?;
    let xattrs = sys::fxattrs(root.as_fd())
        .map_err(|e| target.error("reading xattrs of", Path::new("/"), e))?;
    visit(Entry {
        path: Path::new(""),
        dir: root.as_fd(),
        name: OsStr::new("."),
        stat,
        kind: Kind::Directory,
        link: None,
        xattrs,
        hard_link_of: None,
        file: None,
    })?;
    walk_dir(
        target,
        contents,
        &root,
        &mut PathBuf::new(),
        &mut links,
        visit,
    )
}

fn walk_dir(
    target: &Target,
    contents: bool,
    dir: &OwnedFd,
    path: &mut PathBuf,
    links: &mut HashMap<(u64, u64), PathBuf>,
    visit: &mut dyn FnMut(Entry<'_>) -> Result<(), Error>,
) -> Result<(), Error> {
    let names = list_dir(dir).map_err(|e| target.error("listing", path.as_path(), e))?;
    for name in names {
        path.push(&name);
        let fail = |e: io::Error, path: &Path| target.error("reading", path, e);
        let stat = nix::sys::stat::fstatat(dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| fail(e.into(), path))?;
        let kind = Kind::of(&stat);
        let mut entry = Entry {
            path: path.as_path(),
            dir: dir.as_fd(),
            name: &name,
            stat,
            kind,
            link: None,
            xattrs: Vec::new(),
            hard_link_of: None,
            file: None,
        };
        let mut subdir = None;
        match kind {
            Kind::File => {
                let key = (stat.st_dev, stat.st_ino);
                if stat.st_nlink > 1
                    && let Some(first) = links.get(&key)
                {
                    entry.hard_link_of = Some(first.clone());
                } else {
                    if stat.st_nlink > 1 {
                        links.insert(key, path.clone());
                    }
                    let fd =
                        open_nofollow(dir, &name, OFlag::O_RDONLY).map_err(|e| fail(e, path))?;
                    entry.xattrs = sys::fxattrs(fd.as_fd()).map_err(|e| fail(e, path))?;
                    entry.file = Some(File::from(fd));
                }
            }
            Kind::Directory => {
                let fd = open_nofollow(dir, &name, OFlag::O_DIRECTORY | OFlag::O_RDONLY)
                    .map_err(|e| fail(e, path))?;
                if contents {
                    entry.xattrs = sys::fxattrs(fd.as_fd()).map_err(|e| fail(e, path))?;
                }
                subdir = Some(fd);
            }
            Kind::Symlink => {
                entry.link = Some(
                    nix::fcntl::readlinkat(dir, name.as_os_str())
                        .map_err(|e| fail(e.into(), path))?,
                );
            }
            _ => {}
        }
        visit(entry)?;
        if let Some(sub) = subdir {
            walk_dir(target, contents, &sub, path, links, visit)?;
        }
        path.pop();
    }
    Ok(())
}

/// The manifest of a tree: its lines and their digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// One line per entry, in walk order.
    pub lines: Vec<String>,
    /// SHA-256 of the lines, each ending in a newline (hex).
    pub digest: String,
}

impl Manifest {
    /// The manifest of `target`.
    pub fn of(target: &Target) -> Result<Self, Error> {
        let mut lines = Vec::new();
        let mut buf = vec![0u8; 256 << 10];
        walk(target, &mut |mut entry| {
            let line = manifest_line(&mut entry, &mut buf)
                .map_err(|e| target.error("hashing", entry.path, e))?;
            lines.push(line);
            Ok(())
        })?;
        let mut hasher = Sha256::new();
        for line in &lines {
            hasher.update(line.as_bytes());
            hasher.update(b"\n");
        }
        Ok(Self {
            lines,
            digest: hex::encode(hasher.finalize()),
        })
    }

    /// The paths whose lines differ between two manifests (added, removed
    /// or changed), with both lines, in path order.
    pub fn diff<'a>(&'a self, other: &'a Self) -> Vec<(Option<&'a str>, Option<&'a str>)> {
        let index = |m: &'a Self| -> HashMap<&'a str, &'a str> {
            m.lines.iter().map(|l| (line_path(l), l.as_str())).collect()
        };
        let (a, b) = (index(self), index(other));
        let mut paths: Vec<&str> = a.keys().chain(b.keys()).copied().collect();
        paths.sort_unstable();
        paths.dedup();
        paths
            .into_iter()
            .filter_map(|p| {
                let (x, y) = (a.get(p).copied(), b.get(p).copied());
                (x != y).then_some((x, y))
            })
            .collect()
    }
}

/// The path field of a manifest line (the first, tab-separated).
fn line_path(line: &str) -> &str {
    line.split('\t').next().unwrap_or("")
}

fn manifest_line(entry: &mut Entry<'_>, buf: &mut [u8]) -> io::Result<String> {
    let st = &entry.stat;
    let path = escape(entry.path.as_os_str().as_bytes());
    let mut line = format!(
        "/{path}\t{}\t{:o}\t{}:{}\t{}",
        entry.kind.letter(),
        st.st_mode & 0o7777,
        st.st_uid,
        st.st_gid,
        st.st_mtime
    );
    match entry.kind {
        Kind::File => {
            if let Some(first) = &entry.hard_link_of {
                let _ = write!(line, "\thardlink=/{}", escape(first.as_os_str().as_bytes()));
            } else if let Some(file) = entry.file.as_mut() {
                let mut hasher = Sha256::new();
                loop {
                    let n = file.read(buf)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                }
                let _ = write!(
                    line,
                    "\t{}\tsha256={}",
                    st.st_size,
                    hex::encode(hasher.finalize())
                );
            }
        }
        Kind::Symlink => {
            let target = entry.link.as_deref().unwrap_or_default();
            let _ = write!(line, "\t-> {}", escape(target.as_bytes()));
        }
        Kind::CharDevice | Kind::BlockDevice => {
            let _ = write!(
                line,
                "\t{},{}",
                nix::sys::stat::major(st.st_rdev),
                nix::sys::stat::minor(st.st_rdev)
            );
        }
        _ => {}
    }
    for (name, value) in &entry.xattrs {
        let _ = write!(line, "\txattr:{name}={}", hex::encode(value));
    }
    Ok(line)
}

/// Bytes as text: printable ASCII kept, the rest (and `\`, tab) escaped.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'\\' || b == b' ' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}
