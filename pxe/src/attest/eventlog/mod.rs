//! The TCG PC Client Platform Firmware Profile crypto-agile event log
//! (`/sys/kernel/security/tpm0/binary_bios_measurements`).
//!
//! Layout (PFP 1.06, section 10.2): one `TCG_PCClientPCREvent` in the old
//! SHA-1 format carrying the `Spec ID Event03` header (which banks the log
//! has and their digest sizes), then `TCG_PCR_EVENT2` records:
//!
//! ```text
//! u32 pcrIndex | u32 eventType | u32 count | count × (u16 alg | digest) | u32 eventSize | event
//! ```
//!
//! All integers are little-endian. [`EventLog::parse`] reads it without
//! trusting any length (every count and size is checked against the bytes
//! left before anything is allocated), [`EventLog::replay`] computes the PCR
//! banks, [`policy`] holds the verifier's checks, [`EventLogBuilder`] writes
//! logs, and [`agent`] is the node agent's own log in the same layout.

mod alg;
mod build;
mod data;
mod device_path;
mod error;
mod event_type;
mod parse;
mod replay;

pub mod agent;
pub mod ima;
pub mod policy;

pub use alg::{AlgorithmId, Digest, Hasher, MAX_DIGEST_SIZE};
pub use build::EventLogBuilder;
pub use data::{
    EventData, EventText, FirmwareBlob, GptData, GptPartition, Guid, HandoffTables, ImageLoadEvent,
    TaggedEvent, VariableData,
};
pub use device_path::{DevicePath, DevicePathNode};
pub use error::EventLogError;
pub use event_type::EventType;
pub use replay::{PCR_COUNT, PcrBank, PcrBanks, PcrSelection};

use std::path::Path;

/// Signature of the crypto-agile header event.
pub const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";

/// The `TCG_EfiSpecIDEvent` header: which banks every event carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecIdEvent {
    /// 0 = client, 1 = server.
    pub platform_class: u32,
    /// Spec version minor.
    pub spec_version_minor: u8,
    /// Spec version major (2 for TPM 2.0 logs).
    pub spec_version_major: u8,
    /// Spec errata.
    pub spec_errata: u8,
    /// Size of UINTN in the firmware: 1 = 32-bit, 2 = 64-bit.
    pub uintn_size: u8,
    /// Banks and their digest sizes, in header order.
    pub algorithms: Vec<AlgorithmSize>,
    /// Vendor data.
    pub vendor_info: Vec<u8>,
}

impl SpecIdEvent {
    /// A header for the given banks with the standard digest sizes, as a
    /// 64-bit UEFI firmware writes it.
    pub fn for_algorithms(algorithms: &[AlgorithmId]) -> Result<Self, EventLogError> {
        let algorithms = algorithms
            .iter()
            .map(|&alg| {
                let size = alg
                    .standard_digest_size()
                    .ok_or_else(|| EventLogError::Build {
                        reason: format!("{alg} has no standard digest size"),
                    })?;
                Ok(AlgorithmSize {
                    alg,
                    digest_size: size as u16,
                })
            })
            .collect::<Result<Vec<_>, EventLogError>>()?;
        Ok(Self {
            platform_class: 0,
            spec_version_minor: 0,
            spec_version_major: 2,
            spec_errata: 0,
            uintn_size: 2,
            algorithms,
            vendor_info: Vec::new(),
        })
    }

    /// The digest size the header gives `alg`.
    pub fn digest_size(&self, alg: AlgorithmId) -> Option<usize> {
        self.algorithms
            .iter()
            .find(|a| a.alg == alg)
            .map(|a| usize::from(a.digest_size))
    }

    /// Bytes of a UINTN field in event data (4 or 8).
    pub fn uintn_bytes(&self) -> usize {
        if self.uintn_size == 1 { 4 } else { 8 }
    }
}

/// One bank of the header: algorithm and digest size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgorithmSize {
    /// The algorithm.
    pub alg: AlgorithmId,
    /// Its digest size in bytes.
    pub digest_size: u16,
}

/// One `TCG_PCR_EVENT2` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Position among the records (0-based, header not counted).
    pub index: usize,
    /// Byte offset of the record in the log.
    pub offset: usize,
    /// The PCR it extends (or, for EV_NO_ACTION, describes).
    pub pcr: u32,
    /// The event type. Not covered by the digest.
    pub event_type: EventType,
    /// One digest per bank, in log order.
    pub digests: Vec<Digest>,
    /// The event data.
    pub data: Vec<u8>,
}

impl Event {
    /// The digest of one bank.
    pub fn digest(&self, alg: AlgorithmId) -> Option<&Digest> {
        self.digests.iter().find(|d| d.algorithm() == alg)
    }

    /// Whether replay extends a PCR with this event (EV_NO_ACTION does not).
    pub fn extends(&self) -> bool {
        self.event_type != EventType::NO_ACTION
    }
}

/// A parsed crypto-agile event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog {
    /// The Spec ID header.
    pub spec_id: SpecIdEvent,
    /// The records, in log order.
    pub events: Vec<Event>,
}

impl EventLog {
    /// Parses a log. Never panics; every length is checked before use.
    pub fn parse(bytes: &[u8]) -> Result<Self, EventLogError> {
        parse::parse_log(bytes)
    }

    /// Reads and parses a log file.
    pub fn read(path: &Path) -> Result<Self, EventLogError> {
        let bytes = std::fs::read(path).map_err(|source| EventLogError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&bytes)
    }

    /// The log in its binary form; `parse(to_bytes(log)) == log`.
    pub fn to_bytes(&self) -> Vec<u8> {
        parse::write_log(self)
    }

    /// The event data of `event`, decoded by its type.
    pub fn decode(&self, event: &Event) -> Result<EventData, EventLogError> {
        EventData::decode(event.event_type, &event.data, self.spec_id.uintn_bytes()).map_err(
            |reason| EventLogError::BadEventData {
                index: event.index,
                event_type: event.event_type,
                pcr: event.pcr,
                reason,
            },
        )
    }

    /// Replays the log: every bank whose algorithm this crate computes,
    /// PCRs 0..=23, honouring StartupLocality for PCR 0.
    pub fn replay(&self) -> Result<PcrBanks, EventLogError> {
        replay::replay(self)
    }

    /// The events of one PCR, in order.
    pub fn events_in(&self, pcr: u32) -> impl Iterator<Item = &Event> {
        self.events.iter().filter(move |e| e.pcr == pcr)
    }
}
