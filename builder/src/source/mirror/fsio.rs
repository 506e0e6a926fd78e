//! File operations that keep the mirror consistent after a crash: every
//! file appears complete or not at all (temporary name, fsync, rename),
//! and directory entries are synced before anything points at them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::Error;

pub(crate) fn read_error(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Read {
        path: path.to_owned(),
        source,
    }
}

pub(crate) fn write_error(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Write {
        path: path.to_owned(),
        source,
    }
}

/// A name for a temporary file or directory: unique per process and call.
pub(crate) fn temp_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}{}-{n}-{nanos:08x}", std::process::id())
}

/// Writes `path` atomically with `mode`, replacing an older file.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    let dir = parent(path);
    let temp = dir.join(temp_name(".tmp-"));
    let written = write_new(&temp, contents, mode);
    let renamed = written.and_then(|()| fs::rename(&temp, path).map_err(write_error(path)));
    if renamed.is_err() {
        let _ = fs::remove_file(&temp);
    }
    renamed?;
    sync_dir(dir)
}

/// Creates `path` (which must not exist) with `contents`, synced.
pub(crate) fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(write_error(path))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(write_error(path))
}

/// The directory holding `path` (`.` for a bare name).
pub(crate) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Makes the entries of a directory durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(write_error(dir))
}

/// Creates a directory and its missing parents, syncing each new entry.
pub(crate) fn create_dirs(dir: &Path) -> Result<(), Error> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dirs(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => sync_dir(parent(dir)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(write_error(dir)(e)),
    }
}

/// Reads a whole file of at most `limit` bytes (metadata files are small;
/// a huge one is damage or an attack).
pub(crate) fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, Error> {
    let file = File::open(path).map_err(read_error(path))?;
    let mut out = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(read_error(path))?;
    if out.len() as u64 > limit {
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes"),
        );
        return Err(read_error(path)(e));
    }
    Ok(out)
}

/// SHA-256 and length of everything `reader` yields.
pub(crate) fn hash_reader(mut reader: impl Read) -> io::Result<(u64, [u8; 32])> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, hasher.finalize().into()))
}

/// SHA-256 and length of a file.
pub(crate) fn hash_file(path: &Path) -> Result<(u64, [u8; 32]), Error> {
    let file = File::open(path).map_err(read_error(path))?;
    hash_reader(file).map_err(read_error(path))
}

/// Removes a temporary tree, logging (not failing) when it cannot.
pub(crate) fn remove_tree(path: &PathBuf) {
    if let Err(e) = fs::remove_dir_all(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "could not remove temporary directory");
    }
}
