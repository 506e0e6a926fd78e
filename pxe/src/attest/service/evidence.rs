//! The evidence of a verified quote against the signed image: the event
//! logs must replay to the quoted PCRs, and what they show must be what
//! the manifest says this image measures.
//!
//! Order: logs parse, the firmware log passes the event-log policy (no
//! unknown types, data digests right) in every quoted PCR, replay equals
//! every quoted PCR (firmware log then the kernel's IMA list for 0-14,
//! agent log for 15), then the
//! image policy: PCR 4 started the manifest's UKI, PCR 11 is the predicted
//! value, PCR 15 holds exactly the manifest, rootfs and GPU inventory
//! digests, and the inventory (now bound to the quote) matches the node's
//! profile when the site gives it one.

use sha2::{Digest as _, Sha256};

use crate::attest::eventlog::EventData;
use crate::attest::eventlog::agent::{AGENT_PCR, AgentLog, AgentMeasurement};
use crate::attest::eventlog::ima::ImaLog;
use crate::attest::eventlog::{self, AlgorithmId, EventLog, EventType, policy};
use crate::attest::gpu::{GpuInventory, GpuProfile};
use crate::attest::image::{ReleasedImage, hex32};
use crate::attest::tpm::PcrValues;
use crate::attest::tpm::constants::alg;
use ironrack_builder::boot::measure::predict_pcr12;

use super::refusal::Refusal;

/// PCRs every quote covers (SHA-256 bank).
const QUOTED: std::ops::Range<u32> = 0..16;

/// Checks the logs against the (already signature-verified) PCR values and
/// the image.
/// What a node submitted with its quote, beside the PCR values.
pub(crate) struct Logs<'a> {
    pub firmware: &'a [u8],
    pub agent: &'a [u8],
    pub ima: &'a [u8],
    pub gpus: &'a [u8],
}

/// How the node's firmware hands over to the image, which decides what
/// the firmware log can prove (`[profile.NAME] boot-chain`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootChain {
    /// UEFI: iPXE then the image's UKI, each measured into PCR 4 by the
    /// firmware; PCR 11 and PCR 12 by systemd-stub. Everything is checked.
    #[default]
    Uki,
    /// Legacy BIOS (SeaBIOS, undionly.kpxe, kernel + initrd): the firmware
    /// measures itself and the option ROMs, but nothing measures the kernel
    /// or the initramfs. The quote, the firmware log's replay, the agent's
    /// PCR 15 (manifest, rootfs, GPUs) and the IMA list are checked; the
    /// UKI, PCR 11, PCR 12 and Secure Boot checks cannot apply. Weaker: a
    /// site chooses it per profile, for hardware without UEFI.
    Bios,
}

impl BootChain {
    /// The name site.toml and the timeline use.
    pub fn as_str(self) -> &'static str {
        match self {
            BootChain::Uki => "uki",
            BootChain::Bios => "bios",
        }
    }
}

/// What the site expects of this node's boot beyond the manifest; a
/// `None` is not checked (a service without a site, in tests).
#[derive(Debug, Default)]
pub(crate) struct Expectations {
    /// `[profile.NAME] boot-chain`.
    pub chain: BootChain,
    /// `[profile.NAME] gpus`.
    pub gpus: Option<GpuProfile>,
    /// `[profile.NAME] secure-boot`.
    pub secure_boot: Option<bool>,
    /// The LoadOptions the served iPXE script starts the UKI with (PCR 12).
    pub load_options: Option<String>,
    /// Authenticode digests of the boot loaders served (iPXE), the only
    /// applications PCR 4 may show before the UKI.
    pub boot_loaders: Option<Vec<[u8; 32]>>,
}

pub(crate) fn check(
    image: &ReleasedImage,
    pcrs: &PcrValues,
    logs: &Logs<'_>,
    expect: &Expectations,
) -> Result<(), Refusal> {
    let (firmware_log, agent_log, ima_log) = (logs.firmware, logs.agent, logs.ima);
    let firmware = EventLog::parse(firmware_log).map_err(|source| Refusal::EventLog {
        which: "firmware",
        source,
    })?;
    policy::check(&firmware, eventlog::PcrSelection::range(QUOTED)).map_err(|source| {
        Refusal::EventLog {
            which: "firmware",
            source,
        }
    })?;
    if firmware.events_in(AGENT_PCR).any(|e| e.extends()) {
        return Err(Refusal::OtherInAgentPcr {
            which: "firmware event log",
            pcr: AGENT_PCR,
        });
    }
    let agent = AgentLog::parse(agent_log).map_err(|source| Refusal::EventLog {
        which: "agent",
        source,
    })?;
    let ima = ImaLog::parse(ima_log).map_err(Refusal::ImaLog)?;
    if ima.entries.iter().any(|e| e.pcr == AGENT_PCR) {
        return Err(Refusal::OtherInAgentPcr {
            which: "IMA measurement list",
            pcr: AGENT_PCR,
        });
    }
    check_replay(&firmware, &agent, &ima, pcrs)?;
    if expect.chain == BootChain::Uki {
        check_uki(image, &firmware, pcrs)?;
        check_boot_chain(image, &firmware, pcrs, expect)?;
    }
    check_agent_log(image, &agent)?;
    check_gpus(&agent, logs.gpus, expect.gpus.as_ref())
}

/// The Secure Boot state the firmware measured (PCR 7's `SecureBoot`
/// variable); `None` when the log has no such event.
fn secure_boot_state(firmware: &EventLog) -> Option<bool> {
    firmware
        .events_in(7)
        .filter(|e| e.event_type == EventType::EFI_VARIABLE_DRIVER_CONFIG)
        .find_map(|e| match firmware.decode(e) {
            Ok(EventData::Variable(v)) if v.name == "SecureBoot" => {
                Some(v.data.first() == Some(&1))
            }
            _ => None,
        })
}

/// PCR 7 (Secure Boot as the profile demands), PCR 12 (the command line
/// the served script passed, as systemd-stub measured it) and PCR 4 (only
/// served boot loaders, then the UKI, then its kernel).
fn check_boot_chain(
    image: &ReleasedImage,
    firmware: &EventLog,
    pcrs: &PcrValues,
    expect: &Expectations,
) -> Result<(), Refusal> {
    let secure_boot = secure_boot_state(firmware);
    if let Some(want) = expect.secure_boot
        && secure_boot.unwrap_or(false) != want
    {
        return Err(Refusal::SecureBoot {
            expected: want,
            found: secure_boot.unwrap_or(false),
        });
    }
    if let Some(options) = &expect.load_options {
        let predicted = predict_pcr12(options, secure_boot.unwrap_or(false), true);
        let quoted = pcrs.get(alg::SHA256, 12).unwrap_or_default();
        if quoted != predicted.value {
            return Err(Refusal::Pcr12 {
                load_options: options.clone(),
                expected: hex::encode(predicted.value),
                got: hex::encode(quoted),
            });
        }
    }
    let (Some(loaders), Some(m)) = (&expect.boot_loaders, &image.measurements) else {
        return Ok(());
    };
    let uki = hex32(&m.uki_authenticode).unwrap_or_default();
    let kernel = m.kernel_authenticode.as_deref().and_then(hex32);
    let mut after_uki = 0;
    let mut seen_uki = false;
    for event in firmware.events_in(4) {
        if event.event_type != EventType::EFI_BOOT_SERVICES_APPLICATION {
            continue;
        }
        let digest: [u8; 32] = event
            .digest(AlgorithmId::SHA256)
            .and_then(|d| d.as_bytes().try_into().ok())
            .unwrap_or_default();
        let allowed = if digest == uki {
            seen_uki = true;
            true
        } else if seen_uki {
            // What the stub starts: the kernel of the measured UKI.
            after_uki += 1;
            kernel.map_or(after_uki == 1, |k| k == digest)
        } else {
            loaders.contains(&digest)
        };
        if !allowed {
            let path = match firmware.decode(event) {
                Ok(EventData::ImageLoad(load)) => load.device_path.to_string(),
                _ => String::new(),
            };
            return Err(Refusal::Pcr4Application {
                digest: hex::encode(digest),
                path,
                stage: if seen_uki {
                    "after the UKI (not its kernel)"
                } else {
                    "before the UKI (not a boot loader this server serves)"
                },
            });
        }
    }
    Ok(())
}

/// The inventory the node sent must be the one it measured (the third
/// agent event), canonical, and as the site's profile says.
fn check_gpus(agent: &AgentLog, gpus: &[u8], profile: Option<&GpuProfile>) -> Result<(), Refusal> {
    let inventory = GpuInventory::from_canonical(gpus).map_err(Refusal::GpuInventory)?;
    let measured = agent.events[2].sha256;
    let sent: [u8; 32] = Sha256::digest(gpus).into();
    if measured != sent {
        return Err(Refusal::AgentGpus {
            expected: hex::encode(sent),
            got: hex::encode(measured),
        });
    }
    if let Some(profile) = profile {
        profile.check(&inventory).map_err(Refusal::GpuProfile)?;
    }
    Ok(())
}

fn check_replay(
    firmware: &EventLog,
    agent: &AgentLog,
    ima: &ImaLog,
    pcrs: &PcrValues,
) -> Result<(), Refusal> {
    let banks = firmware.replay().map_err(|source| Refusal::EventLog {
        which: "firmware",
        source,
    })?;
    let Some(bank) = banks.sha256() else {
        return Err(Refusal::Malformed {
            what: "firmware event log",
            reason: "it has no SHA-256 bank".into(),
        });
    };
    let agent_pcr = agent.pcr_value();
    for pcr in QUOTED {
        let (which, replayed) = if pcr == AGENT_PCR {
            ("agent", agent_pcr.to_vec())
        } else {
            let mut value = bank
                .value(pcr)
                .map(|d| d.as_bytes().to_vec())
                .unwrap_or_else(|| vec![0; 32]);
            let mut which = "firmware";
            for extend in ima.sha256_extends(pcr) {
                value = Sha256::new()
                    .chain_update(&value)
                    .chain_update(extend)
                    .finalize()
                    .to_vec();
                which = "firmware and IMA";
            }
            (which, value)
        };
        let quoted = pcrs.get(alg::SHA256, pcr).unwrap_or_default();
        if quoted != replayed.as_slice() {
            return Err(Refusal::PcrReplay {
                pcr,
                which,
                quoted: hex::encode(quoted),
                replayed: hex::encode(replayed),
            });
        }
    }
    Ok(())
}

/// PCR 4 started the manifest's UKI and PCR 11 is its prediction.
fn check_uki(image: &ReleasedImage, firmware: &EventLog, pcrs: &PcrValues) -> Result<(), Refusal> {
    let Some(m) = &image.measurements else {
        return Err(Refusal::ImageUnmeasured {
            name: image.name.clone(),
            version: image.version,
        });
    };
    // Both parse: ReleasedImage checked them when it was made.
    let authenticode = hex32(&m.uki_authenticode).unwrap_or_default();
    let pcr11 = hex32(&m.pcr11).unwrap_or_default();
    let uki_started = firmware.events_in(4).any(|e| {
        e.event_type == EventType::EFI_BOOT_SERVICES_APPLICATION
            && e.digest(AlgorithmId::SHA256)
                .is_some_and(|d| d.as_bytes() == authenticode)
    });
    if !uki_started {
        return Err(Refusal::UkiNotBooted {
            expected: m.uki_authenticode.to_lowercase(),
        });
    }
    let quoted11 = pcrs.get(alg::SHA256, 11).unwrap_or_default();
    if quoted11 != pcr11 {
        return Err(Refusal::Pcr11 {
            expected: m.pcr11.to_lowercase(),
            got: hex::encode(quoted11),
        });
    }
    Ok(())
}

fn check_agent_log(image: &ReleasedImage, agent: &AgentLog) -> Result<(), Refusal> {
    let kinds: Vec<_> = agent.events.iter().map(|e| e.what.label()).collect();
    let shape = || Refusal::AgentLogShape {
        reason: format!("events {kinds:?}, expected [\"manifest\", \"rootfs\", \"gpus\"]"),
    };
    let [manifest, rootfs, gpus] = agent.events.as_slice() else {
        return Err(shape());
    };
    if manifest.what != AgentMeasurement::Manifest
        || rootfs.what != AgentMeasurement::Rootfs
        || gpus.what != AgentMeasurement::Gpus
    {
        return Err(shape());
    }
    if manifest.sha256 != image.manifest_sha256 {
        return Err(Refusal::AgentManifest {
            expected: hex::encode(image.manifest_sha256),
            got: hex::encode(manifest.sha256),
        });
    }
    if rootfs.sha256 != image.rootfs_sha256 {
        return Err(Refusal::AgentRootfs {
            name: image.rootfs_name.clone(),
            expected: hex::encode(image.rootfs_sha256),
            got: hex::encode(rootfs.sha256),
        });
    }
    Ok(())
}
