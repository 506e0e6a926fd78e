//! The attestation server as a library: [`AttestService`] answers the four
//! requests of [`crate::attest::protocol`] over an [`AttestStore`] and an
//! [`ImageCatalog`]; the HTTP routes only decode, call and encode.
//!
//! States of a node: unknown → (enroll + activate) → `enrolled` when its EK
//! certificate chains to an operator CA root, `pending` otherwise (no
//! certificate, unknown CA) until [`AttestService::approve`]; `revoked`
//! after [`AttestService::revoke`]. A pending node's quotes are checked in
//! full but answered `pending`; only an enrolled node is ever `attested`.

mod evidence;
mod memory;
mod refusal;
mod sqlite;
mod store;
#[cfg(test)]
mod store_tests;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

pub use evidence::BootChain;
pub use memory::MemoryStore;
pub use refusal::Refusal;
pub use sqlite::SqliteAttestStore;
pub use store::{
    AttestStore, AttestStoreError, EnrollmentSession, IssuedNonce, NodeRecord, NodeState, NonceUse,
    TimelineEntry,
};

use crate::attest::credential::make_credential;
use crate::attest::ek::{EkError, EkTrust, verify_ek_certificate};
use crate::attest::gpu::GpuProfile;
use crate::attest::image::ReleasedImage;
use crate::attest::protocol::{
    self, ActivateRequest, BootReport, Bytes, Challenge, EnrollRequest, ImageRef, NodeId,
    NonceRequest, NonceResponse, QuoteSubmission, Request, Response, Verdict,
};
use crate::attest::quote::{AkKey, Expected, QuoteError, verify_quote};
use crate::attest::secret::{MAX_SECRET, SealedSecret, seal};
use crate::attest::tpm::wire::Reader;
use crate::attest::tpm::{PcrSelection, PcrValues, Public, Signature};

/// Signed images the server knows, by name and version.
pub trait ImageCatalog: Send + Sync {
    /// The image `name` at `version`, if the server has its signed manifest.
    fn image(&self, name: &str, version: u64) -> Option<Arc<ReleasedImage>>;
}

/// What the site says of each node beyond its keys: the judge's view of
/// `[[rack.node]]` (serve implements it over the live site).
///
/// Every answer may be `None`: that check is then not made.
pub trait NodePolicy: Send + Sync {
    /// The version of `image` the operator pinned the node to
    /// (`force-version`): it may run it even below a version it ran before.
    fn pinned_version(&self, _node: &NodeId, _image: &str) -> Option<u64> {
        None
    }
    /// The GPUs the node must show (`[profile.NAME] gpus`).
    fn gpu_profile(&self, _node: &NodeId) -> Option<GpuProfile> {
        None
    }
    /// Whether the node's firmware must have Secure Boot on
    /// (`[profile.NAME] secure-boot`).
    fn secure_boot(&self, _node: &NodeId) -> Option<bool> {
        None
    }
    /// The LoadOptions the served script starts `image`'s UKI with.
    fn load_options(&self, _node: &NodeId, _image: &ReleasedImage) -> Option<String> {
        None
    }
    /// Authenticode SHA-256 of every boot loader (iPXE) the server serves.
    fn boot_loaders(&self) -> Option<Vec<[u8; 32]>> {
        None
    }
    /// How the node's firmware starts the image (`[profile.NAME]
    /// boot-chain`): what its firmware log can be held to.
    fn boot_chain(&self, _node: &NodeId) -> BootChain {
        BootChain::Uki
    }
}

/// No site: no pins.
#[derive(Debug, Default)]
pub struct NoPolicy;

impl NodePolicy for NoPolicy {}

/// An [`ImageCatalog`] in memory, filled by whoever loads the image store.
#[derive(Debug, Default)]
pub struct ImageSet {
    images: RwLock<HashMap<(String, u64), Arc<ReleasedImage>>>,
}

impl ImageSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a verified image.
    pub fn insert(&self, image: ReleasedImage) {
        let key = (image.name.clone(), image.version);
        self.images
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, Arc::new(image));
    }
}

impl ImageCatalog for ImageSet {
    fn image(&self, name: &str, version: u64) -> Option<Arc<ReleasedImage>> {
        self.images
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(name.to_owned(), version))
            .cloned()
    }
}

/// The service's settings.
#[derive(Debug, Clone)]
pub struct AttestConfig {
    /// Operator CA roots (and intermediates) for EK certificates.
    pub ek_trust: EkTrust,
    /// Seconds a nonce stays valid.
    pub nonce_ttl: u64,
    /// Seconds an enrollment session stays open.
    pub session_ttl: u64,
    /// Directory of per-node secrets, one file named by the node id; a
    /// node's file is sealed to its TPM with every `attested` verdict.
    pub secrets: Option<PathBuf>,
}

impl AttestConfig {
    /// Defaults: nonces live 60 s, sessions 300 s.
    pub fn new(ek_trust: EkTrust) -> Self {
        AttestConfig {
            ek_trust,
            nonce_ttl: 60,
            session_ttl: 300,
            secrets: None,
        }
    }
}

/// What a service call can end in besides its answer.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request was refused; answer with [`Refusal::verdict`].
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The store failed: a server error, the node should retry.
    #[error(transparent)]
    Store(#[from] AttestStoreError),
    /// An operator command named a node the server does not know.
    #[error("node {node} is not known to the attestation service")]
    UnknownNode {
        /// The node.
        node: NodeId,
    },
    /// The OS random source failed.
    #[error("random number generator failed: {reason}")]
    Random {
        /// The error.
        reason: String,
    },
    /// A node's secret file is unsafe or unreadable, or could not be
    /// sealed: nothing is released, the node retries.
    #[error("secret of node {node} ({}): {reason}", path.display())]
    Secret {
        /// The node.
        node: NodeId,
        /// Its file.
        path: PathBuf,
        /// Why it was not released.
        reason: String,
    },
}

type Clock = Box<dyn Fn() -> SystemTime + Send + Sync>;

/// A node's prepared AK, with the public bytes it was made from.
type AkCache = HashMap<NodeId, (Vec<u8>, Arc<AkKey>)>;

/// The attestation server.
pub struct AttestService {
    store: Arc<dyn AttestStore>,
    images: Arc<dyn ImageCatalog>,
    policy: Arc<dyn NodePolicy>,
    config: AttestConfig,
    clock: Clock,
    /// Prepared AKs: key setup costs more than a verification.
    aks: Mutex<AkCache>,
    issued: AtomicU64,
}

impl std::fmt::Debug for AttestService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestService")
            .field("store", &self.store)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Prune expired sessions and nonces every this many nonces.
const PRUNE_EVERY: u64 = 256;

fn random<const N: usize>() -> Result<[u8; N], ServiceError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| ServiceError::Random {
        reason: e.to_string(),
    })?;
    Ok(out)
}

fn malformed(what: &'static str, reason: impl ToString) -> Refusal {
    Refusal::Malformed {
        what,
        reason: reason.to_string(),
    }
}

impl AttestService {
    /// A service over `store` judging quotes against `images`.
    pub fn new(
        store: Arc<dyn AttestStore>,
        images: Arc<dyn ImageCatalog>,
        config: AttestConfig,
    ) -> Self {
        AttestService {
            store,
            images,
            policy: Arc::new(NoPolicy),
            config,
            clock: Box::new(SystemTime::now),
            aks: Mutex::new(HashMap::new()),
            issued: AtomicU64::new(0),
        }
    }

    /// Judges nodes with what the site says of them (pins).
    pub fn with_policy(mut self, policy: Arc<dyn NodePolicy>) -> Self {
        self.policy = policy;
        self
    }

    /// Replaces the clock (tests of expiry).
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    fn now(&self) -> u64 {
        (self.clock)()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// Answers any request; refusals become [`Verdict::Refused`] answers,
    /// so only server-side failures are errors.
    pub fn handle(&self, request: &Request) -> Result<Response, ServiceError> {
        let result = match request {
            Request::Enroll(r) => self.enroll(r).map(Response::Challenge),
            Request::Activate(r) => self.activate(r).map(Response::Verdict),
            Request::Nonce(r) => self.nonce(r).map(Response::Nonce),
            Request::Quote(r) => self.quote(r).map(Response::Verdict),
            Request::Report(r) => self.report(r),
        };
        match result {
            Err(ServiceError::Refused(refusal)) => Ok(Response::Verdict(refusal.verdict())),
            other => other,
        }
    }

    /// `POST /attest/enroll`: checks the keys and the EK certificate and
    /// seals a credential to the EK for the AK.
    pub fn enroll(&self, req: &EnrollRequest) -> Result<Challenge, ServiceError> {
        let ek = Public::from_bytes(&req.ek_public).map_err(|e| malformed("ek-public", e))?;
        let ak = Public::from_bytes(&req.ak_public).map_err(|e| malformed("ak-public", e))?;
        let ak = AkKey::new(ak).map_err(Refusal::UnacceptableAk)?;
        let existing = self.store.node(&req.node)?;
        if let Some(record) = &existing {
            if record.state == NodeState::Revoked {
                return Err(Refusal::Revoked {
                    node: req.node.clone(),
                }
                .into());
            }
            if record.ek_public != req.ek_public.0 {
                return Err(Refusal::EkChanged {
                    node: req.node.clone(),
                }
                .into());
            }
        }
        if let Some(owner) = self.store.node_with_ek(&req.ek_public)?
            && owner != req.node
        {
            return Err(Refusal::EkInUse {
                owner,
                node: req.node.clone(),
            }
            .into());
        }
        let mut state = self.ek_state(req, &ek)?;
        // An operator's approval survives re-enrollment with the same EK.
        if existing.is_some_and(|r| r.state == NodeState::Enrolled) {
            state = NodeState::Enrolled;
        }
        let secret: [u8; 32] = random()?;
        let credential = make_credential(&ek, ak.name(), &secret).map_err(Refusal::UnsuitableEk)?;
        let id: [u8; 16] = random()?;
        self.store.put_session(&EnrollmentSession {
            id: id.to_vec(),
            node: req.node.clone(),
            ek_public: req.ek_public.0.clone(),
            ak_public: req.ak_public.0.clone(),
            secret_sha256: Sha256::digest(secret).into(),
            state,
            expires_at: self.now() + self.config.session_ttl,
        })?;
        tracing::info!(node = %req.node, "enrollment challenge issued");
        Ok(Challenge {
            session: Bytes(id.to_vec()),
            id_object: Bytes(credential.id_object),
            encrypted_secret: Bytes(credential.encrypted_secret),
            expires_in: self.config.session_ttl,
        })
    }

    /// What the EK certificate makes of the node: enrolled, pending, or a
    /// refusal when the certificate is present but wrong.
    fn ek_state(&self, req: &EnrollRequest, ek: &Public) -> Result<NodeState, Refusal> {
        let Some(cert) = &req.ek_certificate else {
            return Ok(NodeState::Pending {
                reason: "TPM has no EK certificate; awaiting operator approval".into(),
            });
        };
        match verify_ek_certificate(cert, ek, &self.config.ek_trust, (self.clock)()) {
            Ok(info) => {
                tracing::info!(node = %req.node, chain = ?info.chain, "EK certificate trusted");
                Ok(NodeState::Enrolled)
            }
            Err(e @ EkError::UnknownIssuer { .. }) => Ok(NodeState::Pending {
                reason: format!("{e}; awaiting operator approval"),
            }),
            Err(e) => Err(Refusal::EkCertificate(e)),
        }
    }

    /// `POST /attest/activate`: the secret proves the AK shares the EK's
    /// TPM; the AK is stored for the node.
    pub fn activate(&self, req: &ActivateRequest) -> Result<Verdict, ServiceError> {
        let session = self
            .store
            .take_session(&req.session)?
            .ok_or(Refusal::SessionUnknown)?;
        if session.node != req.node {
            return Err(Refusal::SessionOtherNode {
                owner: session.node,
                node: req.node.clone(),
            }
            .into());
        }
        let now = self.now();
        if session.expires_at < now {
            return Err(Refusal::SessionExpired { node: session.node }.into());
        }
        if <[u8; 32]>::from(Sha256::digest(&req.secret)) != session.secret_sha256 {
            self.note(
                &req.node,
                "refused",
                Some("activation-secret"),
                "wrong secret",
            )?;
            return Err(Refusal::WrongSecret { node: session.node }.into());
        }
        let existing = self.store.node(&req.node)?;
        if existing
            .as_ref()
            .is_some_and(|r| r.state == NodeState::Revoked)
        {
            return Err(Refusal::Revoked { node: session.node }.into());
        }
        if let Some(owner) = self.store.node_with_ek(&session.ek_public)?
            && owner != session.node
        {
            return Err(Refusal::EkInUse {
                owner,
                node: session.node,
            }
            .into());
        }
        // Counters belong to the TPM (same EK), not to the AK.
        let last_clock = existing.and_then(|r| r.last_clock);
        self.store.put_node(&NodeRecord {
            node: session.node.clone(),
            ek_public: session.ek_public,
            ak_public: session.ak_public,
            state: session.state.clone(),
            last_clock,
        })?;
        let verdict = match session.state {
            NodeState::Pending { reason } => Verdict::Pending {
                node: session.node,
                reason,
            },
            _ => Verdict::Enrolled { node: session.node },
        };
        self.record(&req.node, &verdict)?;
        Ok(verdict)
    }

    /// `POST /attest/report`: how a node's boot ended, written to its
    /// timeline as `failed` or `running` (the content is the node's word,
    /// not evidence).
    pub fn report(&self, report: &BootReport) -> Result<Response, ServiceError> {
        if report.stage.len() > protocol::MAX_REPORT_STAGE
            || report.detail.len() > protocol::MAX_REPORT_DETAIL
        {
            return Err(malformed("report", "stage or detail over its limit").into());
        }
        let status = if report.failed {
            tracing::warn!(node = %report.node, stage = %report.stage, error = %report.detail, "node reports a failed boot");
            "failed"
        } else {
            tracing::info!(node = %report.node, stage = %report.stage, detail = %report.detail, "node reports");
            "running"
        };
        self.note(&report.node, status, Some(&report.stage), &report.detail)?;
        Ok(Response::Noted {
            node: report.node.clone(),
        })
    }

    /// `GET /attest/nonce`: a single-use nonce for an enrolled or pending node.
    pub fn nonce(&self, req: &NonceRequest) -> Result<NonceResponse, ServiceError> {
        self.known_node(&req.node)?;
        let nonce: [u8; 32] = random()?;
        let now = self.now();
        self.store.put_nonce(&IssuedNonce {
            nonce: nonce.to_vec(),
            node: req.node.clone(),
            expires_at: now + self.config.nonce_ttl,
        })?;
        if self.issued.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.store.prune(now)?;
        }
        Ok(NonceResponse {
            nonce: Bytes(nonce.to_vec()),
            expires_in: self.config.nonce_ttl,
        })
    }

    fn known_node(&self, node: &NodeId) -> Result<NodeRecord, ServiceError> {
        match self.store.node(node)? {
            None => Err(Refusal::NotEnrolled { node: node.clone() }.into()),
            Some(r) if r.state == NodeState::Revoked => {
                Err(Refusal::Revoked { node: node.clone() }.into())
            }
            Some(r) => Ok(r),
        }
    }

    /// `POST /attest/quote`: verifies the quote and its evidence against
    /// the signed image; records the outcome in the node's timeline.
    pub fn quote(&self, sub: &QuoteSubmission) -> Result<Verdict, ServiceError> {
        let record = self.known_node(&sub.node)?;
        let result = self.judge(&record, sub);
        let verdict = match result {
            Ok(v) => v,
            Err(ServiceError::Refused(refusal)) => {
                let Verdict::Refused { code, reason } = refusal.verdict() else {
                    unreachable!("a refusal's verdict is Refused")
                };
                tracing::warn!(node = %sub.node, code, reason, "quote refused");
                self.note(&sub.node, "refused", Some(&code), &reason)?;
                return Err(refusal.into());
            }
            Err(other) => return Err(other),
        };
        self.record(&sub.node, &verdict)?;
        Ok(verdict)
    }

    fn judge(&self, record: &NodeRecord, sub: &QuoteSubmission) -> Result<Verdict, ServiceError> {
        self.consume_nonce(sub)?;
        let signature =
            Signature::from_bytes(&sub.signature).map_err(|e| malformed("signature", e))?;
        let selection = parse_selection(&sub.pcr_selection)?;
        let expected_selection = PcrSelection::sha256_boot();
        if selection != expected_selection {
            return Err(Refusal::Quote {
                node: sub.node.clone(),
                source: QuoteError::SelectionMismatch {
                    expected: expected_selection.pairs(),
                    got: selection.pairs(),
                },
            }
            .into());
        }
        let pcrs = pcr_values(sub)?;
        let ak = self.ak(record)?;
        let verified = verify_quote(
            &ak,
            &sub.attest,
            &signature,
            &Expected {
                nonce: &sub.nonce,
                selection: &expected_selection,
                pcrs: &pcrs,
                previous: record.last_clock,
            },
        )
        .map_err(|source| Refusal::Quote {
            node: sub.node.clone(),
            source,
        })?;
        let image = self
            .images
            .image(&sub.image.name, sub.image.version)
            .ok_or_else(|| Refusal::ImageUnknown {
                name: sub.image.name.clone(),
                version: sub.image.version,
            })?;
        let logs = evidence::Logs {
            firmware: &sub.firmware_log,
            agent: &sub.agent_log,
            ima: &sub.ima_log,
            gpus: &sub.gpus,
        };
        let expect = evidence::Expectations {
            chain: self.policy.boot_chain(&sub.node),
            gpus: self.policy.gpu_profile(&sub.node),
            secure_boot: self.policy.secure_boot(&sub.node),
            load_options: self.policy.load_options(&sub.node, &image),
            boot_loaders: self.policy.boot_loaders(),
        };
        evidence::check(&image, &pcrs, &logs, &expect)?;
        self.check_rollback(&sub.node, &image)?;
        self.store.put_node(&NodeRecord {
            last_clock: Some(verified.clock_info),
            ..record.clone()
        })?;
        if let NodeState::Pending { reason } = &record.state {
            return Ok(Verdict::Pending {
                node: sub.node.clone(),
                reason: reason.clone(),
            });
        }
        self.store
            .record_version(&sub.node, &image.name, image.version)?;
        Ok(Verdict::Attested {
            node: sub.node.clone(),
            image: ImageRef {
                name: image.name.clone(),
                version: image.version,
            },
            secret: self.sealed_secret(record)?,
        })
    }

    /// A version below the highest the node was attested running is a
    /// rollback (an old, signed, perhaps vulnerable image replayed),
    /// unless the operator pinned the node to exactly that version.
    fn check_rollback(&self, node: &NodeId, image: &ReleasedImage) -> Result<(), ServiceError> {
        let Some(highest) = self.store.highest_version(node, &image.name)? else {
            return Ok(());
        };
        let pinned = self.policy.pinned_version(node, &image.name) == Some(image.version);
        if image.version < highest && !pinned {
            return Err(Refusal::Rollback {
                node: node.clone(),
                name: image.name.clone(),
                version: image.version,
                highest,
            }
            .into());
        }
        Ok(())
    }

    /// The node's secret file, sealed to its EK and AK; `None` when the
    /// site keeps no secret for it. A file others may read is refused, as
    /// a private key would be.
    fn sealed_secret(&self, record: &NodeRecord) -> Result<Option<SealedSecret>, ServiceError> {
        use std::os::unix::fs::PermissionsExt as _;
        let Some(dir) = &self.config.secrets else {
            return Ok(None);
        };
        let path = dir.join(record.node.as_str());
        let failed = |reason: String| ServiceError::Secret {
            node: record.node.clone(),
            path: path.clone(),
            reason,
        };
        // One open file for the checks and the read: what is checked is
        // what is released.
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(failed(e.to_string())),
        };
        let meta = file.metadata().map_err(|e| failed(e.to_string()))?;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(failed(format!(
                "mode {:04o} lets group or others read it; chmod 600",
                mode & 0o7777
            )));
        }
        if !meta.is_file() || meta.len() > MAX_SECRET as u64 {
            return Err(failed(format!(
                "not a regular file of at most {MAX_SECRET} bytes ({} bytes)",
                meta.len()
            )));
        }
        let mut secret = Zeroizing::new(Vec::new());
        std::io::Read::read_to_end(
            &mut std::io::Read::take(&mut file, MAX_SECRET as u64 + 1),
            &mut secret,
        )
        .map_err(|e| failed(e.to_string()))?;
        if secret.len() > MAX_SECRET {
            return Err(failed(format!("grew past {MAX_SECRET} bytes while read")));
        }
        let ek = Public::from_bytes(&record.ek_public).map_err(|e| malformed("stored EK", e))?;
        let ak = Public::from_bytes(&record.ak_public).map_err(|e| malformed("stored AK", e))?;
        let sealed = seal(&ek, &ak, &record.node, &secret).map_err(|e| failed(e.to_string()))?;
        tracing::info!(node = %record.node, bytes = secret.len(), "secret sealed to the node's TPM");
        Ok(Some(sealed))
    }

    fn consume_nonce(&self, sub: &QuoteSubmission) -> Result<(), ServiceError> {
        let issued = match self.store.consume_nonce(&sub.nonce)? {
            NonceUse::Unknown => return Err(Refusal::NonceUnknown.into()),
            NonceUse::Replayed(_) => return Err(Refusal::NonceReplayed.into()),
            NonceUse::Fresh(issued) => issued,
        };
        if issued.node != sub.node {
            return Err(Refusal::NonceOtherNode {
                owner: issued.node,
                node: sub.node.clone(),
            }
            .into());
        }
        if issued.expires_at < self.now() {
            return Err(Refusal::NonceExpired.into());
        }
        Ok(())
    }

    fn ak(&self, record: &NodeRecord) -> Result<Arc<AkKey>, ServiceError> {
        let mut aks = self.aks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((bytes, key)) = aks.get(&record.node)
            && *bytes == record.ak_public
        {
            return Ok(key.clone());
        }
        // The stored AK passed these checks at enrollment.
        let public =
            Public::from_bytes(&record.ak_public).map_err(|e| malformed("stored AK", e))?;
        let key = Arc::new(AkKey::new(public).map_err(Refusal::UnacceptableAk)?);
        aks.insert(record.node.clone(), (record.ak_public.clone(), key.clone()));
        Ok(key)
    }

    /// Approves a pending node (`ironrack nodes approve`).
    pub fn approve(&self, node: &NodeId) -> Result<(), ServiceError> {
        self.set_state(node, NodeState::Enrolled, "approved")
    }

    /// Blocks a node (`ironrack nodes revoke`): no nonce, quote or
    /// enrollment succeeds for it afterwards.
    pub fn revoke(&self, node: &NodeId) -> Result<(), ServiceError> {
        self.set_state(node, NodeState::Revoked, "revoked")
    }

    fn set_state(&self, node: &NodeId, state: NodeState, what: &str) -> Result<(), ServiceError> {
        let mut record = self
            .store
            .node(node)?
            .ok_or_else(|| ServiceError::UnknownNode { node: node.clone() })?;
        record.state = state;
        self.store.put_node(&record)?;
        tracing::info!(node = %node, what, "node state changed by operator");
        self.note(node, what, None, "by operator")
    }

    /// Every node the service knows.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, ServiceError> {
        Ok(self.store.nodes()?)
    }

    /// A node's timeline, oldest first.
    pub fn timeline(&self, node: &NodeId) -> Result<Vec<TimelineEntry>, ServiceError> {
        Ok(self.store.timeline(node)?)
    }

    /// Deletes expired sessions and nonces; returns how many.
    pub fn prune(&self) -> Result<usize, ServiceError> {
        Ok(self.store.prune(self.now())?)
    }

    fn record(&self, node: &NodeId, verdict: &Verdict) -> Result<(), ServiceError> {
        let (status, detail) = match verdict {
            Verdict::Enrolled { .. } => ("enrolled", String::new()),
            Verdict::Attested { image, secret, .. } => {
                let released = if secret.is_some() {
                    "; secret released"
                } else {
                    ""
                };
                (
                    "attested",
                    format!("{} v{}{released}", image.name, image.version),
                )
            }
            Verdict::Pending { reason, .. } => ("pending", reason.clone()),
            Verdict::Refused { reason, .. } => ("refused", reason.clone()),
        };
        tracing::info!(node = %node, status, detail, "attestation verdict");
        self.note(node, status, None, &detail)
    }

    fn note(
        &self,
        node: &NodeId,
        status: &str,
        code: Option<&str>,
        detail: &str,
    ) -> Result<(), ServiceError> {
        self.store.append_timeline(
            node,
            &TimelineEntry {
                at: self.now(),
                status: status.to_owned(),
                code: code.map(str::to_owned),
                detail: detail.to_owned(),
            },
        )?;
        Ok(())
    }
}

/// The service called directly, without a network in between.
impl crate::attest::protocol::AttestClient for &AttestService {
    fn call(
        &mut self,
        request: &Request,
    ) -> Result<Response, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.handle(request)?)
    }
}

fn parse_selection(bytes: &[u8]) -> Result<PcrSelection, Refusal> {
    let mut r = Reader::new(bytes);
    let selection = PcrSelection::read(&mut r).map_err(|e| malformed("pcr-selection", e))?;
    r.finish("TPML_PCR_SELECTION")
        .map_err(|e| malformed("pcr-selection", e))?;
    Ok(selection)
}

fn pcr_values(sub: &QuoteSubmission) -> Result<PcrValues, Refusal> {
    let mut pcrs = PcrValues::new();
    for v in &sub.pcrs {
        if pcrs.get(v.bank, v.pcr).is_some() {
            return Err(malformed(
                "pcrs",
                format!("PCR {} of bank {:#06x} given twice", v.pcr, v.bank),
            ));
        }
        pcrs.insert(v.bank, v.pcr, v.value.0.clone());
    }
    Ok(pcrs)
}
