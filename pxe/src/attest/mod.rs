//! Attestation: the TPM client the agent uses, the formats both the agent
//! and the server read, and the server's checks of what a node sends.
//!
//! - [`eventlog`]: the TCG PC Client crypto-agile event log
//!   (`binary_bios_measurements`), its replay into PCR values, the policy
//!   checks a verifier needs, a generator for tests and simulators, and the
//!   agent's own measurement log (same layout, PCR 15).
//! - [`tpm`]: a pure-Rust TPM 2.0 client (marshalling, commands, device and
//!   swtpm transports) and a simulated TPM for load generation.
//! - [`protocol`]: the messages between agent and server, and the routes.
//! - [`image`]: a verified image manifest reduced to what attestation checks.
//! - [`gpu`]: the GPU inventory a node reports (measured into PCR 15) and
//!   the site's profile it must match.
//! - [`service`]: the server's state machine (enroll, activate, nonce,
//!   quote, approve, revoke) over a store; the agent side is
//!   [`crate::agent`].
//!
//! Enrollment (once per node):
//! 1. agent: [`tpm::endorsement::endorsement_keys`] (EK public + EK
//!    certificate from NV), [`tpm::Tpm::create_ak`] (AK public);
//! 2. server: [`ek::verify_ek_certificate`] against the operator's
//!    [`ek::EkTrust`] (no certificate or unknown CA: node pending),
//!    [`quote::AkKey::new`] (the AK must be a restricted signing key),
//!    [`credential::make_credential`] to the EK for the AK's Name;
//! 3. agent: [`tpm::Tpm::activate_credential`] returns the secret, proving
//!    the AK lives in the TPM that owns the EK.
//!
//! Every boot: server nonce → agent [`tpm::Tpm::quote`] over
//! [`tpm::PcrSelection::sha256_boot`] plus [`tpm::Tpm::pcr_read`] →
//! server [`quote::verify_quote`], then the event-log replay
//! ([`eventlog`]) and the policy against the signed manifest.
//!
//! On the wire, structures travel in TPM encoding: `Public::to_bytes`,
//! `Signature::to_bytes`, the quote's attest bytes as the TPM produced
//! them (the signature covers those exact bytes).

pub mod credential;
pub mod ek;
pub mod eventlog;
pub mod gpu;
pub mod image;
pub mod protocol;
pub mod quote;
pub mod secret;
pub mod service;
pub mod tpm;
