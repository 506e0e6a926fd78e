//! Where served files come from: the read-only [`FileSource`] trait, the
//! checked request name ([`SafeName`]) and the directory implementation.
//!
//! Confinement is done twice, on purpose. [`SafeName`] refuses `..` and
//! normalises the name before any file system call, so a refusal names the
//! reason. [`DirSource`] then opens with `openat2(RESOLVE_BENEATH)` relative
//! to a directory descriptor taken at start: the kernel refuses any
//! resolution that leaves the tree (a symlink to `/etc`, an absolute link,
//! a `..` hidden in a link target), atomically, so a symlink swapped in
//! between a check and the open cannot win a race as it could with
//! canonicalize-then-open.

use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};

/// A request's file name, checked and normalised: relative to the served
/// tree, `/`-separated, no empty, `.` or `..` components.
///
/// A leading `/` is stripped (as tftpd-hpa `-s` and dnsmasq do): clients
/// that ask for `/pxelinux.0` mean the root of the TFTP tree, never the
/// host's root. Backslashes become slashes, as dnsmasq does for Windows
/// boot loaders that ask for `boot\x64\wdsnbp.com`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SafeName(String);

/// Why a requested name is refused before touching the file system.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing left after stripping separators.
    #[error("empty file name")]
    Empty,
    /// A `..` component: path traversal.
    #[error("file name {name:?} contains a '..' component")]
    ParentComponent {
        /// The name as requested.
        name: String,
    },
    /// A control character (NUL cannot occur; the rest have no place in a
    /// boot file name and garble logs).
    #[error("file name {name:?} contains a control character")]
    ControlCharacter {
        /// The name as requested.
        name: String,
    },
}

impl SafeName {
    /// Checks and normalises a requested name.
    pub fn parse(requested: &str) -> Result<Self, NameError> {
        if requested.chars().any(char::is_control) {
            return Err(NameError::ControlCharacter {
                name: requested.to_owned(),
            });
        }
        let mut parts = Vec::new();
        for part in requested.split(['/', '\\']) {
            match part {
                "" | "." => {}
                ".." => {
                    return Err(NameError::ParentComponent {
                        name: requested.to_owned(),
                    });
                }
                part => parts.push(part),
            }
        }
        if parts.is_empty() {
            return Err(NameError::Empty);
        }
        Ok(Self(parts.join("/")))
    }

    /// The normalised name (relative, `/`-separated).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SafeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies one version of a file: when any field changes, cached bytes
/// of the file are stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size in bytes.
    pub len: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Status change time, nanoseconds since the epoch (catches a rewrite
    /// that restores the mtime).
    pub ctime_ns: i128,
}

impl FileIdentity {
    /// The identity of an open file's metadata.
    pub fn of(meta: &Metadata) -> Self {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// The content of one opened file.
#[derive(Debug)]
pub enum SourceContent {
    /// An open regular file, read block by block (or cached when small).
    File {
        /// The open file.
        file: File,
        /// Its identity, for the cache.
        identity: FileIdentity,
    },
    /// Bytes already in memory (e.g. verified by an image store).
    Bytes(Arc<[u8]>),
}

impl SourceContent {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Self::File { identity, .. } => identity.len,
            Self::Bytes(bytes) => bytes.len() as u64,
        }
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a file could not be opened for serving.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No such file in the served tree.
    #[error("{name}: no such file")]
    NotFound {
        /// The name requested.
        name: SafeName,
    },
    /// Resolution would leave the served tree (a symlink pointing out).
    #[error("{name}: resolves outside the served tree")]
    EscapesRoot {
        /// The name requested.
        name: SafeName,
    },
    /// A directory, device, FIFO or socket.
    #[error("{name}: not a regular file")]
    NotRegularFile {
        /// The name requested.
        name: SafeName,
    },
    /// The file is not world-readable; like tftpd-hpa and dnsmasq, only
    /// files anyone may read are served, so a key left in the tree by
    /// mistake stays private.
    #[error("{name}: not world-readable")]
    NotWorldReadable {
        /// The name requested.
        name: SafeName,
    },
    /// The server's own permissions forbid reading.
    #[error("{name}: permission denied")]
    PermissionDenied {
        /// The name requested.
        name: SafeName,
    },
    /// Any other failure while opening or reading.
    #[error("{name}: {source}")]
    Io {
        /// The name requested.
        name: SafeName,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A read-only tree of files to serve. Implementations must confine names
/// to their tree; the server has already refused `..` and normalised the
/// name. `open` may block (it runs on a blocking thread).
pub trait FileSource: Send + Sync + fmt::Debug {
    /// Opens `name` for reading.
    fn open(&self, name: &SafeName) -> Result<SourceContent, OpenError>;
}

/// Serves the regular, world-readable files below one directory.
///
/// The directory is opened once: replacing the directory itself (rename)
/// is not seen until a new `DirSource` is made (a reload); files inside it
/// may change at any time and the cache notices.
#[derive(Debug)]
pub struct DirSource {
    root: File,
    path: PathBuf,
}

impl DirSource {
    /// Opens the directory `root`.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc_flags(OFlag::O_DIRECTORY | OFlag::O_CLOEXEC))
            .open(root)?;
        Ok(Self {
            root: dir,
            path: root.to_owned(),
        })
    }

    /// The directory served.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl FileSource for DirSource {
    fn open(&self, name: &SafeName) -> Result<SourceContent, OpenError> {
        // O_NONBLOCK: opening a FIFO planted in the tree must not hang the
        // blocking pool; it is refused below as not a regular file.
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let fd = openat2(&self.root, name.as_str(), how).map_err(|errno| match errno {
            Errno::ENOENT | Errno::ENOTDIR => OpenError::NotFound { name: name.clone() },
            Errno::EXDEV | Errno::ELOOP => OpenError::EscapesRoot { name: name.clone() },
            Errno::EACCES | Errno::EPERM => OpenError::PermissionDenied { name: name.clone() },
            other => OpenError::Io {
                name: name.clone(),
                source: other.into(),
            },
        })?;
        let file = File::from(fd);
        let meta = file.metadata().map_err(|source| OpenError::Io {
            name: name.clone(),
            source,
        })?;
        if !meta.is_file() {
            return Err(OpenError::NotRegularFile { name: name.clone() });
        }
        if meta.mode() & 0o004 == 0 {
            return Err(OpenError::NotWorldReadable { name: name.clone() });
        }
        Ok(SourceContent::File {
            identity: FileIdentity::of(&meta),
            file,
        })
    }
}

fn libc_flags(flags: OFlag) -> i32 {
    flags.bits()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn names_are_normalised_and_confined() {
        let ok = |raw: &str| SafeName::parse(raw).map(|n| n.0);
        assert_eq!(ok("pxe/undionly.kpxe"), Ok("pxe/undionly.kpxe".into()));
        assert_eq!(ok("/pxe//./undionly.kpxe"), Ok("pxe/undionly.kpxe".into()));
        assert_eq!(
            ok("boot\\x64\\wdsnbp.com"),
            Ok("boot/x64/wdsnbp.com".into())
        );
        assert_eq!(ok("/etc/passwd"), Ok("etc/passwd".into()));
        assert_eq!(ok("a..b"), Ok("a..b".into()));
        assert_eq!(ok("/"), Err(NameError::Empty));
        assert!(matches!(ok("../x"), Err(NameError::ParentComponent { .. })));
        assert!(matches!(
            ok("a/../../x"),
            Err(NameError::ParentComponent { .. })
        ));
        assert!(matches!(
            ok("a\\..\\x"),
            Err(NameError::ParentComponent { .. })
        ));
        assert!(matches!(
            ok("a\nb"),
            Err(NameError::ControlCharacter { .. })
        ));
    }

    fn tree() -> (tempfile::TempDir, DirSource) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/file"), b"inside").unwrap();
        std::fs::write(dir.path().join("secret"), b"outside").unwrap();
        symlink("sub/file", root.join("link-in")).unwrap();
        symlink("../secret", root.join("link-out")).unwrap();
        symlink(dir.path().join("secret"), root.join("link-abs")).unwrap();
        symlink("/proc/self/root/etc/passwd", root.join("link-magic")).unwrap();
        let source = DirSource::open(&root).unwrap();
        (dir, source)
    }

    fn open(source: &DirSource, name: &str) -> Result<SourceContent, OpenError> {
        source.open(&SafeName::parse(name).unwrap())
    }

    #[test]
    fn symlinks_inside_the_tree_are_followed() {
        let (_dir, source) = tree();
        assert_eq!(open(&source, "link-in").unwrap().len(), 6);
    }

    #[test]
    fn symlinks_out_of_the_tree_are_refused() {
        let (_dir, source) = tree();
        for name in ["link-out", "link-abs", "link-magic"] {
            assert!(
                matches!(open(&source, name), Err(OpenError::EscapesRoot { .. })),
                "{name}"
            );
        }
    }

    #[test]
    fn only_world_readable_regular_files_are_served() {
        let (dir, source) = tree();
        let root = dir.path().join("root");
        std::fs::write(root.join("private"), b"key").unwrap();
        std::fs::set_permissions(root.join("private"), PermissionsExt::from_mode(0o600)).unwrap();
        assert!(matches!(
            open(&source, "private"),
            Err(OpenError::NotWorldReadable { .. })
        ));
        assert!(matches!(
            open(&source, "sub"),
            Err(OpenError::NotRegularFile { .. })
        ));
        nix::unistd::mkfifo(
            &root.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        assert!(matches!(
            open(&source, "fifo"),
            Err(OpenError::NotRegularFile { .. })
        ));
        assert!(matches!(
            open(&source, "missing"),
            Err(OpenError::NotFound { .. })
        ));
    }
}
