//! A deterministic tar of a finished root (`rootfs.tar`, for inspection).
//!
//! Entries in [`crate::rootfs::tree`]'s walk order (a directory before its
//! contents, names sorted bytewise), named `./path` as mmdebstrap's tars
//! are; numeric owners only (no user or group names: they would be the
//! build host's idea of them); mtimes as stored (the tree has been
//! clamped); hard links as links to the first name. POSIX ustar headers,
//! with a PAX extended header only when an entry needs one: a name or link
//! target that does not fit, a size or id too large for the octal fields,
//! or extended attributes (`SCHILY.xattr.NAME`, as GNU tar writes them; file
//! capabilities travel this way). Sockets cannot be archived and are
//! skipped, as GNU tar does.

use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use indicatif::ProgressBar;
use sha2::{Digest, Sha256};

use crate::rootfs::error::Error;
use crate::rootfs::target::Target;
use crate::rootfs::tree::{self, Entry, Kind};

const BLOCK: usize = 512;

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarSummary {
    /// Entries archived.
    pub entries: u64,
    /// Bytes of the archive.
    pub bytes: u64,
    /// SHA-256 of the archive (hex).
    pub sha256: String,
}

/// Writes the tar of `target` to `out`. `progress` counts archive bytes.
/// `name` names the output in errors.
pub fn write(
    target: &Target,
    out: &mut dyn Write,
    name: &Path,
    progress: &ProgressBar,
) -> Result<TarSummary, Error> {
    let mut sink = Sink {
        out,
        hasher: Sha256::new(),
        bytes: 0,
        progress,
    };
    let mut entries = 0;
    let mut buffer = vec![0u8; 256 << 10];
    let image_error = |source| Error::Image {
        path: name.to_owned(),
        source,
    };
    tree::walk(target, &mut |entry| {
        if entry.kind == Kind::Socket {
            tracing::warn!(path = %entry.path.display(), "socket not archived");
            return Ok(());
        }
        entries += 1;
        write_entry(&mut sink, entry, &mut buffer).map_err(image_error)
    })?;
    sink.write_all(&[0u8; 2 * BLOCK]).map_err(image_error)?;
    sink.out.flush().map_err(image_error)?;
    Ok(TarSummary {
        entries,
        bytes: sink.bytes,
        sha256: hex::encode(sink.hasher.finalize()),
    })
}

/// Counts, hashes and reports what goes out.
struct Sink<'a> {
    out: &'a mut dyn Write,
    hasher: Sha256,
    bytes: u64,
    progress: &'a ProgressBar,
}

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        self.progress.inc(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The fields of one entry's header, before PAX fallbacks.
struct Fields {
    name: Vec<u8>,
    link: Vec<u8>,
    flag: u8,
    size: u64,
    device: (u64, u64),
}

fn fields_of(entry: &Entry<'_>) -> Fields {
    let mut name = b"./".to_vec();
    name.extend_from_slice(entry.path.as_os_str().as_bytes());
    let st = &entry.stat;
    let mut fields = Fields {
        name,
        link: Vec::new(),
        flag: b'0',
        size: 0,
        device: (0, 0),
    };
    match entry.kind {
        Kind::Directory => {
            if !entry.path.as_os_str().is_empty() {
                fields.name.push(b'/');
            }
            fields.flag = b'5';
        }
        Kind::Symlink => {
            fields.flag = b'2';
            fields.link = entry
                .link
                .as_deref()
                .map(|l| l.as_bytes().to_vec())
                .unwrap_or_default();
        }
        Kind::File => match &entry.hard_link_of {
            Some(first) => {
                fields.flag = b'1';
                fields.link = b"./".to_vec();
                fields.link.extend_from_slice(first.as_os_str().as_bytes());
            }
            None => fields.size = u64::try_from(st.st_size).unwrap_or(0),
        },
        Kind::CharDevice | Kind::BlockDevice => {
            fields.flag = if entry.kind == Kind::CharDevice {
                b'3'
            } else {
                b'4'
            };
            fields.device = (
                nix::sys::stat::major(st.st_rdev),
                nix::sys::stat::minor(st.st_rdev),
            );
        }
        Kind::Fifo => fields.flag = b'6',
        Kind::Socket => {}
    }
    fields
}

fn write_entry(out: &mut Sink<'_>, mut entry: Entry<'_>, buffer: &mut [u8]) -> io::Result<()> {
    let fields = fields_of(&entry);
    let st = entry.stat;
    let (uid, gid) = (u64::from(st.st_uid), u64::from(st.st_gid));
    let mtime = u64::try_from(st.st_mtime).unwrap_or(0);
    let mut pax = Vec::new();
    let split = split_name(&fields.name);
    if split.is_none() {
        pax.extend(record("path", &fields.name));
    }
    if fields.link.len() > 100 {
        pax.extend(record("linkpath", &fields.link));
    }
    const OCTAL_11: u64 = 0o77777777777;
    const OCTAL_7: u64 = 0o7777777;
    if fields.size > OCTAL_11 {
        pax.extend(record("size", fields.size.to_string().as_bytes()));
    }
    if uid > OCTAL_7 {
        pax.extend(record("uid", uid.to_string().as_bytes()));
    }
    if gid > OCTAL_7 {
        pax.extend(record("gid", gid.to_string().as_bytes()));
    }
    for (name, value) in &entry.xattrs {
        pax.extend(record(&format!("SCHILY.xattr.{name}"), value));
    }
    if !pax.is_empty() {
        let base = entry
            .path
            .file_name()
            .map(|n| n.as_bytes())
            .unwrap_or(b"root");
        let mut pax_name = b"./PaxHeaders/".to_vec();
        pax_name.extend_from_slice(&base[..base.len().min(100 - pax_name.len())]);
        let header = Header {
            name: (&[][..], &pax_name[..]),
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: pax.len() as u64,
            mtime,
            flag: b'x',
            link: b"",
            device: (0, 0),
        };
        out.write_all(&header.encode())?;
        write_padded(out, &pax)?;
    }
    let (prefix, name) = split.unwrap_or((&[][..], truncated(&fields.name, 100)));
    let header = Header {
        name: (prefix, name),
        mode: st.st_mode & 0o7777,
        uid: uid.min(OCTAL_7),
        gid: gid.min(OCTAL_7),
        size: fields.size.min(OCTAL_11),
        mtime: mtime.min(OCTAL_11),
        flag: fields.flag,
        link: truncated(&fields.link, 100),
        device: fields.device,
    };
    out.write_all(&header.encode())?;
    if fields.flag == b'0'
        && let Some(file) = entry.file.as_mut()
    {
        copy_exact(file, out, fields.size, buffer)?;
        let pad = (BLOCK - (fields.size % BLOCK as u64) as usize) % BLOCK;
        out.write_all(&[0u8; BLOCK][..pad])?;
    }
    Ok(())
}

/// Copies exactly `size` bytes (the size the header promised): a file
/// that changed size under us is an error, not a corrupt archive.
fn copy_exact(
    file: &mut impl Read,
    out: &mut impl Write,
    size: u64,
    buffer: &mut [u8],
) -> io::Result<()> {
    let mut left = size;
    while left > 0 {
        let want = buffer
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = file.read(&mut buffer[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while archived",
            ));
        }
        out.write_all(&buffer[..n])?;
        left -= n as u64;
    }
    Ok(())
}

fn truncated(bytes: &[u8], max: usize) -> &[u8] {
    &bytes[..bytes.len().min(max)]
}

/// Splits a name into ustar's prefix (≤155) and name (≤100) at a `/`, or
/// `None` when it cannot be stored without PAX.
fn split_name(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= 100 {
        return Some((&[], name));
    }
    // The name part must be non-empty; a trailing `/` (directories) stays
    // with it.
    let search_end = name.len() - 1;
    (0..search_end)
        .rev()
        .filter(|&i| name[i] == b'/')
        .find(|&i| i <= 155 && name.len() - i - 1 <= 100 && i > 0)
        .map(|i| (&name[..i], &name[i + 1..]))
}

/// A PAX record `LEN KEY=VALUE\n`, LEN counting itself.
fn record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + body.to_string().len();
    if len.to_string().len() + body != len {
        len += 1;
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

struct Header<'a> {
    name: (&'a [u8], &'a [u8]),
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    flag: u8,
    link: &'a [u8],
    device: (u64, u64),
}

impl Header<'_> {
    fn encode(&self) -> [u8; BLOCK] {
        let mut h = [0u8; BLOCK];
        let (prefix, name) = self.name;
        h[..name.len()].copy_from_slice(name);
        octal(&mut h[100..108], u64::from(self.mode));
        octal(&mut h[108..116], self.uid);
        octal(&mut h[116..124], self.gid);
        octal(&mut h[124..136], self.size);
        octal(&mut h[136..148], self.mtime);
        h[156] = self.flag;
        h[157..157 + self.link.len()].copy_from_slice(self.link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        if matches!(self.flag, b'3' | b'4') {
            octal(&mut h[329..337], self.device.0);
            octal(&mut h[337..345], self.device.1);
        }
        h[345..345 + prefix.len()].copy_from_slice(prefix);
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        octal(&mut h[148..155], u64::from(sum));
        h
    }
}

/// Zero-padded octal filling the field but its last byte (NUL); callers
/// clamp values to what fits.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    let text = &text.as_bytes()[text.len().saturating_sub(digits)..];
    field[..digits].copy_from_slice(text);
    field[digits] = 0;
}

fn write_padded(out: &mut impl Write, data: &[u8]) -> io::Result<()> {
    out.write_all(data)?;
    let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
    out.write_all(&[0u8; BLOCK][..pad])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_split_at_a_slash_or_need_pax() {
        let short = b"./usr/bin/x";
        assert_eq!(split_name(short), Some((&[][..], &short[..])));
        let dir = format!("./{}/{}", "a".repeat(120), "b".repeat(50));
        let (prefix, name) = split_name(dir.as_bytes()).unwrap();
        assert_eq!(prefix.len(), 122);
        assert_eq!(name, "b".repeat(50).as_bytes());
        let long_last = format!("./{}", "c".repeat(120));
        assert_eq!(split_name(long_last.as_bytes()), None);
    }

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(record("path", b"abc"), b"12 path=abc\n");
        let r = record("k", &[b'v'; 95]);
        assert_eq!(r.len(), 102);
        assert!(r.starts_with(b"102 k="));
    }
}
