//! A streaming reader of Unix `ar` archives, the container of a `.deb`.
//!
//! Layout: the global header `!<arch>\n`, then members, each a 60-byte
//! header (name 16, mtime 12, uid 6, gid 6, octal mode 8, decimal size 10,
//! terminator "`\n") followed by the data and a `\n` pad to an even offset.
//! Names may be plain (`debian-binary`, padded with spaces), GNU style
//! (`name/`, or `/N` into a `//` long-name table) or BSD style (`#1/N`, the
//! name being the first N bytes of the data). dpkg writes plain names;
//! the others are read so that a repacked .deb still opens.
//!
//! The reader only needs [`Read`]: a member's bytes are read through the
//! reader itself, so a .deb can be parsed while it downloads.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::error::{ArProblem, Error};

/// The global header of an ar archive.
pub const MAGIC: &[u8; 8] = b"!<arch>\n";
/// The size of a member header.
pub const HEADER_LEN: usize = 60;

/// The header of one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArMember {
    /// The member name, with GNU/BSD encodings resolved and padding removed.
    pub name: String,
    /// Data size in bytes (a BSD long name excluded).
    pub size: u64,
    /// Modification time (seconds since the epoch).
    pub mtime: u64,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Permission bits.
    pub mode: u32,
    /// Byte offset of the member's data in the archive.
    pub data_offset: u64,
}

/// Reads an ar archive member by member.
#[derive(Debug)]
pub struct ArReader<R> {
    inner: R,
    path: PathBuf,
    /// Bytes consumed from `inner` so far.
    offset: u64,
    /// Data bytes of the current member not yet read.
    remaining: u64,
    /// Whether the current member is followed by a pad byte.
    pad: bool,
    /// The GNU `//` long-name table, once seen.
    long_names: Vec<u8>,
}

impl<R: Read> ArReader<R> {
    /// Checks the global header. `path` names the archive in errors.
    pub fn new(mut inner: R, path: &Path) -> Result<Self, Error> {
        let mut magic = [0u8; 8];
        let got = read_full(&mut inner, &mut magic).map_err(|e| read_error(path, e))?;
        let mut reader = Self {
            inner,
            path: path.to_owned(),
            offset: got as u64,
            remaining: 0,
            pad: false,
            long_names: Vec::new(),
        };
        if got < magic.len() || &magic != MAGIC {
            return Err(reader.error(0, ArProblem::BadMagic));
        }
        reader.offset = 8;
        Ok(reader)
    }

    fn error(&self, offset: u64, problem: ArProblem) -> Error {
        Error::Ar {
            path: self.path.clone(),
            offset,
            problem,
        }
    }

    /// The archive's path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Skips what is left of the current member and reads the next header.
    /// `None` at a clean end of the archive. The member's data is then read
    /// through this reader's [`Read`] implementation.
    pub fn next_member(&mut self) -> Result<Option<ArMember>, Error> {
        loop {
            self.skip_rest()?;
            let header_offset = self.offset;
            let mut header = [0u8; HEADER_LEN];
            let got =
                read_full(&mut self.inner, &mut header).map_err(|e| read_error(&self.path, e))?;
            self.offset += got as u64;
            if got == 0 {
                return Ok(None);
            }
            if got < HEADER_LEN {
                return Err(self.error(header_offset, ArProblem::Truncated));
            }
            if &header[58..60] != b"`\n" {
                return Err(self.error(header_offset, ArProblem::BadHeaderEnd));
            }
            let num = |range: std::ops::Range<usize>, radix, what| {
                parse_number(&header[range], radix)
                    .ok_or_else(|| self.error(header_offset, ArProblem::BadNumber(what)))
            };
            let size = num(48..58, 10, "size")?
                .ok_or_else(|| self.error(header_offset, ArProblem::BadNumber("size")))?;
            let mtime = num(16..28, 10, "mtime")?.unwrap_or(0);
            let uid = num(28..34, 10, "uid")?.unwrap_or(0);
            let gid = num(34..40, 10, "gid")?.unwrap_or(0);
            let mode = num(40..48, 8, "mode")?.unwrap_or(0);
            self.remaining = size;
            self.pad = size % 2 == 1;
            let raw_name = trim_name(&header[..16]);
            let mut member = ArMember {
                name: String::new(),
                size,
                mtime,
                uid: u32::try_from(uid).unwrap_or(u32::MAX),
                gid: u32::try_from(gid).unwrap_or(u32::MAX),
                mode: u32::try_from(mode).unwrap_or(u32::MAX),
                data_offset: self.offset,
            };
            match raw_name {
                b"//" => {
                    // GNU long-name table: keep it, then go on to a real
                    // member. Names are short; a huge table is an attack.
                    if size > 1 << 20 {
                        return Err(self.error(header_offset, ArProblem::BadLongName("//".into())));
                    }
                    self.long_names = self.read_member_bytes(header_offset)?;
                    continue;
                }
                b"/" | b"/SYM64" | b"__.SYMDEF" | b"__.SYMDEF SORTED" => continue,
                _ => {}
            }
            member.name = self.resolve_name(raw_name, header_offset, &mut member)?;
            return Ok(Some(member));
        }
    }

    fn resolve_name(
        &mut self,
        raw: &[u8],
        at: u64,
        member: &mut ArMember,
    ) -> Result<String, Error> {
        let bad = |s: &Self| {
            s.error(
                at,
                ArProblem::BadLongName(String::from_utf8_lossy(raw).into_owned()),
            )
        };
        let name: Vec<u8> = if let Some(len) = raw.strip_prefix(b"#1/") {
            // BSD: the name is the start of the data.
            let len = parse_number(len, 10).flatten().ok_or_else(|| bad(self))?;
            if len > member.size || len > 4096 {
                return Err(bad(self));
            }
            let mut name = vec![0u8; len as usize];
            self.read_exact(&mut name)
                .map_err(|_| self.error(at, ArProblem::Truncated))?;
            member.size -= len;
            member.data_offset += len;
            while name.last() == Some(&0) {
                name.pop();
            }
            name
        } else if let Some(index) = raw.strip_prefix(b"/") {
            // GNU: "/N" is an offset into the long-name table.
            let index = parse_number(index, 10).flatten().ok_or_else(|| bad(self))? as usize;
            let table = self.long_names.get(index..).ok_or_else(|| bad(self))?;
            let end = table
                .iter()
                .position(|&c| c == b'\n')
                .unwrap_or(table.len());
            let name = &table[..end];
            name.strip_suffix(b"/").unwrap_or(name).to_vec()
        } else {
            raw.strip_suffix(b"/").unwrap_or(raw).to_vec()
        };
        String::from_utf8(name).map_err(|e| {
            self.error(
                at,
                ArProblem::BadLongName(String::from_utf8_lossy(e.as_bytes()).into_owned()),
            )
        })
    }

    /// Reads the rest of the current member into memory.
    fn read_member_bytes(&mut self, at: u64) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(self.remaining.min(1 << 20) as usize);
        self.read_to_end(&mut out).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => self.error(at, ArProblem::Truncated),
            _ => read_error(&self.path, e),
        })?;
        Ok(out)
    }

    fn skip_rest(&mut self) -> Result<(), Error> {
        let at = self.offset;
        let want = self.remaining;
        let skipped = io::copy(&mut (&mut self.inner).take(want), &mut io::sink())
            .map_err(|e| read_error(&self.path, e))?;
        self.offset += skipped;
        self.remaining = 0;
        if skipped < want {
            return Err(self.error(at, ArProblem::Truncated));
        }
        if self.pad {
            self.pad = false;
            let mut b = [0u8; 1];
            // A missing final pad byte at the very end is tolerated.
            self.offset +=
                read_full(&mut self.inner, &mut b).map_err(|e| read_error(&self.path, e))? as u64;
        }
        Ok(())
    }

    /// Gives back the underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for ArReader<R> {
    /// Reads the current member's data; 0 at its end. Ending early is an
    /// `UnexpectedEof` error (a truncated archive), never a short member.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("ar member truncated: {} bytes missing", self.remaining),
            ));
        }
        self.remaining -= n as u64;
        self.offset += n as u64;
        Ok(n)
    }
}

fn read_error(path: &Path, source: io::Error) -> Error {
    Error::Read {
        path: path.to_owned(),
        source,
    }
}

/// Reads until `buf` is full or the input ends; returns the count.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// A space-padded header number: `Some(None)` when blank, `None` when bad.
fn parse_number(field: &[u8], radix: u32) -> Option<Option<u64>> {
    let digits = trim_spaces(field);
    if digits.is_empty() {
        return Some(None);
    }
    let text = std::str::from_utf8(digits).ok()?;
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    u64::from_str_radix(text, radix).ok().map(Some)
}

fn trim_spaces(b: &[u8]) -> &[u8] {
    let end = b.iter().rposition(|&c| c != b' ').map_or(0, |p| p + 1);
    &b[..end]
}

fn trim_name(b: &[u8]) -> &[u8] {
    trim_spaces(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, size: usize) -> Vec<u8> {
        let h = format!(
            "{name:<16}{:<12}{:<6}{:<6}{:<8}{size:<10}`\n",
            0, 0, 0, "100644"
        );
        assert_eq!(h.len(), HEADER_LEN);
        h.into_bytes()
    }

    fn archive(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for (name, data) in members {
            out.extend(header(name, data.len()));
            out.extend(*data);
            if data.len() % 2 == 1 {
                out.push(b'\n');
            }
        }
        out
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let mut ar = ArReader::new(bytes, Path::new("t.a"))?;
        let mut out = Vec::new();
        while let Some(m) = ar.next_member()? {
            let mut data = Vec::new();
            ar.read_to_end(&mut data).map_err(|source| Error::Read {
                path: "t.a".into(),
                source,
            })?;
            out.push((m.name, data));
        }
        Ok(out)
    }

    #[test]
    fn reads_plain_gnu_and_bsd_names() {
        let table = b"a-very-long-member-name.tar.xz/\n";
        let mut bsd = b"bsd-name".to_vec();
        bsd.extend(b"xyz");
        let bytes = archive(&[
            ("debian-binary", b"2.0\n"),
            ("odd/", b"abc"),
            ("//", table),
            ("/0", b"long"),
            ("#1/8", &bsd),
        ]);
        let got = read_all(&bytes).unwrap();
        let names: Vec<_> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "debian-binary",
                "odd",
                "a-very-long-member-name.tar.xz",
                "bsd-name"
            ]
        );
        assert_eq!(got[1].1, b"abc");
        assert_eq!(got[3].1, b"xyz");
    }

    #[test]
    fn skips_unread_members() {
        let bytes = archive(&[("a", b"12345"), ("b", b"6")]);
        let mut ar = ArReader::new(&bytes[..], Path::new("t.a")).unwrap();
        assert_eq!(ar.next_member().unwrap().unwrap().name, "a");
        let b = ar.next_member().unwrap().unwrap();
        assert_eq!((b.name.as_str(), b.data_offset), ("b", 8 + 60 + 6 + 60));
        assert!(ar.next_member().unwrap().is_none());
    }

    #[test]
    fn reports_damage_with_offsets() {
        assert!(matches!(
            read_all(b"!<arch\n"),
            Err(Error::Ar {
                problem: ArProblem::BadMagic,
                ..
            })
        ));
        let good = archive(&[("a", b"1234")]);
        let cut = &good[..good.len() - 1];
        assert!(
            matches!(read_all(cut), Err(Error::Read { .. })),
            "short data is an error"
        );
        let mut bad = good.clone();
        bad[8 + 48] = b'x';
        assert!(matches!(
            read_all(&bad),
            Err(Error::Ar {
                offset: 8,
                problem: ArProblem::BadNumber("size"),
                ..
            })
        ));
        assert!(matches!(
            read_all(&good[..30]),
            Err(Error::Ar {
                offset: 8,
                problem: ArProblem::Truncated,
                ..
            })
        ));
        let mut bad = good;
        bad[8 + 58] = b'!';
        assert!(matches!(
            read_all(&bad),
            Err(Error::Ar {
                problem: ArProblem::BadHeaderEnd,
                ..
            })
        ));
    }
}
