//! Errors of writing and verifying a release.

use std::path::PathBuf;

/// Why a release could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// Signing failed (the key could not sign).
    #[error("signing the {what}")]
    Sign {
        /// What was being signed.
        what: &'static str,
        /// The key's error.
        source: ironrack_keys::Error,
    },
    /// Serialising a JSON companion failed.
    #[error("writing {file}")]
    Json {
        /// The file.
        file: &'static str,
        /// Why.
        source: ironrack_keys::Error,
    },
    /// The manifest could not be written, read or verified.
    #[error("manifest")]
    Manifest {
        /// The keys crate's error (names the file and key).
        source: ironrack_keys::Error,
    },
    /// A DSSE envelope that does not verify.
    #[error("provenance envelope: {why}")]
    Envelope {
        /// What is wrong.
        why: &'static str,
    },
    /// A release directory that cannot be listed.
    #[error("reading directory {}", dir.display())]
    ReadDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `ironrack verify` found checks that fail (the report lists them).
    #[error("{}: verification failed", dir.display())]
    Failed {
        /// The image directory.
        dir: PathBuf,
    },
    /// SOURCE_DATE_EPOCH outside what a timestamp can be.
    #[error("SOURCE_DATE_EPOCH {value} is not a valid time")]
    Epoch {
        /// The value.
        value: i64,
    },
}

impl ReleaseError {
    /// A signature or digest that does not match (exit code 3).
    pub fn is_verification_failure(&self) -> bool {
        match self {
            Self::Envelope { .. } | Self::Failed { .. } => true,
            Self::Manifest { source } => source.is_verification_failure(),
            _ => false,
        }
    }
}
