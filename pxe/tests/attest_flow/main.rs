//! The attestation protocol end to end: the node agent over a real swtpm,
//! the attestation service in process (memory and SQLite stores), signed
//! manifests from real keys, EK certificates from swtpm's local CA.

#[allow(dead_code)]
#[path = "../tpm/swtpm.rs"]
mod swtpm;

mod flow;
mod mutations;
mod props;
mod support;
