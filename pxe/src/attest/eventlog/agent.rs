//! The node agent's measurement log: what `ironrack agent` extends into the
//! TPM, in a form the server replays with the same code as the firmware log.
//!
//! # Format
//!
//! A crypto-agile event log exactly like `binary_bios_measurements` (Spec ID
//! Event03 header, then `TCG_PCR_EVENT2` records), with:
//!
//! - one bank, SHA-256 (the bank ironrack quotes);
//! - every event in PCR [`AGENT_PCR`] (15) with type `EV_EVENT_TAG`;
//! - event data = `TCG_PCClientTaggedEvent { taggedEventID: AGENT_TAG_ID,
//!   taggedEventDataSize, taggedEventData }`, where the tagged data is the
//!   UTF-8 label of what was measured (`manifest`, `rootfs`, `gpus`);
//! - the digest = SHA-256 of the measured artifact itself: the signed
//!   manifest file's bytes, the root filesystem image's bytes, the GPU
//!   inventory's canonical JSON (`attest::gpu`). The agent extends PCR 15
//!   with exactly that digest.
//!
//! The agent measures the manifest first, then the rootfs, then the GPU
//! inventory, so the server predicts PCR 15 as
//! `extend(extend(extend(0, sha256(manifest)), sha256(rootfs)), sha256(gpus))`
//! ([`AgentLog::expected`]) and compares it with both the quote and the
//! replayed log.
//!
//! # Why these choices
//!
//! `EV_EVENT_TAG` is the TCG's registered type for vendor events under a
//! vendor ID; a made-up type would be an unknown type to every other tool,
//! and our own policy rejects unknown types. PCR 15 is used by neither
//! firmware (0-7), boot loaders and the Linux EFI stub (8-10, 14) nor
//! systemd 252's stub (11-13); newer systemd (253+) extends PCR 15 from the
//! running system (machine-id, file systems), which happens after the
//! agent's quote and `switch_root`, so a re-attestation later in the life
//! of a node must expect those extra events.

use sha2::{Digest as _, Sha256};

use super::alg::{AlgorithmId, Digest};
use super::data::{EventData, TaggedEvent};
use super::{EventLog, EventLogBuilder, EventLogError, EventType};

/// The PCR the agent extends.
pub const AGENT_PCR: u32 = 15;

/// taggedEventID of agent events: "IRNK" read as a little-endian u32.
pub const AGENT_TAG_ID: u32 = u32::from_le_bytes(*b"IRNK");

/// What the agent measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentMeasurement {
    /// The signed manifest (`manifest.json`) the agent verified.
    Manifest,
    /// The root filesystem image the agent streamed and verified.
    Rootfs,
    /// The node's GPU inventory (`GpuInventory::canonical_bytes`).
    Gpus,
}

impl AgentMeasurement {
    /// The label written in the event data.
    pub fn label(self) -> &'static str {
        match self {
            Self::Manifest => "manifest",
            Self::Rootfs => "rootfs",
            Self::Gpus => "gpus",
        }
    }

    /// The measurement a label names.
    pub fn from_label(label: &[u8]) -> Option<Self> {
        match label {
            b"manifest" => Some(Self::Manifest),
            b"rootfs" => Some(Self::Rootfs),
            b"gpus" => Some(Self::Gpus),
            _ => None,
        }
    }
}

/// One agent measurement: what, and the SHA-256 it extended PCR 15 with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentEvent {
    /// What was measured.
    pub what: AgentMeasurement,
    /// SHA-256 of the artifact; the value extended into PCR 15.
    pub sha256: [u8; 32],
}

/// The agent's measurements, in the order they were extended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentLog {
    /// The events, in extend order.
    pub events: Vec<AgentEvent>,
}

impl AgentLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// The log the agent writes for a verified manifest, its rootfs and
    /// the node's GPU inventory, in the order it measures them.
    pub fn expected(
        manifest_sha256: [u8; 32],
        rootfs_sha256: [u8; 32],
        gpus_sha256: [u8; 32],
    ) -> Self {
        let mut log = Self::new();
        log.record(AgentMeasurement::Manifest, manifest_sha256);
        log.record(AgentMeasurement::Rootfs, rootfs_sha256);
        log.record(AgentMeasurement::Gpus, gpus_sha256);
        log
    }

    /// Appends a measurement. The agent extends PCR 15 with `sha256` in the
    /// same step.
    pub fn record(&mut self, what: AgentMeasurement, sha256: [u8; 32]) {
        self.events.push(AgentEvent { what, sha256 });
    }

    /// The value PCR 15 has after these measurements, from a reset TPM.
    pub fn pcr_value(&self) -> [u8; 32] {
        self.events.iter().fold([0u8; 32], |pcr, event| {
            Sha256::new()
                .chain_update(pcr)
                .chain_update(event.sha256)
                .finalize()
                .into()
        })
    }

    /// The log in its binary form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut builder = EventLogBuilder::sha256();
        for event in &self.events {
            let data = TaggedEvent {
                id: AGENT_TAG_ID,
                data: event.what.label().as_bytes().to_vec(),
            }
            .to_bytes();
            let digest = Digest::from_slice(AlgorithmId::SHA256, &event.sha256);
            builder.event_with_digests(AGENT_PCR, EventType::EVENT_TAG, digest.as_slice(), data);
        }
        // Every input above is valid by construction (PCR 15, one SHA-256
        // digest), so the builder has nothing to refuse.
        builder.to_bytes().unwrap_or_default()
    }

    /// Parses an agent log, refusing anything the agent would not write:
    /// another bank, another PCR or type, another tag, an unknown label.
    pub fn parse(bytes: &[u8]) -> Result<Self, EventLogError> {
        let log = EventLog::parse(bytes)?;
        let banks: Vec<_> = log.spec_id.algorithms.iter().map(|a| a.alg).collect();
        if banks != [AlgorithmId::SHA256] {
            let reason = format!("header lists banks {banks:?}, the agent log has only sha256");
            return Err(EventLogError::AgentLog { index: 0, reason });
        }
        let events = log
            .events
            .iter()
            .map(|event| agent_event(&log, event))
            .collect::<Result<_, _>>()?;
        Ok(Self { events })
    }
}

fn agent_event(log: &EventLog, event: &super::Event) -> Result<AgentEvent, EventLogError> {
    let fail = |reason: String| EventLogError::AgentLog {
        index: event.index,
        reason,
    };
    if event.pcr != AGENT_PCR || event.event_type != EventType::EVENT_TAG {
        return Err(fail(format!(
            "{} in PCR {}, expected EV_EVENT_TAG in PCR {AGENT_PCR}",
            event.event_type, event.pcr
        )));
    }
    let EventData::Tagged(tagged) = log.decode(event)? else {
        return Err(fail("EV_EVENT_TAG data is not a tagged event".into()));
    };
    if tagged.id != AGENT_TAG_ID {
        return Err(fail(format!(
            "tagged event ID {:#010x}, expected {AGENT_TAG_ID:#010x}",
            tagged.id
        )));
    }
    let what = AgentMeasurement::from_label(&tagged.data).ok_or_else(|| {
        fail(format!(
            "unknown measurement label {:?}",
            String::from_utf8_lossy(&tagged.data)
        ))
    })?;
    let digest = event
        .digest(AlgorithmId::SHA256)
        .ok_or_else(|| fail("no sha256 digest".into()))?;
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(digest.as_bytes());
    Ok(AgentEvent { what, sha256 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_replay_agree() {
        let log = AgentLog::expected([1; 32], [2; 32], [3; 32]);
        let bytes = log.to_bytes();
        assert_eq!(AgentLog::parse(&bytes).unwrap(), log);
        let replayed = EventLog::parse(&bytes).unwrap().replay().unwrap();
        let pcr15 = replayed.sha256().unwrap().value(AGENT_PCR).unwrap();
        assert_eq!(pcr15.as_bytes(), log.pcr_value());
        assert_ne!(log.pcr_value(), [0; 32]);
    }
}
