//! Kernel modules: what a `.ko` declares, needs and provides, and whether
//! a set of modules will load into a given kernel.
//!
//! - [`Module::read`] / [`Module::parse`]: one module (plain, `.ko.xz`,
//!   `.ko.zst`, `.ko.gz`): `.modinfo`, the appended signature, undefined
//!   symbols, `__versions` (modversions CRCs) and exported symbols.
//! - [`KernelAbi`]: a kernel release, its vermagic flags and its exported
//!   symbols (Module.symvers from linux-headers, or System.map without CRCs).
//! - [`check_modules`]: vermagic, symbol resolution, CRCs, GPL-only and
//!   namespace rules, as the kernel's loader applies them, in a typed
//!   [`ModuleReport`].
//! - [`depmod`]: modules.dep / modules.builtin, dependency closures and
//!   their regeneration for a subset (the initramfs).
//! - [`fixture`]: small module objects made in code, for tests.
//!
//! # Layout in Linux 6.1 (x86-64), as read here
//!
//! - `__versions`: 64-byte entries, a `unsigned long` CRC (8 bytes, little
//!   endian, upper half zero) then a 56-byte NUL-padded name.
//! - Exports: a local symbol `__ksymtab_NAME` in `__ksymtab` or
//!   `__ksymtab_gpl` marks each (the 12-byte `kernel_symbol` entries there
//!   hold PC-relative offsets filled by relocations); `__crc_NAME` in
//!   `__kcrctab{,_gpl}` points at its 4-byte CRC; the entry's third
//!   relocation names its namespace string in `__ksymtab_strings` (empty
//!   for none).

pub mod abi;
pub mod check;
pub mod depmod;
pub mod fixture;
pub mod image;
pub mod modinfo;
mod object;
pub mod signature;

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use goblin::elf::sym::{STB_GLOBAL, STB_WEAK};

pub use abi::{ExportSource, KernelAbi, KernelExport, Vermagic};
pub use check::{ModuleProblem, ModuleReport, check_modules};
pub use modinfo::{ModInfo, module_name, module_name_from_path};
pub use signature::{ModuleSignature, SignatureKind};

use crate::source::compress::Compression;
use object::Object;

/// Largest module accepted after decompression. nvidia.ko with debug
/// information is 185 MB; a decompression bomb is refused well before RAM
/// runs out.
pub const MAX_MODULE_SIZE: u64 = 1 << 30;

const VERSION_ENTRY: usize = 64;

/// Errors reading modules and the kernel's symbol lists, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    /// Reading a file failed.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Decompressing a `.ko.xz` / `.ko.zst` / `.ko.gz` failed.
    #[error("decompressing {path} ({compression})")]
    Decompress {
        /// The file.
        path: PathBuf,
        /// Its compression.
        compression: Compression,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },
    /// The module is larger than [`MAX_MODULE_SIZE`] once decompressed.
    #[error("{path}: module larger than {limit} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// The ELF structure is unusable.
    #[error("{path}: malformed kernel module: {what}")]
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
    /// The appended signature's lengths are inconsistent.
    #[error("{path}: bad module signature")]
    Signature {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: signature::SignatureError,
    },
    /// A symbol list with no exports in it: Debian's /boot/System.map is a
    /// one-line placeholder (the real one is in linux-image-*-dbg).
    #[error(
        "{path}: no exported symbols (__ksymtab_*); Debian ships a placeholder System.map, use the linux-headers package's Module.symvers"
    )]
    NoExports {
        /// The file.
        path: PathBuf,
    },
    /// Writing a file of the image's module tree failed.
    #[error("writing {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The image's depmod could not be read as an ELF program.
    #[error("the image's {program} is not a program this builder can run")]
    DepmodProgram {
        /// Its image path.
        program: PathBuf,
        /// What is wrong.
        #[source]
        source: crate::boot::elf::ElfError,
    },
    /// A library the image's depmod needs is not in the image.
    #[error("the image's {program} needs {library}, which is not in the image")]
    DepmodLibrary {
        /// Its image path.
        program: PathBuf,
        /// The DT_NEEDED name.
        library: String,
    },
    /// depmod could not be started.
    #[error("starting {program}")]
    DepmodSpawn {
        /// The program.
        program: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// depmod failed.
    #[error("{program} for kernel {release} failed ({status}): {stderr}")]
    DepmodFailed {
        /// The program.
        program: PathBuf,
        /// The kernel release.
        release: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it said.
        stderr: String,
    },
    /// depmod's modules.dep and the builder's reading of the modules
    /// disagree about one module.
    #[error(
        "{path}: depmod lists {module} with dependencies {depmod:?}, the modules' depends= give {ours:?}"
    )]
    DepmodDisagrees {
        /// depmod's modules.dep.
        path: PathBuf,
        /// The module's path in the tree.
        module: String,
        /// depmod's dependencies (None: not listed at all).
        depmod: Option<Vec<String>>,
        /// Ours.
        ours: Vec<String>,
    },
    /// Headers of one kernel release used to check modules of another.
    #[error(
        "headers {headers} are for kernel {headers_release}, the image's kernel is {release}: install linux-headers-{release}"
    )]
    HeadersRelease {
        /// The headers directory.
        headers: PathBuf,
        /// Its release.
        headers_release: String,
        /// The image's release.
        release: String,
    },
    /// A line of Module.symvers, System.map, modules.dep or modules.builtin
    /// is not in the expected format.
    #[error("{path}:{line}: {what}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was expected.
        what: &'static str,
    },
}

impl KmodError {
    /// The same error naming `path` (the object parser does not know it).
    fn at(self, path: &Path) -> Self {
        match self {
            Self::Malformed { what, .. } => Self::Malformed {
                path: path.to_owned(),
                what,
            },
            Self::Elf { source, .. } => Self::Elf {
                path: path.to_owned(),
                source,
            },
            other => other,
        }
    }
}

/// An undefined symbol the module needs from the kernel or another module.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UndefinedSymbol {
    /// The symbol name.
    pub name: String,
    /// A weak reference: the kernel leaves it NULL when nobody exports it.
    pub weak: bool,
}

/// One `__versions` entry: the CRC the module was built against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolVersion {
    /// The symbol name.
    pub name: String,
    /// Its CRC (modversions).
    pub crc: u32,
}

/// A symbol the module exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The symbol name.
    pub name: String,
    /// `EXPORT_SYMBOL_GPL`.
    pub gpl_only: bool,
    /// Its CRC, when the module was built with modversions.
    pub crc: Option<u32>,
    /// Its namespace (`EXPORT_SYMBOL_NS`), if any.
    pub namespace: Option<String>,
}

/// A kernel module, read.
#[derive(Debug, Clone)]
pub struct Module {
    /// Where it was read from (for reports).
    pub path: PathBuf,
    /// The module name (`.modinfo` `name=`, else from the file name).
    pub name: String,
    /// Its `.modinfo`.
    pub modinfo: ModInfo,
    /// The appended signature, if any.
    pub signature: Option<ModuleSignature>,
    /// Undefined global symbols, sorted by name.
    pub undefined: Vec<UndefinedSymbol>,
    /// `__versions` entries, in section order (empty without modversions).
    pub versions: Vec<SymbolVersion>,
    /// Exported symbols, sorted by name.
    pub exports: Vec<Export>,
    /// SHA-256 of the file's bytes as stored (compressed if it is).
    pub file_sha256: [u8; 32],
}

impl Module {
    /// Reads and parses a module file; `.xz`, `.zst` and `.gz` are
    /// decompressed first (by extension).
    pub fn read(path: &Path) -> Result<Self, KmodError> {
        let stored = std::fs::read(path).map_err(|source| KmodError::Read {
            path: path.to_owned(),
            source,
        })?;
        let compression = Compression::from_path(path);
        let file_sha256 = sha256(&stored);
        let mut module = if compression == Compression::None {
            Self::parse(&stored, path)?
        } else {
            let plain = decompress(&stored, compression, path)?;
            Self::parse(&plain, path)?
        };
        module.file_sha256 = file_sha256;
        Ok(module)
    }

    /// Parses an uncompressed module; `path` only names it in errors and
    /// in the result.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, KmodError> {
        let (elf, signature) =
            signature::split_signature(bytes).map_err(|source| KmodError::Signature {
                path: path.to_owned(),
                source,
            })?;
        let object = Object::parse(elf).map_err(|e| e.at(path))?;
        let modinfo = object
            .data_by_name(".modinfo")
            .map(ModInfo::parse)
            .ok_or_else(|| KmodError::Malformed {
                path: path.to_owned(),
                what: "no .modinfo section",
            })?;
        let name = modinfo.name.as_deref().map_or_else(
            || module_name_from_path(&path.to_string_lossy()),
            module_name,
        );
        let versions = read_versions(&object).map_err(|e| e.at(path))?;
        let exports = read_exports(&object).map_err(|e| e.at(path))?;
        Ok(Self {
            path: path.to_owned(),
            name,
            modinfo,
            signature,
            undefined: undefined_symbols(&object),
            versions,
            exports,
            file_sha256: sha256(bytes),
        })
    }

    /// The CRC the module recorded for `symbol` in `__versions`.
    pub fn version_of(&self, symbol: &str) -> Option<u32> {
        self.versions
            .iter()
            .find(|v| v.name == symbol)
            .map(|v| v.crc)
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

fn decompress(stored: &[u8], compression: Compression, path: &Path) -> Result<Vec<u8>, KmodError> {
    let err = |source| KmodError::Decompress {
        path: path.to_owned(),
        compression,
        source,
    };
    let decoder = compression.decoder(stored).map_err(err)?;
    let mut plain = Vec::new();
    decoder
        .take(MAX_MODULE_SIZE + 1)
        .read_to_end(&mut plain)
        .map_err(err)?;
    if plain.len() as u64 > MAX_MODULE_SIZE {
        return Err(KmodError::TooLarge {
            path: path.to_owned(),
            limit: MAX_MODULE_SIZE,
        });
    }
    Ok(plain)
}

fn undefined_symbols(object: &Object<'_>) -> Vec<UndefinedSymbol> {
    let mut undefined: Vec<UndefinedSymbol> = object
        .symbols()
        .iter()
        .filter(|s| s.shndx == 0 && !s.name.is_empty())
        .filter(|s| s.bind == STB_GLOBAL || s.bind == STB_WEAK)
        .map(|s| UndefinedSymbol {
            name: s.name.clone(),
            weak: s.bind == STB_WEAK,
        })
        .collect();
    undefined.sort();
    undefined.dedup();
    undefined
}

fn read_versions(object: &Object<'_>) -> Result<Vec<SymbolVersion>, KmodError> {
    let Some(data) = object.data_by_name("__versions") else {
        return Ok(Vec::new());
    };
    if data.len() % VERSION_ENTRY != 0 {
        return Err(KmodError::Malformed {
            path: PathBuf::new(),
            what: "__versions is not a whole number of 64-byte entries",
        });
    }
    Ok(data
        .chunks_exact(VERSION_ENTRY)
        .map(|entry| {
            let crc = u64::from_le_bytes(entry[..8].try_into().expect("8 bytes"));
            SymbolVersion {
                name: object::c_string(&entry[8..], 0usize).unwrap_or_default(),
                // CRCs are 32-bit; the kernel compares the unsigned long.
                crc: crc as u32,
            }
        })
        .collect())
}

fn read_exports(object: &Object<'_>) -> Result<Vec<Export>, KmodError> {
    let crcs: HashMap<&str, &object::ObjSymbol> = object
        .symbols()
        .iter()
        .filter_map(|s| Some((s.name.strip_prefix("__crc_")?, s)))
        .collect();
    let mut relocations: HashMap<usize, Vec<(u64, usize, i64)>> = HashMap::new();
    let mut exports = Vec::new();
    for symbol in object.symbols() {
        let Some(name) = symbol.name.strip_prefix("__ksymtab_") else {
            continue;
        };
        if !object.is_section_index(symbol.shndx) {
            continue;
        }
        let gpl_only = match object.sections()[symbol.shndx].name.as_str() {
            "__ksymtab" => false,
            "__ksymtab_gpl" => true,
            _ => continue,
        };
        let relocs = match relocations.entry(symbol.shndx) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(object.relocations_for(symbol.shndx)?)
            }
        };
        exports.push(Export {
            name: name.to_owned(),
            gpl_only,
            crc: crcs.get(name).and_then(|crc| export_crc(object, crc)),
            namespace: export_namespace(object, relocs, symbol.value),
        });
    }
    exports.sort_by(|a, b| a.name.cmp(&b.name));
    exports.dedup_by(|a, b| a.name == b.name);
    Ok(exports)
}

/// The 4-byte CRC a `__crc_NAME` symbol points at in `__kcrctab{,_gpl}`.
fn export_crc(object: &Object<'_>, symbol: &object::ObjSymbol) -> Option<u32> {
    if !object.is_section_index(symbol.shndx) {
        return None;
    }
    let data = object.data(symbol.shndx)?;
    let at = usize::try_from(symbol.value).ok()?;
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// The namespace of the `kernel_symbol` at offset `entry` of its section:
/// the string its third field's relocation points at.
fn export_namespace(
    object: &Object<'_>,
    relocations: &[(u64, usize, i64)],
    entry: u64,
) -> Option<String> {
    let field = entry.checked_add(8)?;
    let &(_, sym, addend) = relocations.iter().find(|(offset, _, _)| *offset == field)?;
    let target = object.symbols().get(sym)?;
    if !object.is_section_index(target.shndx) {
        return None;
    }
    let strings = object.data(target.shndx)?;
    let offset = usize::try_from((target.value as i64).checked_add(addend)?).ok()?;
    object::c_string(strings, offset).filter(|ns| !ns.is_empty())
}
