//! A generator of crypto-agile logs: for tests, fuzzing seeds and the
//! boot-storm simulator. Events are given as (PCR, type, data); digests are
//! computed in every bank of the header, or given explicitly when the
//! measured thing is not the event data (an image's Authenticode digest).

use super::alg::{AlgorithmId, Digest};
use super::data::{ImageLoadEvent, VariableData, startup_locality_data};
use super::replay::PCR_COUNT;
use super::{Event, EventLog, EventLogError, EventType, SpecIdEvent};

/// Builds an [`EventLog`] event by event. Mistakes (a PCR past 23, a
/// missing bank digest) are reported by [`EventLogBuilder::build`].
#[derive(Debug, Clone)]
pub struct EventLogBuilder {
    spec_id: SpecIdEvent,
    events: Vec<Event>,
    error: Option<String>,
}

impl EventLogBuilder {
    /// A log with these banks; each must be computable (SHA-1, SHA-256,
    /// SHA-384, SHA-512) so the builder can hash event data.
    pub fn new(algorithms: &[AlgorithmId]) -> Result<Self, EventLogError> {
        if let Some(alg) = algorithms.iter().find(|a| !a.is_computable()) {
            return Err(EventLogError::Build {
                reason: format!("cannot compute {alg} digests"),
            });
        }
        if algorithms.is_empty() {
            return Err(EventLogError::Build {
                reason: "a log needs at least one bank".into(),
            });
        }
        Ok(Self {
            spec_id: SpecIdEvent::for_algorithms(algorithms)?,
            events: Vec::new(),
            error: None,
        })
    }

    /// A SHA-256-only log, like the one swtpm's default bank gives.
    pub fn sha256() -> Self {
        Self {
            spec_id: SpecIdEvent {
                platform_class: 0,
                spec_version_minor: 0,
                spec_version_major: 2,
                spec_errata: 0,
                uintn_size: 2,
                algorithms: vec![super::AlgorithmSize {
                    alg: AlgorithmId::SHA256,
                    digest_size: 32,
                }],
                vendor_info: Vec::new(),
            },
            events: Vec::new(),
            error: None,
        }
    }

    /// The banks of the log.
    pub fn algorithms(&self) -> impl Iterator<Item = AlgorithmId> + '_ {
        self.spec_id.algorithms.iter().map(|a| a.alg)
    }

    /// Adds the StartupLocality EV_NO_ACTION event (PCR 0 then starts at
    /// `locality`); put it first.
    pub fn startup_locality(&mut self, locality: u8) -> &mut Self {
        let digests = self.zero_digests();
        self.push(
            0,
            EventType::NO_ACTION,
            digests,
            startup_locality_data(locality),
        )
    }

    /// An event whose digest is the hash of its data (separators, actions,
    /// variables, ...).
    pub fn event(
        &mut self,
        pcr: u32,
        event_type: EventType,
        data: impl Into<Vec<u8>>,
    ) -> &mut Self {
        let data = data.into();
        let digests = self.hash_all(&data);
        self.push(pcr, event_type, digests, data)
    }

    /// An event whose digest is the hash of `measured`, not of its data
    /// (systemd-stub's sections, the kernel's initrd, ...).
    pub fn measure(
        &mut self,
        pcr: u32,
        event_type: EventType,
        measured: &[u8],
        data: impl Into<Vec<u8>>,
    ) -> &mut Self {
        let digests = self.hash_all(measured);
        self.push(pcr, event_type, digests, data.into())
    }

    /// An event with explicit digests, one per bank of the log (e.g. an
    /// image's Authenticode digest).
    pub fn event_with_digests(
        &mut self,
        pcr: u32,
        event_type: EventType,
        digests: &[Digest],
        data: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.push(pcr, event_type, digests.to_vec(), data.into())
    }

    /// EV_SEPARATOR with the normal value 0.
    pub fn separator(&mut self, pcr: u32) -> &mut Self {
        self.event(pcr, EventType::SEPARATOR, 0u32.to_le_bytes())
    }

    /// EV_EFI_ACTION with `text`.
    pub fn efi_action(&mut self, pcr: u32, text: &str) -> &mut Self {
        self.event(pcr, EventType::EFI_ACTION, text.as_bytes())
    }

    /// A UEFI variable event. EV_EFI_VARIABLE_BOOT hashes only the
    /// variable's contents; the other variable types hash the whole record.
    pub fn variable(&mut self, pcr: u32, event_type: EventType, var: &VariableData) -> &mut Self {
        let data = var.to_bytes();
        let digests = if event_type == EventType::EFI_VARIABLE_BOOT {
            self.hash_all(&var.data)
        } else {
            self.hash_all(&data)
        };
        self.push(pcr, event_type, digests, data)
    }

    /// EV_EFI_BOOT_SERVICES_APPLICATION in PCR 4 with the image's
    /// Authenticode digests (one per bank).
    pub fn boot_application(
        &mut self,
        authenticode: &[Digest],
        image: &ImageLoadEvent,
    ) -> &mut Self {
        let data = image.to_bytes(self.spec_id.uintn_bytes());
        self.event_with_digests(
            4,
            EventType::EFI_BOOT_SERVICES_APPLICATION,
            authenticode,
            data,
        )
    }

    /// The log, or the first mistake made while building it.
    pub fn build(&self) -> Result<EventLog, EventLogError> {
        if let Some(reason) = &self.error {
            return Err(EventLogError::Build {
                reason: reason.clone(),
            });
        }
        Ok(EventLog {
            spec_id: self.spec_id.clone(),
            events: self.events.clone(),
        })
    }

    /// The log's bytes (see [`EventLogBuilder::build`]).
    pub fn to_bytes(&self) -> Result<Vec<u8>, EventLogError> {
        self.build().map(|log| log.to_bytes())
    }

    fn hash_all(&self, bytes: &[u8]) -> Vec<Digest> {
        self.algorithms()
            .filter_map(|alg| alg.hash(bytes))
            .collect()
    }

    fn zero_digests(&self) -> Vec<Digest> {
        self.spec_id
            .algorithms
            .iter()
            .map(|a| Digest::zeroed(a.alg, usize::from(a.digest_size)))
            .collect()
    }

    fn push(
        &mut self,
        pcr: u32,
        event_type: EventType,
        digests: Vec<Digest>,
        data: Vec<u8>,
    ) -> &mut Self {
        let index = self.events.len();
        if let Err(reason) = self.validate(pcr, &digests, &data) {
            self.error.get_or_insert(format!("event {index}: {reason}"));
        }
        // Offsets are those the event will have in the written log.
        let offset = self
            .events
            .last()
            .map_or_else(|| self.header_len(), |e| e.offset + event_len(e));
        self.events.push(Event {
            index,
            offset,
            pcr,
            event_type,
            digests,
            data,
        });
        self
    }

    fn validate(&self, pcr: u32, digests: &[Digest], data: &[u8]) -> Result<(), String> {
        if pcr as usize >= PCR_COUNT {
            return Err(format!("PCR {pcr} out of range 0..=23"));
        }
        if u32::try_from(data.len()).is_err() {
            return Err(format!(
                "{} bytes of event data exceed the u32 size field",
                data.len()
            ));
        }
        if digests.len() != self.spec_id.algorithms.len() {
            return Err(format!(
                "{} digests for {} banks",
                digests.len(),
                self.spec_id.algorithms.len()
            ));
        }
        for bank in &self.spec_id.algorithms {
            let found = digests
                .iter()
                .filter(|d| d.algorithm() == bank.alg)
                .collect::<Vec<_>>();
            match found.as_slice() {
                [d] if d.as_bytes().len() == usize::from(bank.digest_size) => {}
                [d] => {
                    return Err(format!(
                        "{} digest of {} bytes",
                        bank.alg,
                        d.as_bytes().len()
                    ));
                }
                _ => return Err(format!("needs exactly one {} digest", bank.alg)),
            }
        }
        Ok(())
    }

    fn header_len(&self) -> usize {
        EventLog {
            spec_id: self.spec_id.clone(),
            events: Vec::new(),
        }
        .to_bytes()
        .len()
    }
}

fn event_len(event: &Event) -> usize {
    12 + event
        .digests
        .iter()
        .map(|d| 2 + d.as_bytes().len())
        .sum::<usize>()
        + 4
        + event.data.len()
}
