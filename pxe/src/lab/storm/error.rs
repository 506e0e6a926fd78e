//! Errors of the boot storm.

use std::path::PathBuf;

use super::super::LabError;

/// Why a storm could not be run (a node's failure is not one: it is a line
/// of the report).
#[derive(Debug, thiserror::Error)]
pub enum StormError {
    /// Setting up the namespaces, the server or the site failed.
    #[error(transparent)]
    Lab(#[from] LabError),
    /// The storm's own signed image could not be made.
    #[error("making the storm image in {}: {reason}", dir.display())]
    Image {
        /// The image directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// A storm file could not be written.
    #[error("writing {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Pre-approving the nodes in the state database failed.
    #[error("pre-approving node {node} in {}: {reason}", db.display())]
    Approve {
        /// The database.
        db: PathBuf,
        /// The node.
        node: String,
        /// Why.
        reason: String,
    },
    /// The simulated TPMs could not be made.
    #[error("making the simulated TPM of node {node}: {reason}")]
    Tpm {
        /// The node.
        node: String,
        /// Why.
        reason: String,
    },
    /// The load generator could not enter its namespace or start.
    #[error("starting the load generator in namespace {ns}: {source}")]
    Generator {
        /// The namespace.
        ns: String,
        /// Why.
        source: std::io::Error,
    },
    /// The plot could not be drawn.
    #[error("drawing {}: {reason}", path.display())]
    Plot {
        /// The SVG file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Invalid storm parameters.
    #[error("storm parameter {what}: {why}")]
    Param {
        /// The parameter.
        what: &'static str,
        /// Why it is refused.
        why: String,
    },
}
