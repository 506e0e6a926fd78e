//! Symbol versioning (GNU `DT_VERNEED` / `DT_VERDEF`): which versions an
//! object needs from each library (`GLIBC_2.34` from `libc.so.6`) and
//! which versions a library defines.
//!
//! Read through the dynamic segment, as ld.so reads them, not through the
//! section headers (goblin's `symver` module needs those, and a stripped
//! or generated file may have none). The tables are addressed by virtual
//! address; [`vm_to_offset`] maps them through the PT_LOAD segments.
//! Every record is bounds-checked: a malformed table is `None`, never a
//! panic.

use goblin::elf::program_header::{PT_LOAD, ProgramHeader};
use serde::Serialize;

/// `vna_flags` bit of a weak version need: ld.so does not fail when the
/// library lacks it.
const VER_FLG_WEAK: u16 = 0x2;
/// `vd_flags` bit of the base definition (the file's own name).
const VER_FLG_BASE: u16 = 0x1;
/// Sizes of the records; the same in ELF32 and ELF64.
const VERNEED_SIZE: usize = 16;
const VERNAUX_SIZE: usize = 16;
const VERDEF_SIZE: usize = 20;
const VERDAUX_SIZE: usize = 8;

/// The versions an object needs from one library (`DT_VERNEED` entry).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct VersionNeed {
    /// The library, as named in DT_NEEDED (`libc.so.6`).
    pub file: String,
    /// Non-weak versions needed from it (`GLIBC_2.34`), in file order.
    pub versions: Vec<String>,
}

/// The file offset of virtual address `address`, through the PT_LOAD
/// segment that maps it from the file.
pub(super) fn vm_to_offset(phdrs: &[ProgramHeader], address: u64) -> Option<u64> {
    phdrs.iter().find_map(|ph| {
        if ph.p_type != PT_LOAD {
            return None;
        }
        let within = address.checked_sub(ph.p_vaddr)?;
        if within >= ph.p_filesz {
            return None;
        }
        ph.p_offset.checked_add(within)
    })
}

/// Reads little- or big-endian integers at checked offsets.
#[derive(Clone, Copy)]
pub(super) struct Reader<'a> {
    pub bytes: &'a [u8],
    pub little: bool,
}

impl Reader<'_> {
    fn take<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        self.bytes.get(at..at.checked_add(N)?)?.try_into().ok()
    }

    fn u16(&self, at: usize) -> Option<u16> {
        let raw = self.take::<2>(at)?;
        Some(if self.little {
            u16::from_le_bytes(raw)
        } else {
            u16::from_be_bytes(raw)
        })
    }

    fn u32(&self, at: usize) -> Option<u32> {
        let raw = self.take::<4>(at)?;
        Some(if self.little {
            u32::from_le_bytes(raw)
        } else {
            u32::from_be_bytes(raw)
        })
    }
}

/// Walks a chain of records: `count` at most, starting at `start`, each
/// record giving the offset of the next (0 ends it). The count is capped
/// by what could fit in the file, so a hostile count cannot spin.
fn chain(
    reader: Reader<'_>,
    start: usize,
    count: usize,
    record_size: usize,
    mut visit: impl FnMut(usize) -> Option<u32>,
) -> Option<()> {
    let mut at = start;
    for _ in 0..count.min(reader.bytes.len() / record_size) {
        let next = visit(at)?;
        if next == 0 {
            break;
        }
        at = at.checked_add(usize::try_from(next).ok()?)?;
    }
    Some(())
}

/// Parses the `DT_VERNEED` table at file offset `offset` with `count`
/// entries; names come from the dynamic string table `strings`.
pub(super) fn parse_verneed(
    reader: Reader<'_>,
    offset: u64,
    count: u64,
    strings: &[u8],
) -> Option<Vec<VersionNeed>> {
    let mut needs = Vec::new();
    let start = usize::try_from(offset).ok()?;
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    chain(reader, start, count, VERNEED_SIZE, |at| {
        let aux_count = reader.u16(at + 2)?;
        let file = super::string_at(strings, u64::from(reader.u32(at + 4)?));
        let aux = at.checked_add(usize::try_from(reader.u32(at + 8)?).ok()?)?;
        let mut versions = Vec::new();
        chain(
            reader,
            aux,
            usize::from(aux_count),
            VERNAUX_SIZE,
            |aux_at| {
                let flags = reader.u16(aux_at + 4)?;
                let name = reader.u32(aux_at + 8)?;
                if flags & VER_FLG_WEAK == 0 {
                    versions.push(super::string_at(strings, u64::from(name)));
                }
                reader.u32(aux_at + 12)
            },
        )?;
        needs.push(VersionNeed { file, versions });
        reader.u32(at + 12)
    })?;
    Some(needs)
}

/// Parses the `DT_VERDEF` table: the names of the versions defined, the
/// base definition (the file's own name) left out.
pub(super) fn parse_verdef(
    reader: Reader<'_>,
    offset: u64,
    count: u64,
    strings: &[u8],
) -> Option<Vec<String>> {
    let mut defs = Vec::new();
    let start = usize::try_from(offset).ok()?;
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    chain(reader, start, count, VERDEF_SIZE, |at| {
        let flags = reader.u16(at + 2)?;
        let aux_count = reader.u16(at + 6)?;
        // The first Verdaux names the version; later ones its parents.
        if flags & VER_FLG_BASE == 0 && aux_count > 0 {
            let aux = at.checked_add(usize::try_from(reader.u32(at + 12)?).ok()?)?;
            if aux.checked_add(VERDAUX_SIZE)? > reader.bytes.len() {
                return None;
            }
            defs.push(super::string_at(strings, u64::from(reader.u32(aux)?)));
        }
        reader.u32(at + 16)
    })?;
    Some(defs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_count_stops_at_the_end_of_the_file() {
        // One record whose "next" points at itself, with a huge count.
        let mut table = vec![0u8; VERNEED_SIZE];
        table[0] = 1;
        table[12] = 0; // vn_next = 0 ends the chain
        let reader = Reader {
            bytes: &table,
            little: true,
        };
        let needs = parse_verneed(reader, 0, u64::MAX, b"\0").unwrap();
        assert_eq!(needs.len(), 1);
        // A vn_aux outside the table is malformed as soon as it is read.
        table[8] = 0xff;
        table[2] = 1; // one aux entry
        let reader = Reader {
            bytes: &table,
            little: true,
        };
        assert!(parse_verneed(reader, 0, 1, b"\0").is_none());
    }
}
