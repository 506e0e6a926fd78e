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

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, Duration, T) {
    let mut wall = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let out = f();
        wall.push(start.elapsed());
        last = Some(out);
    }
    wall.sort();
    let out = last.unwrap_or_else(|| unreachable!("at least one run"));
    (wall[wall.len() / 2], wall[0], out)
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
    let (parse_median, parse_best, catalog) = time(runs, || {
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
    let (resolve_median, resolve_best, resolution) = time(runs, || resolve(&catalog, &request));
    let resolution = match resolution {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let (total_median, total_best, _) = time(runs, || {
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
    println!("read + parse index   median {parse_median:>9.1?}  best {parse_best:>9.1?}");
    println!("resolve              median {resolve_median:>9.1?}  best {resolve_best:>9.1?}");
    println!("both, end to end     median {total_median:>9.1?}  best {total_best:>9.1?}");
    ExitCode::SUCCESS
}
