//! Measuring the fetched image into the TPM and attesting before the
//! switch to it. No TPM, a refusal, or a server without attestation
//! (404 on `/attest/*`, see [`NOT_ATTESTING`](super::http::NOT_ATTESTING))
//! all stop the boot: there is no unattested path.
//!
//! Order: PCR 15 ← manifest digest, rootfs digest (once: extends add up),
//! then enrollment and a quote, retried while the server is unreachable
//! or the node waits for an operator's approval.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::init::Console;
use super::retry::{Backoff, Failure, retry};
use super::{AgentError, NodeAgent};
use crate::attest::image::ReleasedImage;
use crate::attest::protocol::{AttestClient, ImageRef, Verdict};
use crate::attest::tpm::{Device, Tpm, Transport};

/// The attestation steps, as the boot uses them (a trait so the boot's
/// order and retry rules are tested without a TPM).
pub trait Attestor {
    /// PCR 15 ← SHA-256(manifest), SHA-256(rootfs).
    fn measure_image(&mut self, image: &ReleasedImage) -> Result<(), AgentError>;
    /// Enrollment (idempotent on the server).
    fn enroll(&mut self) -> Result<Verdict, AgentError>;
    /// Nonce, quote, verdict.
    fn attest(&mut self, firmware_log: &[u8], image: ImageRef) -> Result<Verdict, AgentError>;
}

impl<T: Transport, C: AttestClient> Attestor for NodeAgent<T, C> {
    fn measure_image(&mut self, image: &ReleasedImage) -> Result<(), AgentError> {
        NodeAgent::measure_image(self, image)
    }
    fn enroll(&mut self) -> Result<Verdict, AgentError> {
        NodeAgent::enroll(self)
    }
    fn attest(&mut self, firmware_log: &[u8], image: ImageRef) -> Result<Verdict, AgentError> {
        NodeAgent::attest(self, firmware_log, image)
    }
}

/// Why the node is not attested.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// No TPM device.
    #[error("no TPM ({}): this node cannot attest, and boots only attested", list(.tried))]
    NoTpm {
        /// The devices looked for.
        tried: Vec<PathBuf>,
    },
    /// A TPM device that does not open.
    #[error("opening the TPM {path}")]
    OpenTpm {
        /// The device.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A step failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The node is still waiting for approval after every attempt.
    #[error("the server holds the node pending: {reason}")]
    StillPending {
        /// The server's reason.
        reason: String,
    },
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Opens the TPM under `root`: `dev/tpmrm0`, else `dev/tpm0`.
pub fn open_tpm(root: &Path) -> Result<(Tpm<Device>, PathBuf), AttestError> {
    let tried = [root.join("dev/tpmrm0"), root.join("dev/tpm0")];
    let Some(path) = tried.iter().find(|p| p.exists()) else {
        return Err(AttestError::NoTpm {
            tried: tried.to_vec(),
        });
    };
    let device = Device::open(path).map_err(|source| AttestError::OpenTpm {
        path: path.clone(),
        source,
    })?;
    Ok((Tpm::new(device), path.clone()))
}

/// Whether another attempt can help.
fn classify(err: AgentError) -> Failure<AttestError> {
    match err {
        // The server said no (or has no attestation): final.
        AgentError::Refused { .. } | AgentError::UnexpectedAnswer { .. } => {
            Failure::Final(err.into())
        }
        AgentError::Transport { .. } => Failure::Retry(err.into()),
        other => Failure::Final(other.into()),
    }
}

/// How long a pending node waits between tries by default.
pub const PENDING_BACKOFF: Backoff = Backoff {
    attempts: 8,
    first: Duration::from_secs(2),
    max: Duration::from_secs(30),
};

/// Measures `image` (once), then enrolls and attests until the server
/// says attested. A refusal ends it at once; an unreachable server or a
/// pending verdict is retried per `backoff`. Prints a line per step.
pub fn measure_and_attest<A: Attestor, W: Write>(
    agent: &mut A,
    image: &ReleasedImage,
    firmware_log: &[u8],
    backoff: Backoff,
    console: &mut Console<W>,
    sleep: &mut dyn FnMut(Duration),
) -> Result<Verdict, AttestError> {
    agent.measure_image(image)?;
    console.line(format_args!(
        "measured into PCR 15: manifest {}, rootfs {}",
        hex::encode(image.manifest_sha256),
        hex::encode(image.rootfs_sha256)
    ));
    let image_ref = ImageRef {
        name: image.name.clone(),
        version: image.version,
    };
    retry(backoff, "attestation", console, sleep, |console, _| {
        match agent.enroll().map_err(classify)? {
            Verdict::Pending { reason, .. } => {
                return Err(Failure::Retry(AttestError::StillPending { reason }));
            }
            verdict => console.line(format_args!("enrollment: {}", describe(&verdict))),
        }
        match agent
            .attest(firmware_log, image_ref.clone())
            .map_err(classify)?
        {
            Verdict::Pending { reason, .. } => {
                Err(Failure::Retry(AttestError::StillPending { reason }))
            }
            verdict => Ok(verdict),
        }
    })
}

fn describe(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Enrolled { node } => format!("enrolled as {node}"),
        Verdict::Attested { node, image, .. } => {
            format!("{node} attested running {}@{}", image.name, image.version)
        }
        Verdict::Pending { reason, .. } => format!("pending: {reason}"),
        Verdict::Refused { code, reason } => format!("refused ({code}): {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::protocol::NodeId;

    /// A fake attestor (the real one, NodeAgent over a TPM and the HTTP
    /// client, runs in the qemu boot test): answers from a script.
    struct Script {
        calls: Vec<&'static str>,
        enroll: Vec<Result<Verdict, AgentError>>,
        attest: Vec<Result<Verdict, AgentError>>,
    }

    impl Attestor for Script {
        fn measure_image(&mut self, _: &ReleasedImage) -> Result<(), AgentError> {
            self.calls.push("measure");
            Ok(())
        }
        fn enroll(&mut self) -> Result<Verdict, AgentError> {
            self.calls.push("enroll");
            self.enroll.remove(0)
        }
        fn attest(&mut self, _: &[u8], _: ImageRef) -> Result<Verdict, AgentError> {
            self.calls.push("attest");
            self.attest.remove(0)
        }
    }

    fn node() -> NodeId {
        NodeId::new("52:54:00:12:00:31").unwrap()
    }

    fn image() -> ReleasedImage {
        ReleasedImage {
            name: "gpu-node".into(),
            channel: "stable".into(),
            version: 7,
            manifest_sha256: [1; 32],
            rootfs_name: "rootfs.squashfs".into(),
            rootfs_size: 1,
            rootfs_sha256: [2; 32],
            measurements: None,
        }
    }

    fn run(script: &mut Script) -> (Result<Verdict, AttestError>, String) {
        let mut console = Console::new(Vec::new());
        let backoff = Backoff {
            attempts: 3,
            first: Duration::from_secs(1),
            max: Duration::from_secs(1),
        };
        let result =
            measure_and_attest(script, &image(), b"log", backoff, &mut console, &mut |_| {});
        (result, String::from_utf8(console.into_inner()).unwrap())
    }

    fn transport() -> AgentError {
        AgentError::Transport {
            method: "POST",
            path: "/attest/enroll",
            source: "connection refused".into(),
        }
    }

    #[test]
    fn measured_once_then_retried_until_attested() {
        let pending = Verdict::Pending {
            node: node(),
            reason: "awaiting approval".into(),
        };
        let attested = Verdict::Attested {
            node: node(),
            image: ImageRef {
                name: "gpu-node".into(),
                version: 7,
            },
            secret: None,
        };
        let mut script = Script {
            calls: Vec::new(),
            enroll: vec![
                Err(transport()),
                Ok(pending),
                Ok(Verdict::Enrolled { node: node() }),
            ],
            attest: vec![Ok(attested.clone())],
        };
        let (result, text) = run(&mut script);
        assert_eq!(result.unwrap(), attested);
        assert_eq!(
            script.calls,
            ["measure", "enroll", "enroll", "enroll", "attest"]
        );
        assert!(
            text.contains("measured into PCR 15: manifest 0101"),
            "{text}"
        );
        assert!(
            text.contains("attempt 2/3") && text.contains("awaiting approval"),
            "{text}"
        );
        assert!(
            text.contains("enrollment: enrolled as 52:54:00:12:00:31"),
            "{text}"
        );
    }

    #[test]
    fn a_server_without_attestation_stops_the_boot_at_once() {
        let mut script = Script {
            calls: Vec::new(),
            enroll: vec![Err(AgentError::Refused {
                step: "enrollment",
                code: crate::agent::http::NOT_ATTESTING.into(),
                reason:
                    "server does not attest: POST http://198.18.0.1:8080/attest/enroll answered 404"
                        .into(),
            })],
            attest: Vec::new(),
        };
        let (result, text) = run(&mut script);
        assert!(result.is_err());
        assert_eq!(script.calls, ["measure", "enroll"]);
        assert!(
            text.contains("attestation FAILED: enrollment: server refused (server-does-not-attest): server does not attest"),
            "{text}"
        );
    }

    #[test]
    fn no_tpm_is_a_refusal_naming_the_devices() {
        let dir = tempfile::tempdir().unwrap();
        let err = open_tpm(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("dev/tpmrm0") && err.contains("boots only attested"),
            "{err}"
        );
    }
}
