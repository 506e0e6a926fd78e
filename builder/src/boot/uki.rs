//! The unified kernel image `node.efi`: systemd-stub with the kernel,
//! initramfs, command line, os-release and kernel release added as PE
//! sections, assembled here (no objcopy), then measured.
//!
//! # Layout
//!
//! The stub's headers and sections are kept byte for byte, except:
//! - the COFF symbol table after the last section (binutils leaves one in
//!   Debian's stub; it is never loaded) is dropped, with its pointers, so
//!   the new sections follow the stub's without a gap and EDK2's
//!   Authenticode hashes exactly headers + sections;
//! - new section headers go in the slack between the section table and
//!   SizeOfHeaders (no existing byte moves);
//! - each new section starts at the next FileAlignment boundary in the
//!   file and the next SectionAlignment boundary in memory after the
//!   stub's image, with VirtualSize = the data's length and SizeOfRawData
//!   rounded up, characteristics `INITIALIZED_DATA | MEM_READ` (what
//!   ukify writes);
//! - NumberOfSections, SizeOfInitializedData and SizeOfImage follow;
//!   TimeDateStamp is 0; CheckSum is recomputed (the ImageHlp algorithm,
//!   which binutils also used for the stub's own CheckSum). EDK2 and
//!   systemd-stub ignore CheckSum; a correct one costs nothing and keeps
//!   tools that check it quiet.
//!
//! Every section's raw size is a multiple of FileAlignment (512 in the
//! Debian stub), so the file is 8-byte aligned and the unpadded EDK2
//! Authenticode digest equals the padded one (facts.md's caveat).

use serde::Serialize;

use super::measure::{MeasureError, Pcr11Prediction, SYSTEMD_STUB_252, SystemdStub, predict_pcr11};
use super::pe::{PeError, PeImage};

const SECTION_HEADER: usize = 40;
/// IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ.
const DATA_SECTION: u32 = 0x4000_0040;
/// IMAGE_DIRECTORY_ENTRY_DEBUG.
const DEBUG_DIRECTORY: usize = 6;

/// Why a UKI cannot be built from these inputs.
#[derive(Debug, thiserror::Error)]
pub enum UkiError {
    /// The stub is not a PE image we can extend.
    #[error("systemd-stub: not a usable PE image")]
    Stub(#[source] PeError),
    /// The stub is not PE32+ (x86-64 EFI).
    #[error("systemd-stub: not a PE32+ image")]
    NotPe32Plus,
    /// The stub is signed; adding sections would invalidate it.
    #[error("systemd-stub carries a signature (certificate table); use the unsigned stub")]
    SignedStub,
    /// The stub has a debug directory, whose file pointers would move.
    #[error("systemd-stub has a debug directory; strip it first")]
    DebugDirectory,
    /// Data after the last section that is not the COFF symbol table.
    #[error("systemd-stub has {bytes} unexplained bytes after its last section")]
    TrailingData {
        /// How many.
        bytes: usize,
    },
    /// No room for the new section headers before the first section.
    #[error("systemd-stub has room for {room} more section headers, {needed} are needed")]
    NoRoomForSections {
        /// Headers that fit.
        room: usize,
        /// Headers needed.
        needed: usize,
    },
    /// A section of 4 GiB or more.
    #[error("UKI section {name} of {size} bytes is too large for PE")]
    SectionTooLarge {
        /// The section.
        name: &'static str,
        /// Its size.
        size: usize,
    },
    /// A section the stub already has.
    #[error("systemd-stub already has a {name} section")]
    SectionExists {
        /// The section.
        name: &'static str,
    },
    /// The stub's `.sdmagic` names no version we know how it measures.
    #[error(
        "systemd-stub version {version:?}: its PCR 11 measurements are not known to this builder"
    )]
    UnknownStubVersion {
        /// What `.sdmagic` says (None: no `.sdmagic`).
        version: Option<String>,
    },
    /// The built UKI could not be measured.
    #[error("measuring the UKI")]
    Measure(#[source] MeasureError),
    /// The built UKI does not parse (a bug in the assembly).
    #[error("the assembled UKI does not parse")]
    Assembled(#[source] PeError),
}

/// What goes into a UKI.
#[derive(Debug, Clone, Copy)]
pub struct UkiInputs<'a> {
    /// systemd-stub (`linuxx64.efi.stub`).
    pub stub: &'a [u8],
    /// The kernel (`vmlinuz`, itself an EFI PE image).
    pub linux: &'a [u8],
    /// The initramfs (compressed cpio).
    pub initrd: &'a [u8],
    /// The kernel command line (no section when empty).
    pub cmdline: &'a str,
    /// os-release text.
    pub osrel: &'a [u8],
    /// The kernel release, for `.uname`.
    pub uname: Option<&'a str>,
    /// A boot splash (BMP), usually none.
    pub splash: Option<&'a [u8]>,
}

/// The added sections in table order (ukify's order).
fn sections<'a>(inputs: &UkiInputs<'a>) -> Vec<(&'static str, &'a [u8])> {
    let mut list = vec![
        (".osrel", inputs.osrel),
        (".cmdline", inputs.cmdline.as_bytes()),
    ];
    if let Some(uname) = inputs.uname {
        list.push((".uname", uname.as_bytes()));
    }
    if let Some(splash) = inputs.splash {
        list.push((".splash", splash));
    }
    list.push((".initrd", inputs.initrd));
    list.push((".linux", inputs.linux));
    list.retain(|(_, data)| !data.is_empty());
    list
}

/// Header field offsets of a PE32+ image.
struct Offsets {
    coff: usize,
    optional: usize,
    table: usize,
    sections: usize,
}

impl Offsets {
    fn of(bytes: &[u8]) -> Self {
        let pe = u32_at(bytes, 0x3c) as usize;
        let coff = pe + 4;
        let optional = coff + 20;
        let table = optional + usize::from(u16_at(bytes, coff + 16));
        Self {
            coff,
            optional,
            table,
            sections: usize::from(u16_at(bytes, coff + 2)),
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn align(v: usize, to: usize) -> usize {
    v.div_ceil(to) * to
}

/// Assembles the UKI (see the module documentation for the layout).
pub fn build_uki(inputs: &UkiInputs<'_>) -> Result<Vec<u8>, UkiError> {
    let stub = PeImage::parse(inputs.stub).map_err(UkiError::Stub)?;
    let bytes = inputs.stub;
    let o = Offsets::of(bytes);
    if u16_at(bytes, o.optional) != goblin::pe::optional_header::MAGIC_64 {
        return Err(UkiError::NotPe32Plus);
    }
    let directory = |index: usize| {
        let count = u32_at(bytes, o.optional + 108) as usize;
        let at = o.optional + 112 + 8 * index;
        (index < count).then(|| (u32_at(bytes, at), u32_at(bytes, at + 4)))
    };
    if stub.is_signed() {
        return Err(UkiError::SignedStub);
    }
    if directory(DEBUG_DIRECTORY).is_some_and(|(_, size)| size != 0) {
        return Err(UkiError::DebugDirectory);
    }
    let existing = stub.sections();
    let added = sections(inputs);
    for (name, _) in &added {
        if existing.iter().any(|s| s.name == *name) {
            return Err(UkiError::SectionExists { name });
        }
    }
    let size_of_headers = u32_at(bytes, o.optional + 60) as usize;
    let first_data = existing
        .iter()
        .filter(|s| s.size_of_raw_data != 0)
        .map(|s| s.pointer_to_raw_data as usize)
        .min()
        .unwrap_or(size_of_headers)
        .min(size_of_headers);
    let table_end = o.table + SECTION_HEADER * o.sections;
    let room = first_data.saturating_sub(table_end) / SECTION_HEADER;
    if room < added.len() {
        return Err(UkiError::NoRoomForSections {
            room,
            needed: added.len(),
        });
    }
    let data_end = existing
        .iter()
        .map(|s| (s.pointer_to_raw_data + s.size_of_raw_data) as usize)
        .max()
        .unwrap_or(size_of_headers)
        .max(size_of_headers);
    let symbols = u32_at(bytes, o.coff + 8) as usize;
    if bytes.len() > data_end && (symbols == 0 || symbols < data_end) {
        return Err(UkiError::TrailingData {
            bytes: bytes.len() - data_end,
        });
    }

    let file_alignment = u32_at(bytes, o.optional + 36) as usize;
    let section_alignment = u32_at(bytes, o.optional + 32) as usize;
    let mut out = bytes[..data_end.min(bytes.len())].to_vec();
    out.resize(align(out.len(), file_alignment), 0);
    put_u32(&mut out, o.coff + 4, 0); // TimeDateStamp
    put_u32(&mut out, o.coff + 8, 0); // PointerToSymbolTable
    put_u32(&mut out, o.coff + 12, 0); // NumberOfSymbols
    let image_end = existing
        .iter()
        .map(|s| (s.virtual_address + s.virtual_size.max(s.size_of_raw_data)) as usize)
        .max()
        .unwrap_or(0)
        .max(u32_at(bytes, o.optional + 56) as usize);
    let mut next_va = align(image_end, section_alignment);
    let mut initialized = u32_at(bytes, o.optional + 8) as usize;
    for (index, (name, data)) in added.iter().enumerate() {
        let size = u32::try_from(data.len())
            .ok()
            .filter(|s| s.checked_add(file_alignment as u32).is_some())
            .ok_or(UkiError::SectionTooLarge {
                name,
                size: data.len(),
            })?;
        let raw_size = align(data.len(), file_alignment);
        let header = table_end + SECTION_HEADER * index;
        let mut raw_name = [0u8; 8];
        raw_name[..name.len()].copy_from_slice(name.as_bytes());
        out[header..header + 8].copy_from_slice(&raw_name);
        put_u32(&mut out, header + 8, size); // VirtualSize
        put_u32(&mut out, header + 12, next_va as u32);
        put_u32(&mut out, header + 16, raw_size as u32);
        let pointer = out.len() as u32;
        put_u32(&mut out, header + 20, pointer); // PointerToRawData
        out[header + 24..header + 36].fill(0); // relocations, line numbers
        put_u32(&mut out, header + 36, DATA_SECTION);
        out.extend_from_slice(data);
        out.resize(out.len() + raw_size - data.len(), 0);
        initialized += raw_size;
        next_va = align(next_va + data.len(), section_alignment);
    }
    put_u16(&mut out, o.coff + 2, (o.sections + added.len()) as u16);
    put_u32(&mut out, o.optional + 8, initialized as u32);
    put_u32(&mut out, o.optional + 56, next_va as u32);
    let checksum = pe_checksum(&out, o.optional + 64);
    put_u32(&mut out, o.optional + 64, checksum);
    PeImage::parse(&out).map_err(UkiError::Assembled)?;
    Ok(out)
}

/// The PE image checksum (ImageHlp's CheckSumMappedFile): the one's
/// complement sum of 16-bit little-endian words with the CheckSum field
/// taken as zero, folded to 16 bits, plus the file length.
pub fn pe_checksum(bytes: &[u8], checksum_offset: usize) -> u32 {
    let mut sum: u32 = 0;
    for (i, pair) in bytes.chunks(2).enumerate() {
        let at = 2 * i;
        let word = if at == checksum_offset || at == checksum_offset + 2 {
            0
        } else {
            u32::from(pair[0]) | (u32::from(*pair.get(1).unwrap_or(&0)) << 8)
        };
        sum += word;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum.wrapping_add(bytes.len() as u32)
}

/// The systemd version in a stub's `.sdmagic`
/// (`#### LoaderInfo: systemd-stub 252.39-1~deb12u2 ####`).
pub fn stub_version(stub: &PeImage<'_>) -> Option<String> {
    let section = stub.sections().into_iter().find(|s| s.name == ".sdmagic")?;
    let text = String::from_utf8_lossy(stub.loaded_data(&section)?).into_owned();
    let rest = text.split("systemd-stub ").nth(1)?;
    Some(rest.split_whitespace().next()?.to_owned())
}

/// The measurement profile of a stub, from its version; unknown versions
/// fail closed (their PCR 11 would be mispredicted).
pub fn stub_profile(stub: &PeImage<'_>) -> Result<SystemdStub, UkiError> {
    let version = stub_version(stub);
    let major = version
        .as_deref()
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(252) => Ok(SYSTEMD_STUB_252),
        _ => Err(UkiError::UnknownStubVersion { version }),
    }
}

/// What a UKI will measure, for the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct UkiMeasurements {
    /// The stub version (`.sdmagic`).
    pub stub_version: String,
    /// Authenticode SHA-256 of node.efi (the PCR 4 event firmware logs
    /// when it starts the UKI), hex.
    pub uki_authenticode: String,
    /// Authenticode SHA-256 of the `.linux` kernel (the PCR 4 event when
    /// the stub LoadImage()s it), hex.
    pub kernel_authenticode: String,
    /// Predicted PCR 11, hex.
    pub pcr11: String,
    /// The PCR 11 events (name digest, data digest per section), hex.
    pub pcr11_events: Vec<String>,
    /// Predicted PCR 9 when the UKI is started without LoadOptions (from a
    /// disk, or by firmware HTTP boot): the stub hands the kernel its
    /// `.cmdline`, which the Linux EFI stub measures (UTF-16LE with the
    /// NUL) before the initrd. Seen equal to the TPM under OVMF. With
    /// iPXE's LoadOptions use [`super::measure::predict_pcr9_linux`].
    pub pcr9: String,
    /// SHA-256 of the file, hex.
    pub sha256: String,
}

/// Measures a built UKI: Authenticode of the image and of its kernel,
/// and PCR 11 for its stub's version.
pub fn measure_uki(uki: &[u8], linux: &[u8]) -> Result<UkiMeasurements, UkiError> {
    let image = PeImage::parse(uki).map_err(UkiError::Assembled)?;
    let profile = stub_profile(&image)?;
    let prediction: Pcr11Prediction = predict_pcr11(&image, &profile).map_err(UkiError::Measure)?;
    let kernel = PeImage::parse(linux).map_err(|source| {
        UkiError::Measure(MeasureError::Pe {
            path: ".linux".into(),
            source,
        })
    })?;
    use sha2::Digest as _;
    let section_data = |name: &str| {
        image
            .sections()
            .into_iter()
            .rfind(|s| s.name == name)
            .and_then(|s| image.loaded_data(&s).map(<[u8]>::to_vec))
    };
    // systemd-stub 252 widens each .cmdline byte to a UTF-16 unit.
    let load_options = section_data(".cmdline").map(|cmdline| {
        let wide: Vec<u8> = cmdline
            .iter()
            .chain([&0u8])
            .flat_map(|&b| u16::from(b).to_le_bytes())
            .collect();
        <[u8; 32]>::from(sha2::Sha256::digest(&wide))
    });
    let initrd = section_data(".initrd").map(|i| <[u8; 32]>::from(sha2::Sha256::digest(&i)));
    Ok(UkiMeasurements {
        pcr9: hex::encode(super::measure::predict_pcr9_linux(load_options, initrd)),
        stub_version: stub_version(&image).unwrap_or_default(),
        uki_authenticode: hex::encode(image.authenticode_sha256()),
        kernel_authenticode: hex::encode(kernel.authenticode_sha256()),
        pcr11: hex::encode(prediction.value),
        pcr11_events: prediction.event_digests().iter().map(hex::encode).collect(),
        sha256: hex::encode(sha2::Sha256::digest(uki)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::pe_fixture::{FixtureSection, PeFixture};

    fn stub() -> Vec<u8> {
        PeFixture::stub_like(vec![0xC3; 0x300]).build()
    }

    fn inputs<'a>(stub: &'a [u8], linux: &'a [u8]) -> UkiInputs<'a> {
        UkiInputs {
            stub,
            linux,
            initrd: b"initrd bytes",
            cmdline: "console=ttyS0",
            osrel: b"ID=debian\n",
            uname: Some("6.1.0-50-cloud-amd64"),
            splash: None,
        }
    }

    #[test]
    fn sections_follow_and_file_is_aligned() {
        let stub = stub();
        let linux = PeFixture::uki_like(b"k", b"i", "").build();
        let uki = build_uki(&inputs(&stub, &linux)).unwrap();
        assert_eq!(uki.len() % 0x400, 0);
        let image = PeImage::parse(&uki).unwrap();
        let names: Vec<String> = image.sections().into_iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                ".text", ".sdmagic", ".osrel", ".cmdline", ".uname", ".initrd", ".linux"
            ]
        );
        let s = image.sections();
        for pair in s.windows(2) {
            assert!(pair[1].virtual_address >= pair[0].virtual_address + pair[0].virtual_size);
            let end = (pair[0].pointer_to_raw_data + pair[0].size_of_raw_data) as usize;
            assert_eq!(pair[1].pointer_to_raw_data as usize, align(end, 0x400));
        }
        assert_eq!(image.loaded_data(&s[3]).unwrap(), b"console=ttyS0");
        assert_eq!(stub_version(&image).as_deref(), Some("252.39-1~deb12u2"));
        let m = measure_uki(&uki, &linux).unwrap();
        assert_eq!(m.pcr11_events.len(), 8, ".linux .osrel .cmdline .initrd");
    }

    #[test]
    fn checksum_field_is_excluded() {
        let mut a = vec![1u8, 2, 3, 4, 5, 6, 7];
        let before = pe_checksum(&a, 2);
        a[2..6].copy_from_slice(&[0xff; 4]);
        assert_eq!(pe_checksum(&a, 2), before);
    }

    #[test]
    fn unknown_stub_versions_fail_closed() {
        let mut fixture = PeFixture::uki_like(b"k", b"i", "x");
        fixture.sections.push(FixtureSection::new(
            ".sdmagic",
            b"#### LoaderInfo: systemd-stub 256.1 ####".to_vec(),
        ));
        let image = fixture.build();
        assert!(matches!(
            stub_profile(&PeImage::parse(&image).unwrap()),
            Err(UkiError::UnknownStubVersion { version: Some(v) }) if v == "256.1"
        ));
    }
}
