//! Paths inside an image root, resolved the way the image will see them:
//! symlinks are followed relative to the root (absolute targets restart at
//! the root, `..` never climbs above it), like `openat2(RESOLVE_IN_ROOT)`.
//! Bookworm's merged /usr (`/lib -> usr/lib`, `/bin -> usr/bin`) is the
//! everyday case; a link pointing at the host's `/` is the hostile one.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed in one lookup before giving up (Linux's limit).
const MAX_LINKS: usize = 40;

/// An image root directory on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRoot {
    root: PathBuf,
}

impl ImageRoot {
    /// The image tree at `root` (a host directory).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The host directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Resolves `path` (as the image names it: absolute or relative to the
    /// image's `/`) to `(host path, image path)`, following every symlink
    /// including the last component. A missing component is an error of
    /// kind `NotFound`; a symlink loop `FilesystemLoop`-like (`Other`).
    pub fn resolve(&self, path: &Path) -> io::Result<(PathBuf, PathBuf)> {
        self.resolve_inner(path, true)
    }

    /// Like [`ImageRoot::resolve`] but leaves a final symlink unresolved
    /// (its parent directories are still resolved).
    pub fn resolve_parent(&self, path: &Path) -> io::Result<(PathBuf, PathBuf)> {
        self.resolve_inner(path, false)
    }

    fn resolve_inner(&self, path: &Path, follow_last: bool) -> io::Result<(PathBuf, PathBuf)> {
        let mut pending: VecDeque<OsString> = components(path);
        let mut done: Vec<OsString> = Vec::new();
        let mut links = 0;
        while let Some(name) = pending.pop_front() {
            if name == ".." {
                done.pop();
                continue;
            }
            let image_path = image_path(&done).join(&name);
            let host = self.host(&image_path);
            let meta = std::fs::symlink_metadata(&host)?;
            let last = pending.is_empty();
            if meta.file_type().is_symlink() && (follow_last || !last) {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::other(format!(
                        "too many levels of symbolic links resolving {} in {}",
                        path.display(),
                        self.root.display()
                    )));
                }
                let target = std::fs::read_link(&host)?;
                if target.is_absolute() {
                    done.clear();
                }
                for (i, part) in components(&target).into_iter().enumerate() {
                    pending.insert(i, part);
                }
                continue;
            }
            if !last && !meta.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", image_path.display()),
                ));
            }
            done.push(name);
        }
        let image = image_path(&done);
        Ok((self.host(&image), image))
    }

    /// The host path of an already resolved image path.
    fn host(&self, image: &Path) -> PathBuf {
        self.root.join(image.strip_prefix("/").unwrap_or(image))
    }

    /// Whether `path` resolves to an existing file (symlinks followed).
    pub fn exists(&self, path: &Path) -> bool {
        self.resolve(path).is_ok()
    }
}

/// `path`'s normal components and `..`, dropping `/` and `.`.
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

fn image_path(parts: &[OsString]) -> PathBuf {
    let mut path = PathBuf::from("/");
    path.extend(parts);
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn merged_usr_and_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/lib/x86_64-linux-gnu")).unwrap();
        std::fs::write(root.join("usr/lib/x86_64-linux-gnu/libc.so.6"), b"").unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        symlink(
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            root.join("usr/lib/abs"),
        )
        .unwrap();
        symlink("../../../../../../etc", root.join("usr/lib/escape")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        let image = ImageRoot::new(root);
        let (host, path) = image
            .resolve(Path::new("/lib/x86_64-linux-gnu/libc.so.6"))
            .unwrap();
        assert_eq!(path, Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6"));
        assert_eq!(host, root.join("usr/lib/x86_64-linux-gnu/libc.so.6"));
        assert_eq!(
            image.resolve(Path::new("lib/abs")).unwrap().1,
            Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6")
        );
        // `..` above the root stays at the root: /etc of the image, absent.
        let err = image.resolve(Path::new("/lib/escape/passwd")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(image.resolve(Path::new("/loop")).is_err());
        assert_eq!(
            image.resolve_parent(Path::new("/lib/abs")).unwrap().1,
            Path::new("/usr/lib/abs")
        );
    }
}
