//! Benchmark: read and parse a full Packages index, then resolve a closure.
//!
//! `cargo bench -p ironrack-builder --bench resolve -- INDEX RUNS [base=required] NAME...`,
//! or via `scripts/bench-resolve.sh`, which times `apt-get -s install` on
//! the same index beside it. Prints the median and best of RUNS runs of
//! each step and the closure's size; asserts nothing.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ironrack_builder::source::catalog::Catalog;
use ironrack_builder::source::resolve::{BaseSet, Request, resolve};

/// CPU time of this process (user + system, all threads), in clock ticks
/// of 10 ms: a loaded machine shows in wall time, not here.
fn process_cpu() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        });
    ticks.map_or(Duration::ZERO, |t| Duration::from_millis(t * 10))
}

struct Timing {
    median: Duration,
    best: Duration,
    cpu: Duration,
}

impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "wall median {:>9.1?}  best {:>9.1?}  cpu median {:>9.1?}",
            self.median, self.best, self.cpu
        )
    }
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Timing, T) {
    let mut wall = Vec::with_capacity(runs);
    let mut cpu = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs.max(1) {
        let (start, start_cpu) = (Instant::now(), process_cpu());
        let out = f();
        wall.push(start.elapsed());
        cpu.push(process_cpu().saturating_sub(start_cpu));
        last = Some(out);
    }
    wall.sort();
    cpu.sort();
    let out = last.unwrap_or_else(|| unreachable!("at least one run"));
    let timing = Timing {
        median: wall[wall.len() / 2],
        best: wall[0],
        cpu: cpu[cpu.len() / 2],
    };
    (timing, out)
}

fn main() -> ExitCode {
    // `cargo bench` passes --bench; skip flags.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (Some(index), Some(runs)) = (args.first(), args.get(1).and_then(|r| r.parse().ok())) else {
        eprintln!("usage: resolve INDEX RUNS [base=required] NAME...");
        return ExitCode::from(2);
    };
    let index = PathBuf::from(index);
    let mut request = Request::new("amd64");
    for arg in &args[2..] {
        match arg.as_str() {
            "base=required" => request.base = BaseSet::Required,
            "base=essential" => request.base = BaseSet::Essential,
            name => request = request.with(name, None),
        }
    }
    let (parse, catalog) = time(runs, || {
        let mut c = Catalog::new();
        c.read_packages_file(&index).map(|_| c)
    });
    let catalog = match catalog {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let (resolving, resolution) = time(runs, || resolve(&catalog, &request));
    let resolution = match resolution {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let (total, _) = time(runs, || {
        let mut c = Catalog::new();
        c.read_packages_file(&index)
            .ok()
            .map(|_| resolve(&c, &request).map(|r| r.packages.len()))
    });
    println!(
        "{} packages in the index; closure: {} packages",
        catalog.packages().len(),
        resolution.packages.len()
    );
    println!("read + parse index   {parse}");
    println!("resolve              {resolving}");
    println!("both, end to end     {total}");
    ExitCode::SUCCESS
}
