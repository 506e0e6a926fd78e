//! Errors of the event-log module: parsing, decoding event data, replay and
//! policy. Offsets are byte offsets into the log; event indices count the
//! `TCG_PCR_EVENT2` records from 0 (the Spec ID header is not counted).

use std::path::PathBuf;

use super::alg::AlgorithmId;
use super::event_type::EventType;

/// Everything that can go wrong reading, replaying or judging an event log.
#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    /// Reading the log file failed.
    #[error("reading event log {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The log ended inside a structure.
    #[error("event log truncated at byte {offset}: {what} needs {needed} bytes, {available} left")]
    Truncated {
        /// Where the structure starts.
        offset: usize,
        /// Which structure.
        what: &'static str,
        /// Bytes it needs.
        needed: u64,
        /// Bytes left in the log.
        available: usize,
    },
    /// The first event is not the crypto-agile Spec ID Event03 header.
    #[error("event log is not crypto-agile: the first event is not a Spec ID Event03 ({reason})")]
    NotCryptoAgile {
        /// What was found instead.
        reason: &'static str,
    },
    /// The Spec ID event is malformed.
    #[error("event log Spec ID header: {reason}")]
    BadSpecId {
        /// What is wrong with it.
        reason: String,
    },
    /// An event names a PCR the TPM does not have.
    #[error("event {index} at byte {offset}: PCR index {pcr} out of range 0..=23")]
    PcrOutOfRange {
        /// Event index.
        index: usize,
        /// Byte offset of the event.
        offset: usize,
        /// The PCR index found.
        pcr: u32,
    },
    /// An event's digest count is zero or larger than the header's bank list.
    #[error("event {index} at byte {offset}: {count} digests, the header lists {banks} banks")]
    DigestCount {
        /// Event index.
        index: usize,
        /// Byte offset of the event.
        offset: usize,
        /// The count found.
        count: u32,
        /// Banks in the header.
        banks: usize,
    },
    /// An event carries a digest of a bank the header does not list, or
    /// the same bank twice.
    #[error("event {index} at byte {offset}: digest of {alg} {problem}")]
    BadDigestBank {
        /// Event index.
        index: usize,
        /// Byte offset of the event.
        offset: usize,
        /// The algorithm.
        alg: AlgorithmId,
        /// "not listed in the Spec ID header" or "given twice".
        problem: &'static str,
    },
    /// An event's data does not decode as its type says.
    #[error("event {index} ({event_type}, PCR {pcr}): malformed event data: {reason}")]
    BadEventData {
        /// Event index.
        index: usize,
        /// The event's type.
        event_type: EventType,
        /// The event's PCR.
        pcr: u32,
        /// What is wrong.
        reason: String,
    },
    /// Replay met an extending event without a digest for a bank it replays.
    #[error("event {index} (PCR {pcr}) has no {alg} digest, so that bank cannot be replayed")]
    MissingDigest {
        /// Event index.
        index: usize,
        /// The PCR.
        pcr: u32,
        /// The bank.
        alg: AlgorithmId,
    },
    /// A StartupLocality event came after PCR 0 was extended, or twice.
    #[error("event {index}: StartupLocality event after PCR 0 was already set")]
    LateStartupLocality {
        /// Event index.
        index: usize,
    },
    /// Policy: an event of an unknown type in a PCR the policy checks.
    #[error("event {index}: {event_type} in checked PCR {pcr}")]
    UnknownEventType {
        /// Event index.
        index: usize,
        /// The PCR.
        pcr: u32,
        /// The type found.
        event_type: EventType,
    },
    /// Policy: an event whose digest must be the hash of its data is not.
    #[error("event {index} ({event_type}, PCR {pcr}): {alg} digest does not match the event data")]
    DataDigestMismatch {
        /// Event index.
        index: usize,
        /// The PCR.
        pcr: u32,
        /// The type.
        event_type: EventType,
        /// The bank whose digest differs.
        alg: AlgorithmId,
    },
    /// A log builder or agent-log reader was given something the format
    /// cannot hold.
    #[error("building event log: {reason}")]
    Build {
        /// What was wrong.
        reason: String,
    },
    /// The agent measurement log breaks its format (see `agent`).
    #[error("agent measurement log, event {index}: {reason}")]
    AgentLog {
        /// Event index.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}
