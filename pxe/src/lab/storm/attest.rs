//! A storm node's attestation, as the agent does it: the firmware log a
//! BIOS or UEFI node's TPM would hold and the agent's PCR 15 measurements,
//! extended into the node's software TPM, then enrollment (MakeCredential
//! answered by ActivateCredential), a nonce, a quote with both logs, and
//! the "running" report, each over HTTP from the node's address.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use sha2::{Digest as _, Sha256};

use super::http;
use super::node::{NodeOutcome, Shared, SimNode, Stage, Step, retrying};
use crate::attest::eventlog::agent::{AgentLog, AgentMeasurement};
use crate::attest::eventlog::{
    AlgorithmId, DevicePath, Digest, EventLog, EventLogBuilder, EventType, ImageLoadEvent,
};
use crate::attest::gpu::GpuInventory;
use crate::attest::protocol::{
    ActivateRequest, BootReport, Bytes, EnrollRequest, ImageRef, NodeId, NonceRequest, PcrValue,
    QuoteSubmission, Request, Response, Verdict, decode,
};
use crate::attest::tpm::PcrSelection;
use crate::attest::tpm::constants::alg;
use crate::attest::tpm::model::SimulatedTpm;

/// What the firmware chain measured, by firmware.
#[derive(Debug, Clone)]
pub enum BootEvidence {
    /// SeaBIOS loaded undionly.kpxe; nothing measures the kernel.
    Bios {
        /// SHA-256 of the iPXE binary it loaded.
        ipxe_sha256: [u8; 32],
    },
    /// OVMF started snponly.efi, which started the UKI, whose stub
    /// measured its sections and load options and started its kernel.
    Uefi {
        /// Authenticode of snponly.efi (PCR 4).
        ipxe_authenticode: [u8; 32],
        /// Authenticode of node.efi (PCR 4).
        uki_authenticode: [u8; 32],
        /// Authenticode of the UKI's `.linux` (PCR 4).
        kernel_authenticode: [u8; 32],
        /// systemd-stub's PCR 11 events: section name, name digest, data
        /// digest.
        pcr11: Vec<(&'static str, [u8; 32], [u8; 32])>,
        /// What systemd-stub measured into PCR 12 (UTF-16LE with NUL).
        pcr12: Option<Vec<u8>>,
    },
}

impl BootEvidence {
    /// What a UEFI node's firmware and systemd-stub measure, computed
    /// from the bytes it was served: the iPXE binary, the UKI, and the
    /// LoadOptions iPXE started the UKI with.
    pub fn uefi(ipxe: &[u8], uki: &[u8], load_options: &str) -> Result<BootEvidence, String> {
        use ironrack_builder::boot::{measure, pe, uki as ukimod};
        let ipxe_authenticode =
            pe::authenticode_sha256(ipxe).map_err(|e| format!("snponly.efi: {e}"))?;
        let image = pe::PeImage::parse(uki).map_err(|e| format!("node.efi: {e}"))?;
        let sections = image.sections();
        let section = |name: &str| sections.iter().rfind(|s| s.name == name);
        let linux = section(".linux")
            .and_then(|s| image.loaded_data(s))
            .ok_or("node.efi has no .linux section")?;
        let kernel_authenticode =
            pe::authenticode_sha256(linux).map_err(|e| format!("node.efi .linux: {e}"))?;
        let stub = ukimod::stub_profile(&image).map_err(|e| format!("node.efi: {e}"))?;
        let predicted =
            measure::predict_pcr11(&image, &stub).map_err(|e| format!("node.efi: {e}"))?;
        let pcr11 = predicted
            .sections
            .iter()
            .map(|s| (s.section, s.name_digest, s.data_digest))
            .collect();
        // No Secure Boot in the storm's firmware: the stub takes iPXE's
        // LoadOptions over the UKI's .cmdline.
        let pcr12 = measure::predict_pcr12(load_options, false, section(".cmdline").is_some());
        Ok(BootEvidence::Uefi {
            ipxe_authenticode,
            uki_authenticode: image.authenticode_sha256(),
            kernel_authenticode,
            pcr11,
            pcr12: pcr12.measured,
        })
    }
}

/// What the node measured on its way.
pub(super) struct Evidence {
    /// What the firmware chain measured.
    pub boot: BootEvidence,
    /// SHA-256 of manifest.json.
    pub manifest_sha256: [u8; 32],
    /// SHA-256 of the rootfs.
    pub rootfs_sha256: [u8; 32],
    /// The image.
    pub image: ImageRef,
}

/// The firmware log the node's TPM would hold.
fn firmware_log(boot: &BootEvidence) -> Result<Vec<u8>, String> {
    let mut b = EventLogBuilder::sha256();
    b.event(0, EventType::S_CRTM_VERSION, vec![0, 0]);
    match boot {
        BootEvidence::Bios { ipxe_sha256 } => {
            b.measure(4, EventType::IPL, ipxe_sha256, &b"undionly.kpxe"[..]);
            for pcr in 0..8 {
                b.separator(pcr);
            }
        }
        BootEvidence::Uefi {
            ipxe_authenticode,
            uki_authenticode,
            kernel_authenticode,
            pcr11,
            pcr12,
        } => {
            for pcr in 0..8 {
                b.separator(pcr);
            }
            // As OVMF: the boot option's application (iPXE), which
            // LoadImage()s the UKI, whose stub LoadImage()s its kernel;
            // each an Authenticode digest in PCR 4.
            b.efi_action(4, "Calling EFI Application from Boot Option");
            for (digest, length) in [
                (ipxe_authenticode, 0x4_0000),
                (uki_authenticode, 0x20_0000),
                (kernel_authenticode, 0x10_0000),
            ] {
                let image = ImageLoadEvent {
                    location: 0x7e00_0000,
                    length,
                    link_time_address: 0,
                    device_path: DevicePath::default(),
                };
                let d = Digest::from_slice(AlgorithmId::SHA256, digest).ok_or("PCR 4 digest")?;
                b.boot_application(&[d], &image);
            }
            // systemd-stub: each section's name (with its NUL), then its
            // data, both logged with the name.
            for (name, name_digest, data_digest) in pcr11 {
                for digest in [name_digest, data_digest] {
                    let d =
                        Digest::from_slice(AlgorithmId::SHA256, digest).ok_or("PCR 11 digest")?;
                    b.event_with_digests(11, EventType::IPL, &[d], name.as_bytes());
                }
            }
            if let Some(measured) = pcr12 {
                b.measure(12, EventType::IPL, measured, measured.clone());
            }
        }
    }
    b.to_bytes().map_err(|e| format!("firmware log: {e}"))
}

/// What the quote carries besides the quote itself.
struct Logs {
    firmware: Vec<u8>,
    agent: AgentLog,
    gpus: Vec<u8>,
}

/// Extends the node's TPM as firmware and agent would; returns the logs.
fn measure(tpm: &mut SimulatedTpm, evidence: &Evidence) -> Result<Logs, String> {
    let firmware = firmware_log(&evidence.boot)?;
    let parsed = EventLog::parse(&firmware).map_err(|e| e.to_string())?;
    for e in parsed.events.iter().filter(|e| e.extends()) {
        if let Some(d) = e.digest(AlgorithmId::SHA256) {
            tpm.extend(e.pcr, d.as_bytes()).map_err(|e| e.to_string())?;
        }
    }
    let gpus = GpuInventory::default().canonical_bytes();
    let mut agent = AgentLog::new();
    agent.record(AgentMeasurement::Manifest, evidence.manifest_sha256);
    agent.record(AgentMeasurement::Rootfs, evidence.rootfs_sha256);
    agent.record(AgentMeasurement::Gpus, Sha256::digest(&gpus).into());
    for e in &agent.events {
        tpm.extend(15, &e.sha256).map_err(|e| e.to_string())?;
    }
    Ok(Logs {
        firmware,
        agent,
        gpus,
    })
}

/// One node's side of the attestation protocol.
struct Client<'a> {
    shared: &'a Shared,
    local: Ipv4Addr,
    server: SocketAddr,
    id: NodeId,
}

impl Client<'_> {
    /// One exchange: transport failures and 503 are retried, anything the
    /// server answers otherwise is decoded.
    async fn call(&self, request: Request) -> Result<Response, Step> {
        let (method, route) = request.route();
        let path = match &request {
            Request::Nonce(n) => format!("{route}?{}", n.to_query()),
            _ => route.to_owned(),
        };
        let body = (method == "POST").then(|| request.body());
        let r = http::request(
            self.local,
            self.server,
            method,
            &path,
            body.as_deref(),
            true,
            self.shared.request_timeout,
        )
        .await
        .map_err(|e| Step::Retry(e.to_string()))?;
        self.shared
            .http_bytes
            .fetch_add(r.length, Ordering::Relaxed);
        if r.status == 503 {
            return Err(Step::Retry(format!("{method} {route}: 503")));
        }
        decode::<Response>("response", &r.body)
            .map_err(|e| Step::Fatal(format!("{method} {route}: {} {e}", r.status)))
    }

    async fn enroll(&self, tpm: &SimulatedTpm) -> Result<(), Step> {
        let challenge = match self
            .call(Request::Enroll(EnrollRequest {
                node: self.id.clone(),
                ek_public: Bytes(tpm.ek_public().to_bytes()),
                ek_certificate: None,
                ak_public: Bytes(tpm.ak_public().to_bytes()),
            }))
            .await?
        {
            Response::Challenge(c) => c,
            other => return Err(Step::Fatal(format!("enroll: {other:?}"))),
        };
        let secret = tpm
            .activate_credential(
                tpm.ak_name(),
                &challenge.id_object,
                &challenge.encrypted_secret,
            )
            .map_err(|e| Step::Fatal(format!("activate credential: {e}")))?;
        let activate = ActivateRequest {
            node: self.id.clone(),
            session: challenge.session,
            secret: Bytes(secret),
        };
        match self.call(Request::Activate(activate)).await? {
            Response::Verdict(Verdict::Enrolled { .. }) => Ok(()),
            other => Err(Step::Fatal(format!("activate: {other:?}"))),
        }
    }

    async fn quote(&self, tpm: &SimulatedTpm, logs: &Logs, image: &ImageRef) -> Result<(), Step> {
        let nonce = match self
            .call(Request::Nonce(NonceRequest {
                node: self.id.clone(),
            }))
            .await?
        {
            Response::Nonce(n) => n.nonce,
            other => return Err(Step::Fatal(format!("nonce: {other:?}"))),
        };
        let selection = PcrSelection::sha256_boot();
        let q = tpm
            .quote(&nonce, &selection)
            .map_err(|e| Step::Fatal(format!("quote: {e}")))?;
        let pcrs = (0..16)
            .map(|pcr| PcrValue {
                bank: alg::SHA256,
                pcr,
                value: Bytes(
                    tpm.pcrs()
                        .get(alg::SHA256, pcr)
                        .unwrap_or_default()
                        .to_vec(),
                ),
            })
            .collect();
        let submission = QuoteSubmission {
            node: self.id.clone(),
            nonce,
            attest: Bytes(q.attest),
            signature: Bytes(q.signature.to_bytes()),
            pcr_selection: Bytes(selection.to_bytes()),
            pcrs,
            firmware_log: Bytes(logs.firmware.clone()),
            agent_log: Bytes(logs.agent.to_bytes()),
            ima_log: Bytes::default(),
            gpus: Bytes(logs.gpus.clone()),
            image: image.clone(),
        };
        match self.call(Request::Quote(Box::new(submission))).await? {
            Response::Verdict(Verdict::Attested { .. }) => Ok(()),
            other => Err(Step::Fatal(format!("quote: {other:?}"))),
        }
    }

    async fn report_running(&self) -> Result<(), Step> {
        let report = BootReport::running(self.id.clone(), "storm node");
        match self.call(Request::Report(report)).await? {
            Response::Noted { .. } => Ok(()),
            other => Err(Step::Fatal(format!("report: {other:?}"))),
        }
    }
}

/// Measures, enrolls, quotes and reports running; each exchange retried.
pub(super) async fn attest(
    shared: &Shared,
    progress: &Mutex<NodeOutcome>,
    node: &mut SimNode,
    local: Ipv4Addr,
    server: SocketAddr,
    evidence: &Evidence,
) -> Result<(), String> {
    let logs = measure(&mut node.tpm, evidence)?;
    let client = Client {
        shared,
        local,
        server,
        id: NodeId::new(&crate::lab::node::mac_text(&node.mac)).map_err(|e| e.to_string())?,
    };
    let tpm = &node.tpm;
    retrying(progress, Stage::Attest, || client.enroll(tpm)).await?;
    retrying(progress, Stage::Attest, || {
        client.quote(tpm, &logs, &evidence.image)
    })
    .await?;
    retrying(progress, Stage::Attest, || client.report_running()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::storm::setup::{generated_stub, make_image};

    /// A UEFI node's log replays to the manifest's PCR 11 and to the
    /// PCR 12 the server predicts from the load options, and its PCR 4
    /// names iPXE, the UKI and its kernel, in that order.
    #[test]
    fn the_uefi_log_replays_to_what_the_manifest_and_server_predict() {
        let dir = tempfile::tempdir().unwrap();
        let (image, _) = make_image(dir.path(), 4096, &generated_stub()).unwrap();
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(image.join("manifest.json")).unwrap()).unwrap();
        let m = &manifest["payload"]["measurements"];
        // Any PE32+ stands for snponly.efi here.
        let ipxe = generated_stub();
        let uki = std::fs::read(image.join("node.efi")).unwrap();
        let options = "node.efi console=ttyS0 ironrack.image=storm-1";
        let boot = BootEvidence::uefi(&ipxe, &uki, options).unwrap();
        let log = EventLog::parse(&firmware_log(&boot).unwrap()).unwrap();
        let bank = log.replay().unwrap();
        let pcr = |n| hex::encode(bank.sha256().unwrap().value(n).unwrap().as_bytes());
        assert_eq!(pcr(11), m["pcr11"].as_str().unwrap());
        let pcr12 = ironrack_builder::boot::measure::predict_pcr12(options, false, true);
        assert_eq!(pcr(12), hex::encode(pcr12.value));
        let apps: Vec<String> = log
            .events_in(4)
            .filter(|e| e.event_type == EventType::EFI_BOOT_SERVICES_APPLICATION)
            .map(|e| hex::encode(e.digest(AlgorithmId::SHA256).unwrap().as_bytes()))
            .collect();
        let ipxe_auth = ironrack_builder::boot::pe::authenticode_sha256(&ipxe).unwrap();
        assert_eq!(
            apps,
            [
                hex::encode(ipxe_auth),
                m["uki-authenticode"].as_str().unwrap().to_owned(),
                m["kernel-authenticode"].as_str().unwrap().to_owned(),
            ]
        );
        assert!(BootEvidence::uefi(&ipxe, b"not a PE", options).is_err());
    }
}
