//! Minimal valid PE images made in code, for tests: chosen sections with
//! any sizes (not multiples of 8 or of FileAlignment), PE32 or PE32+, an
//! optional certificate table, extra data after the sections, sections
//! laid out in the file in another order than the table, and a chosen
//! NumberOfRvaAndSizes. They are small (headers plus the section data)
//! and exercise every branch of the Authenticode algorithm.

/// Optional-header format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeFormat {
    /// PE32 (magic 0x10b, i386).
    Pe32,
    /// PE32+ (magic 0x20b, x86-64), what EFI images on x86-64 use.
    Pe32Plus,
}

/// One section of a fixture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureSection {
    /// Name (at most 8 bytes; longer names are cut).
    pub name: String,
    /// Raw data; SizeOfRawData is its exact length (no padding).
    pub data: Vec<u8>,
    /// VirtualSize; `None` means the data's length.
    pub virtual_size: Option<u32>,
}

impl FixtureSection {
    /// A section whose VirtualSize is its data's length.
    pub fn new(name: &str, data: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.to_owned(),
            data: data.into(),
            virtual_size: None,
        }
    }
}

/// A PE image to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeFixture {
    /// PE32 or PE32+.
    pub format: PeFormat,
    /// FileAlignment: section data starts at multiples of it (1 allowed,
    /// to pack sections at odd offsets).
    pub file_alignment: u32,
    /// The sections, in section-table order.
    pub sections: Vec<FixtureSection>,
    /// Place the sections' data in the file in reverse table order (the
    /// digest must follow PointerToRawData, not the table).
    pub reverse_file_order: bool,
    /// NumberOfRvaAndSizes (16 normally; ≤ 4 means no certificate entry).
    pub number_of_rva_and_sizes: u32,
    /// Bytes after the last section's data (hashed as extra data).
    pub trailing: Vec<u8>,
    /// A certificate payload: wrapped in a WIN_CERTIFICATE, appended at an
    /// 8-aligned offset, named by the certificate directory entry.
    pub certificate: Option<Vec<u8>>,
    /// The CheckSum field (excluded from the digest).
    pub checksum: u32,
}

impl Default for PeFixture {
    fn default() -> Self {
        Self {
            format: PeFormat::Pe32Plus,
            file_alignment: 0x200,
            sections: Vec::new(),
            reverse_file_order: false,
            number_of_rva_and_sizes: 16,
            trailing: Vec::new(),
            certificate: None,
            checksum: 0,
        }
    }
}

const DOS_HEADER: usize = 0x40;
const SECTION_HEADER: usize = 40;
const SECTION_ALIGNMENT: u32 = 0x1000;

fn align(value: usize, to: usize) -> usize {
    value.div_ceil(to.max(1)) * to.max(1)
}

fn put(out: &mut [u8], at: usize, bytes: &[u8]) {
    out[at..at + bytes.len()].copy_from_slice(bytes);
}

impl PeFixture {
    /// A systemd-stub-like PE32+ that `build_uki` accepts: `text` as its
    /// code, the `.sdmagic` of Debian 12's stub, and room in the headers
    /// for the section headers a UKI adds (as the real stub has).
    pub fn stub_like(text: Vec<u8>) -> Self {
        Self {
            sections: vec![
                FixtureSection::new(".text", text),
                FixtureSection::new(
                    ".sdmagic",
                    b"#### LoaderInfo: systemd-stub 252.39-1~deb12u2 ####".to_vec(),
                ),
            ],
            file_alignment: 0x400,
            ..Self::default()
        }
    }

    /// A UKI-like PE32+: a small `.text` stub and the sections systemd-stub
    /// measures, with sizes that are not multiples of 8.
    pub fn uki_like(linux: &[u8], initrd: &[u8], cmdline: &str) -> Self {
        Self {
            sections: vec![
                FixtureSection::new(".text", vec![0xC3; 0x61]),
                FixtureSection::new(".osrel", b"ID=ironrack\nVERSION_ID=1\n".to_vec()),
                FixtureSection::new(".cmdline", cmdline.as_bytes().to_vec()),
                FixtureSection::new(".linux", linux.to_vec()),
                FixtureSection::new(".initrd", initrd.to_vec()),
            ],
            ..Self::default()
        }
    }

    fn optional_header_size(&self) -> usize {
        let fixed = if self.format == PeFormat::Pe32 {
            96
        } else {
            112
        };
        fixed + 8 * self.number_of_rva_and_sizes as usize
    }

    /// The image's bytes.
    pub fn build(&self) -> Vec<u8> {
        let optional_offset = DOS_HEADER + 4 + 20;
        let table_offset = optional_offset + self.optional_header_size();
        let headers_end = table_offset + SECTION_HEADER * self.sections.len();
        let size_of_headers = align(headers_end, self.file_alignment as usize);

        // File offsets of each section's data.
        let mut offsets = vec![0usize; self.sections.len()];
        let mut cursor = size_of_headers;
        let order: Vec<usize> = if self.reverse_file_order {
            (0..self.sections.len()).rev().collect()
        } else {
            (0..self.sections.len()).collect()
        };
        for &i in &order {
            cursor = align(cursor, self.file_alignment as usize);
            offsets[i] = cursor;
            cursor += self.sections[i].data.len();
        }
        let mut out = vec![0u8; cursor];
        out.extend_from_slice(&self.trailing);

        let cert = self.certificate.as_ref().map(|payload| {
            out.resize(align(out.len(), 8), 0);
            let offset = out.len();
            let length = 8 + payload.len();
            out.extend_from_slice(&(length as u32).to_le_bytes());
            out.extend_from_slice(&0x0200u16.to_le_bytes()); // WIN_CERT_REVISION_2_0
            out.extend_from_slice(&0x0002u16.to_le_bytes()); // WIN_CERT_TYPE_PKCS_SIGNED_DATA
            out.extend_from_slice(payload);
            out.resize(align(out.len(), 8), 0);
            (offset as u32, (out.len() - offset) as u32)
        });

        self.write_headers(&mut out, size_of_headers, &offsets, cert);
        out
    }

    fn write_headers(
        &self,
        out: &mut [u8],
        size_of_headers: usize,
        offsets: &[usize],
        cert: Option<(u32, u32)>,
    ) {
        put(out, 0, b"MZ");
        put(out, 0x3C, &(DOS_HEADER as u32).to_le_bytes());
        put(out, DOS_HEADER, b"PE\0\0");
        let (machine, characteristics): (u16, u16) = if self.format == PeFormat::Pe32 {
            (0x014C, 0x0306)
        } else {
            (0x8664, 0x0206)
        };
        let coff = DOS_HEADER + 4;
        put(out, coff, &machine.to_le_bytes());
        put(out, coff + 2, &(self.sections.len() as u16).to_le_bytes());
        put(
            out,
            coff + 16,
            &(self.optional_header_size() as u16).to_le_bytes(),
        );
        put(out, coff + 18, &characteristics.to_le_bytes());

        let mut rva = align(size_of_headers, SECTION_ALIGNMENT as usize) as u32;
        let mut table = Vec::new();
        for (section, &offset) in self.sections.iter().zip(offsets) {
            let virtual_size = section.virtual_size.unwrap_or(section.data.len() as u32);
            let mut name = [0u8; 8];
            let n = section.name.len().min(8);
            name[..n].copy_from_slice(&section.name.as_bytes()[..n]);
            let mut header = [0u8; SECTION_HEADER];
            put(&mut header, 0, &name);
            put(&mut header, 8, &virtual_size.to_le_bytes());
            put(&mut header, 12, &rva.to_le_bytes());
            put(&mut header, 16, &(section.data.len() as u32).to_le_bytes());
            put(
                &mut header,
                20,
                &(if section.data.is_empty() {
                    0
                } else {
                    offset as u32
                })
                .to_le_bytes(),
            );
            put(&mut header, 36, &0x4000_0040u32.to_le_bytes()); // initialised data, readable
            table.extend_from_slice(&header);
            rva += align(virtual_size.max(1) as usize, SECTION_ALIGNMENT as usize) as u32;
        }
        let optional = DOS_HEADER + 24;
        put(out, optional + self.optional_header_size(), &table);
        for (section, &offset) in self.sections.iter().zip(offsets) {
            put(out, offset, &section.data);
        }
        self.write_optional_header(out, optional, size_of_headers as u32, rva, cert);
    }

    fn write_optional_header(
        &self,
        out: &mut [u8],
        at: usize,
        size_of_headers: u32,
        size_of_image: u32,
        cert: Option<(u32, u32)>,
    ) {
        let pe32 = self.format == PeFormat::Pe32;
        put(
            out,
            at,
            &(if pe32 { 0x010Bu16 } else { 0x020B }).to_le_bytes(),
        );
        let first_rva = align(size_of_headers as usize, SECTION_ALIGNMENT as usize) as u32;
        put(out, at + 16, &first_rva.to_le_bytes()); // AddressOfEntryPoint
        put(out, at + 20, &first_rva.to_le_bytes()); // BaseOfCode
        put(out, at + 32, &SECTION_ALIGNMENT.to_le_bytes());
        put(out, at + 36, &self.file_alignment.to_le_bytes());
        put(out, at + 56, &size_of_image.to_le_bytes());
        put(out, at + 60, &size_of_headers.to_le_bytes());
        put(out, at + 64, &self.checksum.to_le_bytes());
        put(out, at + 68, &10u16.to_le_bytes()); // EFI application
        let (count_at, dirs_at) = if pe32 {
            (at + 92, at + 96)
        } else {
            (at + 108, at + 112)
        };
        put(out, count_at, &self.number_of_rva_and_sizes.to_le_bytes());
        if let Some((offset, size)) = cert.filter(|_| self.number_of_rva_and_sizes > 4) {
            put(out, dirs_at + 4 * 8, &offset.to_le_bytes());
            put(out, dirs_at + 4 * 8 + 4, &size.to_le_bytes());
        }
    }
}
