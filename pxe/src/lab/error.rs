//! Errors of the lab.

use std::path::PathBuf;

/// Why a lab step failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A tool the lab runs is not installed.
    #[error("{tool} is not installed (package {package}; scripts/deps.sh installs it)")]
    Missing {
        /// The program.
        tool: &'static str,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// A command failed.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed.
        stderr: String,
    },
    /// A command could not be started.
    #[error("starting `{command}`")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// An address outside 198.18.0.0/15, or a bad name.
    #[error("lab network {what}: {why}")]
    Config {
        /// What was given.
        what: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// A lab file could not be read or written.
    #[error("{}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The lab state file is not what `lab up` writes.
    #[error("{}: not a lab state file", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A lab is already up in this directory.
    #[error("a lab is already up in {} (namespace {ns}); run `ironrack lab down` first", dir.display())]
    AlreadyUp {
        /// The lab directory.
        dir: PathBuf,
        /// Its namespace.
        ns: String,
    },
    /// A process the lab started is gone.
    #[error("{what} (pid {pid}) exited; see {}", log.display())]
    Exited {
        /// Which process.
        what: String,
        /// Its PID.
        pid: u32,
        /// Where its output went.
        log: PathBuf,
    },
}
