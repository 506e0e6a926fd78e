//! TPM 2.0 in pure Rust: marshalling, the commands the agent needs, and
//! transports to a device or swtpm.
//!
//! No C TSS: the agent stays one static binary. The same structures serve
//! the server (parsing what the agent sends) and the software TPM model of
//! the boot-storm simulator ([`model`]).

pub mod attest;
pub mod client;
pub mod command;
pub mod constants;
pub mod endorsement;
pub mod kdf;
pub mod model;
pub mod pcr;
pub mod public;
pub mod rc;
pub mod template;
pub mod transport;
pub mod wire;

use std::io;

pub use attest::{Attest, Attested, ClockInfo, PcrSelection, Signature};
pub use client::{AttestationKey, LoadedKey, NvPublic, Quote, Tpm};
pub use pcr::PcrValues;
pub use public::Public;
pub use rc::ResponseCode;
pub use template::{AK_PERSISTENT_HANDLE, AkTemplate, EkAuth, EkTemplate};
pub use transport::{Device, SwtpmSocket, Transport};
pub use wire::WireError;

/// A TPM command that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    /// The command or its response did not cross the transport.
    #[error("TPM {device}: {command}: transport failed")]
    Transport {
        /// The device or socket.
        device: String,
        /// The command.
        command: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The TPM answered with an error code.
    #[error("TPM {device}: {command} failed: {rc}")]
    Command {
        /// The device or socket.
        device: String,
        /// The command.
        command: &'static str,
        /// The response code, decoded in Display.
        rc: ResponseCode,
    },
    /// The response does not parse.
    #[error("TPM {device}: {command}: malformed response")]
    Malformed {
        /// The device or socket.
        device: String,
        /// The command.
        command: &'static str,
        /// What is wrong with it.
        #[source]
        source: WireError,
    },
    /// PCR_Read returned nothing for a PCR that was asked for.
    #[error("TPM {device}: PCR {pcr} of bank {bank:#06x} is not allocated")]
    PcrUnavailable {
        /// The device or socket.
        device: String,
        /// The bank.
        bank: u16,
        /// The PCR.
        pcr: u32,
    },
    /// An NV index larger than any EK certificate.
    #[error("TPM {device}: NV index {index:#010x} holds {size} bytes, more than expected")]
    NvTooLarge {
        /// The device or socket.
        device: String,
        /// The index.
        index: u32,
        /// Its size.
        size: usize,
    },
    /// An NV index that neither its own nor the owner's auth may read.
    #[error("TPM {device}: NV index {index:#010x} is not readable (attributes {attributes:#010x})")]
    NvNotReadable {
        /// The device or socket.
        device: String,
        /// The index.
        index: u32,
        /// Its TPMA_NV.
        attributes: u32,
    },
    /// An argument (from the server, typically) exceeds what the TPM
    /// structure can carry.
    #[error("{what} of {len} bytes exceeds the TPM limit of {max}")]
    ArgumentTooLarge {
        /// The argument.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A persistent handle holds another object than the one expected.
    #[error("TPM {device}: persistent handle {handle:#010x} holds another key")]
    HandleTaken {
        /// The device or socket.
        device: String,
        /// The handle.
        handle: u32,
    },
    /// The operating system's random source failed.
    #[error("random number generator failed: {reason}")]
    Random {
        /// The error from getrandom.
        reason: String,
    },
}

impl TpmError {
    /// The TPM's response code, when the TPM itself refused.
    pub fn response_code(&self) -> Option<ResponseCode> {
        match self {
            TpmError::Command { rc, .. } => Some(*rc),
            _ => None,
        }
    }
}
