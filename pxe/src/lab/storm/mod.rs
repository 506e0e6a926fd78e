//! `ironrack lab storm`: a boot storm against a real `ironrack serve`.
//!
//! The server runs in one namespace on a bridge (198.18.0.1/16); one
//! load-generator process, whose tokio threads live in a second namespace
//! joined to the bridge by a veth pair, boots N simulated nodes at once
//! (or on a ramp) through the real protocol: DHCP broadcasts, TFTP of the
//! iPXE binary, iPXE's DHCP, the script, kernel and initrd, the agent's
//! manifest, signature and rootfs over HTTP, then enrollment, a quote and
//! the "running" report with a software TPM each. netem on both ends of
//! the link injects loss and delay.
//!
//! Nodes boot as UEFI or BIOS firmware (`--firmware`, mixed by default:
//! even nodes BIOS, odd nodes UEFI). A UEFI node asks DHCP as x86-64 EFI
//! (option 93 = 7), loads snponly.efi, follows the script's `chain` to
//! node.efi, and quotes a firmware log as OVMF → iPXE → systemd-stub
//! would measure it, computed from the bytes it was served: the server
//! holds it to the full `uki` chain (PCR 4 iPXE, UKI and kernel
//! Authenticode; PCR 11 the manifest's prediction; PCR 12 the load options
//! its script passed). A BIOS node is held to `boot-chain = "bios"`
//! (quote, replay, manifest and rootfs digests). The storm's image has a
//! real UKI, built by the builder's `build_uki` around the stub given with
//! `--stub` or, by default, a minimal PE32+ stub made in code that names
//! systemd-stub 252; its manifest carries `measure_uki`'s measurements.
//! The nodes' EKs carry no certificate: the storm records them approved
//! in the state database beforehand, as `ironrack nodes approve` would.

mod attest;
mod dhcp;
mod error;
pub mod http;
pub mod node;
pub mod plot;
pub mod report;
pub mod setup;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use error::StormError;
pub use node::{Firmware, Only};
use node::{KnownImage, NodeOutcome, Shared, SimNode};
pub use report::StormReport;

use crate::lab::LabNet;

/// How nodes arrive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrival {
    /// All at once (a rack's power comes on).
    All,
    /// Evenly over this many seconds.
    Ramp(f64),
}

impl std::str::FromStr for Arrival {
    type Err = String;
    fn from_str(s: &str) -> Result<Arrival, String> {
        if s == "all" {
            return Ok(Arrival::All);
        }
        s.strip_prefix("ramp:")
            .and_then(|n| n.parse::<f64>().ok())
            .filter(|n| n.is_finite() && *n >= 0.0)
            .map(Arrival::Ramp)
            .ok_or_else(|| format!("{s:?}: `all` or `ramp:SECONDS`"))
    }
}

impl std::fmt::Display for Arrival {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arrival::All => write!(f, "all"),
            Arrival::Ramp(s) => write!(f, "ramp:{s}"),
        }
    }
}

/// Which firmware the storm's nodes boot with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirmwareMix {
    /// Every node UEFI.
    Uefi,
    /// Every node BIOS.
    Bios,
    /// Even nodes BIOS, odd nodes UEFI.
    Mixed,
}

impl FirmwareMix {
    /// The firmware of node `i`.
    pub fn of(self, i: usize) -> Firmware {
        match self {
            FirmwareMix::Uefi => Firmware::Uefi,
            FirmwareMix::Bios => Firmware::Bios,
            FirmwareMix::Mixed if i % 2 == 1 => Firmware::Uefi,
            FirmwareMix::Mixed => Firmware::Bios,
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct StormPlan {
    /// Work directory (site, image, state database, server log).
    pub dir: PathBuf,
    /// Number of nodes.
    pub nodes: usize,
    /// Arrival.
    pub arrival: Arrival,
    /// Packet loss, percent, on each direction of the link.
    pub loss_percent: f64,
    /// Delay, ms, on each direction of the link.
    pub delay_ms: u32,
    /// A node that is not running this long after it arrived has failed.
    pub node_timeout: Duration,
    /// Rootfs size, bytes.
    pub rootfs_size: u64,
    /// The Debian ipxe package the server serves iPXE from.
    pub ipxe_deb: PathBuf,
    /// The `ironrack` binary to run as the server.
    pub ironrack: PathBuf,
    /// Which stages the nodes go through.
    pub only: Only,
    /// The TFTP server of a TFTP-only storm.
    pub tftp_peer: TftpPeer,
    /// The nodes' firmware.
    pub firmware: FirmwareMix,
    /// The systemd-stub (PE32+) the image's UKI is built around; `None`:
    /// a minimal one made in code ([`setup::generated_stub`]).
    pub stub: Option<PathBuf>,
}

/// Who serves TFTP in a TFTP-only storm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TftpPeer {
    /// `ironrack serve`.
    Ironrack,
    /// dnsmasq's TFTP server, the reference (`--enable-tftp`).
    Dnsmasq,
}

/// Runs a storm; namespaces and server are gone when it returns.
pub fn run(plan: &StormPlan, interrupted: Arc<AtomicBool>) -> Result<StormReport, StormError> {
    if plan.nodes == 0 || plan.nodes > setup::MAX_NODES {
        return Err(StormError::Param {
            what: "--nodes",
            why: format!("{} (1 to {})", plan.nodes, setup::MAX_NODES),
        });
    }
    if !(0.0..100.0).contains(&plan.loss_percent) {
        return Err(StormError::Param {
            what: "--loss",
            why: format!("{}% (0 to below 100)", plan.loss_percent),
        });
    }
    if plan.tftp_peer == TftpPeer::Dnsmasq && plan.only != Only::Tftp {
        return Err(StormError::Param {
            what: "--tftp-server dnsmasq",
            why: "only with --only tftp (dnsmasq serves no ironrack HTTP or attestation)".into(),
        });
    }
    raise_open_files();
    std::fs::create_dir_all(&plan.dir).map_err(|source| StormError::Write {
        path: plan.dir.clone(),
        source,
    })?;
    let stub = match &plan.stub {
        Some(path) => std::fs::read(path).map_err(|e| StormError::Param {
            what: "--stub",
            why: format!("{}: {e}", path.display()),
        })?,
        None => setup::generated_stub(),
    };
    let (image, trust) = setup::make_image(&plan.dir, plan.rootfs_size, &stub)?;
    let known_image = (plan.only == Only::Attest)
        .then(|| setup::known_image(&image, &trust, &plan.ipxe_deb))
        .transpose()?;
    let site = plan.dir.join("site.toml");
    std::fs::write(
        &site,
        setup::site_text(&plan.dir, &trust, &plan.ipxe_deb, plan.nodes, plan.firmware),
    )
    .map_err(|source| StormError::Write {
        path: site.clone(),
        source,
    })?;
    let tpms = setup::tpms_approved(&plan.dir.join("state.db"), plan.nodes)?;
    let tag = (std::process::id() % 100_000).to_string();
    let net = setup::StormNet::create(
        &tag,
        plan.nodes,
        plan.loss_percent,
        plan.delay_ms,
        &plan.dir,
    )?;
    let server_net = LabNet {
        ns: net.server_ns.clone(),
        server: setup::SERVER,
        prefix: 16,
    };
    let (server, log) = match plan.tftp_peer {
        TftpPeer::Ironrack => {
            let mut serve = server_net.command(&plan.ironrack.display().to_string());
            serve
                .arg("serve")
                .arg("--site")
                .arg(&site)
                .env("RUST_LOG", "warn");
            let log = plan.dir.join("serve.log");
            (crate::lab::node::spawn(serve, &log, "ironrack serve")?, log)
        }
        TftpPeer::Dnsmasq => setup::start_dnsmasq(&server_net, plan)?,
    };
    let result = (|| {
        match plan.tftp_peer {
            TftpPeer::Ironrack => crate::lab::up::wait_for_http(&server_net, &server, &log)?,
            TftpPeer::Dnsmasq => setup::wait_for_tftp(&server, &log)?,
        }
        let cpu_before = setup::cpu_seconds(server.pid).unwrap_or_default();
        let nodes = tpms
            .into_iter()
            .enumerate()
            .map(|(i, tpm)| SimNode {
                mac: setup::node_mac(i),
                ip: setup::node_ip(i),
                tpm,
                firmware: plan.firmware.of(i),
            })
            .collect();
        let (outcomes, bytes) = generate(plan, &net.gen_ns, nodes, known_image, interrupted)?;
        let usage = report::ServerUsage {
            cpu_seconds: setup::cpu_seconds(server.pid).unwrap_or_default() - cpu_before,
            peak_rss_bytes: setup::peak_rss(server.pid).unwrap_or_default(),
        };
        Ok(build_report(plan, &outcomes, usage, bytes))
    })();
    if server.stop(Duration::from_secs(5)) {
        tracing::warn!(
            pid = server.pid,
            "ironrack serve did not stop on SIGTERM; killed"
        );
    }
    drop(net);
    result
}

fn build_report(
    plan: &StormPlan,
    outcomes: &[NodeOutcome],
    server: report::ServerUsage,
    bytes: report::Bytes,
) -> StormReport {
    let end = outcomes
        .iter()
        .map(NodeOutcome::finished_at)
        .fold(0.0, f64::max);
    StormReport {
        nodes: plan.nodes,
        mode: match (plan.only, plan.tftp_peer) {
            (Only::Full, _) => "full".into(),
            (Only::Tftp, TftpPeer::Ironrack) => "tftp (ironrack)".into(),
            (Only::Tftp, TftpPeer::Dnsmasq) => "tftp (dnsmasq)".into(),
            (Only::Attest, _) => "attest".into(),
        },
        arrival: plan.arrival.to_string(),
        loss_percent: plan.loss_percent,
        delay_ms: plan.delay_ms,
        rootfs_bytes: plan.rootfs_size,
        running: outcomes.iter().filter(|o| o.running()).count(),
        firmware: report::by_firmware(outcomes),
        node_firmware: report::node_summaries(outcomes),
        time_to_all_running: report::time_to_all_running(outcomes),
        stages: report::stage_latencies(outcomes),
        failures: outcomes
            .iter()
            .filter_map(|o| {
                o.failure.as_ref().map(|(stage, reason)| report::Failure {
                    mac: o.mac.clone(),
                    firmware: o.firmware,
                    stage: *stage,
                    reason: reason.clone(),
                })
            })
            .collect(),
        server,
        bytes,
        timeline: report::timeline(outcomes, report::sample_step(end), end),
    }
}

/// Runs the nodes on a tokio runtime whose threads live in namespace
/// `ns` (a thread enters it, and the runtime's threads, started from that
/// thread, inherit it), so every socket they open is on the storm's link.
fn generate(
    plan: &StormPlan,
    ns: &str,
    nodes: Vec<SimNode>,
    known_image: Option<KnownImage>,
    interrupted: Arc<AtomicBool>,
) -> Result<(Vec<NodeOutcome>, report::Bytes), StormError> {
    let fail = |source: std::io::Error| StormError::Generator {
        ns: ns.to_owned(),
        source,
    };
    let ns_file = std::fs::File::open(Path::new("/run/netns").join(ns)).map_err(fail)?;
    let plan = plan.clone();
    let thread = std::thread::spawn(move || {
        nix::sched::setns(&ns_file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        runtime.block_on(storm(&plan, nodes, known_image, &interrupted))
    });
    match thread.join() {
        Ok(result) => result.map_err(fail),
        Err(_) => Err(fail(std::io::Error::other(
            "load generator thread panicked",
        ))),
    }
}

async fn storm(
    plan: &StormPlan,
    nodes: Vec<SimNode>,
    known_image: Option<KnownImage>,
    interrupted: &AtomicBool,
) -> std::io::Result<(Vec<NodeOutcome>, report::Bytes)> {
    let wire = dhcp::DhcpWire::bind(setup::GEN_IF)?;
    let shared = Arc::new(Shared {
        wire: Arc::clone(&wire),
        t0: tokio::time::Instant::now(),
        request_timeout: Duration::from_secs(30),
        tftp_bytes: 0.into(),
        http_bytes: 0.into(),
        only: plan.only,
        known_image,
    });
    let count = nodes.len();
    let mut progress = Vec::with_capacity(count);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, node) in nodes.into_iter().enumerate() {
        let p = Arc::new(Mutex::new(NodeOutcome {
            mac: crate::lab::node::mac_text(&node.mac),
            firmware: node.firmware,
            ..NodeOutcome::default()
        }));
        progress.push(Arc::clone(&p));
        let offset = match plan.arrival {
            Arrival::All => 0.0,
            Arrival::Ramp(secs) => secs * i as f64 / count as f64,
        };
        let start = shared.t0 + Duration::from_secs_f64(offset);
        let (shared, timeout) = (Arc::clone(&shared), plan.node_timeout);
        tasks.spawn(async move {
            tokio::time::sleep_until(start).await;
            let booted = tokio::time::timeout(
                timeout,
                node::boot(Arc::clone(&shared), node, Arc::clone(&p)),
            )
            .await;
            if booted.is_err() {
                let mut o = p.lock().unwrap_or_else(|e| e.into_inner());
                let stage = o.stage().unwrap_or(node::Stage::Dhcp);
                o.failure = Some((
                    stage,
                    format!("not running {} s after it arrived", timeout.as_secs()),
                ));
                o.failed_at = Some(shared.t0.elapsed().as_secs_f64());
            }
        });
    }
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { break },
            () = tokio::time::sleep(Duration::from_millis(250)) => {
                if interrupted.load(Ordering::SeqCst) {
                    tasks.abort_all();
                    return Err(std::io::Error::other("interrupted"));
                }
            }
        }
    }
    let outcomes = progress
        .iter()
        .map(|p| p.lock().unwrap_or_else(|e| e.into_inner()).clone())
        .collect();
    let bytes = report::Bytes {
        dhcp: wire.bytes.load(Ordering::Relaxed),
        tftp: shared.tftp_bytes.load(Ordering::Relaxed),
        http: shared.http_bytes.load(Ordering::Relaxed),
    };
    Ok((outcomes, bytes))
}

/// Thousands of simultaneous sockets: raise the open-files limit to the
/// hard limit (the server, started after, inherits it).
fn raise_open_files() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!(error = %e, "could not raise the open-files limit");
    }
}

/// Writes `bytes` to `path` atomically (temporary file in the same
/// directory, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StormError> {
    use std::io::Write;
    let err = |source| StormError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    // A report, not a secret: readable like any other output.
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_parse() {
        assert_eq!("all".parse::<Arrival>(), Ok(Arrival::All));
        assert_eq!("ramp:30".parse::<Arrival>(), Ok(Arrival::Ramp(30.0)));
        assert!("ramp:-1".parse::<Arrival>().is_err());
        assert!("slowly".parse::<Arrival>().is_err());
        assert_eq!(Arrival::Ramp(2.5).to_string(), "ramp:2.5");
    }
}
