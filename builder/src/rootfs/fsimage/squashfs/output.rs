//! The image file: written to a temporary file beside the output, synced,
//! hashed, then renamed into place. Dropped without `commit`, it removes
//! the temporary file: an error never leaves a half-written image.

use std::fs::{self, File, Permissions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use super::error::Error;

/// The kernel reads the device in 1 or 4 KiB blocks and a loop device
/// drops a partial last sector: pad the image as mksquashfs does.
const PAD: u64 = 4096;

#[derive(Debug)]
pub(crate) struct Output {
    path: PathBuf,
    file: BufWriter<NamedTempFile>,
    position: u64,
}

impl Output {
    /// Start an image at `path`, with `reserved` zero bytes at its start
    /// (the superblock, written last).
    pub(crate) fn create(path: &Path, reserved: u64) -> Result<Self, Error> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|source| write_error(path, source))?;
        let mut output = Self {
            path: path.to_owned(),
            file: BufWriter::with_capacity(1 << 20, temp),
            position: 0,
        };
        output.write(&vec![0; reserved as usize])?;
        Ok(output)
    }

    /// The final path (for error messages).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Where the next byte goes.
    pub(crate) fn position(&self) -> u64 {
        self.position
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.file
            .write_all(bytes)
            .map_err(|e| write_error(&self.path, e))?;
        self.position += bytes.len() as u64;
        Ok(())
    }

    /// Go back to `position`: what follows will be overwritten (and the
    /// file is cut at the final position on commit).
    pub(crate) fn rewind(&mut self, position: u64) -> Result<(), Error> {
        if position != self.position {
            self.file
                .seek(SeekFrom::Start(position))
                .map_err(|e| write_error(&self.path, e))?;
            self.position = position;
        }
        Ok(())
    }

    /// Cut at the current position, pad, write `superblock` at offset 0,
    /// sync, hash, and rename into place. Returns the image's size and sha256.
    pub(crate) fn commit(mut self, superblock: &[u8]) -> Result<(u64, [u8; 32]), Error> {
        let end = self.position;
        let padded = end.div_ceil(PAD) * PAD;
        let path = self.path.clone();
        let fail = |e: io::Error| write_error(&path, e);
        self.file.flush().map_err(fail)?;
        self.file.get_ref().as_file().set_len(end).map_err(fail)?;
        self.write(&vec![0; (padded - end) as usize])?;
        self.rewind(0)?;
        self.write(superblock)?;
        let temp = self.file.into_inner().map_err(|e| fail(e.into_error()))?;
        let file = temp.as_file();
        file.set_permissions(Permissions::from_mode(0o644))
            .map_err(fail)?;
        file.sync_all().map_err(fail)?;
        let digest = hash(file).map_err(fail)?;
        temp.persist(&path).map_err(|e| fail(e.error))?;
        sync_parent(&path).map_err(fail)?;
        Ok((padded, digest))
    }
}

/// sha256 of the whole file as it is on disk (in the page cache).
fn hash(file: &File) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0;
    loop {
        let n = file.read_at(&mut buf, offset)?;
        if n == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
}

fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::File::open(parent)?.sync_all()
}

fn write_error(path: &Path, source: io::Error) -> Error {
    Error::Write {
        path: path.to_owned(),
        source,
    }
}
