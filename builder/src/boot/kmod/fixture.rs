//! Kernel module objects made in code, for tests: an ELF64 relocatable
//! with the sections a 6.1 module carries (`.modinfo`, `__versions`,
//! `__ksymtab{,_gpl}` with their relocations, `__kcrctab{,_gpl}`,
//! `__ksymtab_strings`, `.gnu.linkonce.this_module`, `.symtab`), laid out
//! as modpost and the assembler leave them, plus an optional appended
//! signature. Small, and readable by kmod's `modinfo`.

use super::signature::SIGNATURE_MAGIC;

/// A symbol the fixture exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureExport {
    /// The symbol name.
    pub name: String,
    /// `EXPORT_SYMBOL_GPL`.
    pub gpl_only: bool,
    /// A CRC in `__kcrctab` (modversions).
    pub crc: Option<u32>,
    /// A namespace (`EXPORT_SYMBOL_NS`).
    pub namespace: Option<String>,
}

/// A module to generate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleFixture {
    /// `.modinfo` entries in order (`key`, `value`).
    pub modinfo: Vec<(String, String)>,
    /// Undefined global symbols.
    pub undefined: Vec<String>,
    /// Undefined weak symbols.
    pub weak_undefined: Vec<String>,
    /// `__versions` entries (name, CRC); empty means no section.
    pub versions: Vec<(String, u32)>,
    /// Exported symbols.
    pub exports: Vec<FixtureExport>,
    /// PKCS#7 bytes to append as a module signature.
    pub signature: Option<Vec<u8>>,
}

impl ModuleFixture {
    /// A module named `name` built for `vermagic`, GPL, no symbols yet.
    pub fn new(name: &str, vermagic: &str) -> Self {
        Self {
            modinfo: vec![
                ("license".into(), "GPL".into()),
                ("depends".into(), String::new()),
                ("name".into(), name.into()),
                ("vermagic".into(), vermagic.into()),
            ],
            ..Self::default()
        }
    }

    /// Adds an undefined symbol with its `__versions` CRC.
    pub fn needs(mut self, symbol: &str, crc: u32) -> Self {
        self.undefined.push(symbol.into());
        self.versions.push((symbol.into(), crc));
        self
    }

    /// Adds an export.
    pub fn exports(mut self, symbol: &str, crc: u32, gpl_only: bool) -> Self {
        self.exports.push(FixtureExport {
            name: symbol.into(),
            gpl_only,
            crc: Some(crc),
            namespace: None,
        });
        self
    }

    /// Sets (or adds) a `.modinfo` key.
    pub fn with_info(mut self, key: &str, value: &str) -> Self {
        match self.modinfo.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.into(),
            None => self.modinfo.push((key.into(), value.into())),
        }
        self
    }

    /// The module's bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut elf = ElfWriter::default();
        let text = elf.section(".text", SHT_PROGBITS, 0x6, vec![0xC3; 16], 16);
        let mut modinfo = Vec::new();
        for (k, v) in &self.modinfo {
            modinfo.extend_from_slice(format!("{k}={v}\0").as_bytes());
        }
        elf.section(".modinfo", SHT_PROGBITS, 0x2, modinfo, 1);
        if !self.versions.is_empty() {
            let mut versions = Vec::new();
            for (name, crc) in &self.versions {
                let mut entry = [0u8; 64];
                entry[..8].copy_from_slice(&u64::from(*crc).to_le_bytes());
                let n = name.len().min(55);
                entry[8..8 + n].copy_from_slice(&name.as_bytes()[..n]);
                versions.extend_from_slice(&entry);
            }
            elf.section("__versions", SHT_PROGBITS, 0x2, versions, 32);
        }
        elf.section(
            ".gnu.linkonce.this_module",
            SHT_PROGBITS,
            0x3,
            vec![0; 0x380],
            64,
        );
        self.export_sections(&mut elf, text);
        for name in &self.undefined {
            elf.symbol(name, STB_GLOBAL, 0, 0, 0);
        }
        for name in &self.weak_undefined {
            elf.symbol(name, STB_WEAK, 0, 0, 0);
        }
        let mut bytes = elf.finish();
        if let Some(signature) = &self.signature {
            bytes.extend_from_slice(signature);
            bytes.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0]);
            bytes.extend_from_slice(&(signature.len() as u32).to_be_bytes());
            bytes.extend_from_slice(SIGNATURE_MAGIC);
        }
        bytes
    }

    /// `__ksymtab_strings`, the tables, CRCs, relocations and symbols.
    fn export_sections(&self, elf: &mut ElfWriter, text: u16) {
        if self.exports.is_empty() {
            return;
        }
        let mut strings = Vec::new();
        let mut string_at = Vec::new();
        for export in &self.exports {
            let name_at = strings.len();
            strings.extend_from_slice(export.name.as_bytes());
            strings.push(0);
            let ns_at = strings.len();
            strings.extend_from_slice(export.namespace.as_deref().unwrap_or("").as_bytes());
            strings.push(0);
            string_at.push((name_at, ns_at));
        }
        let strings_index = elf.section("__ksymtab_strings", SHT_PROGBITS, 0x32, strings, 1);
        let strings_symbol = elf.symbol("", STB_LOCAL, STT_SECTION, strings_index, 0);
        for gpl in [false, true] {
            let chosen: Vec<(usize, &FixtureExport)> = self
                .exports
                .iter()
                .enumerate()
                .filter(|(_, e)| e.gpl_only == gpl)
                .collect();
            if chosen.is_empty() {
                continue;
            }
            let suffix = if gpl { "_gpl" } else { "" };
            let table = elf.section(
                &format!("__ksymtab{suffix}"),
                SHT_PROGBITS,
                0x2,
                vec![0; 12 * chosen.len()],
                4,
            );
            let crcs: Vec<u8> = chosen
                .iter()
                .flat_map(|(_, e)| e.crc.unwrap_or(0).to_le_bytes())
                .collect();
            let crctab = elf.section(&format!("__kcrctab{suffix}"), SHT_PROGBITS, 0x2, crcs, 4);
            let mut relocations = Vec::new();
            for (slot, (i, export)) in chosen.iter().enumerate() {
                let entry = 12 * slot as u64;
                let (name_at, ns_at) = string_at[*i];
                elf.symbol(
                    &format!("__ksymtab_{}", export.name),
                    STB_LOCAL,
                    0,
                    table,
                    entry,
                );
                if export.crc.is_some() {
                    elf.symbol(
                        &format!("__crc_{}", export.name),
                        STB_LOCAL,
                        0,
                        crctab,
                        4 * slot as u64,
                    );
                }
                let kstrtab = elf.symbol(
                    &format!("__kstrtab_{}", export.name),
                    STB_LOCAL,
                    0,
                    strings_index,
                    name_at as u64,
                );
                let value = elf.global_later(&export.name, text);
                relocations.push((entry, value, 0));
                relocations.push((entry + 4, kstrtab, 0));
                // The namespace through the section symbol + addend (the
                // assembler's other spelling; real modules name a
                // __kstrtabns_ symbol, which the reader also follows).
                relocations.push((entry + 8, strings_symbol, ns_at as i64));
            }
            elf.rela(&format!(".rela__ksymtab{suffix}"), table, relocations);
        }
    }
}

const SHT_PROGBITS: u32 = 1;
const SHT_SYMTAB: u32 = 2;
const SHT_STRTAB: u32 = 3;
const SHT_RELA: u32 = 4;
const STB_LOCAL: u8 = 0;
const STB_GLOBAL: u8 = 1;
const STB_WEAK: u8 = 2;
const STT_SECTION: u8 = 3;
const STT_FUNC: u8 = 2;
const R_X86_64_PC32: u64 = 2;

struct RawSection {
    name: String,
    kind: u32,
    flags: u64,
    data: Vec<u8>,
    align: u64,
    link: u32,
    info: u32,
    entsize: u64,
    /// Relocations whose symbol indexes are fixed up at `finish`.
    relocations: Vec<(u64, SymbolRef, i64)>,
}

#[derive(Clone, Copy)]
enum SymbolRef {
    Local(usize),
    Global(usize),
}

struct RawSymbol {
    name: String,
    bind: u8,
    kind: u8,
    section: u16,
    value: u64,
}

#[derive(Default)]
struct ElfWriter {
    sections: Vec<RawSection>,
    locals: Vec<RawSymbol>,
    globals: Vec<RawSymbol>,
}

impl ElfWriter {
    /// Adds a section; returns its index (the null section is 0).
    fn section(&mut self, name: &str, kind: u32, flags: u64, data: Vec<u8>, align: u64) -> u16 {
        self.sections.push(RawSection {
            name: name.into(),
            kind,
            flags,
            data,
            align,
            link: 0,
            info: 0,
            entsize: 0,
            relocations: Vec::new(),
        });
        self.sections.len() as u16
    }

    fn symbol(&mut self, name: &str, bind: u8, kind: u8, section: u16, value: u64) -> SymbolRef {
        let symbol = RawSymbol {
            name: name.into(),
            bind,
            kind,
            section,
            value,
        };
        if bind == STB_LOCAL {
            self.locals.push(symbol);
            SymbolRef::Local(self.locals.len() - 1)
        } else {
            self.globals.push(symbol);
            SymbolRef::Global(self.globals.len() - 1)
        }
    }

    /// A global function symbol in `.text`.
    fn global_later(&mut self, name: &str, text: u16) -> SymbolRef {
        self.symbol(name, STB_GLOBAL, STT_FUNC, text, 0)
    }

    fn rela(&mut self, name: &str, target: u16, relocations: Vec<(u64, SymbolRef, i64)>) {
        self.sections.push(RawSection {
            name: name.into(),
            kind: SHT_RELA,
            flags: 0x40,
            data: Vec::new(),
            align: 8,
            link: 0,
            info: u32::from(target),
            entsize: 24,
            relocations,
        });
    }

    fn finish(mut self) -> Vec<u8> {
        let symbol_index = |r: SymbolRef, locals: usize| match r {
            SymbolRef::Local(i) => 1 + i,
            SymbolRef::Global(i) => 1 + locals + i,
        };
        let locals = self.locals.len();
        let mut strtab = vec![0u8];
        let mut symtab = vec![0u8; 24];
        for symbol in self.locals.iter().chain(&self.globals) {
            let name_at = if symbol.name.is_empty() {
                0
            } else {
                strtab.len() as u32
            };
            if !symbol.name.is_empty() {
                strtab.extend_from_slice(symbol.name.as_bytes());
                strtab.push(0);
            }
            symtab.extend_from_slice(&name_at.to_le_bytes());
            symtab.push((symbol.bind << 4) | symbol.kind);
            symtab.push(0);
            symtab.extend_from_slice(&symbol.section.to_le_bytes());
            symtab.extend_from_slice(&symbol.value.to_le_bytes());
            symtab.extend_from_slice(&0u64.to_le_bytes());
        }
        let symtab_index = self.sections.len() as u32 + 1;
        for section in &mut self.sections {
            if section.kind == SHT_RELA {
                section.link = symtab_index;
                for (offset, symbol, addend) in &section.relocations {
                    let info = ((symbol_index(*symbol, locals) as u64) << 32) | R_X86_64_PC32;
                    section.data.extend_from_slice(&offset.to_le_bytes());
                    section.data.extend_from_slice(&info.to_le_bytes());
                    section.data.extend_from_slice(&addend.to_le_bytes());
                }
            }
        }
        let symtab_section = RawSection {
            name: ".symtab".into(),
            kind: SHT_SYMTAB,
            flags: 0,
            data: symtab,
            align: 8,
            link: symtab_index + 1,
            info: 1 + locals as u32,
            entsize: 24,
            relocations: Vec::new(),
        };
        self.sections.push(symtab_section);
        self.section(".strtab", SHT_STRTAB, 0, strtab, 1);
        self.section(".shstrtab", SHT_STRTAB, 0, Vec::new(), 1);
        let mut shstrtab = vec![0u8];
        let mut name_offsets = Vec::new();
        for section in &self.sections {
            name_offsets.push(shstrtab.len() as u32);
            shstrtab.extend_from_slice(section.name.as_bytes());
            shstrtab.push(0);
        }
        self.sections.last_mut().expect("shstrtab").data = shstrtab;
        self.layout(&name_offsets)
    }

    fn layout(&self, name_offsets: &[u32]) -> Vec<u8> {
        let mut out = vec![0u8; 64];
        let mut offsets = Vec::new();
        for section in &self.sections {
            let align = section.align.max(1) as usize;
            out.resize(out.len().div_ceil(align) * align, 0);
            offsets.push(out.len() as u64);
            out.extend_from_slice(&section.data);
        }
        out.resize(out.len().div_ceil(8) * 8, 0);
        let shoff = out.len() as u64;
        out.extend_from_slice(&[0u8; 64]);
        for (i, section) in self.sections.iter().enumerate() {
            let mut h = Vec::with_capacity(64);
            h.extend_from_slice(&name_offsets[i].to_le_bytes());
            h.extend_from_slice(&section.kind.to_le_bytes());
            h.extend_from_slice(&section.flags.to_le_bytes());
            h.extend_from_slice(&0u64.to_le_bytes());
            h.extend_from_slice(&offsets[i].to_le_bytes());
            h.extend_from_slice(&(section.data.len() as u64).to_le_bytes());
            h.extend_from_slice(&section.link.to_le_bytes());
            h.extend_from_slice(&section.info.to_le_bytes());
            h.extend_from_slice(&section.align.to_le_bytes());
            h.extend_from_slice(&section.entsize.to_le_bytes());
            out.extend_from_slice(&h);
        }
        let count = self.sections.len() as u16 + 1;
        let header = &mut out[..64];
        header[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
        header[16..18].copy_from_slice(&1u16.to_le_bytes()); // ET_REL
        header[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        header[20..24].copy_from_slice(&1u32.to_le_bytes());
        header[40..48].copy_from_slice(&shoff.to_le_bytes());
        header[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        header[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
        header[60..62].copy_from_slice(&count.to_le_bytes());
        header[62..64].copy_from_slice(&(count - 1).to_le_bytes()); // .shstrtab is last
        out
    }
}
