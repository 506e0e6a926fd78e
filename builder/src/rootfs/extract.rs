//! Safe extraction of one package's data archive into the target root.
//!
//! What dpkg's unpack does to the filesystem, minus what only an upgrade
//! needs: entries land with their modes (setuid bits included, applied
//! after the owner), numeric owners, mtimes, hard links, device nodes,
//! fifos and extended attributes (file capabilities). Conffiles are written
//! as `NAME.dpkg-new`, as dpkg does, so that `dpkg --configure` installs
//! them itself and records their digests; and also as `NAME`, where
//! debootstrap's and mmdebstrap's first extraction puts them.
//!
//! Safety: entry names with `..` or a leading `/` are refused; symlinks are
//! created after every other entry of their package (dpkg's own defence);
//! parents are resolved inside the root (see [`super::target`]), so a
//! symlink already in the tree cannot carry an entry out of it. Paths that
//! only stay inside because of that clamping are reported (a well-formed
//! package never relies on it).
//!
//! Several packages are extracted at once into the same root. Directories
//! shared between them are created by whichever gets there first; their
//! final owner and mode are settled afterwards, deterministically, by the
//! installer. Temporary names plus `rename` make each non-directory entry
//! appear whole.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags};

use super::error::{EntryProblem, Error};
use super::sys;
use super::target::{self, Target, file_type, open_nofollow};
use crate::source::DebFile;
use crate::source::deb::{DataEntry, EntryHeader, EntryKind};

/// Owner and permissions of a directory as a package ships it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirMeta {
    /// Permission bits (with setgid/sticky).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// What one entry put into the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    /// A directory; `created` when this extraction made it (rather than
    /// finding it, or a symlink to a directory, already there).
    Directory {
        /// As shipped.
        meta: DirMeta,
        /// Made by this extraction.
        created: bool,
    },
    /// Anything else (file, link, node).
    Other,
}

/// One entry of a package, as placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedEntry {
    /// The normalised path relative to the root (empty for `./`).
    pub path: PathBuf,
    /// What it is.
    pub placed: Placed,
}

/// The result of extracting one package.
#[derive(Debug, Clone, Default)]
pub struct Extracted {
    /// Every entry, in archive order (dpkg's `.list` order).
    pub entries: Vec<PlacedEntry>,
    /// Entries whose parent is only inside the root because resolution
    /// was confined to it (an absolute or climbing symlink on the way).
    pub redirected: Vec<PathBuf>,
    /// Bytes of file data written.
    pub bytes: u64,
    /// `md5sums` as dpkg generates it for a package that ships none
    /// (every regular file and hard link, archive order); only when asked.
    pub md5sums: Option<Vec<u8>>,
}

/// Normalises an archive entry name (`./usr/bin/x`, `usr/bin/x/`) to a
/// root-relative path; refuses `..` and absolute names.
pub fn entry_path(raw: &Path) -> Result<PathBuf, EntryProblem> {
    let bytes = raw.as_os_str().as_bytes();
    if bytes.starts_with(b"/") {
        return Err(EntryProblem::AbsolutePath);
    }
    let mut out = PathBuf::new();
    for part in bytes.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(EntryProblem::ParentComponent),
            name => out.push(OsStr::from_bytes(name)),
        }
    }
    Ok(out)
}

/// The path as dpkg's `.list` files and `conffiles` write it: `/usr/bin/x`,
/// and `/.` for the root.
pub fn listed_path(rel: &Path) -> Vec<u8> {
    if rel.as_os_str().is_empty() {
        return b"/.".to_vec();
    }
    let mut out = b"/".to_vec();
    out.extend_from_slice(rel.as_os_str().as_bytes());
    out
}

/// Extracts a package's data archive into `target`.
///
/// `conffiles` holds the package's conffile paths as listed (`/etc/x`);
/// those regular files are written as `NAME.dpkg-new`. With `only`, just
/// those paths are (re)written, the rest of the archive skipped. With
/// `md5sums`, the digests dpkg would record are computed on the way.
pub fn extract<R: Read>(
    target: &Target,
    deb: DebFile<R>,
    package: &str,
    conffiles: &HashSet<Vec<u8>>,
    only: Option<&HashSet<PathBuf>>,
    md5sums: bool,
) -> Result<Extracted, Error> {
    let read_error = |e| Error::Package {
        package: package.to_owned(),
        source: Box::new(e),
    };
    let mut data = deb.data().map_err(read_error)?;
    let mut out = Extracted::default();
    let mut writer = Writer {
        target,
        package,
        parents: HashMap::new(),
        buffer: vec![0u8; 256 << 10],
        digests: md5sums.then(Vec::new),
    };
    // Symlinks wait for the end of the archive, as dpkg does: no entry of
    // a package can then be placed through a link the same package ships.
    let mut deferred: Vec<(PathBuf, EntryHeader)> = Vec::new();
    for entry in data.entries().map_err(read_error)? {
        let mut entry = entry.map_err(read_error)?;
        let header = entry.header.clone();
        let rel = entry_path(&header.path).map_err(|p| refused(package, &header, p))?;
        if only.is_some_and(|only| !only.contains(&rel)) {
            continue;
        }
        if header.kind == EntryKind::Symlink {
            deferred.push((rel, header));
            continue;
        }
        let conffile = header.kind == EntryKind::File && conffiles.contains(&listed_path(&rel));
        let placed = writer
            .place(&rel, &header, Some(&mut entry), conffile, &mut out)
            .map_err(|e| failure(package, &header, e))?;
        out.entries.push(PlacedEntry { path: rel, placed });
    }
    for (rel, header) in deferred {
        let placed = writer
            .place::<R>(&rel, &header, None, false, &mut out)
            .map_err(|e| failure(package, &header, e))?;
        out.entries.push(PlacedEntry { path: rel, placed });
    }
    data.finish().map_err(read_error)?;
    out.md5sums = writer.digests.map(|digests| {
        let mut text = Vec::new();
        for (path, digest) in digests {
            text.extend_from_slice(hex::encode(digest).as_bytes());
            text.extend_from_slice(b"  ");
            text.extend_from_slice(path.as_os_str().as_bytes());
            text.push(b'\n');
        }
        text
    });
    Ok(out)
}

fn refused(package: &str, header: &EntryHeader, problem: EntryProblem) -> Error {
    Error::UnsafeEntry {
        package: package.to_owned(),
        entry: header.path.clone(),
        problem,
    }
}

fn failure(package: &str, header: &EntryHeader, failure: Failure) -> Error {
    match failure {
        Failure::Io(source) => Error::Extract {
            package: package.to_owned(),
            entry: header.path.clone(),
            source,
        },
        Failure::Refused(problem) => refused(package, header, problem),
    }
}

/// Why placing an entry failed.
enum Failure {
    Io(io::Error),
    Refused(EntryProblem),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<Errno> for Failure {
    fn from(e: Errno) -> Self {
        Self::Io(e.into())
    }
}

struct Writer<'a> {
    target: &'a Target,
    package: &'a str,
    /// Open parent directories by path: entries come grouped by directory.
    parents: HashMap<PathBuf, OwnedFd>,
    buffer: Vec<u8>,
    /// MD5 of each regular file and hard link, when generating md5sums.
    digests: Option<Vec<(PathBuf, [u8; 16])>>,
}

impl Writer<'_> {
    fn parent(&mut self, rel: &Path, out: &mut Extracted) -> Result<(), Failure> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        if self.parents.contains_key(parent) {
            return Ok(());
        }
        let fd = self.target.dir(parent).map_err(|e| {
            if target::is_absent(&e) {
                Failure::Refused(EntryProblem::MissingParent)
            } else {
                Failure::Io(e)
            }
        })?;
        if !parent.as_os_str().is_empty() && !self.target.resolves_beneath(parent) {
            tracing::warn!(
                package = self.package,
                path = %rel.display(),
                "entry reached through a symlink that leads out of the tree; kept inside the root"
            );
            out.redirected.push(rel.to_owned());
        }
        self.parents.insert(parent.to_owned(), fd);
        Ok(())
    }

    /// Forgets cached parents at or under `rel` (it was just replaced).
    fn invalidate(&mut self, rel: &Path) {
        if self.parents.keys().any(|p| p.starts_with(rel)) {
            self.parents.retain(|p, _| !p.starts_with(rel));
        }
    }

    /// Places one entry; `data` is the entry's reader (files need it;
    /// deferred symlinks come without one).
    fn place<R: Read>(
        &mut self,
        rel: &Path,
        header: &EntryHeader,
        data: Option<&mut DataEntry<'_, R>>,
        conffile: bool,
        out: &mut Extracted,
    ) -> Result<Placed, Failure> {
        let header = header.clone();
        if rel.as_os_str().is_empty() {
            // `./`: the root itself, which exists. dpkg lists it as `/.`.
            return Ok(Placed::Directory {
                meta: dir_meta(&header),
                created: false,
            });
        }
        if !header.xattrs.is_empty()
            && !matches!(header.kind, EntryKind::File | EntryKind::Directory)
        {
            return Err(Failure::Refused(EntryProblem::UnsupportedXattr(
                header.xattrs[0].0.clone(),
            )));
        }
        self.parent(rel, out)?;
        let parent_path = rel.parent().unwrap_or(Path::new("")).to_owned();
        let name = rel.file_name().unwrap_or_default().to_owned();
        let dir = self
            .parents
            .get(&parent_path)
            .map(|fd| fd.try_clone())
            .transpose()?
            .ok_or_else(|| Failure::Io(io::Error::other("parent vanished")))?;
        if header.kind == EntryKind::Directory {
            return self.directory(&dir, rel, &name, &header);
        }
        let final_name = if conffile {
            let mut n = name.clone();
            n.push(".dpkg-new");
            n
        } else {
            name.clone()
        };
        match header.kind {
            EntryKind::File => {
                let entry =
                    data.ok_or_else(|| Failure::Io(io::Error::other("file without data")))?;
                let (tmp, mut file) = target::create_temp(&dir)?;
                let result = self.fill(&mut file, entry, out).and_then(|digest| {
                    if let (Some(digests), Some(d)) = (self.digests.as_mut(), digest) {
                        digests.push((rel.to_owned(), d));
                    }
                    finish_file(&file, &header)
                });
                install(&dir, &tmp, &final_name, result)?;
                if conffile {
                    // Also in place, as debootstrap's and mmdebstrap's
                    // first extraction leaves it: maintainer scripts that
                    // run before the owner is configured read it there
                    // (passwd's postinst needs login's /etc/login.defs).
                    // dpkg finds it identical to the .dpkg-new copy and
                    // installs that without a question.
                    let (tmp, mut copy) = target::create_temp(&dir)?;
                    let result = open_nofollow(&dir, &final_name, OFlag::O_RDONLY)
                        .and_then(|fd| io::copy(&mut File::from(fd), &mut copy))
                        .and_then(|_| finish_file(&copy, &header));
                    install(&dir, &tmp, &name, result)?;
                }
            }
            EntryKind::Symlink => {
                let link = header
                    .link
                    .as_ref()
                    .ok_or(Failure::Refused(EntryProblem::MissingLinkTarget))?;
                let tmp = target::temp_name();
                nix::unistd::symlinkat(link.as_path(), &dir, tmp.as_os_str())?;
                let result = owner_and_time_at(&dir, &tmp, &header);
                install(&dir, &tmp, &final_name, result)?;
            }
            EntryKind::HardLink => {
                self.hard_link(&dir, &final_name, &header)?;
                if let Some(digests) = self.digests.as_mut() {
                    // dpkg lists a hard link with its target's digest.
                    let source = header.link.as_deref().and_then(|l| entry_path(l).ok());
                    if let Some(d) = digests
                        .iter()
                        .find(|(p, _)| Some(p) == source.as_ref())
                        .map(|(_, d)| *d)
                    {
                        digests.push((rel.to_owned(), d));
                    }
                }
            }
            EntryKind::CharDevice | EntryKind::BlockDevice | EntryKind::Fifo => {
                let tmp = target::temp_name();
                let (kind, dev) = match (header.kind, header.device) {
                    (EntryKind::CharDevice, Some((ma, mi))) => (SFlag::S_IFCHR, (ma, mi)),
                    (EntryKind::BlockDevice, Some((ma, mi))) => (SFlag::S_IFBLK, (ma, mi)),
                    _ => (SFlag::S_IFIFO, (0, 0)),
                };
                let dev = nix::sys::stat::makedev(u64::from(dev.0), u64::from(dev.1));
                nix::sys::stat::mknodat(&dir, tmp.as_os_str(), kind, Mode::empty(), dev)?;
                let result = owner_and_time_at(&dir, &tmp, &header).and_then(|()| {
                    // A node we just made, not a link: following is safe.
                    nix::sys::stat::fchmodat(
                        &dir,
                        tmp.as_os_str(),
                        Mode::from_bits_truncate(header.mode & 0o7777),
                        nix::sys::stat::FchmodatFlags::FollowSymlink,
                    )
                    .map_err(io::Error::from)
                });
                install(&dir, &tmp, &final_name, result)?;
            }
            EntryKind::Other(flag) => {
                return Err(Failure::Refused(EntryProblem::UnsupportedType(char::from(
                    flag,
                ))));
            }
            EntryKind::Directory => unreachable!("handled above"),
        }
        self.invalidate(rel);
        Ok(Placed::Other)
    }

    fn directory(
        &mut self,
        dir: &OwnedFd,
        rel: &Path,
        name: &OsStr,
        header: &EntryHeader,
    ) -> Result<Placed, Failure> {
        let meta = dir_meta(header);
        match nix::sys::stat::mkdirat(dir, name, Mode::from_bits_truncate(0o700)) {
            Ok(()) => {
                let fd = open_nofollow(dir, name, OFlag::O_DIRECTORY | OFlag::O_RDONLY)?;
                nix::unistd::fchown(
                    &fd,
                    Some(Uid::from_raw(meta.uid)),
                    Some(Gid::from_raw(meta.gid)),
                )?;
                nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(meta.mode))?;
                for (key, value) in &header.xattrs {
                    sys::fsetxattr(fd.as_fd(), key, value)?;
                }
                Ok(Placed::Directory {
                    meta,
                    created: true,
                })
            }
            Err(Errno::EEXIST) => {
                let st = nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
                let kind = file_type(&st);
                // dpkg keeps a symlink to a directory where a package ships
                // a directory: that is how merged /usr's /bin stays a link.
                let is_dir = kind == SFlag::S_IFDIR
                    || (kind == SFlag::S_IFLNK && self.target.dir(rel).is_ok());
                if !is_dir {
                    return Err(Failure::Io(io::Error::from_raw_os_error(libc::ENOTDIR)));
                }
                Ok(Placed::Directory {
                    meta,
                    created: false,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Copies the entry's data into `file`; its MD5 when generating md5sums.
    fn fill<R: Read>(
        &mut self,
        file: &mut File,
        entry: &mut DataEntry<'_, R>,
        out: &mut Extracted,
    ) -> io::Result<Option<[u8; 16]>> {
        let mut md5 = self.digests.is_some().then(Md5::new);
        loop {
            let n = match entry.read(&mut self.buffer) {
                Ok(0) => return Ok(md5.map(|m| m.finalize().into())),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            file.write_all(&self.buffer[..n])?;
            if let Some(m) = md5.as_mut() {
                m.update(&self.buffer[..n]);
            }
            out.bytes += n as u64;
        }
    }

    fn hard_link(
        &mut self,
        dir: &OwnedFd,
        final_name: &OsStr,
        header: &EntryHeader,
    ) -> Result<(), Failure> {
        let link = header
            .link
            .as_ref()
            .ok_or(Failure::Refused(EntryProblem::MissingLinkTarget))?;
        let source = entry_path(link)
            .map_err(|_| Failure::Refused(EntryProblem::UnsafeLinkTarget(link.clone())))?;
        let (source_dir, source_name) = self.target.parent(&source)?;
        loop {
            match nix::unistd::linkat(
                &source_dir,
                source_name.as_os_str(),
                dir,
                final_name,
                AtFlags::empty(),
            ) {
                Ok(()) => return link_metadata(dir, final_name, header),
                Err(Errno::EEXIST) => {
                    let st =
                        nix::sys::stat::fstatat(dir, final_name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
                    if file_type(&st) == SFlag::S_IFDIR {
                        return Err(Failure::Io(io::Error::from_raw_os_error(libc::EISDIR)));
                    }
                    match nix::unistd::unlinkat(dir, final_name, UnlinkatFlags::NoRemoveDir) {
                        Ok(()) | Err(Errno::ENOENT) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn dir_meta(header: &EntryHeader) -> DirMeta {
    DirMeta {
        mode: header.mode & 0o7777,
        uid: u32::try_from(header.uid).unwrap_or(u32::MAX),
        gid: u32::try_from(header.gid).unwrap_or(u32::MAX),
    }
}

fn ids(header: &EntryHeader) -> (Uid, Gid) {
    (
        Uid::from_raw(u32::try_from(header.uid).unwrap_or(u32::MAX)),
        Gid::from_raw(u32::try_from(header.gid).unwrap_or(u32::MAX)),
    )
}

fn mtime(header: &EntryHeader) -> TimeSpec {
    TimeSpec::new(i64::try_from(header.mtime).unwrap_or(i64::MAX), 0)
}

/// Owner, then mode (chown clears setuid bits), xattrs, mtime.
fn finish_file(file: &File, header: &EntryHeader) -> io::Result<()> {
    let (uid, gid) = ids(header);
    nix::unistd::fchown(file.as_fd(), Some(uid), Some(gid))?;
    nix::sys::stat::fchmod(file.as_fd(), Mode::from_bits_truncate(header.mode & 0o7777))?;
    for (key, value) in &header.xattrs {
        sys::fsetxattr(file.as_fd(), key, value)?;
    }
    let t = mtime(header);
    nix::sys::stat::futimens(file.as_fd(), &t, &t)?;
    Ok(())
}

fn owner_and_time_at(dir: &OwnedFd, name: &OsStr, header: &EntryHeader) -> io::Result<()> {
    let (uid, gid) = ids(header);
    nix::unistd::fchownat(
        dir,
        name,
        Some(uid),
        Some(gid),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    let t = mtime(header);
    nix::sys::stat::utimensat(dir, name, &t, &t, UtimensatFlags::NoFollowSymlink)?;
    Ok(())
}

/// dpkg applies a hard-link entry's owner, mode and mtime to the inode it
/// shares (so the last link's header wins); a link to a symlink keeps the
/// symlink's own (chmod would follow it).
fn link_metadata(dir: &OwnedFd, name: &OsStr, header: &EntryHeader) -> Result<(), Failure> {
    let st = nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    if file_type(&st) == SFlag::S_IFLNK {
        return Ok(());
    }
    owner_and_time_at(dir, name, header)?;
    nix::sys::stat::fchmodat(
        dir,
        name,
        Mode::from_bits_truncate(header.mode & 0o7777),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )?;
    Ok(())
}

/// Renames the finished temporary entry into place, or removes it.
fn install(dir: &OwnedFd, tmp: &OsStr, name: &OsStr, ready: io::Result<()>) -> io::Result<()> {
    let result = ready.and_then(|()| {
        nix::fcntl::renameat(dir, tmp, dir, name).map_err(|e| match e {
            // Over a directory: say so plainly.
            Errno::EISDIR | Errno::ENOTEMPTY | Errno::EEXIST => {
                io::Error::new(io::ErrorKind::AlreadyExists, "a directory is in the way")
            }
            e => e.into(),
        })
    });
    if result.is_err() {
        let _ = nix::unistd::unlinkat(dir, tmp, UnlinkatFlags::NoRemoveDir);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_normalised_or_refused() {
        let ok = |s: &str| entry_path(Path::new(s)).unwrap();
        assert_eq!(ok("./usr/bin/x"), PathBuf::from("usr/bin/x"));
        assert_eq!(ok("./usr//share/./doc/"), PathBuf::from("usr/share/doc"));
        assert_eq!(ok("./"), PathBuf::new());
        assert_eq!(ok("etc/x"), PathBuf::from("etc/x"));
        let bad = |s: &str| entry_path(Path::new(s)).unwrap_err();
        assert_eq!(bad("./../etc/passwd"), EntryProblem::ParentComponent);
        assert_eq!(bad("./usr/../../x"), EntryProblem::ParentComponent);
        assert_eq!(bad("/etc/passwd"), EntryProblem::AbsolutePath);
    }

    #[test]
    fn listed_paths_are_dpkgs() {
        assert_eq!(listed_path(Path::new("")), b"/.");
        assert_eq!(listed_path(Path::new("usr/bin")), b"/usr/bin");
    }
}
