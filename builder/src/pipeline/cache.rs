//! The stage cache: `CACHE/rootfs/KEY/` holds a finished build's images,
//! tree manifest and report; `CACHE/modules/KEY/` the NVIDIA modules
//! compiled for one driver, kernel and build set (kept apart, so a build
//! that changes only the image around them does not compile them again);
//! `CACHE/tmp/` holds builds in progress; an
//! exclusive lock on `CACHE/lock` keeps builds sharing a cache apart.
//!
//! An entry appears by renaming a complete directory into place, so a
//! killed build never leaves a half entry; the next build (holding the
//! lock, hence alone) empties `tmp/`.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

use super::Error;

fn io_error<'a>(
    operation: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        operation,
        path: path.to_owned(),
        source,
    }
}

/// The exclusive build lock of a cache directory, held while it lives.
#[derive(Debug)]
pub struct CacheLock {
    _lock: Flock<File>,
}

impl CacheLock {
    /// Takes the lock (waiting for another build to finish), then removes
    /// what killed builds left in `tmp/`.
    pub fn acquire(cache: &Path) -> Result<Self, Error> {
        fs::create_dir_all(cache).map_err(io_error("creating", cache))?;
        let path = cache.join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error("opening", &path))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| Error::Io {
            operation: "locking",
            path: path.clone(),
            source: errno.into(),
        })?;
        let tmp = cache.join("tmp");
        if tmp.exists() {
            for entry in fs::read_dir(&tmp).map_err(io_error("listing", &tmp))? {
                let entry = entry.map_err(io_error("listing", &tmp))?;
                tracing::info!(path = %entry.path().display(), "removing what an unfinished build left");
                remove_tree(&entry.path())?;
            }
        }
        Ok(Self { _lock: lock })
    }
}

/// `CACHE/rootfs/KEY`.
pub fn entry_dir(cache: &Path, key: &str) -> PathBuf {
    cache.join("rootfs").join(key)
}

/// `CACHE/modules/KEY`: NVIDIA modules built for one set of module inputs.
pub fn modules_entry_dir(cache: &Path, key: &str) -> PathBuf {
    cache.join("modules").join(key)
}

/// A fresh work directory for a build of `key`.
pub fn work_dir(cache: &Path, key: &str) -> Result<PathBuf, Error> {
    let dir = cache
        .join("tmp")
        .join(format!("{key}.{}", std::process::id()));
    fs::create_dir_all(&dir).map_err(io_error("creating", &dir))?;
    Ok(dir)
}

/// Removes a work directory (a root tree among it).
pub fn remove_work_dir(dir: &Path) -> Result<(), Error> {
    remove_tree(dir)
}

fn remove_tree(path: &Path) -> Result<(), Error> {
    // std's remove_dir_all does not follow symlinks (it works with
    // openat/unlinkat), so a hostile tree cannot make it delete outside.
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path).map_err(io_error("removing", path)),
        Ok(_) => fs::remove_file(path).map_err(io_error("removing", path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("removing", path)(e)),
    }
}

/// Moves a finished `artifacts` directory into the cache as `entry`.
pub fn commit_entry(artifacts: &Path, entry: &Path) -> Result<(), Error> {
    let parent = entry.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io_error("creating", parent))?;
    if entry.exists() {
        // Made by an earlier build with the same key: identical content.
        return Ok(());
    }
    fs::rename(artifacts, entry).map_err(io_error("caching", entry))
}

/// SHA-256 (hex) of an open file, from its start, leaving it at its end.
pub fn sha256_of(mut file: &File) -> std::io::Result<String> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A digest of an overlay tree as the build uses it: names, kinds, the
/// executable bit, file contents and link targets, in sorted order.
pub fn overlay_digest(dir: &Path) -> Result<String, Error> {
    let mut hasher = Sha256::new();
    digest_dir(dir, Path::new(""), &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

fn digest_dir(base: &Path, rel: &Path, hasher: &mut Sha256) -> Result<(), Error> {
    let dir = base.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(io_error("reading the overlay", &dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io_error("reading the overlay", &dir))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let rel = rel.join(&name);
        let path = base.join(&rel);
        let meta = fs::symlink_metadata(&path).map_err(io_error("reading the overlay", &path))?;
        hasher.update(rel.as_os_str().as_bytes());
        hasher.update([0]);
        if meta.is_dir() {
            hasher.update(b"d\0");
            digest_dir(base, &rel, hasher)?;
        } else if meta.file_type().is_symlink() {
            let link = fs::read_link(&path).map_err(io_error("reading the overlay", &path))?;
            hasher.update(b"l\0");
            hasher.update(link.as_os_str().as_bytes());
            hasher.update([0]);
        } else {
            let exec = meta.permissions().mode() & 0o111 != 0;
            hasher.update(if exec { b"x\0" } else { b"f\0" });
            let file = File::open(&path).map_err(io_error("reading the overlay", &path))?;
            hasher.update(
                sha256_of(&file)
                    .map_err(io_error("reading the overlay", &path))?
                    .as_bytes(),
            );
            hasher.update([0]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_digest_sees_content_names_links_and_the_exec_bit_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("etc")).unwrap();
        fs::write(root.join("etc/motd"), "hi\n").unwrap();
        std::os::unix::fs::symlink("motd", root.join("etc/link")).unwrap();
        let base = overlay_digest(root).unwrap();
        fs::set_permissions(root.join("etc/motd"), fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            overlay_digest(root).unwrap(),
            base,
            "modes other than x do not count"
        );
        fs::set_permissions(root.join("etc/motd"), fs::Permissions::from_mode(0o700)).unwrap();
        assert_ne!(overlay_digest(root).unwrap(), base);
        fs::set_permissions(root.join("etc/motd"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(root.join("etc/motd"), "ho\n").unwrap();
        assert_ne!(overlay_digest(root).unwrap(), base);
    }

    #[test]
    fn a_second_build_clears_what_a_killed_one_left() {
        let dir = tempfile::tempdir().unwrap();
        let stale = work_dir(dir.path(), "k").unwrap();
        fs::write(stale.join("half"), "x").unwrap();
        let lock = CacheLock::acquire(dir.path()).unwrap();
        assert!(!stale.exists());
        drop(lock);
    }
}
