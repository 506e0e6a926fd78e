//! `ironrack`: build, boot and prove GPU nodes from sources the site controls.
//!
//! This file parses the command line, sets up logging and dispatches; every
//! decision lives in the `keys`, `builder` and `pxe` crates.

mod cmd;
mod exit;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Build signed, reproducible GPU node images from a local Debian mirror,
/// network-boot racks from them, and attest every node before it gets secrets.
#[derive(Debug, Parser)]
#[command(name = "ironrack", version, propagate_version = true)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Keys, the trust file (root keys delegating to signing keys), and
    /// verification of signed manifests.
    #[command(subcommand)]
    Keys(cmd::keys::KeysCommand),

    /// The site's local Debian-format mirror: signed, immutable snapshots
    /// that builds read (init, import, sync, list, verify).
    #[command(subcommand)]
    Mirror(cmd::mirror::MirrorCommand),

    /// Sign a file: writes FILE.minisig, which minisign and signify verify.
    Sign(cmd::sign::SignArgs),

    /// Verify a minisign signature (Ed or ED) and print its trusted comment.
    VerifySig(cmd::sign::VerifySigArgs),

    /// Serve a site: DHCP, TFTP and HTTP boot of signed images, with every
    /// boot recorded (see `ironrack serve --help` for an example site file).
    Serve(cmd::serve::ServeArgs),

    /// The inventory: nodes, their state and boot timelines.
    #[command(subcommand)]
    Nodes(cmd::nodes::NodesCommand),

    /// Resolve an image spec into its lock file (images/NAME.lock), update
    /// one package of it, or check it against the spec and the repository.
    Lock(cmd::lock::LockArgs),

    /// Build an image from its spec and lock: install the locked packages,
    /// configure them in a sandbox, normalise, write the images to
    /// OUT/NAME/VERSION/ (reusing the stage cache when nothing changed).
    #[command(long_about = cmd::build::ABOUT)]
    Build(cmd::build::BuildArgs),

    /// Re-check a built image offline: the manifest's signature through the
    /// trust file, every artifact's digest, the SBOM, the signed provenance,
    /// the UKI's Authenticode digest and PCR 11, the NVIDIA chain report.
    Verify(cmd::verify::VerifyArgs),

    /// The virtual rack on this machine: boot nodes under qemu from a built
    /// image through `ironrack serve`, watch them, take them down.
    #[command(subcommand)]
    Lab(cmd::lab::LabCommand),
    /// The node agent: init (PID 1) of the initramfs. On a running system
    /// only `--check-config FILE` works.
    Agent(cmd::agent::AgentArgs),
}

fn main() -> ExitCode {
    // The kernel starts /init with no subcommand (and may pass it stray
    // words from its command line): that is the agent, whatever follows.
    if cmd::agent::invoked_as_init() {
        return match cmd::agent::run(cmd::agent::AgentArgs { check_config: None }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => exit::report(&err),
        };
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version to stdout and usage errors to stderr.
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(exit::USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_tracing(cli.verbose);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => exit::report(&err),
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Keys(command) => cmd::keys::run(command),
        Command::Mirror(command) => cmd::mirror::run(command),
        Command::Sign(args) => cmd::sign::sign(args),
        Command::VerifySig(args) => cmd::sign::verify_sig(args),
        Command::Serve(args) => cmd::serve::run(args),
        Command::Nodes(command) => cmd::nodes::run(command),
        Command::Lock(args) => cmd::lock::run(args),
        Command::Build(args) => cmd::build::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Lab(command) => cmd::lab::run(command),
        Command::Agent(args) => cmd::agent::run(args),
    }
}

fn init_tracing(verbose: u8) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
