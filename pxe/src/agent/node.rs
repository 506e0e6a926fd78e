//! The agent's conversation with the TPM and the server: enrollment,
//! measurement into PCR 15, quote.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::AgentError;
use crate::attest::eventlog::agent::{AGENT_PCR, AgentLog, AgentMeasurement};
use crate::attest::gpu::GpuInventory;
use crate::attest::image::ReleasedImage;
use crate::attest::protocol::{
    ActivateRequest, AttestClient, Bytes, EnrollRequest, ImageRef, NodeId, NonceRequest, PcrValue,
    QuoteSubmission, Request, Response, Verdict,
};
use crate::attest::secret::{SealedSecret, open};
use crate::attest::tpm::constants::alg;
use crate::attest::tpm::endorsement::{EndorsementKey, endorsement_keys};
use crate::attest::tpm::{
    AK_PERSISTENT_HANDLE, AkTemplate, AttestationKey, PcrSelection, Tpm, TpmError, Transport,
};

/// Where Linux exposes the firmware's event log.
pub const FIRMWARE_LOG: &str = "/sys/kernel/security/tpm0/binary_bios_measurements";

/// Where Linux exposes IMA's measurement list.
pub const IMA_LOG: &str = "/sys/kernel/security/ima/binary_runtime_measurements";

/// Reads the firmware event log Linux exposes (see [`FIRMWARE_LOG`]).
pub fn read_firmware_log(path: &Path) -> Result<Vec<u8>, AgentError> {
    std::fs::read(path).map_err(|source| AgentError::FirmwareLog {
        path: path.to_owned(),
        source,
    })
}

/// The node side of attestation over a TPM and a client.
#[derive(Debug)]
pub struct NodeAgent<T, C> {
    tpm: Tpm<T>,
    client: C,
    node: NodeId,
    ak_template: AkTemplate,
    log: AgentLog,
    ima_log: Option<PathBuf>,
    gpus: GpuInventory,
}

fn tpm_step(step: &'static str) -> impl FnOnce(TpmError) -> AgentError {
    move |source| AgentError::Tpm { step, source }
}

fn describe(response: &Response) -> String {
    match response {
        Response::Challenge(_) => "challenge".into(),
        Response::Nonce(_) => "nonce".into(),
        Response::Noted { .. } => "noted".into(),
        Response::Verdict(v) => format!("{v:?}"),
    }
}

impl<T: Transport, C: AttestClient> NodeAgent<T, C> {
    /// An agent for `node` with the default AK (RSA-2048, persisted at
    /// [`AK_PERSISTENT_HANDLE`]).
    pub fn new(tpm: Tpm<T>, client: C, node: NodeId) -> Self {
        NodeAgent {
            tpm,
            client,
            node,
            ak_template: AkTemplate::default(),
            log: AgentLog::new(),
            ima_log: None,
            gpus: GpuInventory::default(),
        }
    }

    /// The GPU inventory the agent measures and reports (none by default).
    pub fn with_gpus(mut self, gpus: GpuInventory) -> Self {
        self.gpus = gpus;
        self
    }

    /// Sends the kernel's IMA measurement list (read from `path`, normally
    /// [`IMA_LOG`], just before each quote) with every quote: it explains
    /// PCR 10. A missing file (no IMA) is sent as an empty list.
    pub fn with_ima_log(mut self, path: PathBuf) -> Self {
        self.ima_log = Some(path);
        self
    }

    /// The TPM (for callers that read PCRs or start it up).
    pub fn tpm(&mut self) -> &mut Tpm<T> {
        &mut self.tpm
    }

    /// Gives the TPM back (the agent's log is dropped with the agent).
    pub fn into_tpm(self) -> Tpm<T> {
        self.tpm
    }

    /// The client.
    pub fn client(&mut self) -> &mut C {
        &mut self.client
    }

    /// What the agent has measured so far.
    pub fn agent_log(&self) -> &AgentLog {
        &self.log
    }

    fn call(&mut self, step: &'static str, request: Request) -> Result<Response, AgentError> {
        let (method, path) = request.route();
        let response = self
            .client
            .call(&request)
            .map_err(|source| AgentError::Transport {
                method,
                path,
                source,
            })?;
        if let Response::Verdict(Verdict::Refused { code, reason }) = response {
            tracing::error!(step, code, reason, "attestation server refused");
            return Err(AgentError::Refused { step, code, reason });
        }
        Ok(response)
    }

    fn ak(&mut self) -> Result<AttestationKey, AgentError> {
        self.tpm
            .load_or_create_ak(self.ak_template, AK_PERSISTENT_HANDLE)
            .map_err(tpm_step("loading the attestation key"))
    }

    /// The EK the agent enrolls and opens credentials with: the first of
    /// [`endorsement_keys`], certified whenever any is; the others are
    /// released.
    fn ek(&mut self) -> Result<EndorsementKey, AgentError> {
        let mut eks = endorsement_keys(&mut self.tpm).map_err(tpm_step("reading the EKs"))?;
        if eks.is_empty() {
            return Err(AgentError::NoEndorsementKey);
        }
        let ek = eks.remove(0);
        for other in &eks {
            // Best effort: a transient handle left behind only costs a slot.
            let _ = other.release(&mut self.tpm);
        }
        Ok(ek)
    }

    /// Recovers a secret the server sealed to this TPM with an `attested`
    /// verdict: ActivateCredential with the EK and the AK returns its key.
    pub fn open_secret(&mut self, sealed: &SealedSecret) -> Result<Zeroizing<Vec<u8>>, AgentError> {
        // The same EK as the enrollment's.
        let ek = self.ek()?;
        let key = self.ak().and_then(|ak| {
            let key = self
                .tpm
                .activate_credential(
                    ak.key.handle,
                    ek.key.handle,
                    ek.template.auth(),
                    &sealed.id_object,
                    &sealed.encrypted_secret,
                )
                .map_err(tpm_step("ActivateCredential (secret)"));
            key.map(|k| (Zeroizing::new(k), ak.key.public.clone()))
        });
        let _ = ek.release(&mut self.tpm);
        let (key, ak_public) = key?;
        Ok(open(sealed, &key, &ak_public, &self.node)?)
    }

    /// Enrolls the TPM: sends EK (with its certificate) and AK, answers the
    /// server's credential with ActivateCredential. Returns the server's
    /// verdict: enrolled, or pending operator approval.
    pub fn enroll(&mut self) -> Result<Verdict, AgentError> {
        let ek = self.ek()?;
        let result = self.enroll_with(&ek);
        let _ = ek.release(&mut self.tpm);
        result
    }

    fn enroll_with(&mut self, ek: &EndorsementKey) -> Result<Verdict, AgentError> {
        let ak = self.ak()?;
        let request = Request::Enroll(EnrollRequest {
            node: self.node.clone(),
            ek_public: Bytes(ek.key.public.to_bytes()),
            ek_certificate: ek.certificate.clone().map(Bytes),
            ak_public: Bytes(ak.key.public.to_bytes()),
        });
        let challenge = match self.call("enrollment", request)? {
            Response::Challenge(c) => c,
            other => {
                return Err(AgentError::UnexpectedAnswer {
                    step: "enrollment",
                    got: describe(&other),
                });
            }
        };
        let secret = self
            .tpm
            .activate_credential(
                ak.key.handle,
                ek.key.handle,
                ek.template.auth(),
                &challenge.id_object,
                &challenge.encrypted_secret,
            )
            .map_err(tpm_step("ActivateCredential"))?;
        let activation = Request::Activate(ActivateRequest {
            node: self.node.clone(),
            session: challenge.session,
            secret: Bytes(secret),
        });
        match self.call("activation", activation)? {
            Response::Verdict(v @ (Verdict::Enrolled { .. } | Verdict::Pending { .. })) => {
                tracing::info!(node = %self.node, verdict = ?v, "enrolled");
                Ok(v)
            }
            other => Err(AgentError::UnexpectedAnswer {
                step: "activation",
                got: describe(&other),
            }),
        }
    }

    /// Extends PCR 15 with `sha256` and logs it as `what`.
    pub fn measure(&mut self, what: AgentMeasurement, sha256: [u8; 32]) -> Result<(), AgentError> {
        self.tpm
            .pcr_extend(AGENT_PCR, &[(alg::SHA256, &sha256)])
            .map_err(tpm_step("extending PCR 15"))?;
        self.log.record(what, sha256);
        tracing::info!(what = what.label(), sha256 = %hex::encode(sha256), "measured into PCR 15");
        Ok(())
    }

    /// Measures a verified image: the manifest's digest, then the rootfs's
    /// (call only after the rootfs was fetched and matched), then the GPU
    /// inventory's.
    pub fn measure_image(&mut self, image: &ReleasedImage) -> Result<(), AgentError> {
        self.measure(AgentMeasurement::Manifest, image.manifest_sha256)?;
        self.measure(AgentMeasurement::Rootfs, image.rootfs_sha256)?;
        self.measure(AgentMeasurement::Gpus, self.gpus.sha256())
    }

    /// Attests: a nonce, a quote over SHA-256 PCRs 0-15, the submission
    /// with `firmware_log` and the agent log. Returns `attested` or
    /// `pending`; a refusal is an error naming the server's reason.
    pub fn attest(&mut self, firmware_log: &[u8], image: ImageRef) -> Result<Verdict, AgentError> {
        let ak = self.ak()?;
        let request = Request::Nonce(NonceRequest {
            node: self.node.clone(),
        });
        let nonce = match self.call("nonce", request)? {
            Response::Nonce(n) => n.nonce,
            other => {
                return Err(AgentError::UnexpectedAnswer {
                    step: "nonce",
                    got: describe(&other),
                });
            }
        };
        let ima_log = match &self.ima_log {
            Some(path) => match std::fs::read(path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(source) => {
                    return Err(AgentError::FirmwareLog {
                        path: path.clone(),
                        source,
                    });
                }
            },
            None => Vec::new(),
        };
        let selection = PcrSelection::sha256_boot();
        let quote = self
            .tpm
            .quote(ak.key.handle, &nonce, &selection)
            .map_err(tpm_step("Quote"))?;
        let values = self
            .tpm
            .pcr_read(&selection)
            .map_err(tpm_step("PCR_Read"))?;
        let _ = ak.release(&mut self.tpm);
        let submission = QuoteSubmission {
            node: self.node.clone(),
            nonce,
            attest: Bytes(quote.attest),
            signature: Bytes(quote.signature.to_bytes()),
            pcr_selection: Bytes(selection.to_bytes()),
            pcrs: values
                .iter()
                .map(|((bank, pcr), value)| PcrValue {
                    bank,
                    pcr,
                    value: Bytes(value.to_vec()),
                })
                .collect(),
            firmware_log: Bytes(firmware_log.to_vec()),
            agent_log: Bytes(self.log.to_bytes()),
            ima_log: Bytes(ima_log),
            gpus: Bytes(self.gpus.canonical_bytes()),
            image,
        };
        match self.call("quote", Request::Quote(Box::new(submission)))? {
            Response::Verdict(v @ (Verdict::Attested { .. } | Verdict::Pending { .. })) => {
                tracing::info!(node = %self.node, verdict = ?v, "attestation answered");
                Ok(v)
            }
            other => Err(AgentError::UnexpectedAnswer {
                step: "quote",
                got: describe(&other),
            }),
        }
    }
}
