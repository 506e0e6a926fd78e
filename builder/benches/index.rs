//! Benchmark: parse a full Packages index (bookworm main: ~63k packages).
//!
//! `cargo bench -p ironrack-builder --bench index -- PATH [RUNS]`, or via
//! `scripts/bench-index.sh`, which finds the index and times apt beside it.
//! Prints the median and best of RUNS runs for each step; asserts nothing.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ironrack_builder::source::catalog::Catalog;
use ironrack_builder::source::index::{parse_packages, parse_packages_parallel, read_index_text};
use ironrack_builder::source::names::Interner;

/// CPU time of the whole process (all threads; user + system), so a busy
/// machine shows in wall time but not here. Resolution: one clock tick.
fn process_cpu() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are
            // the 14th and 15th fields of the line.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        });
    // USER_HZ is 100 on Linux for every architecture we build for.
    ticks.map_or(Duration::ZERO, |t| Duration::from_millis(t * 10))
}

struct Timing {
    wall_median: Duration,
    wall_best: Duration,
    cpu_median: Duration,
}

impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "wall median {:>9.1?}  best {:>9.1?}  cpu median {:>9.1?}",
            self.wall_median, self.wall_best, self.cpu_median
        )
    }
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Timing, T) {
    let mut wall = Vec::with_capacity(runs);
    let mut cpu = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let (start, start_cpu) = (Instant::now(), process_cpu());
        let out = f();
        wall.push(start.elapsed());
        cpu.push(process_cpu().saturating_sub(start_cpu));
        last = Some(out);
    }
    wall.sort();
    cpu.sort();
    let timing = Timing {
        wall_median: wall[runs / 2],
        wall_best: wall[0],
        cpu_median: cpu[runs / 2],
    };
    (timing, last.expect("runs > 0"))
}

fn main() -> ExitCode {
    // cargo bench passes `--bench`; skip flags.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let Some(path) = args.first().map(PathBuf::from) else {
        eprintln!("usage: index PACKAGES-FILE [RUNS]   (see scripts/bench-index.sh)");
        return ExitCode::from(2);
    };
    let runs: usize = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(7).max(1);
    let (t, text) = time(runs, || read_index_text(&path));
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mb = text.len() as f64 / 1e6;
    println!("index: {} ({mb:.1} MB of text)", path.display());
    println!("(cpu = all threads of the process, 10 ms resolution)");
    println!("read+decompress   {t}");
    let (t, parsed) = time(runs, || {
        let mut names = Interner::new();
        parse_packages(&text, "bench", &mut names).map(|p| (p, names))
    });
    let (packages, names) = match parsed {
        Ok((packages, names)) => (packages.len(), names.len()),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let rate = mb / t.cpu_median.as_secs_f64();
    println!("parse             {t}  ({rate:.0} MB/s of CPU)");
    println!("                  {packages} packages, {names} distinct names");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let (t, _) = time(runs, || {
        let mut names = Interner::new();
        parse_packages_parallel(&text, "bench", &mut names, threads).map(|p| (p, names))
    });
    println!("parse, {threads} threads  {t}");
    let (t, _) = time(runs, || {
        let mut catalog = Catalog::new();
        catalog.add_packages_text(&text, "bench").map(|_| catalog)
    });
    println!("parse+catalog     {t}");
    let (t, _) = time(runs, || {
        let mut catalog = Catalog::new();
        catalog.read_packages_file(&path).map(|_| catalog)
    });
    println!("file->catalog     {t}");
    println!("(freeing what a run built is not timed)");
    ExitCode::SUCCESS
}
