//! `ironrack lab storm`: run a boot storm (the library does it), print its
//! report, write the JSON and the plot.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use ironrack_pxe::lab::storm::{
    Arrival, FirmwareMix, Only, StormPlan, TftpPeer, plot, run, write_atomic,
};

use super::outln;

/// Arguments of `lab storm`.
#[derive(Debug, Args)]
pub struct StormArgs {
    /// Number of simulated nodes.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// When nodes arrive: `all` at once, or `ramp:SECONDS` evenly.
    #[arg(long, default_value = "all")]
    pub arrival: Arrival,
    /// Packet loss on the link, percent, each direction (netem).
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Delay on the link, ms, each direction (netem).
    #[arg(long, default_value_t = 0)]
    pub delay: u32,
    /// A node not running this many seconds after it arrived has failed.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Size of the image's rootfs, bytes.
    #[arg(long, default_value_t = 4 << 20)]
    pub rootfs_size: u64,
    /// Write the report as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw nodes-in-each-stage over time here (SVG).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Work directory (site, image, state database, server log).
    #[arg(long, default_value = "out/storm")]
    pub dir: PathBuf,
    /// The Debian `ipxe` package the server serves iPXE from (default:
    /// the newest in MIRROR/pool/main/i/ipxe/).
    #[arg(long, value_name = "DEB")]
    pub ipxe_deb: Option<PathBuf>,
    /// The local mirror to find the ipxe package in.
    #[arg(long, value_name = "DIR")]
    pub mirror: Option<PathBuf>,
    /// Run one stage alone: `tftp` (nodes use their reserved addresses,
    /// no DHCP) or `attest` (nodes present the image's digests at once).
    #[arg(long, value_enum, default_value_t = OnlyChoice::Full)]
    pub only: OnlyChoice,
    /// The TFTP server of `--only tftp`: ironrack, or dnsmasq for comparison.
    #[arg(long, value_enum, default_value_t = PeerChoice::Ironrack)]
    pub tftp_server: PeerChoice,
    /// The nodes' firmware: `uefi` (snponly.efi, the UKI, held to the
    /// full `uki` chain: PCR 4, 11, 12), `bios` (undionly.kpxe, kernel +
    /// initrd, `boot-chain = "bios"`), or `mixed` (even nodes BIOS, odd
    /// nodes UEFI: both paths of the server under one storm).
    #[arg(long, value_enum, default_value_t = FirmwareChoice::Mixed)]
    pub firmware: FirmwareChoice,
    /// The systemd-stub (an unsigned PE32+ EFI stub, e.g.
    /// linuxx64.efi.stub from Debian's systemd-boot-efi 252) the storm
    /// image's UKI is built around. Default: a minimal PE32+ made in code
    /// that names systemd-stub 252; the server checks the same digests
    /// either way.
    #[arg(long, value_name = "FILE")]
    pub stub: Option<PathBuf>,
}

/// `--firmware`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FirmwareChoice {
    /// Every node UEFI.
    Uefi,
    /// Every node BIOS.
    Bios,
    /// Even nodes BIOS, odd nodes UEFI.
    Mixed,
}

/// `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnlyChoice {
    /// The whole boot.
    Full,
    /// TFTP of iPXE alone.
    Tftp,
    /// Enrollment and quote alone.
    Attest,
}

/// `--tftp-server`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PeerChoice {
    /// `ironrack serve`.
    Ironrack,
    /// dnsmasq --enable-tftp.
    Dnsmasq,
}

/// Runs `lab storm`.
pub fn storm(args: &StormArgs) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("lab storm needs root (network namespaces, netem)");
    }
    let abs = |p: &Path| std::path::absolute(p).with_context(|| format!("{}", p.display()));
    let ipxe_deb = match (&args.ipxe_deb, &args.mirror) {
        (Some(deb), _) => abs(deb)?,
        (None, Some(mirror)) => super::lab_up::newest_ipxe(&abs(mirror)?)?,
        (None, None) => {
            bail!("give --ipxe-deb FILE or --mirror DIR (whose pool has the ipxe package)")
        }
    };
    let plan = StormPlan {
        dir: abs(&args.dir)?,
        nodes: args.nodes,
        arrival: args.arrival,
        loss_percent: args.loss,
        delay_ms: args.delay,
        node_timeout: Duration::from_secs(args.timeout),
        rootfs_size: args.rootfs_size,
        ipxe_deb,
        ironrack: std::env::current_exe().context("finding the ironrack binary")?,
        only: match args.only {
            OnlyChoice::Full => Only::Full,
            OnlyChoice::Tftp => Only::Tftp,
            OnlyChoice::Attest => Only::Attest,
        },
        tftp_peer: match args.tftp_server {
            PeerChoice::Ironrack => TftpPeer::Ironrack,
            PeerChoice::Dnsmasq => TftpPeer::Dnsmasq,
        },
        firmware: match args.firmware {
            FirmwareChoice::Uefi => FirmwareMix::Uefi,
            FirmwareChoice::Bios => FirmwareMix::Bios,
            FirmwareChoice::Mixed => FirmwareMix::Mixed,
        },
        stub: args.stub.as_deref().map(abs).transpose()?,
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    super::lab_up::watch_ctrl_c(interrupted.clone());
    let report = run(&plan, interrupted).context("running the storm")?;
    outln!("{}", report.table().trim_end())?;
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report).context("encoding the report")?;
        write_atomic(path, &json).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        plot::write(&report, path).with_context(|| format!("drawing {}", path.display()))?;
    }
    if !report.failures.is_empty() {
        bail!(
            "{} of {} nodes failed (server log: {})",
            report.failures.len(),
            report.nodes,
            plan.dir.join("serve.log").display()
        );
    }
    Ok(())
}
