//! Why the service refused a request: one variant per check, each with a
//! stable code for machines and a sentence for the node's timeline.

use crate::attest::credential::CredentialError;
use crate::attest::ek::EkError;
use crate::attest::eventlog::EventLogError;
use crate::attest::protocol::{NodeId, Verdict};
use crate::attest::quote::QuoteError;

/// A refused enrollment, activation or quote.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// A field does not decode (base64 is fine, the TPM structure is not).
    #[error("{what} is malformed: {reason}")]
    Malformed {
        /// The field.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The AK is not a TPM-resident restricted signing key of an accepted kind.
    #[error("AK refused: {0}")]
    UnacceptableAk(#[source] QuoteError),
    /// MakeCredential cannot be done to this EK.
    #[error("EK refused: {0}")]
    UnsuitableEk(#[source] CredentialError),
    /// The EK certificate is present but wrong (not merely unknown).
    #[error("EK certificate refused: {0}")]
    EkCertificate(#[source] EkError),
    /// The node is enrolled with another EK (another TPM).
    #[error("node {node} is enrolled with another EK; revoke and re-enroll it to change its TPM")]
    EkChanged {
        /// The node.
        node: NodeId,
    },
    /// The EK is already enrolled for another node: one TPM, one node.
    #[error("EK is already enrolled as node {owner}; node {node} cannot use it")]
    EkInUse {
        /// The node holding it.
        owner: NodeId,
        /// The node that asked.
        node: NodeId,
    },
    /// An operator revoked the node.
    #[error("node {node} is revoked")]
    Revoked {
        /// The node.
        node: NodeId,
    },
    /// The node never completed an enrollment.
    #[error("node {node} is not enrolled")]
    NotEnrolled {
        /// The node.
        node: NodeId,
    },
    /// No such enrollment session (never issued, used, or expired and pruned).
    #[error("enrollment session is unknown or already used")]
    SessionUnknown,
    /// The session timed out.
    #[error("enrollment session of node {node} expired")]
    SessionExpired {
        /// The node.
        node: NodeId,
    },
    /// The session belongs to another node.
    #[error("enrollment session belongs to node {owner}, not {node}")]
    SessionOtherNode {
        /// The session's node.
        owner: NodeId,
        /// The node that presented it.
        node: NodeId,
    },
    /// The activation secret is wrong: the AK is not in the EK's TPM.
    #[error(
        "activation secret of node {node} is wrong: its AK is not proven to share a TPM with its EK"
    )]
    WrongSecret {
        /// The node.
        node: NodeId,
    },
    /// The nonce was never issued.
    #[error("nonce was never issued")]
    NonceUnknown,
    /// The nonce was used before.
    #[error("nonce was already used (replayed quote)")]
    NonceReplayed,
    /// The nonce is too old.
    #[error("nonce expired")]
    NonceExpired,
    /// The nonce was issued to another node.
    #[error("nonce was issued to node {owner}, not {node}")]
    NonceOtherNode {
        /// The nonce's node.
        owner: NodeId,
        /// The node that used it.
        node: NodeId,
    },
    /// The quote itself failed (signature, structure, PCR digest, counters).
    #[error("quote of node {node}: {source}")]
    Quote {
        /// The node.
        node: NodeId,
        /// Which check.
        #[source]
        source: QuoteError,
    },
    /// An event log does not parse, or breaks the event-log policy.
    #[error("{which} event log: {source}")]
    EventLog {
        /// `firmware` or `agent`.
        which: &'static str,
        /// The parser's or policy's error.
        #[source]
        source: EventLogError,
    },
    /// The firmware log or the IMA list extends the agent's PCR.
    #[error("{which} extends PCR {pcr}, which only the agent may extend")]
    OtherInAgentPcr {
        /// `firmware event log` or `IMA measurement list`.
        which: &'static str,
        /// The agent PCR.
        pcr: u32,
    },
    /// The kernel's IMA measurement list does not parse or was edited.
    #[error("IMA measurement list")]
    ImaLog(#[source] crate::attest::eventlog::ima::ImaLogError),
    /// A quoted PCR is not what the logs replay to.
    #[error("PCR {pcr} is {quoted} in the quote but the {which} event log replays to {replayed}")]
    PcrReplay {
        /// The PCR.
        pcr: u32,
        /// Which log accounts for it.
        which: &'static str,
        /// Quoted value, hex.
        quoted: String,
        /// Replayed value, hex.
        replayed: String,
    },
    /// The manifest the node names is not known to the server.
    #[error("image {name} version {version} is not a signed image this server knows")]
    ImageUnknown {
        /// Image name.
        name: String,
        /// Version.
        version: u64,
    },
    /// The GPU inventory is not canonical JSON.
    #[error("GPU inventory")]
    GpuInventory(#[source] crate::attest::gpu::GpuInventoryError),
    /// The GPU inventory sent is not the one measured into PCR 15.
    #[error("GPU inventory sent has SHA-256 {expected}, but the agent log measured {got}")]
    AgentGpus {
        /// SHA-256 of what was sent, hex.
        expected: String,
        /// What the agent log says, hex.
        got: String,
    },
    /// The GPUs are not the node's profile.
    #[error(transparent)]
    GpuProfile(crate::attest::gpu::GpuMismatch),
    /// Secure Boot is not in the state the node's profile demands.
    #[error("Secure Boot is {}, the node's profile demands it {}", on_off(*found), on_off(*expected))]
    SecureBoot {
        /// The profile's.
        expected: bool,
        /// PCR 7's.
        found: bool,
    },
    /// PCR 12 is not the command line the served script passed.
    #[error(
        "PCR 12 is {got}, but the command line this server passed ({load_options:?}) predicts {expected}"
    )]
    Pcr12 {
        /// The LoadOptions of the script's `chain`.
        load_options: String,
        /// Predicted, hex.
        expected: String,
        /// Quoted, hex.
        got: String,
    },
    /// PCR 4 shows an EFI application the boot chain does not account for.
    #[error("PCR 4: EFI application {digest} ({path}) started {stage}")]
    Pcr4Application {
        /// Its Authenticode SHA-256, hex.
        digest: String,
        /// Its device path, as logged.
        path: String,
        /// Where in the chain.
        stage: &'static str,
    },
    /// An older version than the node already ran, not pinned by the
    /// operator.
    #[error(
        "node {node} runs {name} version {version}, older than version {highest} it was attested \
         with before; pin the node to {version} (force-version) to allow the downgrade"
    )]
    Rollback {
        /// The node.
        node: NodeId,
        /// Image name.
        name: String,
        /// The version it booted.
        version: u64,
        /// The highest version it was attested running.
        highest: u64,
    },
    /// The image has no predicted measurements.
    #[error(
        "image {name} version {version} carries no predicted measurements; its boot cannot be attested"
    )]
    ImageUnmeasured {
        /// Image name.
        name: String,
        /// Version.
        version: u64,
    },
    /// PCR 4 does not show the image's UKI being started.
    #[error("PCR 4 has no boot application with the UKI's Authenticode digest {expected}")]
    UkiNotBooted {
        /// The manifest's digest, hex.
        expected: String,
    },
    /// PCR 11 differs from the manifest's prediction.
    #[error("PCR 11 is {got}, the manifest predicts {expected}")]
    Pcr11 {
        /// Prediction, hex.
        expected: String,
        /// Quoted value, hex.
        got: String,
    },
    /// The agent log does not have the two events the agent writes.
    #[error("agent log: {reason}")]
    AgentLogShape {
        /// What is wrong.
        reason: String,
    },
    /// The agent measured another manifest.
    #[error("agent log: manifest digest is {got}, the signed manifest's is {expected}")]
    AgentManifest {
        /// The manifest's SHA-256, hex.
        expected: String,
        /// The logged digest, hex.
        got: String,
    },
    /// The agent measured another root filesystem.
    #[error("agent log: rootfs digest is {got}, the manifest's {name} is {expected}")]
    AgentRootfs {
        /// The rootfs artifact name.
        name: String,
        /// Its SHA-256, hex.
        expected: String,
        /// The logged digest, hex.
        got: String,
    },
}

impl Refusal {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Malformed { .. } => "malformed",
            Refusal::UnacceptableAk(_) => "ak-unacceptable",
            Refusal::UnsuitableEk(_) => "ek-unsuitable",
            Refusal::EkCertificate(_) => "ek-certificate",
            Refusal::EkChanged { .. } => "ek-changed",
            Refusal::EkInUse { .. } => "ek-in-use",
            Refusal::Revoked { .. } => "node-revoked",
            Refusal::NotEnrolled { .. } => "node-not-enrolled",
            Refusal::SessionUnknown => "session-unknown",
            Refusal::SessionExpired { .. } => "session-expired",
            Refusal::SessionOtherNode { .. } => "session-other-node",
            Refusal::WrongSecret { .. } => "activation-secret",
            Refusal::NonceUnknown => "nonce-unknown",
            Refusal::NonceReplayed => "nonce-replayed",
            Refusal::NonceExpired => "nonce-expired",
            Refusal::NonceOtherNode { .. } => "nonce-other-node",
            Refusal::Quote { source, .. } => match source {
                QuoteError::BadSignature | QuoteError::SchemeMismatch { .. } => "quote-signature",
                QuoteError::NonceMismatch => "quote-nonce",
                QuoteError::PcrDigestMismatch | QuoteError::MissingPcr { .. } => "quote-pcr-digest",
                QuoteError::SelectionMismatch { .. } => "quote-selection",
                QuoteError::ResetCountWentBackwards { .. }
                | QuoteError::RestartCountWentBackwards { .. }
                | QuoteError::ClockWentBackwards { .. } => "quote-counters",
                QuoteError::UnacceptableAk { .. }
                | QuoteError::Malformed(_)
                | QuoteError::NotTpmGenerated { .. }
                | QuoteError::NotAQuote { .. } => "quote-invalid",
            },
            Refusal::EventLog { .. } => "event-log",
            Refusal::OtherInAgentPcr { .. } => "event-log",
            Refusal::ImaLog(_) => "event-log",
            Refusal::PcrReplay { .. } => "pcr-replay",
            Refusal::ImageUnknown { .. } => "image-unknown",
            Refusal::Rollback { .. } => "rollback",
            Refusal::SecureBoot { .. } => "pcr7-secure-boot",
            Refusal::Pcr12 { .. } => "pcr12",
            Refusal::Pcr4Application { .. } => "pcr4-application",
            Refusal::GpuInventory(_) => "malformed",
            Refusal::AgentGpus { .. } => "agent-gpus",
            Refusal::GpuProfile(_) => "gpu-profile",
            Refusal::ImageUnmeasured { .. } => "image-unmeasured",
            Refusal::UkiNotBooted { .. } => "pcr4-uki",
            Refusal::Pcr11 { .. } => "pcr11",
            Refusal::AgentLogShape { .. } => "agent-log",
            Refusal::AgentManifest { .. } => "agent-manifest",
            Refusal::AgentRootfs { .. } => "agent-rootfs",
        }
    }

    /// The wire verdict: code and the full reason (with its causes).
    pub fn verdict(&self) -> Verdict {
        let mut reason = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            let text = c.to_string();
            if !reason.contains(&text) {
                reason.push_str(": ");
                reason.push_str(&text);
            }
            cause = c.source();
        }
        Verdict::Refused {
            code: self.code().to_owned(),
            reason,
        }
    }
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}
