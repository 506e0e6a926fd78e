//! A standalone TFTP server over one directory, for benchmarks and manual
//! tests until `ironrack serve` exists.
//!
//! ```text
//! tftpd [--threads N] ROOT [LISTEN] [key=value ...]
//! ```
//! `--threads N` runs N worker threads (default: four per CPU); 0 runs the
//! whole server on one thread. TFTP work is almost all kernel time in
//! `sendto`/`recvfrom` (measured: ~90% system time in a 200-client storm),
//! so workers are cheap; more of them than CPUs keep a burst of ready
//! transfers moving when the host is busy with other work, much as a
//! forking server's one process per transfer does. Idle workers sleep.
//! `key=value` pairs are `[tftp]` settings in site.toml syntax, e.g.
//! `per-client-sessions=256`. RUST_LOG sets the log level (default warn).
//! Stops on SIGINT or SIGTERM, after transfers in flight end.

#![allow(clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use ironrack_pxe::net::tftp::{DirSource, NoEvents, TftpConfig, TftpServer};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tftpd: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: tftpd [--threads N] ROOT [LISTEN] [key=value ...]";
    let mut args = std::env::args().skip(1).peekable();
    let mut threads = 4 * std::thread::available_parallelism().map_or(1, usize::from);
    if args.peek().map(String::as_str) == Some("--threads") {
        args.next();
        threads = args.next().ok_or(usage)?.parse()?;
    }
    let root = PathBuf::from(args.next().ok_or(usage)?);
    let mut table = format!("root = {:?}\n", root.display().to_string());
    for arg in args {
        match arg.split_once('=') {
            Some((key, value)) => table.push_str(&format!("{key} = {value}\n")),
            None => table.push_str(&format!("listen = {arg:?}\n")),
        }
    }
    let config: TftpConfig = toml::from_str(&table)?;
    let files = DirSource::open(&config.root)?;
    let runtime = if threads == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(async {
        let server = TftpServer::bind(config, Arc::new(files), Arc::new(NoEvents)).await?;
        eprintln!(
            "tftpd: serving {} on {}",
            root.display(),
            server.local_addr()
        );
        server.run(shutdown()).await?;
        Ok(())
    })
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
