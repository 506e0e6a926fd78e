//! Our install against mmdebstrap's for the same packages from the same
//! local repository: every path, type, mode, owner, size, content digest
//! and link target must agree, apart from a short list of differences we
//! accept, each for a stated reason. mtimes are not compared (ours are
//! clamped to the input epoch; mmdebstrap leaves install-time ones).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use indicatif::ProgressBar;
use ironrack_builder::rootfs::install::PackageFile;
use ironrack_builder::rootfs::tree::Manifest;
use ironrack_builder::rootfs::{self, InstallOptions, Target};
use ironrack_builder::source::DebFile;
use sha2::{Digest, Sha256};

use super::support::{BASE, deb_name, real_debs, root_or_skip, run, scratch};

const EPOCH: u64 = 1_717_200_000;

/// Paths only mmdebstrap has, and why that is fine.
const ONLY_IN_MMDEBSTRAP: &[(&str, &str)] = &[
    (
        "/etc/apt/sources.list",
        "mmdebstrap records its mirror; the image has no network source",
    ),
    (
        "/etc/fstab",
        "mmdebstrap writes an UNCONFIGURED FSTAB; a netbooted node mounts from its initramfs",
    ),
    (
        "/etc/hostname",
        "copied from the build host by mmdebstrap; ours comes from the spec",
    ),
    (
        "/run/lock",
        "left by configure-time scripts; /run is a tmpfs at boot (and in our sandbox)",
    ),
    (
        "/var/lib/apt/lists/lock",
        "apt-get update's lock, run by mmdebstrap",
    ),
    (
        "/var/cache/apt/archives/lock",
        "apt-get clean's lock, run by mmdebstrap",
    ),
    (
        "/var/lib/dpkg/arch",
        "written by mmdebstrap; dpkg assumes the native architecture without it",
    ),
    (
        "/var/lib/dpkg/status-old",
        "database backup, removed for reproducibility",
    ),
    (
        "/var/lib/dpkg/diversions-old",
        "database backup, removed for reproducibility",
    ),
    (
        "/var/cache/debconf/config.dat-old",
        "debconf backup, removed for reproducibility",
    ),
    (
        "/var/cache/debconf/templates.dat-old",
        "debconf backup, removed for reproducibility",
    ),
];

/// Paths both have but with different metadata or contents, and why.
const DIFFERENT: &[(&str, &str)] = &[
    (
        "/etc/resolv.conf",
        "mmdebstrap copies the build host's; ours is empty (DHCP fills it)",
    ),
    (
        "/var/lib/apt/lists/partial",
        "apt-get update made it _apt 0700; ours is as the apt package ships it",
    ),
    (
        "/var/cache/apt/archives/partial",
        "as above, for apt-get clean",
    ),
];

/// A flat repository (`deb [trusted=yes] copy:///DIR ./`) of `debs`.
fn flat_repo(dir: &Path, debs: &[PathBuf]) {
    let mut packages = String::new();
    for deb in debs {
        let name = deb.file_name().unwrap();
        std::fs::copy(deb, dir.join(name)).unwrap();
        let bytes = std::fs::read(deb).unwrap();
        let control = DebFile::open(deb).unwrap().control().to_text();
        let _ = write!(
            packages,
            "{control}Filename: ./{}\nSize: {}\nSHA256: {}\n\n",
            name.to_string_lossy(),
            bytes.len(),
            hex::encode(Sha256::digest(&bytes))
        );
    }
    std::fs::write(dir.join("Packages"), packages).unwrap();
}

/// Path → (type, mode, owner, size and digest or link target): the
/// manifest without mtimes, and without what lives under /dev, /proc
/// and /sys (mmdebstrap leaves device nodes; ours come from devtmpfs).
fn comparable(root: &Path) -> BTreeMap<String, String> {
    let manifest = Manifest::of(&Target::open(root).unwrap()).unwrap();
    manifest
        .lines
        .iter()
        .filter(|l| {
            !["/dev/", "/proc/", "/sys/"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .map(|l| {
            let mut fields: Vec<&str> = l.split('\t').collect();
            let path = fields.remove(0).to_owned();
            fields.remove(3); // mtime
            (path, fields.join("\t"))
        })
        .collect()
}

#[test]
fn same_tree_as_mmdebstrap_for_the_same_packages() {
    if !root_or_skip("same_tree_as_mmdebstrap_for_the_same_packages") {
        return;
    }
    let debs = real_debs("required", BASE);
    let work = scratch("mmdebstrap");
    let repo = work.join("repo");
    std::fs::create_dir(&repo).unwrap();
    flat_repo(&repo, &debs);
    let names: Vec<String> = debs.iter().map(|d| deb_name(d)).collect();
    let theirs = work.join("mmdebstrap");
    run(Command::new("mmdebstrap")
        .args([
            "--variant=custom",
            "--mode=root",
            "--format=directory",
            "--quiet",
        ])
        .arg(format!("--include={}", names.join(",")))
        .arg("--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr")
        .arg("bookworm")
        .arg(&theirs)
        .arg(format!("deb [trusted=yes] copy://{} ./", repo.display()))
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string()));

    let ours = work.join("ours");
    std::fs::create_dir(&ours).unwrap();
    let target = Target::open(&ours).unwrap();
    let options = InstallOptions {
        jobs: 2,
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
    .unwrap();
    rootfs::normalize::normalize(&target, EPOCH).unwrap();

    let (a, b) = (comparable(&theirs), comparable(&ours));
    let mut unexpected = Vec::new();
    for (path, theirs) in &a {
        match b.get(path) {
            None if ONLY_IN_MMDEBSTRAP.iter().any(|(p, _)| p == path) => {}
            None => unexpected.push(format!("only in mmdebstrap: {path}\t{theirs}")),
            Some(ours) if ours == theirs => {}
            Some(_) if DIFFERENT.iter().any(|(p, _)| p == path) => {}
            Some(ours) => unexpected.push(format!("{path}: mmdebstrap {theirs} | ours {ours}")),
        }
    }
    for (path, ours) in &b {
        if !a.contains_key(path) {
            unexpected.push(format!("only in ours: {path}\t{ours}"));
        }
    }
    assert!(
        unexpected.is_empty(),
        "unexpected differences from mmdebstrap:\n{}",
        unexpected.join("\n")
    );
    // Keep the accepted list honest: say which entries no longer differ
    // (some depend on the build host, e.g. whether it has /etc/hostname).
    for (path, why) in ONLY_IN_MMDEBSTRAP {
        if !a.contains_key(*path) {
            eprintln!("note: accepted difference {path} ({why}) did not occur");
        }
    }
}
