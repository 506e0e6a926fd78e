//! A real sync from the host apt's Debian repositories (deb.debian.org,
//! verified with the host's keyrings), adding the components the demo
//! needs; the pooled .debs are read by dpkg-deb and the snapshot by apt.
//! Skipped loudly when the host has no Debian http source or cannot reach
//! it.

#![allow(clippy::print_stderr)]

mod keys_support;
#[path = "../builder/tests/mirror/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::Instant;

use keys_support::{debian_reachable, ironrack};
use support::apt::Apt;

#[test]
fn sync_from_the_host_apt() {
    if !debian_reachable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ironrack(d, &["keys", "generate", "host", "--dir", "keys"]).ok();
    ironrack(d, &["mirror", "init", "m", "--name", "host"]).ok();
    let started = Instant::now();
    let run = ironrack(
        d,
        &[
            "mirror",
            "sync",
            "m",
            "--from-host-apt",
            "--add-components",
            "non-free,non-free-firmware,contrib",
            "--package",
            "busybox-static",
            "--package",
            "firmware-nvidia-gsp=535.261.03-1",
            "--key",
            "keys/host.key",
        ],
    )
    .ok();
    eprintln!(
        "host apt sync: {:.1} s\n{}",
        started.elapsed().as_secs_f64(),
        run.stdout
    );
    let id = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("snapshot "))
        .unwrap()
        .to_owned();

    // dpkg-deb reads every pooled file, and they are what was asked for.
    let mut found = Vec::new();
    let mut stack = vec![d.join("m/pool")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let out = Command::new("dpkg-deb")
                    .arg("--info")
                    .arg(&p)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "dpkg-deb --info {}", p.display());
                let fields = Command::new("dpkg-deb")
                    .args(["-f"])
                    .arg(&p)
                    .args(["Package", "Version"])
                    .output()
                    .unwrap();
                found.push(String::from_utf8(fields.stdout).unwrap().replace('\n', " "));
            }
        }
    }
    found.sort();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].starts_with("Package: busybox-static "),
        "{found:?}"
    );
    assert_eq!(
        found[1].trim(),
        "Package: firmware-nvidia-gsp Version: 535.261.03-1"
    );

    // The snapshot verifies, and apt reads it.
    ironrack(d, &["mirror", "verify", "m", "--pub", "keys/host.pub"]).ok();
    let line = format!(
        "deb [trusted=yes] file:{} bookworm main non-free-firmware",
        d.join("m/snapshots").join(&id).display()
    );
    let apt = Apt::new(&d.join("apt"), &line);
    let files = apt.update_and_download(&["busybox-static", "firmware-nvidia-gsp"]);
    assert_eq!(files.len(), 2, "{files:?}");
    let policy = apt.run("apt-cache", &["policy", "firmware-nvidia-gsp"]);
    assert!(policy.contains("Candidate: 535.261.03-1"), "{policy}");
}
