//! Reproducibility: the same packages (the image set: systemd, sshd, ...)
//! and customisation built twice, in different
//! directories, with different TZ, LANG, umask, parallelism, wall clock and
//! a SOURCE_DATE_EPOCH in the environment (which must not matter: the
//! epoch comes from the inputs) give the same rootfs.tar, bit for bit.
//!
//! Each build runs in its own process (umask and TZ are per process): this
//! test binary re-runs itself on the ignored `child_build` test. When the
//! digests differ, the test prints which files differ (diffoscope too, when
//! installed).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;

use indicatif::ProgressBar;
use ironrack_builder::rootfs::fsimage::tar;
use ironrack_builder::rootfs::install::PackageFile;
use ironrack_builder::rootfs::tree::Manifest;
use ironrack_builder::rootfs::{self, InstallOptions, Target};

use super::support::{IMAGE, demo_customization, real_debs, root_or_skip, run, scratch};

/// The build's epoch, as a snapshot's Release date would give it.
const EPOCH: u64 = 1_717_200_000;

const WORK_ENV: &str = "IRONRACK_REPRO_WORK";
const JOBS_ENV: &str = "IRONRACK_REPRO_JOBS";
const DEBS_ENV: &str = "IRONRACK_REPRO_DEBS";

/// One build, run in a child process by [`builds_are_bit_for_bit_reproducible`].
#[test]
#[ignore = "a child of builds_are_bit_for_bit_reproducible"]
fn child_build() {
    let (Some(work), Some(jobs), Some(debs)) = (
        std::env::var_os(WORK_ENV),
        std::env::var(JOBS_ENV).ok(),
        std::env::var(DEBS_ENV).ok(),
    ) else {
        return;
    };
    let work = PathBuf::from(work);
    let debs: Vec<PathBuf> = debs.lines().map(PathBuf::from).collect();
    let root = work.join("root");
    std::fs::create_dir(&root).unwrap();
    let target = Target::open(&root).unwrap();
    let options = InstallOptions {
        jobs: jobs.parse().unwrap(),
        architecture: "amd64".into(),
        epoch: EPOCH,
        log_dir: work.clone(),
    };
    rootfs::install(
        &target,
        &PackageFile::open_all(&debs).unwrap(),
        &options,
        &ProgressBar::hidden(),
    )
    .unwrap_or_else(|e| panic!("install: {e}"));
    rootfs::customize::customize(&target, &demo_customization(&work), EPOCH, &work)
        .unwrap_or_else(|e| panic!("customize: {e}"));
    rootfs::normalize::normalize(&target, EPOCH).unwrap_or_else(|e| panic!("normalize: {e}"));
    let tar_path = work.join("rootfs.tar");
    let mut out = BufWriter::new(File::create(&tar_path).unwrap());
    let summary = tar::write(&target, &mut out, &tar_path, &ProgressBar::hidden()).unwrap();
    drop(out);
    std::fs::write(work.join("rootfs.tar.sha256"), &summary.sha256).unwrap();
    let manifest = Manifest::of(&target).unwrap();
    std::fs::write(work.join("manifest"), manifest.lines.join("\n") + "\n").unwrap();
}

fn build(
    work: &Path,
    debs: &[PathBuf],
    jobs: usize,
    umask: &str,
    env: &[(&str, &str)],
    faketime: Option<&str>,
) {
    let exe = std::env::current_exe().unwrap();
    let mut argv: Vec<String> = Vec::new();
    if let Some(offset) = faketime {
        argv.extend(["faketime".into(), "-f".into(), offset.into()]);
    }
    argv.push(exe.display().to_string());
    argv.extend(
        [
            "--exact",
            "reproducible::child_build",
            "--ignored",
            "--nocapture",
        ]
        .map(String::from),
    );
    let list: Vec<String> = debs.iter().map(|d| d.display().to_string()).collect();
    run(Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$@\""))
        .arg("sh")
        .args(&argv)
        .env(WORK_ENV, work)
        .env(JOBS_ENV, jobs.to_string())
        .env(DEBS_ENV, list.join("\n"))
        // faketime: a different clock, but stat() results left alone.
        .env("NO_FAKE_STAT", "1")
        .envs(env.iter().copied()));
}

fn has(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn builds_are_bit_for_bit_reproducible() {
    if !root_or_skip("builds_are_bit_for_bit_reproducible") {
        return;
    }
    let debs = real_debs("image", IMAGE);
    let base = scratch("reproducible");
    let first = base.join("a");
    let second = base.join("second/build/in/a/deeper/directory");
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    build(
        &first,
        &debs,
        2,
        "022",
        &[("TZ", "UTC"), ("LANG", "C.UTF-8")],
        None,
    );
    // Another zone, locale, umask, one worker, an epoch in the environment
    // that must be ignored, and (with faketime) a clock 400 days ahead.
    let faketime = has("faketime").then_some("+400d");
    build(
        &second,
        &debs,
        1,
        "077",
        &[
            ("TZ", "Pacific/Kiritimati"),
            ("LANG", "fr_FR.UTF-8"),
            ("SOURCE_DATE_EPOCH", "86400"),
        ],
        faketime,
    );
    let digest = |dir: &Path| std::fs::read_to_string(dir.join("rootfs.tar.sha256")).unwrap();
    if digest(&first) == digest(&second) {
        return;
    }
    let manifest = |dir: &Path| {
        let lines: Vec<String> = std::fs::read_to_string(dir.join("manifest"))
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        Manifest {
            lines,
            digest: String::new(),
        }
    };
    let (a, b) = (manifest(&first), manifest(&second));
    let mut report: Vec<String> = a
        .diff(&b)
        .into_iter()
        .map(|(x, y)| {
            format!(
                "- {}\n+ {}",
                x.unwrap_or("(absent)"),
                y.unwrap_or("(absent)")
            )
        })
        .collect();
    if has("diffoscope") {
        let out = Command::new("diffoscope")
            .arg(first.join("rootfs.tar"))
            .arg(second.join("rootfs.tar"))
            .output()
            .unwrap();
        report.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    panic!(
        "rootfs.tar differs between the two builds ({} vs {}); differing entries:\n{}",
        digest(&first),
        digest(&second),
        report.join("\n")
    );
}
