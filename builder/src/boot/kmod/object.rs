//! A kernel module's ELF relocatable object, read with goblin's lazy
//! pieces (header, section headers, symbol table, relocations) and only
//! the parts the checks need.
//!
//! goblin's all-in-one `Elf::parse` parses every relocation section, which
//! for an unstripped `nvidia.ko` (185 MB, mostly `.rela.debug_*`) means
//! millions of entries nobody reads; and several of its lookups index
//! without checks. Here every offset and size is checked against the file
//! before goblin or a slice sees it, and names are read from the raw string
//! tables (never `Strtab::get_unsafe`, which panics on bad UTF-8).

use goblin::container::{Container, Ctx};
use goblin::elf::header::{EI_CLASS, EI_DATA, ELFCLASS64, ELFDATA2LSB, ET_REL, Header};
use goblin::elf::reloc::RelocSection;
use goblin::elf::section_header::{SHN_UNDEF, SHT_NOBITS, SHT_RELA, SHT_SYMTAB, SectionHeader};
use goblin::elf::sym::Symtab;

use super::KmodError;

const SECTION_HEADER_SIZE: u64 = 64;
const SYMBOL_SIZE: u64 = 24;
const RELA_SIZE: u64 = 24;
/// SHN_LORESERVE: section indexes at or above it are special (ABS, COMMON).
const SHN_LORESERVE: usize = 0xff00;

/// One section header with its name.
#[derive(Debug, Clone)]
pub(crate) struct ObjSection {
    pub name: String,
    pub header: SectionHeader,
}

/// One symbol of `.symtab`, with its name.
#[derive(Debug, Clone)]
pub(crate) struct ObjSymbol {
    pub name: String,
    pub value: u64,
    pub bind: u8,
    /// Section index (`SHN_UNDEF` = 0 for undefined symbols).
    pub shndx: usize,
}

/// A parsed relocatable object whose section bounds have been checked.
#[derive(Debug)]
pub(crate) struct Object<'a> {
    bytes: &'a [u8],
    ctx: Ctx,
    sections: Vec<ObjSection>,
    symbols: Vec<ObjSymbol>,
}

fn malformed(what: &'static str) -> KmodError {
    KmodError::Malformed {
        path: Default::default(),
        what,
    }
}

impl<'a> Object<'a> {
    /// Parses a 64-bit little-endian ELF relocatable object (what x86-64
    /// kernel modules are). Errors carry no path; the caller adds it.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, KmodError> {
        if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
            return Err(malformed("not an ELF file"));
        }
        if bytes[EI_CLASS] != ELFCLASS64 || bytes[EI_DATA] != ELFDATA2LSB {
            return Err(malformed("not a 64-bit little-endian ELF file"));
        }
        let header = goblin::elf::Elf::parse_header(bytes).map_err(|source| KmodError::Elf {
            path: Default::default(),
            source,
        })?;
        if header.e_type != ET_REL {
            return Err(malformed(
                "not a relocatable object (kernel modules are ET_REL)",
            ));
        }
        let ctx = Ctx::new(Container::Big, goblin::container::Endian::Little);
        let headers = section_headers(bytes, &header, ctx)?;
        let names = headers
            .get(usize::from(header.e_shstrndx))
            .map(|h| section_bytes(bytes, h))
            .transpose()?
            .ok_or(malformed("section name table index out of range"))?;
        let sections = headers
            .into_iter()
            .map(|header| ObjSection {
                name: c_string(names, header.sh_name).unwrap_or_default(),
                header,
            })
            .collect::<Vec<_>>();
        for section in &sections {
            section_bytes(bytes, &section.header)?;
        }
        let mut object = Self {
            bytes,
            ctx,
            sections,
            symbols: Vec::new(),
        };
        object.symbols = object.read_symbols()?;
        Ok(object)
    }

    pub fn sections(&self) -> &[ObjSection] {
        &self.sections
    }

    pub fn symbols(&self) -> &[ObjSymbol] {
        &self.symbols
    }

    /// The section's index and header, by name (the first one).
    pub fn section(&self, name: &str) -> Option<(usize, &ObjSection)> {
        self.sections
            .iter()
            .enumerate()
            .find(|(_, s)| s.name == name)
    }

    /// The bytes of the section at `index` (empty for SHT_NOBITS).
    pub fn data(&self, index: usize) -> Option<&'a [u8]> {
        let section = self.sections.get(index)?;
        // Bounds were checked in `parse`.
        section_bytes(self.bytes, &section.header).ok()
    }

    /// The bytes of the named section.
    pub fn data_by_name(&self, name: &str) -> Option<&'a [u8]> {
        self.section(name).and_then(|(i, _)| self.data(i))
    }

    fn read_symbols(&self) -> Result<Vec<ObjSymbol>, KmodError> {
        let Some(symtab) = self
            .sections
            .iter()
            .find(|s| s.header.sh_type == SHT_SYMTAB)
        else {
            return Ok(Vec::new());
        };
        let h = &symtab.header;
        if h.sh_size % SYMBOL_SIZE != 0 {
            return Err(malformed("symbol table size is not a multiple of 24"));
        }
        let strings = self
            .data(h.sh_link as usize)
            .ok_or(malformed("symbol table links to a missing string table"))?;
        let count = (h.sh_size / SYMBOL_SIZE) as usize;
        let table =
            Symtab::parse(self.bytes, h.sh_offset as usize, count, self.ctx).map_err(|source| {
                KmodError::Elf {
                    path: Default::default(),
                    source,
                }
            })?;
        Ok(table
            .iter()
            .map(|sym| ObjSymbol {
                name: c_string(strings, sym.st_name).unwrap_or_default(),
                value: sym.st_value,
                bind: sym.st_bind(),
                shndx: sym.st_shndx,
            })
            .collect())
    }

    /// The RELA entries that apply to section `target` (from the
    /// SHT_RELA section whose sh_info names it), as (offset, symbol, addend).
    pub fn relocations_for(&self, target: usize) -> Result<Vec<(u64, usize, i64)>, KmodError> {
        let Some(rela) = self
            .sections
            .iter()
            .find(|s| s.header.sh_type == SHT_RELA && s.header.sh_info as usize == target)
        else {
            return Ok(Vec::new());
        };
        let h = &rela.header;
        if h.sh_size % RELA_SIZE != 0 {
            return Err(malformed("relocation section size is not a multiple of 24"));
        }
        let relocs = RelocSection::parse(
            self.bytes,
            h.sh_offset as usize,
            h.sh_size as usize,
            true,
            self.ctx,
        )
        .map_err(|source| KmodError::Elf {
            path: Default::default(),
            source,
        })?;
        Ok(relocs
            .iter()
            .map(|r| (r.r_offset, r.r_sym, r.r_addend.unwrap_or(0)))
            .collect())
    }

    /// Whether `shndx` names a real section of this object.
    pub fn is_section_index(&self, shndx: usize) -> bool {
        shndx != SHN_UNDEF as usize && shndx < SHN_LORESERVE && shndx < self.sections.len()
    }
}

fn section_headers(
    bytes: &[u8],
    header: &Header,
    ctx: Ctx,
) -> Result<Vec<SectionHeader>, KmodError> {
    if header.e_shoff == 0 || header.e_shnum == 0 {
        // A zero count would make goblin read the real count from the null
        // header (the >65279-sections escape); no module needs that.
        return Err(malformed("no section headers"));
    }
    if u64::from(header.e_shentsize) != SECTION_HEADER_SIZE {
        return Err(malformed("section header size is not 64"));
    }
    let table_end = u64::from(header.e_shnum)
        .checked_mul(SECTION_HEADER_SIZE)
        .and_then(|size| size.checked_add(header.e_shoff));
    if table_end.is_none_or(|end| end > bytes.len() as u64) {
        return Err(malformed(
            "section header table runs past the end of the file",
        ));
    }
    SectionHeader::parse(
        bytes,
        header.e_shoff as usize,
        usize::from(header.e_shnum),
        ctx,
    )
    .map_err(|source| KmodError::Elf {
        path: Default::default(),
        source,
    })
}

fn section_bytes<'a>(bytes: &'a [u8], h: &SectionHeader) -> Result<&'a [u8], KmodError> {
    if h.sh_type == SHT_NOBITS {
        return Ok(&[]);
    }
    let end = h.sh_offset.checked_add(h.sh_size);
    match end {
        Some(end) if end <= bytes.len() as u64 => Ok(&bytes[h.sh_offset as usize..end as usize]),
        _ => Err(malformed("a section runs past the end of the file")),
    }
}

/// The NUL-terminated string at `offset` of a string table, lossy UTF-8;
/// `None` when the offset is outside the table.
pub(crate) fn c_string(table: &[u8], offset: impl TryInto<usize>) -> Option<String> {
    let rest = table.get(offset.try_into().ok()?..)?;
    let end = memchr::memchr(0, rest).unwrap_or(rest.len());
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}
