//! Attestation: what the node's TPM and firmware say about a boot, and the
//! formats both the agent and the server read.
//!
//! - [`eventlog`]: the TCG PC Client crypto-agile event log
//!   (`binary_bios_measurements`), its replay into PCR values, the policy
//!   checks a verifier needs, a generator for tests and simulators, and the
//!   agent's own measurement log (same layout, PCR 15).

pub mod eventlog;
