//! Benchmark: one `pipeline::build` of the .debs in a directory (what
//! `ironrack build` does after reading the spec and lock), cold or warm.
//!
//! `cargo bench -p ironrack-builder --bench build -- DEBS_DIR WORK_DIR cold|warm [JOBS]`
//! - cold: empty cache, so every stage runs (verify, unpack, configure,
//!   normalise, tar, publish);
//! - warm: the same inputs under a new version, after a cold build in the
//!   same WORK_DIR: published from the stage cache.
//!
//! Prints one line of JSON (wall seconds and the stages). Used by
//! `scripts/bench-build.sh`, which races mmdebstrap on the same packages.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use ironrack_builder::pipeline::{
    self, BuildOptions, DirectorySource, ImageFormat, Plan, PlannedPackage, Progress,
};
use ironrack_builder::rootfs::customize::Customization;
use sha2::{Digest, Sha256};

/// The epoch of the benchmark's "snapshot".
const EPOCH: u64 = 1_717_200_000;

fn plan(debs: &Path, version: u64) -> std::io::Result<Plan> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(debs)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "deb"));
    files.sort();
    let mut packages = Vec::new();
    for path in files {
        let bytes = std::fs::read(&path)?;
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut parts = name.trim_end_matches(".deb").split('_');
        packages.push(PlannedPackage {
            name: parts.next().unwrap_or("").into(),
            version: parts.next().unwrap_or("").replace("%3a", ":"),
            architecture: parts.next().unwrap_or("").into(),
            filename: name.clone(),
            sha256: hex::encode(Sha256::digest(&bytes)),
            size: bytes.len() as u64,
        });
    }
    Ok(Plan {
        name: "bench".into(),
        version,
        architecture: "amd64".into(),
        epoch: EPOCH,
        snapshot: "0".repeat(64),
        spec_sha256: "0".repeat(64),
        lock_sha256: "0".repeat(64),
        packages,
        customization: Customization::default(),
        formats: vec![ImageFormat::Tar],
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [debs, work, mode, rest @ ..] = args.as_slice() else {
        eprintln!("usage: bench build DEBS_DIR WORK_DIR cold|warm [JOBS]");
        return ExitCode::from(2);
    };
    let jobs = rest
        .first()
        .and_then(|j| j.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
    let work = PathBuf::from(work);
    let version = match mode.as_str() {
        "cold" => 1,
        "warm" => 2,
        other => {
            eprintln!("mode must be cold or warm, not {other}");
            return ExitCode::from(2);
        }
    };
    let plan = match plan(Path::new(debs), version) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("reading {debs}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = BuildOptions {
        out_dir: work.join("out"),
        cache_dir: work.join("out/.cache"),
        jobs,
    };
    let started = Instant::now();
    match pipeline::build(
        &plan,
        &DirectorySource(PathBuf::from(debs)),
        &options,
        &Progress::hidden(),
    ) {
        Ok(report) => {
            let stages: Vec<String> = report
                .stages
                .iter()
                .map(|s| {
                    format!(
                        "\"{}\": {:.3}",
                        s.stage,
                        if s.cached { 0.0 } else { s.seconds }
                    )
                })
                .collect();
            println!(
                "{{\"mode\": \"{mode}\", \"wall\": {:.3}, \"packages\": {}, \"from_cache\": {}, \"stages\": {{{}}}}}",
                started.elapsed().as_secs_f64(),
                report.packages.len(),
                report.from_cache,
                stages.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("build failed: {e}");
            ExitCode::FAILURE
        }
    }
}
