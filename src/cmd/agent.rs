//! `ironrack agent`: the initramfs's init (PID 1). On a running system it
//! only checks an agent configuration (`--check-config FILE`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use ironrack_pxe::agent::init;

/// Arguments of `ironrack agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Parse an agent configuration (etc/ironrack/agent.json of an
    /// initramfs) as the agent would, unknown keys refused, and print it.
    /// Works on any system.
    #[arg(long, value_name = "FILE")]
    pub check_config: Option<PathBuf>,
}

/// The agent's version, printed on the node's console.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Whether this process is the initramfs's init: the kernel starts
/// `/init` with argv[0] "/init" and no subcommand.
pub fn invoked_as_init() -> bool {
    std::env::args_os()
        .next()
        .is_some_and(|arg0| arg0 == "/init")
}

/// Runs `ironrack agent`.
pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    if let Some(path) = args.check_config {
        let config = init::read_config(&path)
            .with_context(|| format!("checking agent configuration {}", path.display()))?;
        let text = String::from_utf8(config.to_bytes()).context("configuration as text")?;
        super::outln!("{}", text.trim_end())?;
        return Ok(());
    }
    if std::process::id() != 1 {
        bail!(
            "`ironrack agent` is the initramfs's init and runs only as PID 1 on a booting node; \
             it is not a command for a running system (use `ironrack agent --check-config FILE` \
             to check an agent.json)"
        );
    }
    init::run_as_pid1(VERSION)
}
