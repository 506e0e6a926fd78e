//! Block compression: one [`Compressor`] per thread, and the rule that a
//! block is stored raw when compressing does not make it smaller.

use std::io;

use super::Compression;

/// A block as it goes into the image.
#[derive(Debug)]
pub(crate) struct Block {
    /// The stored bytes (compressed, or the raw input when that is smaller).
    pub bytes: Vec<u8>,
    /// Whether `bytes` is the raw input.
    pub raw: bool,
}

/// A compressor with its reusable state (zstd context).
pub(crate) struct Compressor {
    kind: Kind,
}

enum Kind {
    Zstd(zstd::bulk::Compressor<'static>),
    Xz { level: u32, dict_size: u32 },
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Compressor")
    }
}

impl Compressor {
    /// A compressor for `compression`; xz dictionaries are capped at the
    /// block size, which is what the kernel's decompressor allocates for
    /// when the image carries no compressor options.
    pub(crate) fn new(compression: Compression, block_size: u32) -> io::Result<Self> {
        let kind = match compression {
            Compression::Zstd { level } => Kind::Zstd(zstd::bulk::Compressor::new(level)?),
            Compression::Xz { level } => Kind::Xz {
                level,
                dict_size: block_size.max(8192),
            },
        };
        Ok(Self { kind })
    }

    /// Compress `input`; keep it raw when the result would not be smaller.
    pub(crate) fn block(&mut self, input: &[u8]) -> io::Result<Block> {
        let compressed = match &mut self.kind {
            Kind::Zstd(z) => {
                let mut out = Vec::with_capacity(input.len());
                match z.compress_to_buffer(input, &mut out) {
                    Ok(_) => Some(out),
                    // The output did not fit in input.len() bytes.
                    Err(_) if !input.is_empty() => None,
                    Err(e) => return Err(e),
                }
            }
            Kind::Xz { level, dict_size } => Some(xz(input, *level, *dict_size)?),
        };
        Ok(match compressed {
            Some(bytes) if bytes.len() < input.len() => Block { bytes, raw: false },
            _ => Block {
                bytes: input.to_vec(),
                raw: true,
            },
        })
    }
}

/// One xz stream (LZMA2, CRC32 check: the checks the kernel's xz
/// decoder knows).
fn xz(input: &[u8], level: u32, dict_size: u32) -> io::Result<Vec<u8>> {
    use liblzma::stream::{Action, Check, Filters, LzmaOptions, Status, Stream};
    let mut options = LzmaOptions::new_preset(level).map_err(io::Error::other)?;
    options.dict_size(dict_size);
    let mut filters = Filters::new();
    filters.lzma2(&options);
    let mut stream =
        Stream::new_stream_encoder(&filters, Check::Crc32).map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(input.len() + input.len() / 2 + 128);
    loop {
        let consumed = usize::try_from(stream.total_in()).unwrap_or(usize::MAX);
        let rest = input.get(consumed..).unwrap_or_default();
        match stream.process_vec(rest, &mut out, Action::Finish) {
            Ok(Status::StreamEnd) => return Ok(out),
            Ok(_) => out.reserve(out.capacity().max(4096)),
            Err(e) => return Err(io::Error::other(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incompressible_input_is_kept_raw_and_text_is_compressed() {
        for compression in [Compression::Zstd { level: 3 }, Compression::Xz { level: 6 }] {
            let mut c = Compressor::new(compression, 131072).unwrap();
            let text = b"squashfs ".repeat(1000);
            let block = c.block(&text).unwrap();
            assert!(!block.raw);
            assert!(block.bytes.len() < text.len() / 10);
            // A short, high-entropy input cannot shrink.
            let noise: Vec<u8> = (0u32..64)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect();
            let block = c.block(&noise).unwrap();
            assert!(block.raw);
            assert_eq!(block.bytes, noise);
        }
    }

    #[test]
    fn zstd_round_trips() {
        let mut c = Compressor::new(Compression::Zstd { level: 15 }, 131072).unwrap();
        let text: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let block = c.block(&text).unwrap();
        assert!(!block.raw);
        assert_eq!(
            zstd::bulk::decompress(&block.bytes, text.len()).unwrap(),
            text
        );
    }
}
