//! Metadata blocks: the 8 KiB units every SquashFS table is made of, each
//! stored behind a 16-bit header (size, bit 15 = stored raw), and the
//! "lookup tables" (fragments, ids, xattr ids) indexed by an array of
//! absolute block locations.

use std::io;

use super::compress::Compressor;

/// The uncompressed size of a metadata block.
pub(crate) const BLOCK: usize = 8192;

/// A position in a metadata table: the start of the block (relative to
/// the table start, in stored bytes) and the offset inside its
/// uncompressed contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    pub block: u64,
    pub offset: u16,
}

impl Position {
    /// The 48/16-bit packed reference inodes and xattr ids use.
    pub(crate) fn reference(self) -> u64 {
        (self.block << 16) | u64::from(self.offset)
    }
}

/// A table of metadata blocks being built in memory; blocks are
/// compressed as soon as they are full, so a position's block start is
/// known when the position is taken.
#[derive(Debug, Default)]
pub(crate) struct Table {
    stored: Vec<u8>,
    pending: Vec<u8>,
    block_starts: Vec<u64>,
}

impl Table {
    /// Where the next byte written will be.
    pub(crate) fn position(&self) -> Position {
        Position {
            block: self.stored.len() as u64,
            // `pending` is flushed at BLOCK bytes, so this fits.
            offset: self.pending.len() as u16,
        }
    }

    /// Append `bytes`, compressing each block as it fills.
    pub(crate) fn write(&mut self, c: &mut Compressor, bytes: &[u8]) -> io::Result<()> {
        self.pending.extend_from_slice(bytes);
        while self.pending.len() >= BLOCK {
            let rest = self.pending.split_off(BLOCK);
            let full = std::mem::replace(&mut self.pending, rest);
            self.store(c, &full)?;
        }
        Ok(())
    }

    fn store(&mut self, c: &mut Compressor, block: &[u8]) -> io::Result<()> {
        self.block_starts.push(self.stored.len() as u64);
        let stored = c.block(block)?;
        // A stored block is at most BLOCK bytes, so the size fits in 15 bits.
        let header = stored.bytes.len() as u16 | if stored.raw { 0x8000 } else { 0 };
        self.stored.extend_from_slice(&header.to_le_bytes());
        self.stored.extend_from_slice(&stored.bytes);
        Ok(())
    }

    /// Flush the last, partial block; returns the stored bytes and the
    /// start of each block relative to the table start.
    pub(crate) fn finish(mut self, c: &mut Compressor) -> io::Result<(Vec<u8>, Vec<u64>)> {
        if !self.pending.is_empty() {
            let last = std::mem::take(&mut self.pending);
            self.store(c, &last)?;
        }
        Ok((self.stored, self.block_starts))
    }
}

/// A lookup table laid out for the image at `at`: its metadata blocks,
/// then `prefix` (the xattr id table's header), then the array of the
/// blocks' absolute locations. Returns the bytes and the absolute position
/// of what follows the blocks (what the superblock points to).
pub(crate) fn lookup_table(
    c: &mut Compressor,
    entries: &[u8],
    at: u64,
    prefix: &[u8],
) -> io::Result<(Vec<u8>, u64)> {
    let mut table = Table::default();
    table.write(c, entries)?;
    let (mut bytes, starts) = table.finish(c)?;
    let index_at = at + bytes.len() as u64;
    bytes.extend_from_slice(prefix);
    for start in starts {
        bytes.extend_from_slice(&(at + start).to_le_bytes());
    }
    Ok((bytes, index_at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::fsimage::squashfs::Compression;

    #[test]
    fn positions_follow_stored_block_starts() {
        let mut c = Compressor::new(Compression::Zstd { level: 3 }, 131072).unwrap();
        let mut t = Table::default();
        assert_eq!(
            t.position(),
            Position {
                block: 0,
                offset: 0
            }
        );
        t.write(&mut c, &[7u8; 8000]).unwrap();
        assert_eq!(
            t.position(),
            Position {
                block: 0,
                offset: 8000
            }
        );
        t.write(&mut c, &[7u8; 300]).unwrap();
        let p = t.position();
        assert_eq!(p.offset, 108);
        assert!(
            p.block > 2 && p.block < 200,
            "first block compressed: {p:?}"
        );
        let (bytes, starts) = t.finish(&mut c).unwrap();
        assert_eq!(starts, vec![0, p.block]);
        let header = u16::from_le_bytes([bytes[0], bytes[1]]);
        assert_eq!(u64::from(header & 0x7fff) + 2, p.block);
        assert_eq!(header & 0x8000, 0);
    }
}
