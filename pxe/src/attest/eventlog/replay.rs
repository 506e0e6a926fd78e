//! Replay: recompute the PCR banks from the log's digests, as the TPM
//! computed them (PCR_Extend: new = H(old ‖ digest)).
//!
//! Initial values (PC Client Platform TPM Profile): all zero, except PCR 0,
//! whose last byte is the locality of TPM2_Startup when the log carries a
//! StartupLocality event (3, or 4 with an H-CRTM), and PCRs 17-22 (the
//! dynamic-launch PCRs), which start at all ones.

use std::fmt;

use super::alg::{AlgorithmId, Digest};
use super::data::{EventData, STARTUP_LOCALITY_SIGNATURE};
use super::{Event, EventLog, EventLogError, EventType};

/// PCRs of a PC Client TPM.
pub const PCR_COUNT: usize = 24;

/// A set of PCR indices (0..=23).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PcrSelection(u32);

impl PcrSelection {
    /// No PCR.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// PCRs `range` (e.g. `0..16` for the quote ironrack asks for).
    pub fn range(range: std::ops::Range<u32>) -> Self {
        range.collect()
    }

    /// Whether `pcr` is in the set.
    pub fn contains(self, pcr: u32) -> bool {
        pcr < PCR_COUNT as u32 && self.0 & (1 << pcr) != 0
    }

    /// Adds `pcr` (indices past 23 are ignored).
    pub fn insert(&mut self, pcr: u32) {
        if pcr < PCR_COUNT as u32 {
            self.0 |= 1 << pcr;
        }
    }

    /// The indices, ascending.
    pub fn iter(self) -> impl Iterator<Item = u32> {
        (0..PCR_COUNT as u32).filter(move |&p| self.contains(p))
    }
}

impl FromIterator<u32> for PcrSelection {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut set = Self::empty();
        for pcr in iter {
            set.insert(pcr);
        }
        set
    }
}

impl fmt::Debug for PcrSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// One replayed bank: 24 PCR values of one algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrBank {
    alg: AlgorithmId,
    values: [Digest; PCR_COUNT],
    extended: PcrSelection,
}

impl PcrBank {
    fn new(alg: AlgorithmId, size: usize) -> Self {
        let values = std::array::from_fn(|pcr| {
            if (17..=22).contains(&pcr) {
                Digest::filled(alg, size, 0xFF)
            } else {
                Digest::zeroed(alg, size)
            }
        });
        Self {
            alg,
            values,
            extended: PcrSelection::empty(),
        }
    }

    /// The bank's algorithm.
    pub fn algorithm(&self) -> AlgorithmId {
        self.alg
    }

    /// The value of `pcr` (None past 23).
    pub fn value(&self, pcr: u32) -> Option<&Digest> {
        self.values.get(pcr as usize)
    }

    /// The PCRs at least one event extended.
    pub fn extended(&self) -> PcrSelection {
        self.extended
    }
}

/// The replayed banks of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrBanks {
    /// One bank per computable algorithm of the header, header order.
    pub banks: Vec<PcrBank>,
    /// Header algorithms this crate cannot compute (left unreplayed).
    pub skipped: Vec<AlgorithmId>,
}

impl PcrBanks {
    /// The bank of `alg`, if replayed.
    pub fn bank(&self, alg: AlgorithmId) -> Option<&PcrBank> {
        self.banks.iter().find(|b| b.alg == alg)
    }

    /// The SHA-256 bank, the one ironrack quotes.
    pub fn sha256(&self) -> Option<&PcrBank> {
        self.bank(AlgorithmId::SHA256)
    }
}

pub(super) fn replay(log: &EventLog) -> Result<PcrBanks, EventLogError> {
    let mut banks = Vec::new();
    let mut skipped = Vec::new();
    for bank in &log.spec_id.algorithms {
        if bank.alg.is_computable() {
            banks.push(PcrBank::new(bank.alg, usize::from(bank.digest_size)));
        } else {
            skipped.push(bank.alg);
        }
    }
    let mut pcr0_fixed = false;
    for event in &log.events {
        if !event.extends() {
            if let Some(locality) = startup_locality(log, event)? {
                if pcr0_fixed {
                    return Err(EventLogError::LateStartupLocality { index: event.index });
                }
                for bank in &mut banks {
                    bank.values[0] = pcr0_at_locality(bank.values[0], locality);
                }
                pcr0_fixed = true;
            }
            continue;
        }
        let pcr = event.pcr as usize;
        pcr0_fixed |= pcr == 0;
        for bank in &mut banks {
            let digest = event.digest(bank.alg).ok_or(EventLogError::MissingDigest {
                index: event.index,
                pcr: event.pcr,
                alg: bank.alg,
            })?;
            // Computable algorithms always extend; keep the old value otherwise.
            bank.values[pcr] = bank.values[pcr]
                .extended(digest.as_bytes())
                .unwrap_or(bank.values[pcr]);
            bank.extended.insert(event.pcr);
        }
    }
    Ok(PcrBanks { banks, skipped })
}

/// The locality of a StartupLocality event (EV_NO_ACTION in PCR 0 with its
/// signature); `None` for any other event.
fn startup_locality(log: &EventLog, event: &Event) -> Result<Option<u8>, EventLogError> {
    if event.pcr != 0 || event.event_type != EventType::NO_ACTION {
        return Ok(None);
    }
    if !event.data.starts_with(STARTUP_LOCALITY_SIGNATURE) {
        return Ok(None);
    }
    match log.decode(event)? {
        EventData::StartupLocality(locality) => Ok(Some(locality)),
        _ => Ok(None),
    }
}

fn pcr0_at_locality(zero: Digest, locality: u8) -> Digest {
    let mut initial = [0u8; super::MAX_DIGEST_SIZE];
    let size = zero.as_bytes().len();
    initial[size.saturating_sub(1)] = locality;
    Digest::from_slice(zero.algorithm(), &initial[..size]).unwrap_or(zero)
}
