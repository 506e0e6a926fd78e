//! The shared pool: verified files go in once and never change.

use std::fs;
use std::path::Path;

use super::error::Error;
use super::snapshot::check_digest;
use super::{Mirror, fsio};

/// Whether the pool already holds `filename` with this content. A file
/// there with other content is a conflict: the pool is immutable.
pub(crate) fn holds(
    mirror: &Mirror,
    filename: &str,
    size: u64,
    sha256: &[u8; 32],
) -> Result<bool, Error> {
    let path = mirror.root().join(filename);
    if !path.exists() {
        return Ok(false);
    }
    let (actual_size, actual) = fsio::hash_file(&path)?;
    if (actual_size, actual) == (size, *sha256) {
        return Ok(true);
    }
    Err(Error::PoolConflict {
        path,
        existing: hex::encode(actual),
        wanted: hex::encode(sha256),
    })
}

/// Moves the verified temporary file `src` (same filesystem) to
/// `filename` in the pool, read-only, synced. If the pool already holds
/// the same content, `src` is removed instead.
pub(crate) fn insert(
    mirror: &Mirror,
    src: &Path,
    filename: &str,
    size: u64,
    sha256: &[u8; 32],
) -> Result<(), Error> {
    // Checked once more here: this is the last step before the file is
    // shared by snapshots.
    check_digest(
        &format!("pool file {filename}"),
        src,
        size,
        sha256,
        fsio::hash_file(src)?,
    )?;
    if holds(mirror, filename, size, sha256)? {
        let _ = fs::remove_file(src);
        return Ok(());
    }
    let dest = mirror.root().join(filename);
    let dir = dest.parent().unwrap_or(mirror.root());
    fsio::create_dirs(dir)?;
    let file = fs::File::open(src).map_err(fsio::read_error(src))?;
    file.sync_all().map_err(fsio::write_error(src))?;
    let mut perms = file
        .metadata()
        .map_err(fsio::read_error(src))?
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o444);
    fs::set_permissions(src, perms).map_err(fsio::write_error(src))?;
    // link(2) never replaces: a file that appeared meanwhile is kept.
    match fs::hard_link(src, &dest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            holds(mirror, filename, size, sha256)?;
        }
        Err(e) => return Err(fsio::write_error(&dest)(e)),
    }
    let _ = fs::remove_file(src);
    fsio::sync_dir(dir)
}
