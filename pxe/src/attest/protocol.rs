//! The attestation protocol between `ironrack agent` and the server: the
//! messages, as JSON, shared by both ends so they cannot disagree.
//!
//! # Endpoints (mounted by `ironrack serve`)
//!
//! | request | body | answer |
//! | --- | --- | --- |
//! | `POST /attest/enroll` | [`EnrollRequest`] | [`Response::Challenge`] |
//! | `POST /attest/activate` | [`ActivateRequest`] | [`Response::Verdict`]: enrolled or pending |
//! | `GET /attest/nonce?node=ID` | none ([`NonceRequest`] in the query) | [`Response::Nonce`] |
//! | `POST /attest/quote` | [`QuoteSubmission`] | [`Response::Verdict`]: attested, pending or refused |
//!
//! Every answer body is a [`Response`] (JSON with a `type` field), so a
//! client reads one shape whatever it asked; a refusal on any endpoint is a
//! [`Verdict::Refused`] with a stable `code` and a sentence naming the
//! check that failed. Status codes: 200 for answers, 403 for refusals
//! ([`Response::is_refusal`]), 400 for a body that does not decode
//! ([`ProtocolError::response`], code `malformed`), 413 for a body over
//! [`MAX_BODY`], 405 for another method, 500 (code `server-error`) when
//! the server's store fails (the agent retries). Error bodies are
//! refusal verdicts too. A POST body is sent with
//! `content-type: application/json`; the node id is its boot MAC
//! (`52:54:00:12:34:56`, how the server files the verdicts in its boot
//! timeline) or its site host name.
//!
//! # Encoding
//!
//! Keys are kebab-case; unknown keys are refused (a field the server does
//! not know is a field it would silently ignore). Binary values are
//! standard base64 with padding ([`Bytes`]). TPM structures travel in TPM
//! encoding: TPM2B_PUBLIC payloads (`Public::to_bytes`), TPMS_ATTEST exactly
//! as the TPM produced it (the signature covers those bytes), TPMT_SIGNATURE,
//! TPML_PCR_SELECTION; event logs in their binary crypto-agile form.
//!
//! # The flow
//!
//! Enrollment, once per node: enroll (EK public, EK certificate, AK public)
//! → challenge (MakeCredential to the EK for the AK's Name) → activate (the
//! secret ActivateCredential recovered) → enrolled, or pending until an
//! operator approves a node whose EK certificate is absent or from an
//! unknown CA. Every boot: nonce → quote submission → verdict.

use std::fmt;

use crate::attest::secret::SealedSecret;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Largest request or response body either end reads. Firmware event logs
/// of servers with many option ROMs reach a few hundred KiB.
pub const MAX_BODY: usize = 4 << 20;

/// Longest node identifier.
pub const MAX_NODE_ID: usize = 64;

/// A message that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The body is larger than [`MAX_BODY`].
    #[error("{what}: body of {len} bytes exceeds the limit of {MAX_BODY}")]
    TooLarge {
        /// The message kind.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// The JSON does not parse as the message.
    #[error("{what}: {source}")]
    Json {
        /// The message kind.
        what: &'static str,
        /// serde_json's error (line, column, field).
        #[source]
        source: serde_json::Error,
    },
    /// A query string is not `node=ID`.
    #[error("nonce request query {query:?}: expected node=ID")]
    Query {
        /// The query string, shortened.
        query: String,
    },
}

impl ProtocolError {
    /// The answer to a body that does not decode: a refusal with code
    /// `malformed` and the decoder's message (HTTP 400).
    pub fn response(&self) -> Response {
        Response::Verdict(Verdict::Refused {
            code: "malformed".into(),
            reason: self.to_string(),
        })
    }
}

/// Binary data, base64 on the wire.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v)
    }
}

impl From<&[u8]> for Bytes {
    fn from(v: &[u8]) -> Self {
        Bytes(v.to_vec())
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(Bytes)
            .map_err(|e| serde::de::Error::custom(format_args!("invalid base64: {e}")))
    }
}

/// A node's identifier: its boot MAC (`52:54:00:12:34:56`) or a name the
/// site gives it. 1-64 characters of `[A-Za-z0-9:._-]`, so it is safe in
/// logs, URLs and file names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct NodeId(String);

/// A string that is not a valid [`NodeId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node id {shown:?} is not 1-64 characters of [A-Za-z0-9:._-]")]
pub struct BadNodeId {
    /// The offending id, shortened and escaped.
    pub shown: String,
}

impl NodeId {
    /// Checks and wraps `id`.
    pub fn new(id: &str) -> Result<Self, BadNodeId> {
        let ok = !id.is_empty()
            && id.len() <= MAX_NODE_ID
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b":._-".contains(&b));
        if ok {
            Ok(NodeId(id.to_owned()))
        } else {
            Err(BadNodeId {
                shown: id.chars().take(MAX_NODE_ID).collect(),
            })
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        NodeId::new(&text).map_err(serde::de::Error::custom)
    }
}

/// `POST /attest/enroll`: who the node is and which keys its TPM holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EnrollRequest {
    /// The node.
    pub node: NodeId,
    /// The EK's TPM2B_PUBLIC payload (TPMT_PUBLIC).
    pub ek_public: Bytes,
    /// The EK certificate (DER) from the TPM's NV, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ek_certificate: Option<Bytes>,
    /// The AK's TPMT_PUBLIC.
    pub ak_public: Bytes,
}

/// The server's answer to an enrollment: a credential only the TPM holding
/// the EK can open, and only for the AK named at enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Challenge {
    /// Names this enrollment in the activation.
    pub session: Bytes,
    /// TPM2B_ID_OBJECT payload for TPM2_ActivateCredential.
    pub id_object: Bytes,
    /// TPM2B_ENCRYPTED_SECRET payload for TPM2_ActivateCredential.
    pub encrypted_secret: Bytes,
    /// Seconds the session stays open.
    pub expires_in: u64,
}

/// `POST /attest/activate`: the secret ActivateCredential returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ActivateRequest {
    /// The node.
    pub node: NodeId,
    /// The challenge's session.
    pub session: Bytes,
    /// The recovered secret.
    pub secret: Bytes,
}

/// `GET /attest/nonce?node=ID`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NonceRequest {
    /// The node.
    pub node: NodeId,
}

impl NonceRequest {
    /// The query string: `node=ID` (node ids need no escaping).
    pub fn to_query(&self) -> String {
        format!("node={}", self.node)
    }

    /// Parses the query string of `GET /attest/nonce`.
    pub fn from_query(query: &str) -> Result<Self, ProtocolError> {
        let bad = || ProtocolError::Query {
            query: query.chars().take(80).collect(),
        };
        let id = query.strip_prefix("node=").ok_or_else(bad)?;
        let node = NodeId::new(id).map_err(|_| bad())?;
        Ok(NonceRequest { node })
    }
}

/// A fresh nonce for one quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NonceResponse {
    /// Goes into the quote's qualifyingData (extraData).
    pub nonce: Bytes,
    /// Seconds it stays valid; it is good for one quote only.
    pub expires_in: u64,
}

/// One PCR value the node reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PcrValue {
    /// TPM_ALG_ID of the bank (0x000b = SHA-256).
    pub bank: u16,
    /// PCR index.
    pub pcr: u32,
    /// The value.
    pub value: Bytes,
}

/// Which image the node booted (the server finds its signed manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImageRef {
    /// Image name.
    pub name: String,
    /// Manifest version.
    pub version: u64,
}

/// `POST /attest/quote`: the evidence of one boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct QuoteSubmission {
    /// The node.
    pub node: NodeId,
    /// The nonce the server issued (also inside `attest`).
    pub nonce: Bytes,
    /// TPMS_ATTEST as the TPM produced it.
    pub attest: Bytes,
    /// TPMT_SIGNATURE over `attest` by the node's AK.
    pub signature: Bytes,
    /// TPML_PCR_SELECTION quoted.
    pub pcr_selection: Bytes,
    /// The values of the quoted PCRs.
    pub pcrs: Vec<PcrValue>,
    /// `binary_bios_measurements`.
    pub firmware_log: Bytes,
    /// The agent's own measurement log (PCR 15).
    pub agent_log: Bytes,
    /// The kernel's IMA measurement list (`binary_runtime_measurements`;
    /// PCR 10), empty when the kernel has none.
    #[serde(default, skip_serializing_if = "Bytes::is_empty")]
    pub ima_log: Bytes,
    /// The node's GPU inventory, canonical JSON (`attest::gpu`), measured
    /// into PCR 15 after the rootfs.
    pub gpus: Bytes,
    /// The image the node verified and measured.
    pub image: ImageRef,
}

/// Longest stage name and error text a failure report carries.
pub const MAX_REPORT_STAGE: usize = 64;
/// See [`MAX_REPORT_STAGE`].
pub const MAX_REPORT_DETAIL: usize = 4096;

/// `POST /attest/report`: how the node's boot ended, in its own words: a
/// failure before it powers off, or the hand-over to the image's init
/// (`running`). No trust is placed in it: it is a line for the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BootReport {
    /// The node.
    pub node: NodeId,
    /// The step that failed (`fetch`, `attestation`, ...), or `running`.
    pub stage: String,
    /// The error with its causes, or what runs.
    pub detail: String,
    /// Whether the boot failed.
    pub failed: bool,
}

/// The stage of a report that the image's init was started.
pub const RUNNING: &str = "running";

impl BootReport {
    /// A failure at `stage`, the texts cut to their limits (on a character
    /// boundary).
    pub fn failure(node: NodeId, stage: &str, error: &str) -> Self {
        Self::new(node, stage, error, true)
    }

    /// The hand-over to the image's init.
    pub fn running(node: NodeId, detail: &str) -> Self {
        Self::new(node, RUNNING, detail, false)
    }

    fn new(node: NodeId, stage: &str, detail: &str, failed: bool) -> Self {
        let cut = |s: &str, max: usize| {
            let mut end = s.len().min(max);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s[..end].to_owned()
        };
        BootReport {
            node,
            stage: cut(stage, MAX_REPORT_STAGE),
            detail: cut(detail, MAX_REPORT_DETAIL),
            failed,
        }
    }
}

/// The outcome of an activation or a quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Verdict {
    /// Enrollment complete: the AK is bound to a trusted EK.
    Enrolled {
        /// The node.
        node: NodeId,
    },
    /// The quote passed every check against the signed manifest.
    Attested {
        /// The node.
        node: NodeId,
        /// The image it runs.
        image: ImageRef,
        /// The node's secret, sealed to its TPM, when the site keeps one
        /// for it (`[attest] secrets`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<SealedSecret>,
    },
    /// The node is known but an operator must approve it first.
    Pending {
        /// The node.
        node: NodeId,
        /// Why it waits.
        reason: String,
    },
    /// Refused.
    Refused {
        /// Stable machine-readable reason (`nonce-replayed`, ...).
        code: String,
        /// The check that failed, in a sentence.
        reason: String,
    },
}

/// Every answer body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Response {
    /// To an enrollment.
    Challenge(Challenge),
    /// To a nonce request.
    Nonce(NonceResponse),
    /// To an activation or a quote, and any refusal.
    Verdict(Verdict),
    /// To a failure report: written down.
    Noted {
        /// The node.
        node: NodeId,
    },
}

impl Response {
    /// Whether this answer is a refusal (HTTP 403; anything else is 200).
    pub fn is_refusal(&self) -> bool {
        matches!(self, Response::Verdict(Verdict::Refused { .. }))
    }
}

/// Every request, for transports that carry them as Rust values (tests,
/// in-process) and to name the HTTP route of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `POST /attest/enroll`.
    Enroll(EnrollRequest),
    /// `POST /attest/activate`.
    Activate(ActivateRequest),
    /// `GET /attest/nonce`.
    Nonce(NonceRequest),
    /// `POST /attest/quote`.
    Quote(Box<QuoteSubmission>),
    /// `POST /attest/report`.
    Report(BootReport),
}

impl Request {
    /// HTTP method and path.
    pub fn route(&self) -> (&'static str, &'static str) {
        match self {
            Request::Enroll(_) => ("POST", "/attest/enroll"),
            Request::Activate(_) => ("POST", "/attest/activate"),
            Request::Nonce(_) => ("GET", "/attest/nonce"),
            Request::Quote(_) => ("POST", "/attest/quote"),
            Request::Report(_) => ("POST", "/attest/report"),
        }
    }

    /// The HTTP body (empty for the nonce, which travels in the query).
    pub fn body(&self) -> Vec<u8> {
        match self {
            Request::Enroll(r) => encode(r),
            Request::Activate(r) => encode(r),
            Request::Nonce(_) => Vec::new(),
            Request::Quote(r) => encode(r),
            Request::Report(r) => encode(r),
        }
    }
}

/// A transport that carries a request to the server and brings back its
/// answer: HTTP in the initramfs, a direct call in tests and simulators.
/// A refusal is an `Ok(Response::Verdict(Verdict::Refused { .. }))`; an
/// `Err` means the answer never arrived (the agent retries).
pub trait AttestClient {
    /// Sends `request`, returns the server's answer.
    fn call(
        &mut self,
        request: &Request,
    ) -> Result<Response, Box<dyn std::error::Error + Send + Sync>>;
}

/// JSON bytes of a message.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Every message is plain data with string keys: serialization cannot fail.
    serde_json::to_vec(message).unwrap_or_default()
}

/// Decodes a message of type `T` (named `what` in errors), refusing bodies
/// over [`MAX_BODY`] and unknown keys.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, ProtocolError> {
    if bytes.len() > MAX_BODY {
        return Err(ProtocolError::TooLarge {
            what,
            len: bytes.len(),
        });
    }
    serde_json::from_slice(bytes).map_err(|source| ProtocolError::Json { what, source })
}

#[cfg(test)]
mod tests {

    #[test]
    fn failure_reports_are_cut_on_character_boundaries() {
        let node = NodeId::new("52:54:00:00:00:01").unwrap();
        let long = "é".repeat(MAX_REPORT_DETAIL);
        let r = BootReport::failure(node.clone(), &"s".repeat(100), &long);
        assert_eq!(r.stage.len(), MAX_REPORT_STAGE);
        assert!(r.detail.len() <= MAX_REPORT_DETAIL && r.detail.len() >= MAX_REPORT_DETAIL - 1);
        assert!(r.detail.chars().all(|c| c == 'é'));
        assert!(r.failed && !BootReport::running(node.clone(), "x").failed);
        let bytes = Request::Report(r.clone()).body();
        assert_eq!(decode::<BootReport>("report", &bytes).unwrap(), r);
        assert_eq!(Request::Report(r).route(), ("POST", "/attest/report"));
    }

    use super::*;

    #[test]
    fn responses_round_trip_with_their_tags() {
        let node = NodeId::new("52:54:00:12:34:56").unwrap();
        let all = [
            Response::Challenge(Challenge {
                session: Bytes(vec![1; 16]),
                id_object: Bytes(vec![2; 68]),
                encrypted_secret: Bytes(vec![3; 256]),
                expires_in: 60,
            }),
            Response::Nonce(NonceResponse {
                nonce: Bytes(vec![4; 32]),
                expires_in: 30,
            }),
            Response::Verdict(Verdict::Pending {
                node: node.clone(),
                reason: "awaiting approval".into(),
            }),
            Response::Verdict(Verdict::Attested {
                node: node.clone(),
                image: ImageRef {
                    name: "gpu-node".into(),
                    version: 3,
                },
                secret: None,
            }),
            Response::Verdict(Verdict::Attested {
                node,
                image: ImageRef {
                    name: "gpu-node".into(),
                    version: 4,
                },
                secret: Some(SealedSecret {
                    id_object: Bytes(vec![5; 68]),
                    encrypted_secret: Bytes(vec![6; 256]),
                    ciphertext: Bytes(vec![7; 40]),
                    tag: Bytes(vec![8; 32]),
                }),
            }),
        ];
        for r in all {
            let bytes = encode(&r);
            assert_eq!(decode::<Response>("response", &bytes).unwrap(), r);
        }
        let text = String::from_utf8(encode(&Response::Verdict(Verdict::Refused {
            code: "nonce-replayed".into(),
            reason: "x".into(),
        })))
        .unwrap();
        assert_eq!(
            text,
            r#"{"type":"verdict","status":"refused","code":"nonce-replayed","reason":"x"}"#
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let extra = r#"{"type":"nonce","nonce":"AAAA","expires-in":3,"extra":1}"#;
        assert!(decode::<Response>("response", extra.as_bytes()).is_err());
        let extra = r#"{"type":"verdict","status":"pending","node":"n1","reason":"r","x":1}"#;
        assert!(decode::<Response>("response", extra.as_bytes()).is_err());
        let bad_b64 = r#"{"node":"n1","session":"!!","secret":"AAAA"}"#;
        let err = decode::<ActivateRequest>("activation", bad_b64.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("base64"), "{err}");
        let bad_node = r#"{"node":"../etc","session":"","secret":""}"#;
        let err = decode::<ActivateRequest>("activation", bad_node.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("node id"), "{err}");
        assert!(err.response().is_refusal());
        let huge = vec![b' '; MAX_BODY + 1];
        let err = decode::<ActivateRequest>("activation", &huge).unwrap_err();
        assert!(matches!(err, ProtocolError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn nonce_query() {
        let req = NonceRequest {
            node: NodeId::new("rack1-node07").unwrap(),
        };
        assert_eq!(NonceRequest::from_query(&req.to_query()).unwrap(), req);
        assert!(NonceRequest::from_query("node=a/b").is_err());
        assert!(NonceRequest::from_query("mac=x").is_err());
    }
}
