//! The target root: every file operation of the rootfs stages goes through
//! here, resolved *inside* the root.
//!
//! The tree under construction is hostile territory: packages and their
//! maintainer scripts plant symlinks (`/etc/foo -> /host/file`, `var/lib ->
//! ../../..`). Paths are therefore never joined onto the root path and
//! handed to `std::fs`. Parent directories are opened with `openat2(2)` and
//! `RESOLVE_IN_ROOT`, which follows symlinks the way the kernel would if
//! the root were `/` (absolute targets start at the root, `..` stops at
//! it), and the last component is then handled with `*at` calls that do
//! not follow links.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;

use super::error::Error;

/// Resolution inside the root; magic links (/proc/self/...) never.
fn in_root() -> ResolveFlag {
    ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

/// A directory treated as `/`.
#[derive(Debug)]
pub struct Target {
    path: PathBuf,
    fd: OwnedFd,
}

impl Target {
    /// Opens an existing directory as a target root.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::target("opening", path, "/", e.into()))?;
        Ok(Self {
            path: path.to_owned(),
            fd,
        })
    }

    /// The root's path on the host (for messages and for tools that run
    /// inside the sandbox; never for file operations).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root directory's descriptor (`O_PATH`).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// An error about `rel` in this target.
    pub fn error(&self, operation: &'static str, rel: &Path, source: io::Error) -> Error {
        Error::target(operation, &self.path, rel, source)
    }

    /// Opens directory `rel` (following in-root symlinks) as an `O_PATH`
    /// descriptor, for `*at` calls.
    pub fn dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(in_root());
        Ok(nix::fcntl::openat2(self.fd.as_fd(), rel, how)?)
    }

    /// Whether `rel` would resolve without leaving the root even if
    /// symlinks were followed the host's way (`RESOLVE_BENEATH`): false
    /// when the path relies on an absolute symlink or a `..` that climbs
    /// out, which [`Target::dir`] contained.
    pub fn resolves_beneath(&self, rel: &Path) -> bool {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        nix::fcntl::openat2(self.fd.as_fd(), rel, how).is_ok()
    }

    /// Splits `rel` into (parent directory descriptor, last component).
    pub fn parent(&self, rel: &Path) -> io::Result<(OwnedFd, OsString)> {
        let (parent, name) = split(rel)?;
        Ok((self.dir(parent)?, name.to_owned()))
    }

    /// `lstat` of `rel` (the last component not followed); `None` if absent.
    pub fn lstat(&self, rel: &Path) -> Result<Option<FileStat>, Error> {
        let result = self.parent(rel).and_then(|(dir, name)| {
            Ok(nix::sys::stat::fstatat(
                &dir,
                name.as_os_str(),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?)
        });
        match result {
            Ok(st) => Ok(Some(st)),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(self.error("inspecting", rel, e)),
        }
    }

    /// Creates directory `rel` and its missing parents with `mode` (exact,
    /// whatever the umask), owned by root.
    pub fn create_dir_all(&self, rel: &Path, mode: u32) -> Result<(), Error> {
        let mut so_far = PathBuf::new();
        for component in rel.components() {
            let Component::Normal(name) = component else {
                continue;
            };
            let parent = self
                .dir(&so_far)
                .map_err(|e| self.error("creating", rel, e))?;
            so_far.push(name);
            match nix::sys::stat::mkdirat(&parent, name, Mode::from_bits_truncate(0o700)) {
                Ok(()) => {
                    let dir = open_nofollow(&parent, name, OFlag::O_DIRECTORY | OFlag::O_RDONLY)
                        .map_err(|e| self.error("creating", &so_far, e))?;
                    nix::sys::stat::fchmod(&dir, Mode::from_bits_truncate(mode))
                        .map_err(|e| self.error("creating", &so_far, e.into()))?;
                }
                Err(Errno::EEXIST) => {}
                Err(e) => return Err(self.error("creating", &so_far, e.into())),
            }
        }
        Ok(())
    }

    /// Writes `data` to `rel` with `mode`, owned by root, replacing what
    /// was there (a file or a symlink, never followed) atomically.
    pub fn write_file(&self, rel: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
        let result = (|| {
            let (dir, name) = self.parent(rel)?;
            let (tmp, mut file) = create_temp(&dir)?;
            let written = file
                .write_all(data)
                .and_then(|()| {
                    nix::sys::stat::fchmod(file.as_fd(), Mode::from_bits_truncate(mode))
                        .map_err(io::Error::from)
                })
                .and_then(|()| {
                    nix::fcntl::renameat(&dir, tmp.as_os_str(), &dir, name.as_os_str())
                        .map_err(io::Error::from)
                });
            if written.is_err() {
                let _ = nix::unistd::unlinkat(&dir, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
            }
            written
        })();
        result.map_err(|e| self.error("writing", rel, e))
    }

    /// Reads regular file `rel`; `None` if absent. A symlink as the last
    /// component is not followed (reading it is an error).
    pub fn read_file(&self, rel: &Path) -> Result<Option<Vec<u8>>, Error> {
        let result = self.parent(rel).and_then(|(dir, name)| {
            let fd = open_nofollow(&dir, &name, OFlag::O_RDONLY)?;
            let mut data = Vec::new();
            File::from(fd).read_to_end(&mut data)?;
            Ok(data)
        });
        match result {
            Ok(data) => Ok(Some(data)),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(self.error("reading", rel, e)),
        }
    }

    /// Creates (or replaces) a symlink `rel` pointing to `target`.
    pub fn symlink(&self, rel: &Path, target: &Path) -> Result<(), Error> {
        let result = (|| {
            let (dir, name) = self.parent(rel)?;
            match nix::sys::stat::fstatat(&dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) if file_type(&st) == SFlag::S_IFDIR => {
                    return Err(io::Error::from_raw_os_error(libc::EISDIR));
                }
                Ok(_) => {
                    nix::unistd::unlinkat(&dir, name.as_os_str(), UnlinkatFlags::NoRemoveDir)?;
                }
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
            nix::unistd::symlinkat(target, &dir, name.as_os_str())?;
            Ok(())
        })();
        result.map_err(|e| self.error("linking", rel, e))
    }

    /// Removes `rel`: a file, link or node is unlinked, a directory removed
    /// with its contents (links inside are removed, never followed).
    /// Returns whether something was there.
    pub fn remove(&self, rel: &Path) -> Result<bool, Error> {
        let result = self
            .parent(rel)
            .and_then(|(dir, name)| remove_at(&dir, &name));
        match result {
            Ok(()) => Ok(true),
            Err(e) if is_absent(&e) => Ok(false),
            Err(e) => Err(self.error("removing", rel, e)),
        }
    }

    /// Removes everything inside directory `rel`, keeping the directory.
    pub fn empty_dir(&self, rel: &Path) -> Result<(), Error> {
        let result = self.dir(rel).and_then(|dir| {
            for name in list_dir(&dir)? {
                remove_at(&dir, &name)?;
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(()),
            Err(e) if is_absent(&e) => Ok(()),
            Err(e) => Err(self.error("emptying", rel, e)),
        }
    }

    /// The names in directory `rel`, sorted; empty if it does not exist.
    pub fn list(&self, rel: &Path) -> Result<Vec<OsString>, Error> {
        match self.dir(rel).and_then(|dir| list_dir(&dir)) {
            Ok(names) => Ok(names),
            Err(e) if is_absent(&e) => Ok(Vec::new()),
            Err(e) => Err(self.error("listing", rel, e)),
        }
    }
}

/// Whether an error means "not there" (or "a non-directory on the way").
pub fn is_absent(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR))
}

/// The type bits of a stat result.
pub fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Splits a relative path into parent and last component; refuses empty
/// paths and `..`/root components (callers pass normalised paths).
pub fn split(rel: &Path) -> io::Result<(&Path, &OsStr)> {
    let invalid = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a normalised relative path",
        )
    };
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(invalid());
    }
    let name = rel.file_name().ok_or_else(invalid)?;
    Ok((rel.parent().unwrap_or(Path::new("")), name))
}

/// Opens `name` in `dir` without following a symlink there.
pub fn open_nofollow(dir: &impl AsFd, name: &OsStr, flags: OFlag) -> io::Result<OwnedFd> {
    Ok(nix::fcntl::openat(
        dir,
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Creates a new, empty, mode-0600 file with a unique name in `dir`.
pub fn create_temp(dir: &impl AsFd) -> io::Result<(OsString, File)> {
    loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = OsString::from(format!(".ironrack-{}-{n:x}", std::process::id()));
        match nix::fcntl::openat(
            dir,
            name.as_os_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        ) {
            Ok(fd) => return Ok((name, File::from(fd))),
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A unique name for a new directory entry in `dir` (links, nodes).
pub fn temp_name() -> OsString {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    OsString::from(format!(".ironrack-{}-{n:x}", std::process::id()))
}

/// The names in an open directory (not `.`/`..`), sorted bytewise.
pub fn list_dir(dir: &impl AsFd) -> io::Result<Vec<OsString>> {
    let fd = nix::fcntl::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut d = nix::dir::Dir::from_fd(fd)?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name.to_vec()));
        }
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Removes `name` in `dir`, recursively for directories, following nothing.
pub fn remove_at(dir: &impl AsFd, name: &OsStr) -> io::Result<()> {
    let st = nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    if file_type(&st) == SFlag::S_IFDIR {
        let sub = open_nofollow(dir, name, OFlag::O_DIRECTORY | OFlag::O_RDONLY)?;
        for child in list_dir(&sub)? {
            remove_at(&sub, &child)?;
        }
        nix::unistd::unlinkat(dir, name, UnlinkatFlags::RemoveDir)?;
    } else {
        nix::unistd::unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)?;
    }
    Ok(())
}
