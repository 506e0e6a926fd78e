//! Attestation: the TPM client the agent uses, and the server's checks of
//! what a node sends (EK certificate, credential binding, quotes).

pub mod credential;
pub mod ek;
pub mod quote;
pub mod tpm;
