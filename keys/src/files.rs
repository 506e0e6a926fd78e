//! Reading and writing the files this crate owns, safely.
//!
//! Reads are bounded (a key or signature file is small; a huge one is an
//! attack or a mistake). Writes go to a temporary file in the same
//! directory, are synced, then moved into place, so a reader never sees half
//! a file. Secret files are created with mode 0600 from the first byte and
//! are never overwritten.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::{Error, Item};

/// Mode of files anyone may read (public keys, signatures, trust files).
pub const PUBLIC_MODE: u32 = 0o644;
/// Mode of secret key files.
pub const SECRET_MODE: u32 = 0o600;

/// Read a whole file of at most `limit` bytes.
pub fn read_limited(path: &Path, what: Item, limit: u64) -> Result<Vec<u8>, Error> {
    let file = File::open(path).map_err(|source| read_error(path, source))?;
    let mut bytes = Vec::new();
    read_bounded(file, path, what, limit, &mut bytes)?;
    Ok(bytes)
}

/// Read a secret file: it must be a regular file that neither group nor
/// others can access (checked on the open file, so it cannot be swapped
/// between the check and the read). The bytes are wiped when dropped.
pub fn read_secret(path: &Path, what: Item, limit: u64) -> Result<Zeroizing<Vec<u8>>, Error> {
    let file = File::open(path).map_err(|source| read_error(path, source))?;
    let meta = file.metadata().map_err(|source| read_error(path, source))?;
    if meta.file_type().is_file() {
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(Error::TooOpen {
                path: path.to_owned(),
                what,
                mode,
            });
        }
    } else if what == Item::SecretKey {
        // A passphrase may come from a pipe (`--passphrase-file /dev/stdin`);
        // a key is always a file.
        return Err(Error::NotAFile {
            path: path.to_owned(),
            what,
        });
    }
    let mut bytes = Zeroizing::new(Vec::new());
    read_bounded(file, path, what, limit, &mut bytes)?;
    Ok(bytes)
}

fn read_bounded(
    file: File,
    path: &Path,
    what: Item,
    limit: u64,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    // Reserve up front so a secret is never copied around by Vec growth.
    out.reserve(usize::try_from(limit.min(1 << 20)).unwrap_or(0) + 1);
    file.take(limit + 1)
        .read_to_end(out)
        .map_err(|source| read_error(path, source))?;
    if out.len() as u64 > limit {
        return Err(Error::TooLarge { what, limit }.in_file(path));
    }
    Ok(())
}

fn read_error(path: &Path, source: io::Error) -> Error {
    Error::Read {
        path: path.to_owned(),
        source,
    }
}

fn write_error(path: &Path, source: io::Error) -> Error {
    Error::Write {
        path: path.to_owned(),
        source,
    }
}

/// Create `path` with `contents`, refusing if it already exists. The file
/// appears complete or not at all, with `mode` from its first byte.
pub fn create_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    if fs::symlink_metadata(path).is_ok() {
        return Err(Error::AlreadyExists {
            path: path.to_owned(),
        });
    }
    let temp = write_temp(path, contents, mode)?;
    // link() never replaces an existing name, so a file created by someone
    // else since the check above is left alone.
    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => sync_parent(path),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Err(Error::AlreadyExists {
            path: path.to_owned(),
        }),
        Err(source) => Err(write_error(path, source)),
    }
}

/// Write `path` atomically, replacing any previous file.
pub fn replace(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    let temp = write_temp(path, contents, mode)?;
    if let Err(source) = fs::rename(&temp, path) {
        let _ = fs::remove_file(&temp);
        return Err(write_error(path, source));
    }
    sync_parent(path)
}

/// Write a fresh temporary file next to `path` (O_EXCL, `mode`), synced.
fn write_temp(path: &Path, contents: &[u8], mode: u32) -> Result<PathBuf, Error> {
    let name = path
        .file_name()
        .ok_or_else(|| write_error(path, io::Error::other("path has no file name")))?;
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).map_err(Error::Random)?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", hex::encode(suffix)));
    let temp = path.with_file_name(temp_name);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temp)
        .map_err(|source| write_error(&temp, source))?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    if let Err(source) = written {
        drop(file);
        let _ = fs::remove_file(&temp);
        return Err(write_error(&temp, source));
    }
    Ok(temp)
}

/// Make a new directory entry durable.
fn sync_parent(path: &Path) -> Result<(), Error> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(|source| write_error(parent, source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn create_new_refuses_to_overwrite_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.key");
        create_new(&path, b"one", SECRET_MODE).unwrap();
        let err = create_new(&path, b"two", SECRET_MODE).unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn replace_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.minisig");
        replace(&path, b"one", PUBLIC_MODE).unwrap();
        replace(&path, b"two", PUBLIC_MODE).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn read_limited_refuses_big_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        fs::write(&path, vec![b'x'; 101]).unwrap();
        let err = read_limited(&path, Item::Signature, 100).unwrap_err();
        assert!(
            matches!(err.innermost(), Error::TooLarge { limit: 100, .. }),
            "{err}"
        );
        assert_eq!(
            read_limited(&path, Item::Signature, 101).unwrap().len(),
            101
        );
    }
}
