//! A storm node's attestation, as the agent does it: the firmware log a
//! BIOS node's TPM would hold and the agent's PCR 15 measurements,
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
use crate::attest::eventlog::{AlgorithmId, EventLog, EventLogBuilder, EventType};
use crate::attest::gpu::GpuInventory;
use crate::attest::protocol::{
    ActivateRequest, BootReport, Bytes, EnrollRequest, ImageRef, NodeId, NonceRequest, PcrValue,
    QuoteSubmission, Request, Response, Verdict, decode,
};
use crate::attest::tpm::PcrSelection;
use crate::attest::tpm::constants::alg;
use crate::attest::tpm::model::SimulatedTpm;

/// What the node measured on its way.
pub(super) struct Evidence {
    /// SHA-256 of the iPXE binary it loaded.
    pub ipxe_sha256: [u8; 32],
    /// SHA-256 of manifest.json.
    pub manifest_sha256: [u8; 32],
    /// SHA-256 of the rootfs.
    pub rootfs_sha256: [u8; 32],
    /// The image.
    pub image: ImageRef,
}

/// The firmware log a BIOS node's TPM would hold: the CRTM, separators,
/// and iPXE loaded by the PXE ROM (PCR 4).
fn firmware_log(ipxe_sha256: &[u8; 32]) -> Result<Vec<u8>, String> {
    let mut b = EventLogBuilder::sha256();
    b.event(0, EventType::S_CRTM_VERSION, vec![0, 0]);
    b.measure(4, EventType::IPL, ipxe_sha256, &b"undionly.kpxe"[..]);
    for pcr in 0..8 {
        b.separator(pcr);
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
    let firmware = firmware_log(&evidence.ipxe_sha256)?;
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
