//! A second Authenticode implementation, written from the Authenticode PE
//! spec and EDK2's `Tcg2MeasurePeImage` without goblin: it reads the header
//! fields by offset and lays out the hashed ranges itself. Tests require the
//! production code (goblin-based) to agree with it range for range.

use std::ops::Range;

use sha2::{Digest as _, Sha256};

/// The hashed ranges (empty ones dropped) and their SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticode {
    pub ranges: Vec<Range<usize>>,
    pub digest: [u8; 32],
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, String> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(format!("u16 at {at:#x} past end"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(format!("u32 at {at:#x} past end"))
}

pub fn authenticode(file: &[u8]) -> Result<Authenticode, String> {
    // EDK2: the PE header follows the DOS header when there is one, else
    // the file starts with it.
    let pe = if file.starts_with(b"MZ") {
        u32_at(file, 0x3C)? as usize
    } else {
        0
    };
    if file.get(pe..pe + 4) != Some(b"PE\0\0".as_slice()) {
        return Err("no PE signature".into());
    }
    let machine = u16_at(file, pe + 4)?;
    let sections = u16_at(file, pe + 6)? as usize;
    let optional_size = u16_at(file, pe + 20)? as usize;
    let optional = pe + 24;
    let mut magic = u16_at(file, optional)?;
    if machine == 0x0200 && magic == 0x010B {
        magic = 0x020B; // EDK2's Itanium ELILO quirk
    }
    let (count_at, dirs_at) = match magic {
        0x010B => (optional + 92, optional + 96),
        0x020B => (optional + 108, optional + 112),
        other => return Err(format!("optional header magic {other:#x}")),
    };
    let headers = u32_at(file, optional + 60)? as usize;
    let directories = u32_at(file, count_at)?;
    let checksum = optional + 64;
    if headers > file.len() {
        return Err("SizeOfHeaders past end of file".into());
    }

    let mut ranges: Vec<Range<usize>> = Vec::with_capacity(8);
    ranges.push(0..checksum);
    let security = dirs_at + 4 * 8;
    let cert_size = if directories <= 4 {
        ranges.push(checksum + 4..headers.max(checksum + 4));
        0
    } else {
        if headers < security + 8 {
            return Err("SizeOfHeaders ends inside the data directories".into());
        }
        ranges.push(checksum + 4..security);
        ranges.push(security + 8..headers);
        u32_at(file, security + 4)? as usize
    };
    if headers < checksum + 4 {
        return Err("SizeOfHeaders ends before the checksum".into());
    }

    // (PointerToRawData, SizeOfRawData) of each section header, sorted
    // stably by file offset like EDK2's insertion sort.
    let table = optional + optional_size;
    let mut raw: Vec<(usize, usize)> = (0..sections)
        .map(|i| {
            let header = table + 40 * i;
            Ok((
                u32_at(file, header + 20)? as usize,
                u32_at(file, header + 16)? as usize,
            ))
        })
        .collect::<Result<_, String>>()?;
    raw.sort_by_key(|&(pointer, _)| pointer);

    let mut hashed = headers;
    for (pointer, size) in raw.into_iter().filter(|&(_, size)| size != 0) {
        if pointer + size > file.len() {
            return Err(format!("section at {pointer:#x}+{size:#x} past end"));
        }
        ranges.push(pointer..pointer + size);
        hashed += size;
    }
    if file.len() > hashed {
        if file.len() > hashed + cert_size {
            ranges.push(hashed..file.len() - cert_size);
        } else if file.len() < hashed + cert_size {
            return Err("certificate table larger than the unhashed tail".into());
        }
    }
    ranges.retain(|r| !r.is_empty());
    let mut sha = Sha256::new();
    for r in &ranges {
        sha.update(&file[r.clone()]);
    }
    Ok(Authenticode {
        ranges,
        digest: sha.finalize().into(),
    })
}
