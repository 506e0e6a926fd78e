//! Userspace ELF files made in code, for tests: an ELF64 x86-64 image with
//! one PT_LOAD over the whole file, an optional PT_INTERP, and a
//! PT_DYNAMIC with the entries the loader reads (DT_NEEDED, DT_SONAME,
//! DT_RPATH, DT_RUNPATH, DT_FLAGS_1, DT_STRTAB/DT_STRSZ, and the symbol
//! version tables DT_VERNEED/DT_VERDEF with their counts). No section
//! headers: the loader does not need them, and readelf reads it anyway
//! (but `readelf -V` looks for sections, so it shows no versions).

/// An ELF file to generate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElfFixture {
    /// ET_DYN (shared object or PIE) rather than ET_EXEC.
    pub shared: bool,
    /// PT_INTERP.
    pub interpreter: Option<String>,
    /// DT_NEEDED entries.
    pub needed: Vec<String>,
    /// DT_SONAME.
    pub soname: Option<String>,
    /// DT_RPATH (joined with `:`).
    pub rpath: Vec<String>,
    /// DT_RUNPATH (joined with `:`).
    pub runpath: Vec<String>,
    /// DF_1_PIE in DT_FLAGS_1.
    pub pie: bool,
    /// Whether to emit a PT_DYNAMIC at all.
    pub dynamic: bool,
    /// DT_VERNEED: (library, versions needed from it).
    pub version_needs: Vec<(String, Vec<String>)>,
    /// DT_VERDEF: versions defined (a base entry named after the SONAME
    /// comes first, as the linker writes it).
    pub version_defs: Vec<String>,
}

impl ElfFixture {
    /// A shared library with a SONAME, needing `needed`.
    pub fn library(soname: &str, needed: &[&str]) -> Self {
        Self {
            shared: true,
            soname: Some(soname.into()),
            needed: needed.iter().map(|s| (*s).to_owned()).collect(),
            dynamic: true,
            ..Self::default()
        }
    }

    /// A dynamically linked PIE program.
    pub fn program(needed: &[&str]) -> Self {
        Self {
            shared: true,
            pie: true,
            interpreter: Some("/lib64/ld-linux-x86-64.so.2".into()),
            needed: needed.iter().map(|s| (*s).to_owned()).collect(),
            dynamic: true,
            ..Self::default()
        }
    }

    /// This fixture also needing `versions` from `library`.
    pub fn needing_versions(mut self, library: &str, versions: &[&str]) -> Self {
        self.version_needs.push((
            library.to_owned(),
            versions.iter().map(|v| (*v).to_owned()).collect(),
        ));
        self
    }

    /// This fixture also defining `versions`.
    pub fn defining_versions(mut self, versions: &[&str]) -> Self {
        self.version_defs
            .extend(versions.iter().map(|v| (*v).to_owned()));
        self
    }

    /// The file's bytes.
    pub fn build(&self) -> Vec<u8> {
        const EHDR: usize = 64;
        const PHDR: usize = 56;
        let phnum = 1 + usize::from(self.interpreter.is_some()) + usize::from(self.dynamic);
        let mut strings = vec![0u8];
        let mut add = |s: &str| {
            let at = strings.len() as u64;
            strings.extend_from_slice(s.as_bytes());
            strings.push(0);
            at
        };
        let mut dyns: Vec<(u64, u64)> = Vec::new();
        for n in &self.needed {
            dyns.push((1, add(n))); // DT_NEEDED
        }
        if let Some(s) = &self.soname {
            dyns.push((14, add(s))); // DT_SONAME
        }
        if !self.rpath.is_empty() {
            dyns.push((15, add(&self.rpath.join(":")))); // DT_RPATH
        }
        if !self.runpath.is_empty() {
            dyns.push((29, add(&self.runpath.join(":")))); // DT_RUNPATH
        }
        if self.pie {
            dyns.push((0x6fff_fffb, 0x0800_0000)); // DT_FLAGS_1 = DF_1_PIE
        }
        let verneed = verneed_table(&self.version_needs, &mut add);
        let verdef = self.verdef_table(&mut add);
        let interp_at = EHDR + PHDR * phnum;
        let interp: Vec<u8> = self
            .interpreter
            .as_ref()
            .map(|i| [i.as_bytes(), b"\0"].concat())
            .unwrap_or_default();
        let strtab_at = interp_at + interp.len();
        let verneed_at = (strtab_at + strings.len()).div_ceil(8) * 8;
        let verdef_at = verneed_at + verneed.len();
        let dynamic_at = (verdef_at + verdef.len()).div_ceil(8) * 8;
        if !self.version_needs.is_empty() {
            dyns.push((0x6fff_fffe, verneed_at as u64)); // DT_VERNEED
            dyns.push((0x6fff_ffff, self.version_needs.len() as u64)); // DT_VERNEEDNUM
        }
        if !verdef.is_empty() {
            dyns.push((0x6fff_fffc, verdef_at as u64)); // DT_VERDEF
            dyns.push((0x6fff_fffd, 1 + self.version_defs.len() as u64)); // DT_VERDEFNUM
        }
        dyns.push((5, strtab_at as u64)); // DT_STRTAB (vaddr = offset)
        dyns.push((10, strings.len() as u64)); // DT_STRSZ
        dyns.push((0, 0)); // DT_NULL
        let dynamic_size = 16 * dyns.len();
        let total = dynamic_at + if self.dynamic { dynamic_size } else { 0 };

        let mut out = vec![0u8; EHDR];
        out[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
        let e_type: u16 = if self.shared { 3 } else { 2 };
        out[16..18].copy_from_slice(&e_type.to_le_bytes());
        out[18..20].copy_from_slice(&62u16.to_le_bytes());
        out[20..24].copy_from_slice(&1u32.to_le_bytes());
        out[32..40].copy_from_slice(&(EHDR as u64).to_le_bytes()); // e_phoff
        out[52..54].copy_from_slice(&(EHDR as u16).to_le_bytes());
        out[54..56].copy_from_slice(&(PHDR as u16).to_le_bytes());
        out[56..58].copy_from_slice(&(phnum as u16).to_le_bytes());
        let mut phdr = |kind: u32, flags: u32, offset: usize, size: usize, align: u64| {
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&flags.to_le_bytes());
            for v in [
                offset as u64,
                offset as u64,
                offset as u64,
                size as u64,
                size as u64,
                align,
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        };
        if !interp.is_empty() {
            phdr(3, 4, interp_at, interp.len(), 1); // PT_INTERP
        }
        phdr(1, 5, 0, total, 0x1000); // PT_LOAD
        if self.dynamic {
            phdr(2, 6, dynamic_at, dynamic_size, 8); // PT_DYNAMIC
        }
        out.extend_from_slice(&interp);
        out.extend_from_slice(&strings);
        out.resize(verneed_at, 0);
        out.extend_from_slice(&verneed);
        out.extend_from_slice(&verdef);
        out.resize(dynamic_at, 0);
        if self.dynamic {
            for (tag, value) in dyns {
                out.extend_from_slice(&tag.to_le_bytes());
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
        out
    }
}

/// SysV ELF hash of a version name (vna_hash, vd_hash).
fn elf_hash(name: &str) -> u32 {
    name.bytes().fold(0u32, |h, b| {
        let h = (h << 4).wrapping_add(u32::from(b));
        let high = h & 0xf000_0000;
        (h ^ (high >> 24)) & !high
    })
}

/// Verneed records, each followed by its Vernaux records; version
/// indexes count from 2 (0 and 1 are local and global).
fn verneed_table(needs: &[(String, Vec<String>)], add: &mut impl FnMut(&str) -> u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut index = 2u16;
    for (i, (file, versions)) in needs.iter().enumerate() {
        let last = i + 1 == needs.len();
        let size = 16 + 16 * versions.len();
        out.extend_from_slice(&1u16.to_le_bytes()); // vn_version
        out.extend_from_slice(&(versions.len() as u16).to_le_bytes());
        out.extend_from_slice(&(add(file) as u32).to_le_bytes());
        out.extend_from_slice(&16u32.to_le_bytes()); // vn_aux
        out.extend_from_slice(&(if last { 0 } else { size as u32 }).to_le_bytes());
        for (j, version) in versions.iter().enumerate() {
            out.extend_from_slice(&elf_hash(version).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes()); // vna_flags
            out.extend_from_slice(&index.to_le_bytes()); // vna_other
            out.extend_from_slice(&(add(version) as u32).to_le_bytes());
            let next: u32 = if j + 1 == versions.len() { 0 } else { 16 };
            out.extend_from_slice(&next.to_le_bytes());
            index += 1;
        }
    }
    out
}

impl ElfFixture {
    /// Verdef records (base first), each with one Verdaux.
    fn verdef_table(&self, add: &mut impl FnMut(&str) -> u64) -> Vec<u8> {
        if self.version_defs.is_empty() {
            return Vec::new();
        }
        let base = self.soname.clone().unwrap_or_else(|| "a.out".to_owned());
        let names: Vec<&str> = std::iter::once(base.as_str())
            .chain(self.version_defs.iter().map(String::as_str))
            .collect();
        let mut out = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let last = i + 1 == names.len();
            out.extend_from_slice(&1u16.to_le_bytes()); // vd_version
            out.extend_from_slice(&u16::from(i == 0).to_le_bytes()); // VER_FLG_BASE
            out.extend_from_slice(&(i as u16 + 1).to_le_bytes()); // vd_ndx
            out.extend_from_slice(&1u16.to_le_bytes()); // vd_cnt
            out.extend_from_slice(&elf_hash(name).to_le_bytes());
            out.extend_from_slice(&20u32.to_le_bytes()); // vd_aux
            out.extend_from_slice(&(if last { 0u32 } else { 28 }).to_le_bytes());
            out.extend_from_slice(&(add(name) as u32).to_le_bytes()); // vda_name
            out.extend_from_slice(&0u32.to_le_bytes()); // vda_next
        }
        out
    }
}
