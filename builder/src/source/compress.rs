//! The compressions Debian uses for .deb members and archive indexes.
//!
//! All decoders are linked in (zstd and xz as bundled C, gzip and bzip2 in
//! Rust), so the one static `ironrack` binary reads any .deb without
//! external tools.

use std::fmt;
use std::io::{self, BufReader, Read};

/// A compression format, chosen by file or member name suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// No compression.
    None,
    /// gzip (`.gz`).
    Gzip,
    /// xz (`.xz`).
    Xz,
    /// zstd (`.zst`).
    Zstd,
    /// bzip2 (`.bz2`; data.tar only, old packages).
    Bzip2,
    /// legacy lzma-alone (`.lzma`; data.tar only, very old packages).
    Lzma,
}

impl Compression {
    /// The compression named by the suffix of `name` after `stem`
    /// (`control.tar` + `.xz`); `None` (the Rust value) when the suffix is
    /// not one dpkg knows.
    pub fn from_suffix(name: &str, stem: &str) -> Option<Self> {
        let suffix = name.strip_prefix(stem)?;
        Some(match suffix {
            "" => Self::None,
            ".gz" => Self::Gzip,
            ".xz" => Self::Xz,
            ".zst" => Self::Zstd,
            ".bz2" => Self::Bzip2,
            ".lzma" => Self::Lzma,
            _ => return None,
        })
    }

    /// The compression of an index file from its extension (anything
    /// unknown is read as plain text).
    pub fn from_path(path: &std::path::Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("gz") => Self::Gzip,
            Some("xz") => Self::Xz,
            Some("zst") => Self::Zstd,
            Some("bz2") => Self::Bzip2,
            Some("lzma") => Self::Lzma,
            _ => Self::None,
        }
    }

    /// The file name suffix, with its dot (`""` for none).
    pub fn suffix(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Gzip => ".gz",
            Self::Xz => ".xz",
            Self::Zstd => ".zst",
            Self::Bzip2 => ".bz2",
            Self::Lzma => ".lzma",
        }
    }

    /// A streaming decoder over `inner`.
    pub fn decoder<R: Read>(self, inner: R) -> io::Result<Decoder<R>> {
        Ok(match self {
            Self::None => Decoder::Plain(inner),
            Self::Gzip => Decoder::Gzip(Box::new(flate2::read::MultiGzDecoder::new(inner))),
            Self::Xz => Decoder::Xz(Box::new(liblzma::read::XzDecoder::new_multi_decoder(inner))),
            Self::Zstd => Decoder::Zstd(Box::new(zstd::stream::read::Decoder::new(inner)?)),
            Self::Bzip2 => Decoder::Bzip2(Box::new(bzip2::read::MultiBzDecoder::new(inner))),
            Self::Lzma => {
                let stream = liblzma::stream::Stream::new_lzma_decoder(u64::MAX)
                    .map_err(io::Error::other)?;
                Decoder::Xz(Box::new(liblzma::read::XzDecoder::new_stream(
                    inner, stream,
                )))
            }
        })
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Xz => "xz",
            Self::Zstd => "zstd",
            Self::Bzip2 => "bzip2",
            Self::Lzma => "lzma",
        })
    }
}

/// A decompressing reader (an enum, so it needs no `'static` bound).
pub enum Decoder<R: Read> {
    /// Pass-through.
    Plain(R),
    /// gzip.
    Gzip(Box<flate2::read::MultiGzDecoder<R>>),
    /// xz or lzma-alone.
    Xz(Box<liblzma::read::XzDecoder<R>>),
    /// zstd.
    Zstd(Box<zstd::stream::read::Decoder<'static, BufReader<R>>>),
    /// bzip2.
    Bzip2(Box<bzip2::read::MultiBzDecoder<R>>),
}

impl<R: Read> fmt::Debug for Decoder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Plain(_) => "Decoder::Plain",
            Self::Gzip(_) => "Decoder::Gzip",
            Self::Xz(_) => "Decoder::Xz",
            Self::Zstd(_) => "Decoder::Zstd",
            Self::Bzip2(_) => "Decoder::Bzip2",
        })
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(r) => r.read(buf),
            Self::Gzip(r) => r.read(buf),
            Self::Xz(r) => r.read(buf),
            Self::Zstd(r) => r.read(buf),
            Self::Bzip2(r) => r.read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn suffixes() {
        assert_eq!(
            Compression::from_suffix("data.tar.zst", "data.tar"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            Compression::from_suffix("data.tar", "data.tar"),
            Some(Compression::None)
        );
        assert_eq!(Compression::from_suffix("data.tar.lz4", "data.tar"), None);
        assert_eq!(
            Compression::from_path("Packages.xz".as_ref()),
            Compression::Xz
        );
    }

    #[test]
    fn decodes_each_format() {
        let text = b"Package: x\n".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(&text).unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        bz.write_all(&text).unwrap();
        let encoded = [
            (Compression::Gzip, gz.finish().unwrap()),
            (Compression::Xz, xz.finish().unwrap()),
            (Compression::Bzip2, bz.finish().unwrap()),
            (Compression::Zstd, zstd::encode_all(&text[..], 3).unwrap()),
            (Compression::None, text.clone()),
        ];
        for (c, bytes) in encoded {
            let mut out = Vec::new();
            c.decoder(&bytes[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, text, "{c}");
        }
    }
}
