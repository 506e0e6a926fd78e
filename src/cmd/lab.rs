//! `ironrack lab`: the virtual rack on this machine (network namespace,
//! `ironrack serve`, qemu nodes), and the commands that look at it and
//! take it down.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use ironrack_pxe::lab::LabState;

use super::outln;

/// `ironrack lab ...`.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Boot a virtual rack from a built image on this machine (root).
    ///
    /// Creates a network namespace with a bridge (198.18.0.1/24: addresses
    /// from 198.18.0.0/15 only, inside the namespace only), starts
    /// `ironrack serve` there with a generated site file (OUT/lab/site.toml),
    /// and N qemu nodes (TCG): UEFI nodes get OVMF with their own variable
    /// store, BIOS nodes SeaBIOS with the NIC's iPXE ROM; every node a
    /// swtpm manufactured with an EK certificate from the lab's vendor CA,
    /// which the lab's server trusts. BIOS nodes are attested under the
    /// site profile `boot-chain = "bios"` (their firmware measures no
    /// kernel). A live display follows each node through the server's
    /// timeline (dhcp → firmware → ipxe → booting → image → agent →
    /// enrolled → attested → running) until every node reaches --until,
    /// then prints a table (state, attestation, boot time). The lab keeps
    /// running; `lab down` stops it. Ctrl-C or a failure while coming up
    /// takes everything down again.
    ///
    ///   ironrack lab up --image out/gpu-node/1 --trust trust.json --mirror mirror
    ///   ironrack lab logs node-1      # its serial console
    ///   ironrack lab down
    #[command(verbatim_doc_comment)]
    Up(UpArgs),
    /// Show the lab's processes and nodes.
    Status(LabDirArgs),
    /// Print a node's serial console (what it printed so far).
    Logs(LogsArgs),
    /// Stop every process the lab started (by PID) and remove its
    /// namespace. Safe to run twice, and after a crash of `lab up`.
    Down(LabDirArgs),
    /// A boot storm: N simulated nodes at once against a real server (root).
    ///
    /// Starts `ironrack serve` in a network namespace (198.18.0.1/16) with
    /// a generated site and a small signed image of its own, and one load
    /// generator in a second namespace joined by a veth pair (netem on
    /// both ends: --loss and --delay apply to each direction). Each node
    /// does DHCP, TFTP of iPXE, iPXE's DHCP, the script, kernel, initrd,
    /// manifest, signature and rootfs over HTTP, enrollment and a quote
    /// with its own software TPM, then reports running. Prints per-stage
    /// latency (p50/p95/p99/max), retries, failures, the server's CPU and
    /// peak memory; exits non-zero if any node failed. Everything it
    /// started is gone when it returns.
    #[command(verbatim_doc_comment)]
    Storm(super::lab_storm::StormArgs),
}

/// The lab directory.
#[derive(Debug, Args)]
pub struct LabDirArgs {
    /// Where `lab up` keeps its state (lab.json), logs and node disks.
    #[arg(long, default_value = "out/lab")]
    pub dir: PathBuf,
}

/// Arguments of `lab logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The node (its name, e.g. node-1, or its MAC).
    pub node: String,
    #[command(flatten)]
    pub lab: LabDirArgs,
}

/// Arguments of `lab up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// The built image to serve (OUT/NAME/VERSION, with manifest.json).
    #[arg(long, value_name = "DIR")]
    pub image: PathBuf,
    /// The trust file that verifies the image's manifest.
    #[arg(long, value_name = "TRUST")]
    pub trust: PathBuf,
    /// Number of nodes.
    #[arg(long, default_value_t = 2)]
    pub nodes: u8,
    /// Node firmware: uefi, bios, or mixed (alternating, UEFI first).
    #[arg(long, value_enum, default_value_t = FirmwareChoice::Mixed)]
    pub firmware: FirmwareChoice,
    /// The Debian `ipxe` package whose binaries the server hands to
    /// firmware (default: the newest in MIRROR/pool/main/i/ipxe/).
    #[arg(long, value_name = "DEB")]
    pub ipxe_deb: Option<PathBuf>,
    /// The local mirror to find the ipxe package in.
    #[arg(long, value_name = "DIR")]
    pub mirror: Option<PathBuf>,
    /// Memory per node, MiB (a stateless node holds its image in RAM).
    #[arg(long, default_value_t = 1024)]
    pub memory: u32,
    /// Wait until every node reaches this state (see `ironrack nodes`).
    #[arg(long, default_value = "running")]
    pub until: String,
    /// Give up waiting after this many seconds (the lab stays up).
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
    #[command(flatten)]
    pub lab: LabDirArgs,
}

/// Node firmware selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FirmwareChoice {
    /// Every node UEFI (OVMF + swtpm).
    Uefi,
    /// Every node BIOS (SeaBIOS + iPXE ROM).
    Bios,
    /// Alternating, UEFI first.
    Mixed,
}

/// Runs a `lab` subcommand.
pub fn run(command: LabCommand) -> anyhow::Result<()> {
    match command {
        LabCommand::Up(args) => super::lab_up::up(&args),
        LabCommand::Status(args) => status(&args),
        LabCommand::Logs(args) => logs(&args),
        LabCommand::Down(args) => down(&args),
        LabCommand::Storm(args) => super::lab_storm::storm(&args),
    }
}

fn load(args: &LabDirArgs) -> anyhow::Result<LabState> {
    LabState::load(&args.dir)
        .with_context(|| format!("reading the lab in {}", args.dir.display()))?
        .with_context(|| format!("no lab is up in {}", args.dir.display()))
}

fn status(args: &LabDirArgs) -> anyhow::Result<()> {
    let state = load(args)?;
    outln!(
        "lab in {} (namespace {}, server {}), image {}",
        args.dir.display(),
        state.ns,
        state.server_addr,
        state.image.display()
    )?;
    for p in state.processes() {
        outln!(
            "  {:<20} pid {:<8} {}",
            p.what,
            p.pid,
            if p.alive() { "running" } else { "EXITED" }
        )?;
    }
    Ok(())
}

fn logs(args: &LogsArgs) -> anyhow::Result<()> {
    let state = load(&args.lab)?;
    let Some(node) = state
        .nodes
        .iter()
        .find(|n| n.name == args.node || n.mac.eq_ignore_ascii_case(&args.node))
    else {
        let names: Vec<&str> = state.nodes.iter().map(|n| n.name.as_str()).collect();
        bail!(
            "no node {} in the lab (nodes: {})",
            args.node,
            names.join(", ")
        );
    };
    let text = std::fs::read(&node.console)
        .with_context(|| format!("reading {}", node.console.display()))?;
    outln!("{}", String::from_utf8_lossy(&text).trim_end())
}

fn down(args: &LabDirArgs) -> anyhow::Result<()> {
    let Some(state) = LabState::load(&args.dir)
        .with_context(|| format!("reading the lab in {}", args.dir.display()))?
    else {
        return outln!("no lab is up in {}", args.dir.display());
    };
    let killed = state.down(&args.dir).context("taking the lab down")?;
    for what in killed {
        tracing::warn!(%what, "did not stop on SIGTERM; killed");
    }
    outln!(
        "lab down: {} processes stopped, namespace {} removed",
        state.processes().len(),
        state.ns
    )
}
