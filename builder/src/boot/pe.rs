//! PE/COFF images: the section table and the Authenticode SHA-256 that
//! UEFI firmware logs in PCR 4 for every EFI application it starts.
//!
//! # The digest firmware computes
//!
//! EDK2 (OVMF and most vendor firmware) hashes, per the Authenticode spec:
//! the headers up to the CheckSum field, the headers after it up to the
//! certificate-table directory entry (when NumberOfRvaAndSizes > 4), the
//! rest of the headers up to SizeOfHeaders, every section with raw data in
//! order of PointerToRawData, then the bytes from offset SUM_OF_BYTES_HASHED
//! to the end of the file minus the certificate table's size. It does **not**
//! pad the data to a multiple of 8 bytes (facts.md: a 15302497-byte UKI
//! gave EDK2's 8fa6adb8…, padded ranges give 495c4c6e…).
//!
//! # goblin
//!
//! goblin parses the headers and yields the Authenticode ranges, with two
//! caveats handled here: its range iterator slices the file without bounds
//! checks (a section running past the end of the file panics), so every
//! bound is checked first; and it always appends zero padding to a multiple
//! of 8, which EDK2 never hashes, so the padding slice (the only slice that
//! does not point into the file) is dropped. goblin also skips the 8 bytes of
//! the certificate directory entry even when NumberOfRvaAndSizes ≤ 4 (there
//! is no such entry then and EDK2 hashes those bytes); the two ranges around
//! it are joined in that case.

use std::ops::Range;

use goblin::pe::PE;
use goblin::pe::options::{ParseMode, ParseOptions};
use goblin::pe::section_table::SectionTable;
use sha2::{Digest as _, Sha256};

/// Why a file is not a PE image whose Authenticode digest can be computed.
#[derive(Debug, thiserror::Error)]
pub enum PeError {
    /// goblin could not parse the headers.
    #[error("parsing PE headers: {source}")]
    Parse {
        /// goblin's error.
        #[source]
        source: goblin::error::Error,
    },
    /// A COFF object without an optional header: not an image.
    #[error("PE file has no optional header (an object file, not an image)")]
    NoOptionalHeader,
    /// The headers end before the structures Authenticode skips, or past
    /// the end of the file.
    #[error(
        "PE SizeOfHeaders {size_of_headers:#x} must cover the header fields up to {needed:#x} and fit the {file_len}-byte file"
    )]
    HeadersOutOfBounds {
        /// SizeOfHeaders.
        size_of_headers: u64,
        /// End of the certificate directory entry.
        needed: u64,
        /// File size.
        file_len: u64,
    },
    /// A section's raw data runs past the end of the file.
    #[error(
        "PE section {name:?}: raw data at {offset:#x} of {size:#x} bytes runs past the end of the {file_len}-byte file"
    )]
    SectionOutOfBounds {
        /// Section name.
        name: String,
        /// PointerToRawData.
        offset: u64,
        /// SizeOfRawData.
        size: u64,
        /// File size.
        file_len: u64,
    },
    /// The certificate table is larger than the bytes after the hashed
    /// sections (EDK2 refuses such an image too).
    #[error(
        "PE certificate table of {cert_size} bytes does not fit after the {hashed} hashed bytes of the {file_len}-byte file"
    )]
    CertificateTableOutOfBounds {
        /// Certificate directory Size.
        cert_size: u64,
        /// SUM_OF_BYTES_HASHED.
        hashed: u64,
        /// File size.
        file_len: u64,
    },
}

/// One entry of the section table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The name, NULs trimmed (lossy UTF-8).
    pub name: String,
    /// The 8 name bytes as stored.
    pub raw_name: [u8; 8],
    /// VirtualSize: bytes in memory.
    pub virtual_size: u32,
    /// VirtualAddress (RVA).
    pub virtual_address: u32,
    /// SizeOfRawData: bytes in the file.
    pub size_of_raw_data: u32,
    /// PointerToRawData: file offset.
    pub pointer_to_raw_data: u32,
}

impl Section {
    fn from_goblin(s: &SectionTable) -> Self {
        let end = s.name.iter().position(|&b| b == 0).unwrap_or(s.name.len());
        Self {
            name: String::from_utf8_lossy(&s.name[..end]).into_owned(),
            raw_name: s.name,
            virtual_size: s.virtual_size,
            virtual_address: s.virtual_address,
            size_of_raw_data: s.size_of_raw_data,
            pointer_to_raw_data: s.pointer_to_raw_data,
        }
    }
}

/// Byte offsets of the header fields Authenticode treats specially.
#[derive(Debug, Clone)]
struct Layout {
    checksum: Range<usize>,
    has_cert_dir: bool,
    size_of_headers: usize,
    cert_size: u64,
}

/// A parsed PE image whose bounds have been checked.
#[derive(Debug)]
pub struct PeImage<'a> {
    bytes: &'a [u8],
    pe: PE<'a>,
    layout: Layout,
}

impl<'a> PeImage<'a> {
    /// Parses `bytes` and checks every bound the Authenticode ranges use.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, PeError> {
        let mut opts = ParseOptions::default().with_parse_mode(ParseMode::Permissive);
        // Imports, resources and TLS play no part in what is measured; not
        // parsing them keeps unusual but loadable images readable.
        opts = opts
            .with_parse_imports(false)
            .with_parse_resources(false)
            .with_parse_tls_data(false);
        let pe = PE::parse_with_opts(bytes, &opts).map_err(|source| PeError::Parse { source })?;
        let layout = layout(&pe, bytes.len())?;
        check_sections(&pe, &layout, bytes.len())?;
        Ok(Self { bytes, pe, layout })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The section table, in table order.
    pub fn sections(&self) -> Vec<Section> {
        self.pe.sections.iter().map(Section::from_goblin).collect()
    }

    /// Whether the image carries a certificate table (is signed).
    pub fn is_signed(&self) -> bool {
        self.layout.has_cert_dir && self.layout.cert_size > 0
    }

    /// A section's bytes as the loader puts them in memory (its first
    /// VirtualSize bytes), when the file holds all of them; `None` when
    /// VirtualSize exceeds SizeOfRawData (the loader would zero-fill the
    /// rest).
    pub fn loaded_data(&self, section: &Section) -> Option<&'a [u8]> {
        self.raw_data(section).get(..section.virtual_size as usize)
    }

    /// A section's raw data in the file (bounds were checked by `parse`).
    pub fn raw_data(&self, section: &Section) -> &'a [u8] {
        let start = (section.pointer_to_raw_data as usize).min(self.bytes.len());
        let end = start
            .saturating_add(section.size_of_raw_data as usize)
            .min(self.bytes.len());
        &self.bytes[start..end]
    }

    /// The file ranges EDK2 hashes for the Authenticode digest, in order.
    pub fn authenticode_ranges(&self) -> Vec<Range<usize>> {
        let mut ranges: Vec<Range<usize>> = self
            .pe
            .authenticode_ranges()
            .filter_map(|slice| self.file_range(slice))
            .collect();
        // goblin's first three ranges are the headers around the checksum and
        // the certificate entry. Without a certificate entry (≤ 4 data
        // directories) EDK2 hashes everything after the checksum.
        if !self.layout.has_cert_dir && ranges.len() >= 3 {
            ranges.remove(2);
            ranges[1] = self.layout.checksum.end..self.layout.size_of_headers;
        }
        ranges.retain(|r| !r.is_empty());
        ranges
    }

    /// Where a slice goblin yielded lies in the file; `None` for goblin's
    /// zero padding, a static buffer outside the file.
    fn file_range(&self, slice: &[u8]) -> Option<Range<usize>> {
        let start = (slice.as_ptr() as usize).checked_sub(self.bytes.as_ptr() as usize)?;
        let end = start.checked_add(slice.len())?;
        (end <= self.bytes.len()).then_some(start..end)
    }

    /// The Authenticode SHA-256 firmware (EDK2) logs for this image.
    pub fn authenticode_sha256(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for range in self.authenticode_ranges() {
            hasher.update(&self.bytes[range]);
        }
        hasher.finalize().into()
    }
}

/// The Authenticode SHA-256 of a PE image (see [`PeImage::authenticode_sha256`]).
pub fn authenticode_sha256(bytes: &[u8]) -> Result<[u8; 32], PeError> {
    Ok(PeImage::parse(bytes)?.authenticode_sha256())
}

fn layout(pe: &PE<'_>, file_len: usize) -> Result<Layout, PeError> {
    let optional = pe
        .header
        .optional_header
        .as_ref()
        .ok_or(PeError::NoOptionalHeader)?;
    let optional_offset = pe.header.dos_header.pe_pointer as usize + 4 + 20;
    let is_pe32 = optional.standard_fields.magic == goblin::pe::optional_header::MAGIC_32;
    // Both layouts put CheckSum at offset 64; the data directories start at
    // 96 (PE32) or 112 (PE32+), and the certificate entry is the fifth.
    let checksum = optional_offset + 64..optional_offset + 68;
    let cert_dir_start = optional_offset + if is_pe32 { 128 } else { 144 };
    let cert_dir = cert_dir_start..cert_dir_start + 8;
    let size_of_headers = optional.windows_fields.size_of_headers as usize;
    if cert_dir.end > size_of_headers || size_of_headers > file_len {
        return Err(PeError::HeadersOutOfBounds {
            size_of_headers: size_of_headers as u64,
            needed: cert_dir.end as u64,
            file_len: file_len as u64,
        });
    }
    let has_cert_dir = optional.windows_fields.number_of_rva_and_sizes > 4;
    let cert_size = match optional.data_directories.get_certificate_table() {
        Some(dir) if has_cert_dir => u64::from(dir.size),
        _ => 0,
    };
    Ok(Layout {
        checksum,
        has_cert_dir,
        size_of_headers,
        cert_size,
    })
}

fn check_sections(pe: &PE<'_>, layout: &Layout, file_len: usize) -> Result<(), PeError> {
    let file_len = file_len as u64;
    let mut hashed = layout.size_of_headers as u64;
    for section in pe.sections.iter().filter(|s| s.size_of_raw_data != 0) {
        let (offset, size) = (
            u64::from(section.pointer_to_raw_data),
            u64::from(section.size_of_raw_data),
        );
        if offset + size > file_len {
            return Err(PeError::SectionOutOfBounds {
                name: Section::from_goblin(section).name,
                offset,
                size,
                file_len,
            });
        }
        hashed += size;
    }
    if file_len > hashed && layout.cert_size > file_len - hashed {
        return Err(PeError::CertificateTableOutOfBounds {
            cert_size: layout.cert_size,
            hashed,
            file_len,
        });
    }
    Ok(())
}
