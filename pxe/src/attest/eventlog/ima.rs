//! The kernel's IMA measurement list (`/sys/kernel/security/ima/
//! binary_runtime_measurements`): what Linux extends into PCR 10 (or the
//! PCRs an IMA policy names), the one PCR of a quote the firmware log
//! cannot explain. Debian's kernels measure at least `boot_aggregate` as
//! soon as a TPM is present, even without a policy.
//!
//! # Format (little-endian on x86)
//!
//! Per entry: `u32 pcr`, the SHA-1 template digest (20 bytes; all zero for
//! a violation), `u32` template-name length and the name, `u32` template
//! data length and the data. The data of every template but the legacy
//! `ima` one is a sequence of `u32 length ‖ field`.
//!
//! # Replay of the SHA-256 bank
//!
//! Since Linux 5.10 each bank is extended with its own hash of the template
//! data: SHA-256(data) for the SHA-256 bank; a violation extends all ones.
//! The log carries only the SHA-1 digest, which is checked against the data
//! so that an edited entry is caught before replay.

use sha1::Sha1;
use sha2::{Digest as _, Sha256};

/// Entries accepted in one list: an initramfs measures a handful; a
/// running system with a policy thousands.
pub const MAX_ENTRIES: usize = 100_000;
/// Longest template name.
const MAX_NAME: usize = 255;
/// Longest template data (a file name up to PATH_MAX plus digests and a
/// signature).
const MAX_DATA: usize = 64 * 1024;

/// One measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImaEntry {
    /// The PCR it extended.
    pub pcr: u32,
    /// The template (`ima-ng`, `ima-sig`, ...).
    pub template: String,
    /// The template data as logged.
    pub data: Vec<u8>,
    /// A violation (a file measured while open for writing): its digest is
    /// zero and the PCR was extended with all ones.
    pub violation: bool,
}

impl ImaEntry {
    /// What the entry extended into the SHA-256 bank.
    pub fn sha256_extend(&self) -> [u8; 32] {
        if self.violation {
            [0xff; 32]
        } else {
            Sha256::digest(&self.data).into()
        }
    }

    /// The measured file name (`n-ng` field, the second of `ima-ng` and
    /// `ima-sig`), for messages.
    pub fn file_name(&self) -> Option<String> {
        let mut fields = Fields(&self.data);
        fields.next()?;
        let name = fields.next()?;
        Some(String::from_utf8_lossy(name.strip_suffix(&[0]).unwrap_or(name)).into_owned())
    }
}

struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let (len, rest) = self.0.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let field = rest.get(..len)?;
        self.0 = &rest[len..];
        Some(field)
    }
}

/// Why an IMA list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImaLogError {
    /// The list ends inside an entry.
    #[error("IMA entry {index} at byte {offset}: truncated in its {what}")]
    Truncated {
        /// Entry index.
        index: usize,
        /// Where the entry starts.
        offset: usize,
        /// Which part.
        what: &'static str,
    },
    /// A length over the limits.
    #[error("IMA entry {index} at byte {offset}: {what} of {len} bytes exceeds {max}")]
    TooLong {
        /// Entry index.
        index: usize,
        /// Where the entry starts.
        offset: usize,
        /// Which part.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A PCR the TPM does not have.
    #[error("IMA entry {index} at byte {offset}: PCR {pcr} out of range 0..=23")]
    Pcr {
        /// Entry index.
        index: usize,
        /// Where the entry starts.
        offset: usize,
        /// The PCR.
        pcr: u32,
    },
    /// The legacy `ima` template (SHA-1 only, no length prefixes).
    #[error("IMA entry {index}: template {template:?} is not supported (use ima-ng or ima-sig)")]
    Template {
        /// Entry index.
        index: usize,
        /// The name.
        template: String,
    },
    /// The SHA-1 digest does not match the data: the entry was edited.
    #[error("IMA entry {index} ({template}): its digest does not match its data")]
    Digest {
        /// Entry index.
        index: usize,
        /// The template.
        template: String,
    },
    /// More entries than [`MAX_ENTRIES`].
    #[error("IMA list has more than {MAX_ENTRIES} entries")]
    TooMany,
}

/// A parsed measurement list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImaLog {
    /// The entries, in order.
    pub entries: Vec<ImaEntry>,
}

impl ImaLog {
    /// Parses and checks every entry's digest against its data. An empty
    /// input is an empty list (a kernel without IMA).
    pub fn parse(bytes: &[u8]) -> Result<ImaLog, ImaLogError> {
        let mut entries = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            if entries.len() == MAX_ENTRIES {
                return Err(ImaLogError::TooMany);
            }
            let (entry, next) = parse_entry(bytes, at, entries.len())?;
            entries.push(entry);
            at = next;
        }
        Ok(ImaLog { entries })
    }

    /// The SHA-256 values the list extends into `pcr`, in order.
    pub fn sha256_extends(&self, pcr: u32) -> impl Iterator<Item = [u8; 32]> + '_ {
        self.entries
            .iter()
            .filter(move |e| e.pcr == pcr)
            .map(ImaEntry::sha256_extend)
    }

    /// Writes the list as the kernel does (for tests and fixtures).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in &self.entries {
            out.extend(e.pcr.to_le_bytes());
            if e.violation {
                out.extend([0u8; 20]);
            } else {
                out.extend(Sha1::digest(&e.data));
            }
            out.extend((e.template.len() as u32).to_le_bytes());
            out.extend(e.template.as_bytes());
            out.extend((e.data.len() as u32).to_le_bytes());
            out.extend(&e.data);
        }
        out
    }
}

fn parse_entry(
    bytes: &[u8],
    offset: usize,
    index: usize,
) -> Result<(ImaEntry, usize), ImaLogError> {
    let mut at = offset;
    let mut take = |what: &'static str, len: usize| {
        let part =
            bytes
                .get(at..)
                .and_then(|rest| rest.get(..len))
                .ok_or(ImaLogError::Truncated {
                    index,
                    offset,
                    what,
                })?;
        at += len;
        Ok::<_, ImaLogError>(part)
    };
    let u32_of = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let pcr = u32_of(take("PCR index", 4)?);
    let digest: [u8; 20] = take("digest", 20)?.try_into().unwrap_or([0; 20]);
    let name_len = u32_of(take("template name length", 4)?) as usize;
    let too_long = |what, len, max| ImaLogError::TooLong {
        index,
        offset,
        what,
        len,
        max,
    };
    if name_len > MAX_NAME {
        return Err(too_long("template name", name_len, MAX_NAME));
    }
    let template = String::from_utf8_lossy(take("template name", name_len)?).into_owned();
    if template == "ima" {
        return Err(ImaLogError::Template { index, template });
    }
    let data_len = u32_of(take("template data length", 4)?) as usize;
    if data_len > MAX_DATA {
        return Err(too_long("template data", data_len, MAX_DATA));
    }
    let data = take("template data", data_len)?.to_vec();
    if pcr > 23 {
        return Err(ImaLogError::Pcr { index, offset, pcr });
    }
    let violation = digest == [0; 20];
    if !violation && <[u8; 20]>::from(Sha1::digest(&data)) != digest {
        return Err(ImaLogError::Digest { index, template });
    }
    Ok((
        ImaEntry {
            pcr,
            template,
            data,
            violation,
        },
        at,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An `ima-ng` entry as the kernel writes it: `d-ng` ("sha256:" + NUL
    /// + digest) then `n-ng` (the name with its NUL).
    fn ima_ng(name: &str, file_digest: [u8; 32]) -> ImaEntry {
        let mut dng = b"sha256:\0".to_vec();
        dng.extend(file_digest);
        let mut nng = name.as_bytes().to_vec();
        nng.push(0);
        let mut data = Vec::new();
        for field in [&dng, &nng] {
            data.extend((field.len() as u32).to_le_bytes());
            data.extend(field.iter());
        }
        ImaEntry {
            pcr: 10,
            template: "ima-ng".into(),
            data,
            violation: false,
        }
    }

    #[test]
    fn round_trip_and_replay_values() {
        let log = ImaLog {
            entries: vec![
                ima_ng("boot_aggregate", [7; 32]),
                ImaEntry {
                    violation: true,
                    ..ima_ng("/etc/hosts", [0; 32])
                },
            ],
        };
        let parsed = ImaLog::parse(&log.to_bytes()).unwrap();
        assert_eq!(parsed, log);
        assert_eq!(
            parsed.entries[0].file_name().as_deref(),
            Some("boot_aggregate")
        );
        let extends: Vec<_> = parsed.sha256_extends(10).collect();
        assert_eq!(
            extends[0],
            <[u8; 32]>::from(Sha256::digest(&log.entries[0].data))
        );
        assert_eq!(extends[1], [0xff; 32]);
        assert_eq!(parsed.sha256_extends(11).count(), 0);
        assert_eq!(ImaLog::parse(&[]).unwrap(), ImaLog::default());
    }

    #[test]
    fn edits_truncation_and_legacy_template_are_refused() {
        let log = ImaLog {
            entries: vec![ima_ng("boot_aggregate", [7; 32])],
        };
        let bytes = log.to_bytes();
        let mut edited = bytes.clone();
        let last = edited.len() - 3;
        edited[last] ^= 1;
        assert!(matches!(
            ImaLog::parse(&edited),
            Err(ImaLogError::Digest { index: 0, .. })
        ));
        assert!(matches!(
            ImaLog::parse(&bytes[..bytes.len() - 1]),
            Err(ImaLogError::Truncated {
                what: "template data",
                ..
            })
        ));
        let legacy = ImaLog {
            entries: vec![ImaEntry {
                template: "ima".into(),
                ..ima_ng("x", [1; 32])
            }],
        };
        assert!(matches!(
            ImaLog::parse(&legacy.to_bytes()),
            Err(ImaLogError::Template { .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = ImaLog::parse(&bytes);
        }

        #[test]
        fn written_lists_parse_back(names in proptest::collection::vec("[a-z/]{1,40}", 0..8)) {
            let log = ImaLog {
                entries: names.iter().map(|n| ima_ng(n, [3; 32])).collect(),
            };
            prop_assert_eq!(ImaLog::parse(&log.to_bytes()).unwrap(), log);
        }
    }
}
