//! Benchmark: write a SquashFS (or, with LEVEL `erofs`, an uncompressed
//! EROFS) image of a directory tree.
//!
//! `cargo bench -p ironrack-builder --bench squashfs -- ROOT OUT LEVEL THREADS [RUNS]`,
//! or via `scripts/bench-fsimage.sh`, which times mksquashfs beside it.
//! Prints one line per run (wall seconds, image bytes, sha256); asserts nothing.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use ironrack_builder::rootfs::fsimage::{erofs, squashfs};
use squashfs::{Compression, Options, write_dir};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [root, out, level, threads, rest @ ..] = args.as_slice() else {
        eprintln!("usage: squashfs ROOT OUT LEVEL THREADS [RUNS]");
        return ExitCode::FAILURE;
    };
    let erofs = level == "erofs";
    let level = if erofs { "1" } else { level.as_str() };
    let (Ok(level), Ok(threads)) = (level.parse(), threads.parse()) else {
        eprintln!("LEVEL and THREADS are numbers");
        return ExitCode::FAILURE;
    };
    let runs: usize = rest.first().and_then(|r| r.parse().ok()).unwrap_or(3);
    // The tests' epoch: every mtime of a fresh tree is clamped to it.
    let options = Options {
        compression: Compression::Zstd { level },
        threads,
        ..Options::new(1_700_000_000)
    };
    for _ in 0..runs {
        let start = Instant::now();
        let (root, out) = (PathBuf::from(root), PathBuf::from(out));
        let written = if erofs {
            erofs::write_dir(&root, &out, &erofs::Options::new(1_700_000_000), &|_| {})
        } else {
            write_dir(&root, &out, &options, &|_| {})
        };
        match written {
            Ok(s) => println!(
                "{:.3} s {} bytes sha256 {} inodes {} dedup {}",
                start.elapsed().as_secs_f64(),
                s.bytes_out,
                s.sha256_hex(),
                s.inodes,
                s.deduplicated
            ),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
