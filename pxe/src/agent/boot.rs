//! Stage 2 of the agent as PID 1, after stage 1 ([`super::init`]): the
//! network ([`network`](super::network)), the image fetched and verified
//! ([`download`](super::download)), measured and attested
//! ([`attestation`](super::attestation)), the new root prepared
//! ([`switch_root`](super::switch_root)). Each step prints its lines and
//! retries what another try can fix; any failure ends the boot (PID 1
//! then powers off): nothing unverified or unattested is ever booted.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ironrack_keys::{Timestamp, Trust};

use super::attestation::{AttestError, PENDING_BACKOFF, measure_and_attest, open_tpm};
use super::download::{DownloadError, FetchedImage, ImageRequest, fetch_image};
use super::gpu::read_inventory;
use super::http::{DEFAULT_TIMEOUT, HttpClient, HttpError};
use super::init::{Console, Stage1};
use super::network::{NetError, NetSetup, mac_text};
use super::retry::{Backoff, Failure, retry};
use super::switch_root::{RootLayout, SwitchError, name_root, prepare_root};
use super::{AgentError, FIRMWARE_LOG, IMA_LOG, NodeAgent};
use crate::attest::gpu::GpuInventory;
use crate::attest::protocol::{
    AttestClient as _, BootReport, NodeId, Request as AttestRequest, Verdict,
};

/// The init of the image the agent hands over to.
pub const IMAGE_INIT: &str = "/sbin/init";

/// Why stage 2 stopped.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// No network.
    #[error("network")]
    Net(#[from] NetError),
    /// Neither the command line nor agent.json names the server.
    #[error("no server: neither ironrack.server= nor agent.json names one")]
    NoServer,
    /// The command line names no image.
    #[error("no image: the kernel command line has no ironrack.image=NAME@VERSION")]
    NoImage,
    /// The server URL is unusable.
    #[error("server")]
    Server(#[from] HttpError),
    /// The baked-in trust root does not load.
    #[error("trust root {path}")]
    Trust {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ironrack_keys::Error,
    },
    /// The image could not be fetched and verified.
    #[error("image")]
    Download(#[from] DownloadError),
    /// The boot MAC does not make a node id (cannot happen for a MAC).
    #[error("node id")]
    NodeId(#[source] crate::attest::protocol::BadNodeId),
    /// Not attested.
    #[error("attestation")]
    Attest(#[from] AttestError),
    /// The new root could not be prepared.
    #[error("new root")]
    Switch(#[from] SwitchError),
}

/// Patience of each step.
#[derive(Debug, Clone)]
pub struct Stage2Options {
    /// `/` on a node; a scratch root in tests.
    pub root: PathBuf,
    /// DHCP attempts (each is a few DISCOVERs by udhcpc).
    pub dhcp: Backoff,
    /// Attempts to fetch and verify the image.
    pub fetch: Backoff,
    /// Attempts at attestation (unreachable server, pending approval).
    pub attest: Backoff,
    /// Connect/read/write timeout of each request.
    pub http_timeout: Duration,
}

impl Stage2Options {
    /// The node's settings.
    pub fn node() -> Stage2Options {
        Stage2Options {
            root: PathBuf::from("/"),
            dhcp: Backoff {
                attempts: 6,
                first: Duration::from_secs(2),
                max: Duration::from_secs(30),
            },
            fetch: Backoff {
                attempts: 5,
                first: Duration::from_secs(2),
                max: Duration::from_secs(30),
            },
            attest: PENDING_BACKOFF,
            http_timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// What stage 2 leaves for the switch.
#[derive(Debug, Clone)]
pub struct ReadyRoot {
    /// The verified image.
    pub image: FetchedImage,
    /// The server's verdict (attested).
    pub verdict: Verdict,
    /// The prepared root.
    pub newroot: PathBuf,
}

/// Network, fetch and verify, measure and attest, prepare the new root.
pub fn run_stage2<W: Write>(
    stage1: &Stage1,
    console: &mut Console<W>,
    options: &Stage2Options,
    sleep: &mut dyn FnMut(Duration),
) -> Result<ReadyRoot, BootError> {
    let root = options.root.as_path();
    let server = stage1.server.as_deref().ok_or(BootError::NoServer)?;
    let client = HttpClient::new(server, options.http_timeout)?;
    let request = ImageRequest::parse(stage1.cmdline.image.as_deref().ok_or(BootError::NoImage)?)?;
    let trust_path = root.join(stage1.config.trust.trim_start_matches('/'));
    let trust = Trust::load(&trust_path, &[]).map_err(|source| BootError::Trust {
        path: trust_path.clone(),
        source,
    })?;

    let net = NetSetup::under(root);
    let bootif = stage1.cmdline.bootif.as_deref();
    let (nic, lease) = retry(options.dhcp, "DHCP", console, sleep, |console, _| {
        net.attempt(console, bootif)
    })?;
    console.line(format_args!("DHCP: lease {lease}"));
    let node = NodeId::new(&mac_text(&nic.mac)).map_err(BootError::NodeId)?;
    let hostname = Some(lease.hostname.as_str()).filter(|h| !h.is_empty());
    let result = verified_root(
        client, &trust, stage1, &request, &node, hostname, options, console, sleep,
    );
    let report = match &result {
        Ok(ready) => BootReport::running(
            node,
            &format!(
                "{}@{}: exec {IMAGE_INIT}",
                ready.image.image.name, ready.image.image.version
            ),
        ),
        Err(err) => {
            let stage = match err {
                BootError::Download(_) => "fetch",
                BootError::Attest(_) => "attestation",
                BootError::Switch(_) => "new-root",
                _ => "boot",
            };
            BootReport::failure(node, stage, &super::init::chain(err))
        }
    };
    send_report(server, options, report, console);
    result
}

/// Tells the server how this boot ended (best effort: the node goes on or
/// powers off either way), so the operator sees it in the timeline.
fn send_report<W: Write>(
    server: &str,
    options: &Stage2Options,
    report: BootReport,
    console: &mut Console<W>,
) {
    let what = if report.failed {
        "failure"
    } else {
        "hand-over"
    };
    let sent = HttpClient::new(server, options.http_timeout)
        .map_err(|e| e.to_string())
        .and_then(|mut client| {
            client
                .call(&AttestRequest::Report(report))
                .map_err(|e| e.to_string())
        });
    match sent {
        Ok(_) => console.line(format_args!("{what} reported to {server}")),
        Err(e) => console.line(format_args!("could not report the {what} to {server}: {e}")),
    }
}

/// After DHCP: fetch and verify, measure and attest, prepare the root.
#[allow(clippy::too_many_arguments)]
fn verified_root<W: Write>(
    client: HttpClient,
    trust: &Trust,
    stage1: &Stage1,
    request: &ImageRequest,
    node: &NodeId,
    hostname: Option<&str>,
    options: &Stage2Options,
    console: &mut Console<W>,
    sleep: &mut dyn FnMut(Duration),
) -> Result<ReadyRoot, BootError> {
    let root = options.root.as_path();
    let image = fetch(
        &client, trust, stage1, request, root, options, console, sleep,
    )?;

    let (tpm, device) = open_tpm(root)?;
    console.line(format_args!(
        "TPM {}: attesting as node {node}",
        device.display()
    ));
    let firmware_log = firmware_log(root, console);
    let gpus =
        read_inventory(&root.join("sys")).map_err(|e| AttestError::from(AgentError::from(e)))?;
    console.line(format_args!("GPU inventory: {}", describe_gpus(&gpus)));
    let mut agent = NodeAgent::new(tpm, client, node.clone())
        .with_ima_log(root.join(IMA_LOG.trim_start_matches('/')))
        .with_gpus(gpus);
    let verdict = measure_and_attest(
        &mut agent,
        &image.image,
        &firmware_log,
        options.attest,
        console,
        sleep,
    )?;
    console.line(format_args!("attested: {}", describe(&verdict)));
    if let Verdict::Attested {
        secret: Some(sealed),
        ..
    } = &verdict
    {
        let secret = agent.open_secret(sealed).map_err(AttestError::from)?;
        let path = write_secret(root, &secret).map_err(AttestError::from)?;
        console.line(format_args!(
            "node secret: {} bytes released by the server, written to /{}",
            secret.len(),
            SECRET_PATH
        ));
        tracing::info!(path = %path.display(), "node secret written");
    }

    let layout = RootLayout::under(root);
    prepare_root(&image.rootfs.path, &layout, IMAGE_INIT)?;
    let running = format!("{}@{}", image.image.name, image.image.version);
    name_root(root, &layout, hostname, &running)?;
    console.line(format_args!(
        "root prepared: {} read-only at {}, overlay at {}",
        image.image.rootfs_name,
        layout.lower.display(),
        layout.newroot.display()
    ));
    Ok(ReadyRoot {
        image,
        verdict,
        newroot: layout.newroot,
    })
}

#[allow(clippy::too_many_arguments)]
fn fetch<W: Write>(
    client: &HttpClient,
    trust: &Trust,
    stage1: &Stage1,
    request: &ImageRequest,
    root: &Path,
    options: &Stage2Options,
    console: &mut Console<W>,
    sleep: &mut dyn FnMut(Duration),
) -> Result<FetchedImage, BootError> {
    let dir = root.join("run/ironrack");
    std::fs::create_dir_all(&dir).map_err(|source| {
        BootError::Switch(SwitchError::Mkdir {
            path: dir.clone(),
            source,
        })
    })?;
    let config = (stage1.config.image.as_str(), stage1.config.channel.as_str());
    let what = format!("fetching {request} from {}", client.server().url(""));
    let image = retry(options.fetch, &what, console, sleep, |console, attempt| {
        console.line(format_args!(
            "{what} (attempt {attempt}/{})",
            options.fetch.attempts
        ));
        fetch_image(client, trust, config, request, &dir, Timestamp::now()).map_err(|e| match e {
            DownloadError::OtherImage { .. } | DownloadError::Request { .. } => Failure::Final(e),
            other => Failure::Retry(other),
        })
    })?;
    let i = &image.image;
    console.line(format_args!(
        "manifest {}@{} verified: channel {}, signed through /{}, sha256 {}",
        i.name,
        i.version,
        i.channel,
        stage1.config.trust.trim_start_matches('/'),
        hex::encode(i.manifest_sha256)
    ));
    console.line(format_args!(
        "rootfs {} fetched to {}: {} bytes, sha256 {} matches the manifest",
        i.rootfs_name,
        image.rootfs.path.display(),
        image.rootfs.size,
        hex::encode(image.rootfs.sha256)
    ));
    Ok(image)
}

/// Where the node's secret is written, in the `/run` the image inherits.
pub const SECRET_PATH: &str = "run/ironrack/node-secret";

/// Writes the secret 0600 under `root` (temporary file, then rename: the
/// image never sees half a secret).
fn write_secret(root: &Path, secret: &[u8]) -> Result<PathBuf, AgentError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = root.join(SECRET_PATH);
    let tmp = path.with_extension("tmp");
    let failed = |source| AgentError::WriteSecret {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(failed)?;
    file.write_all(secret)
        .and_then(|()| file.sync_all())
        .map_err(failed)?;
    std::fs::rename(&tmp, &path).map_err(failed)?;
    Ok(path)
}

fn describe_gpus(gpus: &GpuInventory) -> String {
    if gpus.devices.is_empty() {
        return "no NVIDIA PCI functions".into();
    }
    let mut counts = std::collections::BTreeMap::new();
    for d in &gpus.devices {
        *counts.entry(d.device).or_insert(0u32) += 1;
    }
    let ids: Vec<String> = counts
        .iter()
        .map(|(id, n)| format!("{n} x {id:#06x}"))
        .collect();
    format!(
        "{} (driver {})",
        ids.join(" + "),
        gpus.driver.as_deref().unwrap_or("not loaded")
    )
}

fn describe(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Attested { node, image, .. } => {
            format!("{node} runs {}@{}", image.name, image.version)
        }
        other => format!("{other:?}"),
    }
}

/// The firmware's event log; none (a direct kernel boot, a firmware
/// without TPM support) is said on the console and sent empty, for the
/// server's policy to judge.
fn firmware_log<W: Write>(root: &Path, console: &mut Console<W>) -> Vec<u8> {
    let path = root.join(FIRMWARE_LOG.trim_start_matches('/'));
    match std::fs::read(&path) {
        Ok(bytes) => {
            console.line(format_args!("firmware event log: {} bytes", bytes.len()));
            bytes
        }
        Err(e) => {
            console.line(format_args!(
                "no firmware event log at {} ({e}); sending none",
                path.display()
            ));
            Vec::new()
        }
    }
}
