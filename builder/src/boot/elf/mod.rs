//! Userspace ELF files: what a program or library needs from the dynamic
//! loader (PT_INTERP, DT_NEEDED, DT_RPATH/DT_RUNPATH, DT_SONAME), whether
//! it is static, and whether an image tree satisfies its libraries.
//!
//! - [`ElfInfo::read`] / [`ElfInfo::parse`]: one file.
//! - [`ImageRoot`]: paths inside an image, symlinks resolved in the root.
//! - [`fixture`]: small ELF files made in code, for tests.
//! - [`check_closure`]: resolves every DT_NEEDED of a set of files (and
//!   their libraries, transitively) the way glibc's ld.so would inside the
//!   image, and names each missing library with the file that needs it,
//!   and each symbol version (`GLIBC_2.34`) a library does not define.
//! - [`owner`]: which package of the image's dpkg database ships a file.
//!
//! Parsing goes through goblin's program-header and dynamic-section
//! pieces; every offset is checked against the file first, and strings are
//! read from the raw dynamic string table (lossy UTF-8, never a panic).

mod closure;
pub mod fixture;
pub mod owner;
mod root;
mod version;

use std::path::{Path, PathBuf};

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::dynamic::{DF_1_PIE, Dynamic};
use goblin::elf::header::{EI_CLASS, EI_DATA, ELFCLASS32, ELFCLASS64, ELFDATA2LSB, ELFDATA2MSB};
use goblin::elf::program_header::{PT_INTERP, ProgramHeader};
use serde::Serialize;

pub use closure::{
    ClosureReport, ClosureRequest, FoundBy, LdSoConfig, MissingLibrary, MissingVersion,
    ResolvedLibrary, check_closure,
};
pub use root::ImageRoot;
pub use version::VersionNeed;

/// Errors reading userspace ELF files, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// Reading a file failed.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The ELF structure is unusable.
    #[error("{path}: malformed ELF file: {what}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: &'static str,
    },
    /// goblin refused a structure.
    #[error("{path}: parsing ELF")]
    Elf {
        /// The file.
        path: PathBuf,
        /// goblin's error.
        #[source]
        source: goblin::error::Error,
    },
    /// The image's dpkg status file does not parse.
    #[error("{path}: reading the dpkg status")]
    DpkgStatus {
        /// The status file (host path).
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: Box<crate::source::Error>,
    },
    /// A file that must be static (busybox in the initramfs) is not.
    #[error(
        "{path} is dynamically linked (interpreter {interpreter:?}, needs {needed:?}); it must be static"
    )]
    NotStatic {
        /// The file.
        path: PathBuf,
        /// Its PT_INTERP.
        interpreter: Option<String>,
        /// Its DT_NEEDED.
        needed: Vec<String>,
    },
}

/// ELF object type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ElfKind {
    /// ET_EXEC: a fixed-address executable.
    Executable,
    /// ET_DYN: a shared object or a PIE.
    Shared,
    /// ET_REL: an object file (kernel modules).
    Relocatable,
    /// Anything else (core dumps, processor-specific).
    Other(u16),
}

/// What a userspace ELF file asks of the dynamic loader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ElfInfo {
    /// ELFCLASS64.
    pub is_64: bool,
    /// e_machine (62 = x86-64).
    pub machine: u16,
    /// e_type.
    pub kind: ElfKind,
    /// PT_INTERP, the program interpreter.
    pub interpreter: Option<String>,
    /// DT_NEEDED, in order.
    pub needed: Vec<String>,
    /// DT_SONAME.
    pub soname: Option<String>,
    /// DT_RPATH entries (colon-separated in the file).
    pub rpath: Vec<String>,
    /// DT_RUNPATH entries.
    pub runpath: Vec<String>,
    /// DF_1_PIE in DT_FLAGS_1.
    pub pie: bool,
    /// DT_VERNEED: the symbol versions needed from each library.
    pub version_needs: Vec<VersionNeed>,
    /// DT_VERDEF: the symbol versions this file defines (without the base
    /// entry, the file's own name).
    pub version_defs: Vec<String>,
}

impl ElfInfo {
    /// Reads and parses a file.
    pub fn read(path: &Path) -> Result<Self, ElfError> {
        let bytes = std::fs::read(path).map_err(|source| ElfError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&bytes, path)
    }

    /// Whether it runs with no loader and no libraries: no PT_INTERP and no
    /// DT_NEEDED (a static-pie counts as static).
    pub fn is_static(&self) -> bool {
        self.interpreter.is_none() && self.needed.is_empty()
    }

    /// [`ElfError::NotStatic`] unless [`ElfInfo::is_static`].
    pub fn require_static(&self, path: &Path) -> Result<(), ElfError> {
        if self.is_static() {
            Ok(())
        } else {
            Err(ElfError::NotStatic {
                path: path.to_owned(),
                interpreter: self.interpreter.clone(),
                needed: self.needed.clone(),
            })
        }
    }

    /// Parses `bytes`; `path` only names the file in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, ElfError> {
        let malformed = |what| ElfError::Malformed {
            path: path.to_owned(),
            what,
        };
        let goblin_err = |source| ElfError::Elf {
            path: path.to_owned(),
            source,
        };
        if bytes.len() < 16 || !is_elf(bytes) {
            return Err(malformed("not an ELF file"));
        }
        let (container, entry_size) = match bytes[EI_CLASS] {
            ELFCLASS64 => (Container::Big, 56u64),
            ELFCLASS32 => (Container::Little, 32u64),
            _ => return Err(malformed("unknown ELF class")),
        };
        let endian = match bytes[EI_DATA] {
            ELFDATA2LSB => Endian::Little,
            ELFDATA2MSB => Endian::Big,
            _ => return Err(malformed("unknown ELF byte order")),
        };
        let header = goblin::elf::Elf::parse_header(bytes).map_err(goblin_err)?;
        let ctx = Ctx::new(container, endian);
        let phdrs = if header.e_phnum == 0 {
            Vec::new()
        } else {
            if u64::from(header.e_phentsize) != entry_size {
                return Err(malformed(
                    "program header size does not match the ELF class",
                ));
            }
            let end = u64::from(header.e_phnum)
                .checked_mul(entry_size)
                .and_then(|size| size.checked_add(header.e_phoff));
            if end.is_none_or(|end| end > bytes.len() as u64) {
                return Err(malformed("program headers run past the end of the file"));
            }
            ProgramHeader::parse(
                bytes,
                header.e_phoff as usize,
                usize::from(header.e_phnum),
                ctx,
            )
            .map_err(goblin_err)?
        };
        let interpreter = match phdrs.iter().find(|p| p.p_type == PT_INTERP) {
            Some(p) => Some(
                file_slice(bytes, p.p_offset, p.p_filesz)
                    .map(|raw| string_at(raw, 0))
                    .ok_or(malformed("PT_INTERP runs past the end of the file"))?,
            ),
            None => None,
        };
        let mut info = Self {
            is_64: container == Container::Big,
            machine: header.e_machine,
            kind: match header.e_type {
                2 => ElfKind::Executable,
                3 => ElfKind::Shared,
                1 => ElfKind::Relocatable,
                other => ElfKind::Other(other),
            },
            interpreter,
            needed: Vec::new(),
            soname: None,
            rpath: Vec::new(),
            runpath: Vec::new(),
            pie: false,
            version_needs: Vec::new(),
            version_defs: Vec::new(),
        };
        if let Some(dynamic) = Dynamic::parse(bytes, &phdrs, ctx).map_err(goblin_err)? {
            info.read_dynamic(bytes, &dynamic).ok_or(malformed(
                "dynamic string table runs past the end of the file",
            ))?;
            let reader = version::Reader {
                bytes,
                little: endian == Endian::Little,
            };
            info.read_versions(reader, &phdrs, &dynamic)
                .ok_or(malformed(
                    "symbol version table runs past the end of the file",
                ))?;
        }
        Ok(info)
    }

    fn read_dynamic(&mut self, bytes: &[u8], dynamic: &Dynamic) -> Option<()> {
        use goblin::elf::dynamic::{DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME};
        self.pie = dynamic.info.flags_1 & DF_1_PIE != 0;
        let wants_strings = dynamic
            .dyns
            .iter()
            .any(|d| matches!(d.d_tag, DT_NEEDED | DT_SONAME | DT_RPATH | DT_RUNPATH));
        if !wants_strings {
            return Some(());
        }
        let strings = dynamic_strings(bytes, dynamic)?;
        for entry in &dynamic.dyns {
            let text = || string_at(strings, entry.d_val);
            let paths = || {
                text()
                    .split(':')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            };
            match entry.d_tag {
                DT_NEEDED => self.needed.push(text()),
                DT_SONAME => self.soname = Some(text()),
                DT_RPATH => self.rpath.extend(paths()),
                DT_RUNPATH => self.runpath.extend(paths()),
                _ => {}
            }
        }
        Some(())
    }

    /// DT_VERNEED and DT_VERDEF. goblin's `DynamicInfo` maps the table
    /// addresses but treats DT_VERDEFNUM as an address too, so the raw
    /// entries are read here.
    fn read_versions(
        &mut self,
        reader: version::Reader<'_>,
        phdrs: &[ProgramHeader],
        dynamic: &Dynamic,
    ) -> Option<()> {
        use goblin::elf::dynamic::{DT_VERDEF, DT_VERDEFNUM, DT_VERNEED, DT_VERNEEDNUM};
        let tag = |wanted| {
            dynamic
                .dyns
                .iter()
                .find(|d| d.d_tag == wanted)
                .map(|d| d.d_val)
        };
        let tables = [
            (tag(DT_VERNEED), tag(DT_VERNEEDNUM)),
            (tag(DT_VERDEF), tag(DT_VERDEFNUM)),
        ];
        if tables.iter().all(|(at, _)| at.is_none()) {
            return Some(());
        }
        let strings = dynamic_strings(reader.bytes, dynamic)?;
        if let (Some(address), Some(count)) = tables[0] {
            let offset = version::vm_to_offset(phdrs, address)?;
            self.version_needs = version::parse_verneed(reader, offset, count, strings)?;
        }
        if let (Some(address), Some(count)) = tables[1] {
            let offset = version::vm_to_offset(phdrs, address)?;
            self.version_defs = version::parse_verdef(reader, offset, count, strings)?;
        }
        Some(())
    }
}

/// The dynamic string table (DT_STRTAB, mapped to a file offset by goblin).
fn dynamic_strings<'a>(bytes: &'a [u8], dynamic: &Dynamic) -> Option<&'a [u8]> {
    file_slice(bytes, dynamic.info.strtab as u64, dynamic.info.strsz as u64)
}

/// Whether `bytes` start with the ELF magic.
pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF")
}

fn file_slice(bytes: &[u8], offset: u64, size: u64) -> Option<&[u8]> {
    let end = offset.checked_add(size)?;
    if end > bytes.len() as u64 {
        return None;
    }
    Some(&bytes[offset as usize..end as usize])
}

/// The NUL-terminated string at `offset` of a table (lossy UTF-8; empty
/// when the offset is outside it).
fn string_at(table: &[u8], offset: u64) -> String {
    let Some(rest) = usize::try_from(offset).ok().and_then(|o| table.get(o..)) else {
        return String::new();
    };
    let end = memchr::memchr(0, rest).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end]).into_owned()
}
