//! Running qemu (TCG) for a boot test until the guest powers off, with
//! its serial console in a file. Shared by the builder's boot tests and
//! the root package's agent boot test (included there by `#[path]`).

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a boot may take under TCG on a loaded CI machine.
pub const PATIENCE: Duration = Duration::from_secs(240);

/// A child process killed (by its own PID) when dropped.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs qemu until it powers off (or PATIENCE runs out); returns the serial log.
pub fn run_qemu(name: &str, args: &[String], log: &Path) -> String {
    let started = Instant::now();
    let mut qemu = Reaped(
        Command::new("qemu-system-x86_64")
            .args(args)
            .arg("-serial")
            .arg(format!("file:{}", log.display()))
            .args([
                "-display",
                "none",
                "-monitor",
                "none",
                "-no-reboot",
                "-nic",
                "none",
            ])
            .args(["-accel", "tcg", "-m", "1024"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("qemu-system-x86_64"),
    );
    loop {
        if let Some(status) = qemu.0.try_wait().unwrap() {
            assert!(status.success(), "qemu exited with {status}");
            break;
        }
        if started.elapsed() > PATIENCE {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            panic!("qemu still running after {PATIENCE:?}; serial log:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = std::fs::read_to_string(log).unwrap();
    // Kept for whoever debugs the next failure.
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
