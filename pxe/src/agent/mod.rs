//! The node agent (`ironrack agent`, `/init` of the initramfs).
//!
//! - [`init`]: stage 1 as PID 1: mounts, the baked-in configuration
//!   ([`AgentConfig`](ironrack_builder::boot::initramfs::AgentConfig),
//!   defined by the builder that writes it), the kernel command line
//!   ([`cmdline`]), the kernel modules ([`modules`]);
//! - [`boot`]: stage 2: the boot NIC and DHCP ([`network`]), the image
//!   over HTTP ([`http`], [`download`]), PCR 15 and attestation
//!   ([`attestation`]), the new root ([`switch_root`]), each step retried
//!   with backoff ([`retry`]);
//! - [`gpu`]: the node's GPU inventory from sysfs, for attestation;
//! - the parts that do not need to be PID 1: verify the signed manifest
//!   with the trust root baked into the initramfs, stream the root
//!   filesystem while hashing it, enroll the TPM, measure into PCR 15 and
//!   attest.
//!
//! Order on every boot:
//! 1. [`ReleasedImage::verify`](crate::attest::image::ReleasedImage::verify)
//!    the manifest bytes and signature (refuses rollback below the version
//!    the caller has seen);
//! 2. [`fetch::fetch_verified`] the rootfs into a file, refusing a wrong
//!    size or digest (nothing is left that looks complete);
//! 3. [`NodeAgent::enroll`] (idempotent: the server keeps the node's
//!    state when the EK is the same);
//! 4. [`NodeAgent::measure_image`]: PCR 15 ← SHA-256(manifest), then
//!    SHA-256(rootfs), each logged in the agent log;
//! 5. [`NodeAgent::attest`]: nonce → TPM2_Quote over SHA-256 PCRs 0-15 →
//!    submission with both event logs → the server's verdict.

pub mod attestation;
pub mod boot;
pub mod cmdline;
pub mod download;
pub mod fetch;
pub mod gpu;
pub mod http;
pub mod init;
pub mod modules;
pub mod network;
mod node;
pub mod retry;
pub mod switch_root;

pub use fetch::{FetchError, FetchedFile, fetch_verified};
pub use node::{FIRMWARE_LOG, IMA_LOG, NodeAgent, read_firmware_log};

use crate::attest::image::ImageError;
use crate::attest::tpm::TpmError;

/// A step of the agent that failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A TPM command failed.
    #[error("TPM: {step}")]
    Tpm {
        /// What the agent was doing.
        step: &'static str,
        /// The TPM's error.
        #[source]
        source: TpmError,
    },
    /// The TPM has no endorsement key the agent can use.
    #[error("TPM has no usable endorsement key")]
    NoEndorsementKey,
    /// The request did not reach the server or its answer did not come back.
    #[error("{method} {path}: no answer from the attestation server")]
    Transport {
        /// HTTP method.
        method: &'static str,
        /// Route.
        path: &'static str,
        /// The transport's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server refused.
    #[error("{step}: server refused ({code}): {reason}")]
    Refused {
        /// What the agent was doing.
        step: &'static str,
        /// The refusal code.
        code: String,
        /// The server's reason.
        reason: String,
    },
    /// The server answered with another message than the request calls for.
    #[error("{step}: server answered with an unexpected {got}")]
    UnexpectedAnswer {
        /// What the agent was doing.
        step: &'static str,
        /// What came back.
        got: String,
    },
    /// The manifest did not verify.
    #[error("manifest")]
    Manifest(#[from] ImageError),
    /// The rootfs download failed or did not match.
    #[error("rootfs")]
    Fetch(#[from] FetchError),
    /// The node's PCI devices could not be read.
    #[error("reading the GPU inventory")]
    Gpus(#[from] gpu::GpuReadError),
    /// The secret the server released did not open.
    #[error("opening the node's secret")]
    Secret(#[from] crate::attest::secret::SecretError),
    /// The secret could not be written where the image expects it.
    #[error("writing the node's secret to {path}")]
    WriteSecret {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A measurement log (the firmware's, IMA's) could not be read.
    #[error("reading the measurement log {path}")]
    FirmwareLog {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}
