//! PCR values as a map, the quote's pcrDigest, and extend in software.

use std::collections::BTreeMap;

use super::attest::PcrSelection;
use super::public::hash;

/// PCR values keyed by (bank hash algorithm, PCR index).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PcrValues {
    values: BTreeMap<(u16, u32), Vec<u8>>,
}

/// A PCR the selection names but the values lack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingPcr {
    /// The bank.
    pub bank: u16,
    /// The PCR index.
    pub pcr: u32,
}

impl PcrValues {
    /// No values.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets one PCR value.
    pub fn insert(&mut self, bank: u16, pcr: u32, value: Vec<u8>) {
        self.values.insert((bank, pcr), value);
    }

    /// One PCR value.
    pub fn get(&self, bank: u16, pcr: u32) -> Option<&[u8]> {
        self.values.get(&(bank, pcr)).map(Vec::as_slice)
    }

    /// Number of values held.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no value is held.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// All values, ordered by bank then index.
    pub fn iter(&self) -> impl Iterator<Item = ((u16, u32), &[u8])> {
        self.values.iter().map(|(k, v)| (*k, v.as_slice()))
    }

    /// The digest a quote over `selection` carries: H_alg of the selected
    /// values concatenated in selection order (banks in list order, PCRs
    /// ascending), with `hash_alg` the signing scheme's hash.
    pub fn quote_digest(
        &self,
        selection: &PcrSelection,
        hash_alg: u16,
    ) -> Result<Option<Vec<u8>>, MissingPcr> {
        let mut concat = Vec::with_capacity(selection.pairs().len() * 32);
        for (bank, pcr) in selection.pairs() {
            let v = self.get(bank, pcr).ok_or(MissingPcr { bank, pcr })?;
            concat.extend_from_slice(v);
        }
        Ok(hash(hash_alg, &concat))
    }
}

/// PCR extend done in software: H(old ‖ digest).
pub fn extend(bank: u16, old: &[u8], digest: &[u8]) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(old.len() + digest.len());
    buf.extend_from_slice(old);
    buf.extend_from_slice(digest);
    hash(bank, &buf)
}
