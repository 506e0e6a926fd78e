//! One simulated node's boot, stage by stage, as a BIOS or UEFI node with
//! a TPM goes through it: PXE firmware DHCP, TFTP of iPXE (undionly.kpxe
//! or snponly.efi), iPXE's DHCP, the script over HTTP, kernel and initrd
//! (BIOS) or the UKI (UEFI), then the agent's manifest, signature and
//! rootfs, enrollment and a quote, and the "running" report.
//!
//! Every step retries on loss or timeouts with a growing pause, as the
//! real clients do, and counts its retries; a refusal is a failure at
//! once, with the server's reason.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use super::attest::{BootEvidence, Evidence, attest};
use super::dhcp::{Asker, DhcpWire};
use super::http::{self, HttpFailure};
use crate::attest::protocol::ImageRef;
use crate::attest::tpm::model::SimulatedTpm;
use crate::net::tftp::client::{FetchOptions, fetch};

/// The stages of a boot, in order; `Running` is the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// PXE firmware's DHCP.
    Dhcp,
    /// TFTP of the iPXE binary.
    Tftp,
    /// iPXE's own DHCP (user class iPXE: the script URL).
    IpxeDhcp,
    /// The iPXE script over HTTP.
    Script,
    /// Kernel and initrd over HTTP.
    Kernel,
    /// Manifest, signature and rootfs over HTTP (the agent).
    Image,
    /// Enrollment, activation, nonce, quote, verdict.
    Attest,
    /// Reported running: done.
    Running,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 8] = [
        Stage::Dhcp,
        Stage::Tftp,
        Stage::IpxeDhcp,
        Stage::Script,
        Stage::Kernel,
        Stage::Image,
        Stage::Attest,
        Stage::Running,
    ];

    /// The stage's name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Dhcp => "dhcp",
            Stage::Tftp => "tftp",
            Stage::IpxeDhcp => "ipxe-dhcp",
            Stage::Script => "script",
            Stage::Kernel => "kernel",
            Stage::Image => "image",
            Stage::Attest => "attest",
            Stage::Running => "running",
        }
    }
}

/// How a node's firmware boots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Firmware {
    /// Legacy BIOS: undionly.kpxe, kernel + initrd, `boot-chain = "bios"`.
    #[default]
    Bios,
    /// UEFI: snponly.efi, the UKI, the full `uki` chain.
    Uefi,
}

impl Firmware {
    /// The name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
        }
    }
}

/// What the storm measured of one node.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeOutcome {
    /// The node's MAC.
    pub mac: String,
    /// How it booted.
    pub firmware: Firmware,
    /// When it entered each stage, seconds since the storm began.
    pub entered: Vec<(Stage, f64)>,
    /// Retries per stage.
    pub retries: Vec<(Stage, u32)>,
    /// The stage it failed in and why.
    pub failure: Option<(Stage, String)>,
    /// When it failed, seconds since the storm began.
    pub failed_at: Option<f64>,
}

impl NodeOutcome {
    /// Reached `Running`.
    pub fn running(&self) -> bool {
        self.failure.is_none()
            && self
                .entered
                .last()
                .is_some_and(|(s, _)| *s == Stage::Running)
    }

    /// Seconds spent in `stage` (to the next stage's start), if finished.
    pub fn duration(&self, stage: Stage) -> Option<f64> {
        let i = self.entered.iter().position(|(s, _)| *s == stage)?;
        let next = self.entered.get(i + 1)?;
        Some(next.1 - self.entered[i].1)
    }

    /// The stage it is in (or failed in) last.
    pub fn stage(&self) -> Option<Stage> {
        self.entered.last().map(|(s, _)| *s)
    }

    fn enter(&mut self, stage: Stage, at: f64) {
        self.entered.push((stage, at));
    }

    fn retried(&mut self, stage: Stage, n: u32) {
        if n == 0 {
            return;
        }
        match self.retries.iter_mut().find(|(s, _)| *s == stage) {
            Some((_, count)) => *count += n,
            None => self.retries.push((stage, n)),
        }
    }
}

/// What every node of the storm shares.
#[derive(Debug)]
pub struct Shared {
    /// Port 68.
    pub wire: Arc<DhcpWire>,
    /// When the storm began.
    pub t0: Instant,
    /// Timeout of one HTTP request (retried).
    pub request_timeout: Duration,
    /// TFTP payload bytes received.
    pub tftp_bytes: AtomicU64,
    /// HTTP body bytes received.
    pub http_bytes: AtomicU64,
    /// Which stages the nodes go through.
    pub only: Only,
    /// The image, for `Only::Attest` (the nodes fetch nothing first).
    pub known_image: Option<KnownImage>,
}

/// Which part of a boot the storm runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Only {
    /// The whole boot.
    Full,
    /// The TFTP stage alone (the nodes have their addresses).
    Tftp,
    /// The attestation stage alone (the nodes measured the image already).
    Attest,
}

/// What an attest-only node would have measured.
#[derive(Debug, Clone)]
pub struct KnownImage {
    /// SHA-256 of manifest.json.
    pub manifest_sha256: [u8; 32],
    /// SHA-256 of the rootfs.
    pub rootfs_sha256: [u8; 32],
    /// Name and version.
    pub image: ImageRef,
    /// What a UEFI node measured (snponly.efi, the UKI, the script's load
    /// options), computed from the served files as a booting node would.
    pub uefi: Option<BootEvidence>,
}

/// The server's HTTP address in the storm.
const SERVER_HTTP: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    super::setup::SERVER,
    super::setup::HTTP_PORT,
));

/// One node to boot.
#[derive(Debug)]
pub struct SimNode {
    /// Its MAC.
    pub mac: [u8; 6],
    /// The address the site reserves for it (used without DHCP when the
    /// storm runs one stage alone).
    pub ip: Ipv4Addr,
    /// Its TPM (its EK is pre-approved in the server's database).
    pub tpm: SimulatedTpm,
    /// How it boots.
    pub firmware: Firmware,
}

/// A step's failure: retry, or give up.
pub(super) enum Step {
    Retry(String),
    Fatal(String),
}

/// The pauses between attempts of one HTTP step or TFTP download.
const PAUSES: [u64; 5] = [1, 2, 4, 8, 8];

/// Boots `node` through every stage; `progress` is kept current so a
/// timeout can say where the node was.
pub async fn boot(shared: Arc<Shared>, mut node: SimNode, progress: Arc<Mutex<NodeOutcome>>) {
    let outcome = run(&shared, &mut node, &progress).await;
    let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
    match outcome {
        Ok(()) => p.enter(Stage::Running, shared.t0.elapsed().as_secs_f64()),
        Err(reason) => {
            let stage = p.stage().unwrap_or(Stage::Dhcp);
            p.failure = Some((stage, reason));
            p.failed_at = Some(shared.t0.elapsed().as_secs_f64());
        }
    }
}

fn note(shared: &Shared, progress: &Mutex<NodeOutcome>, stage: Stage) {
    let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
    p.enter(stage, shared.t0.elapsed().as_secs_f64());
}

fn retried(progress: &Mutex<NodeOutcome>, stage: Stage, n: u32) {
    progress
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retried(stage, n);
}

async fn run(
    shared: &Shared,
    node: &mut SimNode,
    progress: &Mutex<NodeOutcome>,
) -> Result<(), String> {
    match (shared.only, &shared.known_image) {
        (Only::Full, _) => {}
        (Only::Tftp, _) => {
            note(shared, progress, Stage::Tftp);
            let server = super::setup::SERVER;
            let file = match node.firmware {
                Firmware::Bios => "undionly.kpxe",
                Firmware::Uefi => "snponly.efi",
            };
            tftp(shared, progress, node.ip, server, file).await?;
            return Ok(());
        }
        (Only::Attest, Some(known)) => {
            note(shared, progress, Stage::Attest);
            let evidence = Evidence {
                boot: match &known.uefi {
                    Some(uefi) if node.firmware == Firmware::Uefi => uefi.clone(),
                    // No iPXE was fetched: the log's PCR 4 event names a
                    // fixed digest, replayed like any other.
                    _ => BootEvidence::Bios {
                        ipxe_sha256: Sha256::digest(b"undionly.kpxe").into(),
                    },
                },
                manifest_sha256: known.manifest_sha256,
                rootfs_sha256: known.rootfs_sha256,
                image: known.image.clone(),
            };
            let ip = node.ip;
            return attest(shared, progress, node, ip, SERVER_HTTP, &evidence).await;
        }
        (Only::Attest, None) => return Err("attest-only storm without the image".into()),
    }
    let xid = u32::from_be_bytes([node.mac[2], node.mac[3], node.mac[4], node.mac[5]]) << 1;
    note(shared, progress, Stage::Dhcp);
    let (lease, n) = shared
        .wire
        .lease(node.mac, xid, Asker::Firmware, node.firmware)
        .await;
    retried(progress, Stage::Dhcp, n);
    let lease = lease.map_err(|e| e.to_string())?;
    let local = lease.address;

    note(shared, progress, Stage::Tftp);
    let ipxe = tftp(shared, progress, local, lease.server, &lease.boot_file).await?;

    note(shared, progress, Stage::IpxeDhcp);
    let (again, n) = shared
        .wire
        .lease(node.mac, xid | 1, Asker::Ipxe, node.firmware)
        .await;
    retried(progress, Stage::IpxeDhcp, n);
    let again = again.map_err(|e| e.to_string())?;
    let (server, script_path) = split_url(&again.boot_file)
        .ok_or_else(|| format!("iPXE boot file {:?} is not an http:// URL", again.boot_file))?;

    note(shared, progress, Stage::Script);
    let get = |path: String, keep: bool, stage: Stage| {
        get_retrying(shared, progress, local, server, path, keep, stage)
    };
    let script = get(script_path, true, Stage::Script).await?;
    let script = String::from_utf8_lossy(&script.body).into_owned();

    note(shared, progress, Stage::Kernel);
    let (boot, first_url) = match node.firmware {
        Firmware::Bios => {
            let (kernel, initrd) = kernel_lines(&script)
                .ok_or_else(|| format!("the script boots no kernel: {}", first_lines(&script)))?;
            for url in [&kernel, &initrd] {
                let (_, path) = split_url(url).ok_or_else(|| format!("script URL {url:?}"))?;
                get(path, false, Stage::Kernel).await?;
            }
            let ipxe_sha256 = Sha256::digest(&ipxe).into();
            (BootEvidence::Bios { ipxe_sha256 }, kernel)
        }
        Firmware::Uefi => {
            let (url, args) = chain_line(&script)
                .ok_or_else(|| format!("the script chains no UKI: {}", first_lines(&script)))?;
            let (_, path) = split_url(&url).ok_or_else(|| format!("script URL {url:?}"))?;
            let uki = get(path, true, Stage::Kernel).await?;
            let name = url.rsplit('/').next().unwrap_or_default();
            let load_options = ironrack_builder::boot::measure::ipxe_load_options(name, &args);
            (BootEvidence::uefi(&ipxe, &uki.body, &load_options)?, url)
        }
    };

    note(shared, progress, Stage::Image);
    let (_, first_path) =
        split_url(&first_url).ok_or_else(|| format!("script URL {first_url:?}"))?;
    let dir = first_path
        .rsplit_once('/')
        .map(|(d, _)| d.to_owned())
        .unwrap_or_default();
    let manifest = get(format!("{dir}/manifest.json"), true, Stage::Image).await?;
    get(format!("{dir}/manifest.json.minisig"), false, Stage::Image).await?;
    let (name, version) = image_of(&manifest.body)?;
    let rootfs = get(format!("{dir}/rootfs.squashfs"), false, Stage::Image).await?;

    note(shared, progress, Stage::Attest);
    let evidence = Evidence {
        boot,
        manifest_sha256: manifest.sha256,
        rootfs_sha256: rootfs.sha256,
        image: ImageRef { name, version },
    };
    attest(shared, progress, node, local, server, &evidence).await
}

async fn tftp(
    shared: &Shared,
    progress: &Mutex<NodeOutcome>,
    local: Ipv4Addr,
    server: Ipv4Addr,
    file: &str,
) -> Result<Vec<u8>, String> {
    // As PXE ROMs ask: blksize 1432 (fits any MTU path), tsize.
    let options = FetchOptions {
        blksize: Some(1432),
        tsize: true,
        timeout: Duration::from_secs(1),
        retries: 4,
        local: Some(local),
        ..FetchOptions::default()
    };
    let mut last = String::new();
    for (attempt, pause) in std::iter::once(0).chain(PAUSES).enumerate() {
        if attempt > 0 {
            retried(progress, Stage::Tftp, 1);
            tokio::time::sleep(Duration::from_secs(pause)).await;
        }
        match fetch(SocketAddr::from((server, 69)), file, &options).await {
            Ok(got) => {
                retried(progress, Stage::Tftp, got.retransmits as u32);
                shared
                    .tftp_bytes
                    .fetch_add(got.data.len() as u64, Ordering::Relaxed);
                return Ok(got.data);
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// GET with retries on transport failures and 503 (the server shedding
/// load); any other status but 200 is a failure.
async fn get_retrying(
    shared: &Shared,
    progress: &Mutex<NodeOutcome>,
    local: Ipv4Addr,
    server: SocketAddr,
    path: String,
    keep: bool,
    stage: Stage,
) -> Result<http::Response, String> {
    let once = || async {
        let r = http::request(
            local,
            server,
            "GET",
            &path,
            None,
            keep,
            shared.request_timeout,
        )
        .await
        .map_err(|e| match e {
            HttpFailure::Transport(e) => Step::Retry(e),
            e => Step::Fatal(e.to_string()),
        })?;
        shared.http_bytes.fetch_add(r.length, Ordering::Relaxed);
        match r.status {
            200 => Ok(r),
            503 => Err(Step::Retry(format!("GET {path}: 503"))),
            s => Err(Step::Fatal(format!(
                "GET {path}: {s} {}",
                String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
            ))),
        }
    };
    retrying(progress, stage, once).await
}

pub(super) async fn retrying<T, F, Fut>(
    progress: &Mutex<NodeOutcome>,
    stage: Stage,
    f: F,
) -> Result<T, String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, Step>>,
{
    let mut last = String::new();
    for (attempt, pause) in std::iter::once(0).chain(PAUSES).enumerate() {
        if attempt > 0 {
            retried(progress, stage, 1);
            tokio::time::sleep(Duration::from_secs(pause)).await;
        }
        match f().await {
            Ok(v) => return Ok(v),
            Err(Step::Fatal(e)) => return Err(e),
            Err(Step::Retry(e)) => last = e,
        }
    }
    Err(format!(
        "gave up after {} attempts: {last}",
        PAUSES.len() + 1
    ))
}

/// `http://host:port/path` → (address, path).
pub fn split_url(url: &str) -> Option<(SocketAddr, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr: SocketAddr = match authority.parse() {
        Ok(a) => a,
        Err(_) => SocketAddr::from((authority.parse::<Ipv4Addr>().ok()?, 80)),
    };
    Some((
        addr,
        if path.is_empty() {
            "/".into()
        } else {
            path.into()
        },
    ))
}

/// The kernel and initrd URLs of an ironrack script's BIOS path.
pub fn kernel_lines(script: &str) -> Option<(String, String)> {
    let url_after = |word: &str| {
        script.lines().find_map(|l| {
            l.trim()
                .strip_prefix(word)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        })
    };
    Some((url_after("kernel ")?, url_after("initrd ")?))
}

/// The UKI URL and its arguments from an ironrack script's UEFI path
/// (`chain --autofree URL ARGS || goto failed`), as iPXE reads them.
pub fn chain_line(script: &str) -> Option<(String, String)> {
    script.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("chain ")?;
        let rest = rest.split(" || ").next()?.trim();
        let mut words = rest.split_whitespace().skip_while(|w| w.starts_with("--"));
        let url = words.next()?;
        // The script's own retry (`chain` of the next script) is no UKI.
        if url.contains("/boot/") {
            return None;
        }
        Some((url.to_owned(), words.collect::<Vec<_>>().join(" ")))
    })
}

fn first_lines(text: &str) -> String {
    text.lines().take(4).collect::<Vec<_>>().join(" | ")
}

/// Name and version from the (unverified here) manifest JSON.
fn image_of(manifest: &[u8]) -> Result<(String, u64), String> {
    let v: serde_json::Value =
        serde_json::from_slice(manifest).map_err(|e| format!("manifest.json: {e}"))?;
    let signed = v.get("signed").unwrap_or(&v);
    match (signed["name"].as_str(), signed["version"].as_u64()) {
        (Some(n), Some(ver)) => Ok((n.to_owned(), ver)),
        _ => Err("manifest.json has no name and version".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_scripts() {
        let (addr, path) = split_url("http://198.18.0.1:8080/boot/52-54.ipxe?attempt=0").unwrap();
        assert_eq!(addr, "198.18.0.1:8080".parse().unwrap());
        assert_eq!(path, "/boot/52-54.ipxe?attempt=0");
        assert!(split_url("tftp://x/y").is_none());
        let script = "#!ipxe\n:kernel\nkernel http://198.18.0.1:8080/images/s/1/vmlinuz initrd=initrd.img console=ttyS0 || goto failed\ninitrd http://198.18.0.1:8080/images/s/1/initrd.img || goto failed\n";
        let (k, i) = kernel_lines(script).unwrap();
        assert_eq!(k, "http://198.18.0.1:8080/images/s/1/vmlinuz");
        assert_eq!(i, "http://198.18.0.1:8080/images/s/1/initrd.img");
        assert!(kernel_lines("#!ipxe\necho waiting\n").is_none());
        let efi = "#!ipxe\n:uefi\nchain --autofree http://198.18.0.1:8080/images/s/1/node.efi console=ttyS0 ironrack.image=s-1 || goto failed\n:failed\nchain --autofree http://198.18.0.1:8080/boot/52-54.ipxe?attempt=1 || goto failed\n";
        let (url, args) = chain_line(efi).unwrap();
        assert_eq!(url, "http://198.18.0.1:8080/images/s/1/node.efi");
        assert_eq!(args, "console=ttyS0 ironrack.image=s-1");
        assert!(
            chain_line(":failed\nchain --autofree http://x/boot/a.ipxe || goto failed\n").is_none()
        );
    }

    #[test]
    fn outcome_durations_follow_stage_starts() {
        let mut o = NodeOutcome::default();
        o.enter(Stage::Dhcp, 0.0);
        o.enter(Stage::Tftp, 1.5);
        o.enter(Stage::Running, 4.0);
        assert_eq!(o.duration(Stage::Dhcp), Some(1.5));
        assert_eq!(o.duration(Stage::Tftp), Some(2.5));
        assert_eq!(o.duration(Stage::Running), None);
        assert!(o.running());
        o.retried(Stage::Tftp, 2);
        o.retried(Stage::Tftp, 1);
        o.retried(Stage::Dhcp, 0);
        assert_eq!(o.retries, vec![(Stage::Tftp, 3)]);
    }
}
