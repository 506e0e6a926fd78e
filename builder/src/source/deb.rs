//! Reading binary packages (`.deb`).
//!
//! A .deb is an ar archive: `debian-binary` (format `2.x`), then
//! `control.tar[.gz|.xz|.zst]`, then `data.tar[.gz|.xz|.zst|.bz2|.lzma]`;
//! members whose names start with `_` may sit between them and are
//! skipped, as dpkg does. [`DebFile`] reads the first two eagerly (they are
//! small) and hands out the data archive as a stream of tar entries
//! ([`DataTar`]), so the rootfs stage can extract a 200 MB package without
//! holding it in memory.
//!
//! Entries come back exactly as stored: `../` names, absolute paths and
//! links are *not* filtered here. Refusing them is the extractor's job,
//! and it needs to see them to report them.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::ar::ArReader;
use super::compress::{Compression, Decoder};
use super::control::{self, Paragraph};
use super::error::{DebProblem, Error};

/// The largest control member we hold in memory (md5sums of big packages
/// reach a few MB; nothing legitimate comes near this).
pub const MAX_CONTROL_MEMBER: u64 = 64 << 20;

/// A file from `control.tar`: `control`, `md5sums`, `conffiles`,
/// `preinst`, `postinst`, `prerm`, `postrm`, `shlibs`, `triggers`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlMember {
    /// The name without its `./` prefix.
    pub name: String,
    /// Permission bits (maintainer scripts are executable).
    pub mode: u32,
    /// The contents.
    pub data: Vec<u8>,
}

/// An opened .deb: format and control data read, data archive pending.
#[derive(Debug)]
pub struct DebFile<R: Read> {
    path: PathBuf,
    format: String,
    control_compression: Compression,
    control: Paragraph,
    members: Vec<ControlMember>,
    ar: ArReader<R>,
}

impl DebFile<BufReader<File>> {
    /// Opens a .deb file and reads its control data.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let file = File::open(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_reader(BufReader::with_capacity(128 << 10, file), path)
    }
}

impl<R: Read> DebFile<R> {
    /// Reads a .deb from a stream; `path` names it in errors.
    pub fn from_reader(reader: R, path: &Path) -> Result<Self, Error> {
        let deb_error = |problem| Error::Deb {
            path: path.to_owned(),
            problem,
        };
        let mut ar = ArReader::new(reader, path)?;
        let first = ar.next_member()?;
        match &first {
            Some(m) if m.name == "debian-binary" => {}
            other => {
                let name = other.as_ref().map_or(String::new(), |m| m.name.clone());
                return Err(deb_error(DebProblem::NoDebianBinary(name)));
            }
        }
        let mut format = Vec::new();
        (&mut ar)
            .take(256)
            .read_to_end(&mut format)
            .map_err(|source| Error::Read {
                path: path.to_owned(),
                source,
            })?;
        let format = String::from_utf8_lossy(&format).trim_end().to_owned();
        let major_ok = format
            .strip_prefix("2.")
            .is_some_and(|minor| minor.bytes().take_while(u8::is_ascii_digit).count() > 0);
        if !major_ok {
            return Err(deb_error(DebProblem::BadFormatVersion(format)));
        }
        let (name, compression) = next_tar_member(&mut ar, "control.tar", DebProblem::NoControl)?;
        let members = read_control_tar(&mut ar, compression, path, &name)?;
        let control = members
            .iter()
            .find(|m| m.name == "control")
            .ok_or_else(|| deb_error(DebProblem::NoControlFile))?;
        let origin = format!("{}:control", path.display());
        let text = control::utf8(&control.data, &origin)
            .map_err(|e| deb_error(DebProblem::BadControl(Box::new(e))))?;
        let control = control::parse_single(text, &origin)
            .map_err(|e| deb_error(DebProblem::BadControl(Box::new(e))))?;
        Ok(Self {
            path: path.to_owned(),
            format,
            control_compression: compression,
            control,
            members,
            ar,
        })
    }

    /// The package file's path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The contents of `debian-binary`, e.g. `2.0`.
    pub fn format_version(&self) -> &str {
        &self.format
    }

    /// How `control.tar` was compressed.
    pub fn control_compression(&self) -> Compression {
        self.control_compression
    }

    /// The control paragraph (`Package`, `Version`, `Depends`, ...).
    pub fn control(&self) -> &Paragraph {
        &self.control
    }

    /// Every file of `control.tar`, in archive order, `control` included.
    pub fn control_members(&self) -> &[ControlMember] {
        &self.members
    }

    /// One control file by name (`postinst`, `conffiles`, ...).
    pub fn control_member(&self, name: &str) -> Option<&ControlMember> {
        self.members.iter().find(|m| m.name == name)
    }

    /// Moves on to the data archive.
    pub fn data(mut self) -> Result<DataTar<R>, Error> {
        let (member, compression) = next_tar_member(&mut self.ar, "data.tar", DebProblem::NoData)?;
        let decoder = compression.decoder(self.ar).map_err(|source| Error::Tar {
            path: self.path.clone(),
            member: member.clone(),
            source,
        })?;
        Ok(DataTar {
            path: self.path,
            member,
            compression,
            archive: tar::Archive::new(decoder),
        })
    }
}

/// Finds the next member named `stem[.ext]`, skipping `_`-prefixed ones.
fn next_tar_member<R: Read>(
    ar: &mut ArReader<R>,
    stem: &str,
    missing: DebProblem,
) -> Result<(String, Compression), Error> {
    let path = ar.path().to_owned();
    let deb_error = |problem| Error::Deb {
        path: path.clone(),
        problem,
    };
    loop {
        let Some(member) = ar.next_member()? else {
            return Err(deb_error(missing));
        };
        if member.name.starts_with('_') {
            continue;
        }
        if !member.name.starts_with(stem) {
            return Err(deb_error(DebProblem::UnexpectedMember(member.name)));
        }
        return match Compression::from_suffix(&member.name, stem) {
            Some(c) => Ok((member.name, c)),
            None => Err(deb_error(DebProblem::UnsupportedCompression(member.name))),
        };
    }
}

fn read_control_tar<R: Read>(
    ar: &mut ArReader<R>,
    compression: Compression,
    path: &Path,
    member: &str,
) -> Result<Vec<ControlMember>, Error> {
    let tar_error = |source| Error::Tar {
        path: path.to_owned(),
        member: member.to_owned(),
        source,
    };
    let deb_error = |problem| Error::Deb {
        path: path.to_owned(),
        problem,
    };
    let mut archive = tar::Archive::new(compression.decoder(ar).map_err(tar_error)?);
    let mut out = Vec::new();
    for entry in archive.entries().map_err(tar_error)? {
        let mut entry = entry.map_err(tar_error)?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw);
        let name = name.strip_prefix("./").unwrap_or(&name).to_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() && (name.is_empty() || name == ".") {
            continue;
        }
        if !(kind.is_file() || kind == tar::EntryType::Continuous)
            || name.contains('/')
            || name.is_empty()
        {
            return Err(deb_error(DebProblem::UnexpectedMember(format!(
                "{member}/{name}"
            ))));
        }
        let size = entry.header().size().map_err(tar_error)?;
        if size > MAX_CONTROL_MEMBER {
            return Err(deb_error(DebProblem::ControlMemberTooLarge(name)));
        }
        let mode = entry.header().mode().map_err(tar_error)?;
        let mut data = Vec::with_capacity(size as usize);
        entry.read_to_end(&mut data).map_err(tar_error)?;
        out.push(ControlMember { name, mode, data });
    }
    // The tar end marker is not the end of the compressed stream: read to
    // the end so a damaged tail is an error here too.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(tar_error)?;
    Ok(out)
}

/// The data archive of a .deb, read as a stream.
pub struct DataTar<R: Read> {
    path: PathBuf,
    member: String,
    compression: Compression,
    archive: tar::Archive<Decoder<ArReader<R>>>,
}

impl<R: Read> std::fmt::Debug for DataTar<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataTar")
            .field("path", &self.path)
            .field("member", &self.member)
            .finish_non_exhaustive()
    }
}

impl<R: Read> DataTar<R> {
    /// The member name, e.g. `data.tar.xz`.
    pub fn member_name(&self) -> &str {
        &self.member
    }

    /// How the data archive is compressed.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Reads the rest of the member after the tar end marker and checks it
    /// decompresses cleanly to its end. Tar readers stop at the end blocks,
    /// so without this a truncated or corrupted compressed tail would go
    /// unnoticed: call it after the last entry.
    pub fn finish(self) -> Result<(), Error> {
        let mut rest = self.archive.into_inner();
        io::copy(&mut rest, &mut io::sink())
            .map(|_| ())
            .map_err(|source| Error::Tar {
                path: self.path,
                member: self.member,
                source,
            })
    }

    /// The entries, one at a time; each must be read (or skipped) before
    /// the next, as with any tar stream. Call [`DataTar::finish`] after.
    pub fn entries(&mut self) -> Result<DataEntries<'_, R>, Error> {
        let Self {
            path,
            member,
            archive,
            ..
        } = self;
        let inner = archive.entries().map_err(|source| Error::Tar {
            path: path.clone(),
            member: member.clone(),
            source,
        })?;
        Ok(DataEntries {
            inner,
            path,
            member,
        })
    }
}

/// What a data.tar entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file (its bytes follow).
    File,
    /// A directory.
    Directory,
    /// A symbolic link ([`EntryHeader::link`] is its target).
    Symlink,
    /// A hard link to an earlier entry ([`EntryHeader::link`] names it).
    HardLink,
    /// A character device ([`EntryHeader::device`]).
    CharDevice,
    /// A block device ([`EntryHeader::device`]).
    BlockDevice,
    /// A named pipe.
    Fifo,
    /// Any other tar type flag (kept so the extractor can refuse it by name).
    Other(u8),
}

/// The metadata of one data.tar entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryHeader {
    /// The path as stored (GNU long names and PAX paths resolved), e.g.
    /// `./usr/bin/x`. Not sanitised.
    pub path: PathBuf,
    /// The entry type.
    pub kind: EntryKind,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    /// Owner id.
    pub uid: u64,
    /// Group id.
    pub gid: u64,
    /// Owner name, when stored.
    pub user: Option<String>,
    /// Group name, when stored.
    pub group: Option<String>,
    /// Modification time (seconds since the epoch).
    pub mtime: u64,
    /// Size of the file data (0 for non-files).
    pub size: u64,
    /// Symlink target or hard-link source.
    pub link: Option<PathBuf>,
    /// Device major and minor numbers.
    pub device: Option<(u32, u32)>,
    /// Extended attributes from PAX `SCHILY.xattr.NAME` records (the form
    /// GNU tar and libarchive write; file capabilities travel as
    /// `security.capability`), in archive order.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// One entry: its header and a reader of its bytes.
pub struct DataEntry<'a, R: Read> {
    /// The metadata.
    pub header: EntryHeader,
    inner: tar::Entry<'a, Decoder<ArReader<R>>>,
}

impl<R: Read> std::fmt::Debug for DataEntry<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataEntry")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl<R: Read> Read for DataEntry<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

/// Iterator over the entries of a [`DataTar`].
pub struct DataEntries<'a, R: Read> {
    inner: tar::Entries<'a, Decoder<ArReader<R>>>,
    path: &'a Path,
    member: &'a str,
}

impl<R: Read> std::fmt::Debug for DataEntries<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataEntries")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl<'a, R: Read> Iterator for DataEntries<'a, R> {
    type Item = Result<DataEntry<'a, R>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let entry = self.inner.next()?;
        Some(
            entry
                .and_then(|mut inner| {
                    let xattrs = xattrs_of(&mut inner)?;
                    Ok(DataEntry {
                        header: header_of(&inner, xattrs)?,
                        inner,
                    })
                })
                .map_err(|source| Error::Tar {
                    path: self.path.to_owned(),
                    member: self.member.to_owned(),
                    source,
                }),
        )
    }
}

fn bytes_to_path(b: Cow<'_, [u8]>) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(&b))
}

/// The PAX key prefix under which GNU tar and libarchive store xattrs.
const XATTR_PAX_PREFIX: &[u8] = b"SCHILY.xattr.";

fn xattrs_of<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let Some(extensions) = entry.pax_extensions()? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for extension in extensions {
        let extension = extension?;
        if let Some(name) = extension.key_bytes().strip_prefix(XATTR_PAX_PREFIX) {
            let name = String::from_utf8(name.to_vec()).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidData, "xattr name is not UTF-8")
            })?;
            out.push((name, extension.value_bytes().to_vec()));
        }
    }
    Ok(out)
}

fn header_of<R: Read>(
    entry: &tar::Entry<'_, R>,
    xattrs: Vec<(String, Vec<u8>)>,
) -> io::Result<EntryHeader> {
    let h = entry.header();
    let kind = match h.entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
        tar::EntryType::Directory => EntryKind::Directory,
        tar::EntryType::Symlink => EntryKind::Symlink,
        tar::EntryType::Link => EntryKind::HardLink,
        tar::EntryType::Char => EntryKind::CharDevice,
        tar::EntryType::Block => EntryKind::BlockDevice,
        tar::EntryType::Fifo => EntryKind::Fifo,
        other => EntryKind::Other(other.as_byte()),
    };
    let device = match kind {
        EntryKind::CharDevice | EntryKind::BlockDevice => Some((
            h.device_major()?.unwrap_or(0),
            h.device_minor()?.unwrap_or(0),
        )),
        _ => None,
    };
    let name = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
    Ok(EntryHeader {
        path: bytes_to_path(entry.path_bytes()),
        kind,
        mode: h.mode()?,
        uid: h.uid()?,
        gid: h.gid()?,
        user: name(h.username_bytes()),
        group: name(h.groupname_bytes()),
        mtime: h.mtime()?,
        size: if kind == EntryKind::File {
            entry.size()
        } else {
            0
        },
        link: entry.link_name_bytes().map(bytes_to_path),
        device,
        xattrs,
    })
}
