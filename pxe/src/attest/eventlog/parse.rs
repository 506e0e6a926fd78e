//! Reading and writing the binary log. The reader never trusts a length:
//! each is checked against the bytes left before it is used, so a hostile
//! count or size costs an error, not an allocation.

use super::alg::{AlgorithmId, Digest, MAX_DIGEST_SIZE};
use super::event_type::EventType;
use super::replay::PCR_COUNT;
use super::{AlgorithmSize, Event, EventLog, EventLogError, SPEC_ID_SIGNATURE, SpecIdEvent};

/// More banks than any TPM has; a header listing more is garbage.
const MAX_BANKS: usize = 16;
/// Size of the SHA-1 digest in the legacy header event.
const LEGACY_DIGEST_SIZE: usize = 20;

/// A bounds-checked little-endian cursor over the log.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    pub(super) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(super) fn take(&mut self, len: u64, what: &'static str) -> Result<&'a [u8], EventLogError> {
        let available = self.remaining();
        match usize::try_from(len) {
            Ok(n) if n <= available => {
                let out = &self.bytes[self.pos..self.pos + n];
                self.pos += n;
                Ok(out)
            }
            _ => Err(EventLogError::Truncated {
                offset: self.pos,
                what,
                needed: len,
                available,
            }),
        }
    }

    pub(super) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], EventLogError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, what)?);
        Ok(out)
    }

    pub(super) fn u8(&mut self, what: &'static str) -> Result<u8, EventLogError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(super) fn u16(&mut self, what: &'static str) -> Result<u16, EventLogError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub(super) fn u32(&mut self, what: &'static str) -> Result<u32, EventLogError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(super) fn u64(&mut self, what: &'static str) -> Result<u64, EventLogError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
}

pub(super) fn parse_log(bytes: &[u8]) -> Result<EventLog, EventLogError> {
    let mut reader = Reader::new(bytes);
    let spec_id = parse_header(&mut reader)?;
    let mut events = Vec::new();
    while reader.remaining() > 0 {
        let event = parse_event(&mut reader, &spec_id, events.len())?;
        events.push(event);
    }
    Ok(EventLog { spec_id, events })
}

fn parse_header(reader: &mut Reader<'_>) -> Result<SpecIdEvent, EventLogError> {
    let pcr = reader.u32("header event PCR index")?;
    let event_type = EventType(reader.u32("header event type")?);
    let digest = reader.array::<LEGACY_DIGEST_SIZE>("header event SHA-1 digest")?;
    let size = reader.u32("header event size")?;
    let data = reader.take(u64::from(size), "header event data")?;
    if event_type != EventType::NO_ACTION {
        return Err(EventLogError::NotCryptoAgile {
            reason: "first event is not EV_NO_ACTION",
        });
    }
    if pcr != 0 || digest != [0; LEGACY_DIGEST_SIZE] {
        return Err(EventLogError::NotCryptoAgile {
            reason: "header event has a PCR or digest",
        });
    }
    if !data.starts_with(SPEC_ID_SIGNATURE) {
        return Err(EventLogError::NotCryptoAgile {
            reason: "no \"Spec ID Event03\" signature",
        });
    }
    parse_spec_id(&data[SPEC_ID_SIGNATURE.len()..])
}

fn bad_spec_id(reason: impl Into<String>) -> EventLogError {
    EventLogError::BadSpecId {
        reason: reason.into(),
    }
}

fn parse_spec_id(body: &[u8]) -> Result<SpecIdEvent, EventLogError> {
    let mut r = Reader::new(body);
    let platform_class = r.u32("Spec ID platformClass")?;
    let spec_version_minor = r.u8("Spec ID specVersionMinor")?;
    let spec_version_major = r.u8("Spec ID specVersionMajor")?;
    let spec_errata = r.u8("Spec ID specErrata")?;
    let uintn_size = r.u8("Spec ID uintnSize")?;
    let count = r.u32("Spec ID numberOfAlgorithms")?;
    if count == 0 || count as usize > MAX_BANKS {
        return Err(bad_spec_id(format!(
            "{count} algorithms (1..={MAX_BANKS} allowed)"
        )));
    }
    let mut algorithms: Vec<AlgorithmSize> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let alg = AlgorithmId(r.u16("Spec ID algorithmId")?);
        let digest_size = r.u16("Spec ID digestSize")?;
        check_bank(alg, digest_size, &algorithms)?;
        algorithms.push(AlgorithmSize { alg, digest_size });
    }
    let vendor_size = r.u8("Spec ID vendorInfoSize")?;
    let vendor_info = r
        .take(u64::from(vendor_size), "Spec ID vendorInfo")?
        .to_vec();
    if r.remaining() != 0 {
        return Err(bad_spec_id(format!(
            "{} bytes after vendorInfo",
            r.remaining()
        )));
    }
    if !matches!(uintn_size, 1 | 2) {
        return Err(bad_spec_id(format!(
            "uintnSize {uintn_size} (1 or 2 allowed)"
        )));
    }
    Ok(SpecIdEvent {
        platform_class,
        spec_version_minor,
        spec_version_major,
        spec_errata,
        uintn_size,
        algorithms,
        vendor_info,
    })
}

fn check_bank(alg: AlgorithmId, size: u16, seen: &[AlgorithmSize]) -> Result<(), EventLogError> {
    if seen.iter().any(|a| a.alg == alg) {
        return Err(bad_spec_id(format!("{alg} listed twice")));
    }
    let size = usize::from(size);
    match alg.standard_digest_size() {
        Some(standard) if standard != size => Err(bad_spec_id(format!(
            "{alg} digest size {size}, the algorithm's is {standard}"
        ))),
        None if size == 0 || size > MAX_DIGEST_SIZE => Err(bad_spec_id(format!(
            "{alg} digest size {size} (1..={MAX_DIGEST_SIZE} allowed)"
        ))),
        _ => Ok(()),
    }
}

fn parse_event(
    reader: &mut Reader<'_>,
    spec: &SpecIdEvent,
    index: usize,
) -> Result<Event, EventLogError> {
    let offset = reader.pos();
    let pcr = reader.u32("event PCR index")?;
    let event_type = EventType(reader.u32("event type")?);
    let count = reader.u32("event digest count")?;
    if pcr as usize >= PCR_COUNT {
        return Err(EventLogError::PcrOutOfRange { index, offset, pcr });
    }
    let banks = spec.algorithms.len();
    if count == 0 || count as usize > banks {
        return Err(EventLogError::DigestCount {
            index,
            offset,
            count,
            banks,
        });
    }
    let mut digests: Vec<Digest> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let alg = AlgorithmId(reader.u16("event digest algorithm")?);
        let bad_bank = |problem| EventLogError::BadDigestBank {
            index,
            offset,
            alg,
            problem,
        };
        let size = spec
            .digest_size(alg)
            .ok_or_else(|| bad_bank("not listed in the Spec ID header"))?;
        if digests.iter().any(|d| d.algorithm() == alg) {
            return Err(bad_bank("given twice"));
        }
        let bytes = reader.take(size as u64, "event digest")?;
        digests
            .push(Digest::from_slice(alg, bytes).ok_or_else(|| bad_bank("larger than any bank"))?);
    }
    let size = reader.u32("event data size")?;
    let data = reader.take(u64::from(size), "event data")?.to_vec();
    Ok(Event {
        index,
        offset,
        pcr,
        event_type,
        digests,
        data,
    })
}

pub(super) fn write_log(log: &EventLog) -> Vec<u8> {
    let spec = &log.spec_id;
    let mut body = SPEC_ID_SIGNATURE.to_vec();
    body.extend_from_slice(&spec.platform_class.to_le_bytes());
    body.extend_from_slice(&[
        spec.spec_version_minor,
        spec.spec_version_major,
        spec.spec_errata,
        spec.uintn_size,
    ]);
    body.extend_from_slice(&(spec.algorithms.len() as u32).to_le_bytes());
    for bank in &spec.algorithms {
        body.extend_from_slice(&bank.alg.0.to_le_bytes());
        body.extend_from_slice(&bank.digest_size.to_le_bytes());
    }
    body.push(spec.vendor_info.len() as u8);
    body.extend_from_slice(&spec.vendor_info);

    let mut out =
        Vec::with_capacity(64 + log.events.iter().map(|e| e.data.len() + 96).sum::<usize>());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&EventType::NO_ACTION.0.to_le_bytes());
    out.extend_from_slice(&[0u8; LEGACY_DIGEST_SIZE]);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    for event in &log.events {
        write_event(event, &mut out);
    }
    out
}

pub(super) fn write_event(event: &Event, out: &mut Vec<u8>) {
    out.extend_from_slice(&event.pcr.to_le_bytes());
    out.extend_from_slice(&event.event_type.0.to_le_bytes());
    out.extend_from_slice(&(event.digests.len() as u32).to_le_bytes());
    for digest in &event.digests {
        out.extend_from_slice(&digest.algorithm().0.to_le_bytes());
        out.extend_from_slice(digest.as_bytes());
    }
    out.extend_from_slice(&(event.data.len() as u32).to_le_bytes());
    out.extend_from_slice(&event.data);
}
