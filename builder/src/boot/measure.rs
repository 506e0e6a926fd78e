//! Predicted measurements: the values firmware, systemd-stub and the Linux
//! EFI stub will extend, computed from the files at build time so the
//! manifest can carry them and the attestation server can compare.
//!
//! | PCR | who extends | predicted by |
//! | --- | --- | --- |
//! | 4 | firmware: Authenticode of each EFI application | [`authenticode_of_file`] (the verifier matches the PCR 4 events) |
//! | 11 | systemd-stub 252: the UKI's sections | [`predict_pcr11`] |
//! | 12 | systemd-stub 252: the command line from LoadOptions | [`predict_pcr12`] |
//! | 9 | Linux ≥ 6.1 EFI stub: its load options, then the initrd | [`predict_pcr9_linux`] |
//!
//! The replay of whole event logs lives in the server (`ironrack_pxe::
//! attest::eventlog`); here is only the SHA-256 extend the predictions need.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::pe::{PeError, PeImage, Section};

/// Errors of the measurement predictions, naming the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// Reading an image failed.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a PE image we can measure.
    #[error("{path}: not a measurable PE image")]
    Pe {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: PeError,
    },
    /// A measured section whose VirtualSize exceeds its raw data: the
    /// loader would zero-fill the tail. ironrack's UKIs never need that,
    /// and hashing gigabytes of zeros a header claims is refused.
    #[error(
        "UKI section {section}: VirtualSize {virtual_size:#x} exceeds SizeOfRawData {size_of_raw_data:#x}"
    )]
    SectionZeroFilled {
        /// The section.
        section: &'static str,
        /// VirtualSize.
        virtual_size: u32,
        /// SizeOfRawData.
        size_of_raw_data: u32,
    },
    /// A UKI without `.linux`: systemd-stub refuses to boot it.
    #[error("UKI has no .linux section (systemd-stub would refuse it)")]
    NoLinuxSection,
}

/// PCR_Extend on the SHA-256 bank: SHA-256(pcr ‖ digest).
pub fn extend_sha256(pcr: &[u8; 32], digest: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update(pcr)
        .chain_update(digest)
        .finalize()
        .into()
}

/// A PCR's value after extending `digests` in order from reset (zero).
pub fn replay_sha256<'a>(digests: impl IntoIterator<Item = &'a [u8; 32]>) -> [u8; 32] {
    digests
        .into_iter()
        .fold([0u8; 32], |pcr, digest| extend_sha256(&pcr, digest))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The Authenticode SHA-256 of an EFI image file, as firmware logs it in
/// PCR 4 (EDK2's algorithm, see [`super::pe`]).
pub fn authenticode_of_file(path: &Path) -> Result<[u8; 32], MeasureError> {
    let bytes = std::fs::read(path).map_err(|source| MeasureError::Read {
        path: path.to_owned(),
        source,
    })?;
    let image = PeImage::parse(&bytes).map_err(|source| MeasureError::Pe {
        path: path.to_owned(),
        source,
    })?;
    Ok(image.authenticode_sha256())
}

/// What a version of systemd-stub measures into PCR 11.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemdStub {
    /// The systemd version.
    pub version: u32,
    /// Sections measured, in measurement order.
    pub measured_sections: &'static [&'static str],
}

/// systemd-stub 252 (Debian 12): `.pcrsig` is skipped, `.sbat` and
/// `.uname` are not known to it. Newer stubs measure more sections: follow
/// the stub version in the mirror.
pub const SYSTEMD_STUB_252: SystemdStub = SystemdStub {
    version: 252,
    measured_sections: &[
        ".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey",
    ],
};

/// One section's two PCR 11 events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionMeasurement {
    /// The section name.
    pub section: &'static str,
    /// SHA-256 of the name and its NUL (the first event).
    pub name_digest: [u8; 32],
    /// SHA-256 of the section as loaded: VirtualSize bytes (the second event).
    pub data_digest: [u8; 32],
}

/// The PCR 11 a UKI will produce, with the events that lead to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcr11Prediction {
    /// The measured sections, in order.
    pub sections: Vec<SectionMeasurement>,
    /// The PCR 11 value after them.
    pub value: [u8; 32],
}

impl Pcr11Prediction {
    /// The digests as the event log shows them: name, data, name, data, ...
    pub fn event_digests(&self) -> Vec<[u8; 32]> {
        self.sections
            .iter()
            .flat_map(|s| [s.name_digest, s.data_digest])
            .collect()
    }
}

/// Predicts PCR 11 for a UKI started by `stub`.
///
/// systemd-stub finds each section by comparing the first `strlen(name)`
/// bytes of the 8-byte section name (so `.linuxX` also matches `.linux`;
/// the last match in the table wins), skips sections whose VirtualSize is 0,
/// and hashes VirtualSize bytes of the loaded image, which must all come
/// from the file (see [`MeasureError::SectionZeroFilled`]).
pub fn predict_pcr11(
    uki: &PeImage<'_>,
    stub: &SystemdStub,
) -> Result<Pcr11Prediction, MeasureError> {
    let table = uki.sections();
    let mut sections = Vec::new();
    for &name in stub.measured_sections {
        let Some(section) = stub_lookup(&table, name) else {
            continue;
        };
        if section.virtual_size == 0 {
            continue;
        }
        let data = uki
            .loaded_data(section)
            .ok_or(MeasureError::SectionZeroFilled {
                section: name,
                virtual_size: section.virtual_size,
                size_of_raw_data: section.size_of_raw_data,
            })?;
        let mut name_nul = name.as_bytes().to_vec();
        name_nul.push(0);
        sections.push(SectionMeasurement {
            section: name,
            name_digest: sha256(&name_nul),
            data_digest: sha256(data),
        });
    }
    if !sections.iter().any(|s| s.section == ".linux") {
        return Err(MeasureError::NoLinuxSection);
    }
    let events: Vec<[u8; 32]> = sections
        .iter()
        .flat_map(|s| [s.name_digest, s.data_digest])
        .collect();
    Ok(Pcr11Prediction {
        value: replay_sha256(&events),
        sections,
    })
}

fn stub_lookup<'t>(table: &'t [Section], name: &str) -> Option<&'t Section> {
    table
        .iter()
        .rev()
        .find(|s| s.raw_name.starts_with(name.as_bytes()))
}

/// The LoadOptions iPXE gives an EFI image it starts with `chain URL ARGS`:
/// the image name (the last path segment of the URL, or `--name`), then a
/// space and the arguments when there are any.
pub fn ipxe_load_options(image_name: &str, args: &str) -> String {
    if args.is_empty() {
        image_name.to_owned()
    } else {
        format!("{image_name} {args}")
    }
}

/// The command line systemd-stub 252 takes from the LoadOptions it was
/// started with, as UTF-16 code units without the NUL, or `None` when it
/// ignores them (Secure Boot on with a `.cmdline` in the UKI, empty options,
/// or a first character below 0x20).
///
/// It reads up to the first NUL, turns control characters into spaces and
/// drops trailing spaces (`mangle_stub_cmdline`, systemd v252.3+; Debian 12
/// ships 252.3x).
pub fn stub_cmdline(
    load_options: &str,
    secure_boot: bool,
    uki_has_cmdline: bool,
) -> Option<Vec<u16>> {
    if secure_boot && uki_has_cmdline {
        return None;
    }
    let units: Vec<u16> = load_options
        .encode_utf16()
        .take_while(|&u| u != 0)
        .collect();
    if units.first().is_none_or(|&first| first <= 0x1F) {
        return None;
    }
    let mut mangled: Vec<u16> = units
        .into_iter()
        .map(|u| if u <= 0x1F { u16::from(b' ') } else { u })
        .collect();
    while mangled.last() == Some(&u16::from(b' ')) {
        mangled.pop();
    }
    Some(mangled)
}

/// PCR 12 as systemd-stub 252 leaves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcr12Prediction {
    /// The bytes measured (UTF-16LE command line with its NUL), which are
    /// also the event data; `None` when nothing is measured.
    pub measured: Option<Vec<u8>>,
    /// SHA-256 of `measured`: the EV_IPL event's digest.
    pub digest: Option<[u8; 32]>,
    /// The PCR 12 value.
    pub value: [u8; 32],
}

/// Predicts PCR 12 for a UKI started with `load_options` (see
/// [`ipxe_load_options`]). systemd-stub 252 measures the command line it
/// took from LoadOptions as UTF-16LE *including* the terminating NUL
/// (`strsize16`), in one EV_IPL event whose data is the same string.
///
/// Credentials and system extensions from the ESP would also land in
/// PCR 12; a network-booted UKI has no ESP directory to read them from.
pub fn predict_pcr12(
    load_options: &str,
    secure_boot: bool,
    uki_has_cmdline: bool,
) -> Pcr12Prediction {
    match stub_cmdline(load_options, secure_boot, uki_has_cmdline) {
        Some(cmdline) => {
            let measured: Vec<u8> = cmdline
                .iter()
                .chain([&0u16])
                .flat_map(|u| u.to_le_bytes())
                .collect();
            let digest = sha256(&measured);
            Pcr12Prediction {
                value: replay_sha256([&digest]),
                digest: Some(digest),
                measured: Some(measured),
            }
        }
        None => Pcr12Prediction {
            measured: None,
            digest: None,
            value: [0; 32],
        },
    }
}

/// Predicts PCR 9 as the Linux (≥ 6.1) EFI stub leaves it when started by
/// systemd-stub: a tagged event for its LoadOptions (the command line the
/// stub passes, the same bytes PCR 12's event measured), then one for the
/// initrd it serves through LINUX_EFI_INITRD_MEDIA (the `.initrd` section as
/// loaded, when there is one).
pub fn predict_pcr9_linux(
    load_options_digest: Option<[u8; 32]>,
    initrd_digest: Option<[u8; 32]>,
) -> [u8; 32] {
    replay_sha256(load_options_digest.iter().chain(initrd_digest.iter()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_from_zero() {
        let digest = sha256(b"x");
        let mut concatenated = [0u8; 64];
        concatenated[32..].copy_from_slice(&digest);
        assert_eq!(replay_sha256([&digest]), sha256(&concatenated));
        assert_eq!(replay_sha256([]), [0; 32]);
    }

    #[test]
    fn stub_mangles_like_systemd_252() {
        let units = |s: &str| s.encode_utf16().collect::<Vec<_>>();
        assert_eq!(
            stub_cmdline("node.efi a=1", false, true),
            Some(units("node.efi a=1"))
        );
        assert_eq!(
            stub_cmdline("node.efi a=1\t \n", false, true),
            Some(units("node.efi a=1"))
        );
        assert_eq!(
            stub_cmdline("node.efi\ta=1\0ignored", false, true),
            Some(units("node.efi a=1"))
        );
        assert_eq!(stub_cmdline("\u{1}node.efi", false, true), None);
        assert_eq!(stub_cmdline("", false, false), None);
        assert_eq!(stub_cmdline("node.efi", true, true), None);
        assert_eq!(
            stub_cmdline("node.efi", true, false),
            Some(units("node.efi"))
        );
    }

    #[test]
    fn nothing_measured_leaves_pcr12_at_zero() {
        let p = predict_pcr12("node.efi", true, true);
        assert_eq!((p.measured, p.digest, p.value), (None, None, [0; 32]));
        let p = predict_pcr12("node.efi", false, true);
        assert_eq!(p.measured.unwrap().len(), (8 + 1) * 2);
    }
}
