//! Generated repositories against the real apt, with a private
//! configuration (nothing of the host's apt state is read or written), and
//! against our own index parsers.

use std::path::{Path, PathBuf};
use std::process::Command;

use ironrack_builder::fixtures::{DebBuilder, RepoBuilder};
use ironrack_builder::source::catalog::Catalog;
use ironrack_builder::source::compress::Compression;
use ironrack_builder::source::release::Release;
use sha2::{Digest, Sha256};

use crate::util::{read, require_tool, run, stdout};

fn repo() -> RepoBuilder {
    RepoBuilder::new("testing")
        .add(
            "main",
            DebBuilder::new("base-a", "1.0", "amd64")
                .field("Essential", "yes")
                .field("Priority", "required")
                .file("usr/share/base-a/marker", b"a\n", 0o644),
        )
        .add(
            "main",
            DebBuilder::new("app", "2.0-1", "amd64")
                .field("Depends", "libfoo1 (>= 1.1), awk")
                .field("Pre-Depends", "base-a")
                .field("Recommends", "data-all")
                .file("usr/bin/app", b"#!/bin/sh\n", 0o755),
        )
        .add(
            "main",
            DebBuilder::new("libfoo1", "1.0", "amd64").field("Multi-Arch", "same"),
        )
        .add(
            "main",
            DebBuilder::new("libfoo1", "1.2", "amd64")
                .field("Multi-Arch", "same")
                .compression(Compression::Gzip, Compression::Zstd),
        )
        .add(
            "main",
            DebBuilder::new("mawk", "1.3.4-1", "amd64").field("Provides", "awk"),
        )
        .add("main", DebBuilder::new("data-all", "1:0.1", "all"))
        .add(
            "contrib",
            DebBuilder::new("tool-contrib", "0.9~rc1", "amd64"),
        )
}

/// A private apt: its own config, sources, state and cache under `dir`.
struct Apt {
    dir: PathBuf,
}

impl Apt {
    fn new(dir: &Path, repo_root: &Path) -> Self {
        for sub in [
            "conf.d",
            "sources.d",
            "prefs.d",
            "state/lists/partial",
            "cache/archives/partial",
        ] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("status"), "").unwrap();
        std::fs::write(
            dir.join("sources.list"),
            format!(
                "deb [trusted=yes] file:{} testing main contrib\n",
                repo_root.display()
            ),
        )
        .unwrap();
        let d = dir.display();
        let config = format!(
            "Dir::Etc::Parts \"{d}/conf.d\";\n\
             Dir::Etc::SourceList \"{d}/sources.list\";\n\
             Dir::Etc::SourceParts \"{d}/sources.d\";\n\
             Dir::Etc::Preferences \"{d}/preferences\";\n\
             Dir::Etc::PreferencesParts \"{d}/prefs.d\";\n\
             Dir::State \"{d}/state\";\n\
             Dir::State::status \"{d}/status\";\n\
             Dir::Cache \"{d}/cache\";\n\
             Debug::NoLocking \"true\";\n\
             APT::Architecture \"amd64\";\n\
             APT::Architectures {{ \"amd64\"; }};\n\
             APT::Sandbox::User \"root\";\n\
             Acquire::Languages \"none\";\n"
        );
        std::fs::write(dir.join("apt.conf"), config).unwrap();
        Self {
            dir: dir.to_owned(),
        }
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("APT_CONFIG", self.dir.join("apt.conf"))
            .env("LC_ALL", "C");
        c
    }
}

#[test]
fn apt_reads_generated_repository() {
    require_tool("apt-get");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let written = repo().write(&root).unwrap();
    let apt = Apt::new(&dir.path().join("apt"), &root);

    let update = stdout(apt.cmd("apt-get").arg("update"));
    assert!(!update.contains("Err:"), "apt-get update:\n{update}");

    let show = stdout(apt.cmd("apt-cache").args(["show", "app"]));
    assert!(show.contains("\nVersion: 2.0-1\n"), "{show}");
    assert!(
        show.contains("\nFilename: pool/main/a/app/app_2.0-1_amd64.deb\n"),
        "{show}"
    );
    let app_deb = &written
        .debs
        .iter()
        .find(|(rel, _)| rel.ends_with("app_2.0-1_amd64.deb"))
        .unwrap()
        .1;
    let sha = hex::encode(Sha256::digest(read(app_deb)));
    assert!(show.contains(&format!("\nSHA256: {sha}\n")), "{show}");

    let policy =
        stdout(
            apt.cmd("apt-cache")
                .args(["policy", "libfoo1", "tool-contrib", "data-all"]),
        );
    assert!(policy.contains("Candidate: 1.2\n"), "{policy}");
    assert!(policy.contains("Candidate: 0.9~rc1\n"), "{policy}");
    assert!(policy.contains("Candidate: 1:0.1\n"), "{policy}");

    // apt resolves the closure from our indexes like from Debian's.
    let sim = stdout(
        apt.cmd("apt-get")
            .args(["-s", "--no-install-recommends", "install", "app"]),
    );
    let mut installed: Vec<&str> = sim
        .lines()
        .filter_map(|l| l.strip_prefix("Inst "))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    installed.sort_unstable();
    assert_eq!(installed, ["app", "base-a", "libfoo1", "mawk"], "{sim}");

    // apt fetches a .deb through its file method, checking size and SHA256
    // against our Packages index.
    let out = dir.path().join("download");
    std::fs::create_dir(&out).unwrap();
    run(apt
        .cmd("apt-get")
        .current_dir(&out)
        .args(["download", "libfoo1=1.2"]));
    assert_eq!(
        read(&out.join("libfoo1_1.2_amd64.deb")),
        read(&root.join("pool/main/libf/libfoo1/libfoo1_1.2_amd64.deb"))
    );
}

#[test]
fn our_parsers_read_generated_repository() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    repo().write(root).unwrap();
    let dists = root.join("dists/testing");
    let release_text = String::from_utf8(read(&dists.join("Release"))).unwrap();
    let release = Release::parse(&release_text, "Release").unwrap();
    assert_eq!(release.components, ["contrib", "main"]);
    assert_eq!(release.date_unix, Some(1_686_355_200));
    assert_eq!(release.sha256.len(), 6);
    for f in &release.sha256 {
        let bytes = read(&dists.join(&f.path));
        assert_eq!(
            (bytes.len() as u64, Sha256::digest(&bytes).as_slice()),
            (f.size, &f.sha256[..]),
            "{}",
            f.path
        );
    }

    let plain = {
        let mut c = Catalog::new();
        c.read_packages_file(&dists.join("main/binary-amd64/Packages"))
            .unwrap();
        c
    };
    let mut xz = Catalog::new();
    xz.read_packages_file(&dists.join("main/binary-amd64/Packages.xz"))
        .unwrap();
    xz.read_packages_file(&dists.join("contrib/binary-amd64/Packages.gz"))
        .unwrap();
    assert_eq!(plain.packages(), &xz.packages()[..plain.packages().len()]);
    assert_eq!(xz.packages().len(), 7);
    let libfoo = xz.lookup("libfoo1");
    assert_eq!(xz.package(libfoo[0]).version.as_str(), "1.2");
    let awk = xz.names().get("awk").unwrap();
    assert_eq!(xz.providers(awk).len(), 1);
    for p in xz.packages() {
        let bytes = read(&root.join(p.filename()));
        assert_eq!(p.size, bytes.len() as u64);
        assert_eq!(p.sha256.unwrap()[..], Sha256::digest(&bytes)[..]);
    }
}
