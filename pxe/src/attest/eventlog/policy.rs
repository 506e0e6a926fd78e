//! Checks a verifier runs on a log before trusting what its events say.
//!
//! Replay proves the digests add up to the quoted PCRs, nothing more. The
//! event *type* and, for most types, the event *data* are not covered by the
//! digest (facts.md), so a verifier that reads either must first check:
//!
//! 1. [`reject_unknown_types`]: every event in a checked PCR has a type in
//!    the registry. An unknown type is a label nobody can interpret, and an
//!    attacker can relabel an event freely.
//! 2. [`check_event_data`]: in checked PCRs, typed data decodes, and for the
//!    types whose digest the spec defines as the hash of the data
//!    (separators, actions, variables, GPT), the digest is that hash, in
//!    every bank this crate computes. Otherwise a log could show a harmless
//!    string beside the digest of something else.
//!
//! [`check`] runs both.

use super::alg::AlgorithmId;
use super::data::EventData;
use super::{Event, EventLog, EventLogError, EventType, PcrSelection};

/// Runs every check of this module on the events of the `checked` PCRs.
pub fn check(log: &EventLog, checked: PcrSelection) -> Result<(), EventLogError> {
    reject_unknown_types(log, checked)?;
    check_event_data(log, checked)
}

/// Fails on the first event of a type outside the registry in a checked PCR.
pub fn reject_unknown_types(log: &EventLog, checked: PcrSelection) -> Result<(), EventLogError> {
    match log
        .events
        .iter()
        .find(|e| checked.contains(e.pcr) && !e.event_type.is_known())
    {
        Some(e) => Err(EventLogError::UnknownEventType {
            index: e.index,
            pcr: e.pcr,
            event_type: e.event_type,
        }),
        None => Ok(()),
    }
}

/// Fails on the first event in a checked PCR whose data does not decode as
/// its type, or whose digest should be, but is not, the hash of its data.
pub fn check_event_data(log: &EventLog, checked: PcrSelection) -> Result<(), EventLogError> {
    for event in log.events.iter().filter(|e| checked.contains(e.pcr)) {
        let decoded = log.decode(event)?;
        let Some(digested) = digested_bytes(event, &decoded) else {
            continue;
        };
        for digest in &event.digests {
            if let Some(expected) = digest.algorithm().hash(digested)
                && expected != *digest
            {
                return Err(mismatch(event, digest.algorithm()));
            }
        }
    }
    Ok(())
}

fn mismatch(event: &Event, alg: AlgorithmId) -> EventLogError {
    EventLogError::DataDigestMismatch {
        index: event.index,
        pcr: event.pcr,
        event_type: event.event_type,
        alg,
    }
}

/// The bytes an event's digest is the hash of, for the types where the
/// spec (and EDK2) define it so.
fn digested_bytes<'a>(event: &'a Event, decoded: &'a EventData) -> Option<&'a [u8]> {
    match event.event_type {
        EventType::SEPARATOR
        | EventType::ACTION
        | EventType::EFI_ACTION
        | EventType::S_CRTM_VERSION
        | EventType::EFI_VARIABLE_DRIVER_CONFIG
        | EventType::EFI_VARIABLE_BOOT2
        | EventType::EFI_VARIABLE_AUTHORITY
        | EventType::EFI_GPT_EVENT
        | EventType::EFI_GPT_EVENT2 => Some(&event.data),
        // EV_EFI_VARIABLE_BOOT: only the variable's contents are hashed.
        EventType::EFI_VARIABLE_BOOT => match decoded {
            EventData::Variable(var) => Some(&var.data),
            _ => None,
        },
        _ => None,
    }
}
