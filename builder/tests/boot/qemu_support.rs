//! Running qemu (TCG) for a boot test until the guest powers off, with
//! its serial console in a file. Shared by the builder's boot tests and
//! the root package's agent boot test (included there by `#[path]`).

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a boot may take under TCG on a loaded CI machine.
pub const PATIENCE: Duration = Duration::from_secs(240);

#[allow(unused_imports)]
pub use ironrack_pxe::testkit::qemu::Reaped;

/// Runs qemu until it powers off (or PATIENCE runs out); returns the serial
/// log, also kept under the target directory for whoever debugs the next
/// failure.
pub fn run_qemu(name: &str, args: &[String], log: &Path) -> String {
    let started = Instant::now();
    let mut args = args.to_vec();
    args.extend(["-nic".to_owned(), "none".to_owned()]);
    let text = ironrack_pxe::testkit::qemu::run_to_poweroff(&args, log, PATIENCE)
        .unwrap_or_else(|e| panic!("{e}"));
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("qemu-{name}.log"));
    let _ = std::fs::write(keep, &text);
    let _ = writeln!(
        std::io::stderr().lock(),
        "boot took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    text
}

/// The rest of every serial line starting with `marker`, trimmed.
pub fn marker_lines<'a>(log: &'a str, marker: &str) -> Vec<&'a str> {
    log.lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix(marker))
        .map(str::trim)
        .collect()
}
