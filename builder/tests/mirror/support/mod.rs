//! Shared by the mirror tests: upstream repositories made by the fixture
//! generator and signed by a throwaway gpg key, the test HTTP server,
//! a private apt, and tree digests to prove a snapshot was left intact.

#![allow(dead_code)]

pub mod apt;
pub mod gpg;
pub mod server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ironrack_builder::fixtures::{DebBuilder, RepoBuilder};
use ironrack_keys::SecretKey;
use sha2::{Digest, Sha256};

use gpg::GpgKey;

/// Fails loudly if a required tool is missing (scripts/deps.sh installs it).
pub fn require_tool(name: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(found, "{name} is not installed: run scripts/deps.sh");
}

/// A fresh mirror signing key.
pub fn signer() -> SecretKey {
    SecretKey::generate().unwrap()
}

/// The packages of the test upstream: `bookworm` has hello 1.0, libfoo1,
/// an `all` package and, in non-free-firmware, fw 1.0; `bookworm-updates`
/// has hello 1.1 and fw 2.0.
pub fn write_upstream(root: &Path, key: &GpgKey) {
    let hello = |v: &str| {
        DebBuilder::new("hello", v, "amd64")
            .field("Depends", "libfoo1")
            .file(
                "usr/bin/hello",
                format!("#!/bin/sh\necho hello {v}\n").as_bytes(),
                0o755,
            )
    };
    let fw = |v: &str| {
        DebBuilder::new("fw", v, "all").file(
            &format!("usr/lib/firmware/fw/{v}/fw.bin"),
            &[0xAB; 4096],
            0o644,
        )
    };
    RepoBuilder::new("bookworm")
        .date("Sat, 10 Jun 2023 08:00:00 UTC")
        .add("main", hello("1.0"))
        .add(
            "main",
            DebBuilder::new("libfoo1", "1.0", "amd64").file(
                "usr/lib/libfoo.so.1",
                &noise(40_000),
                0o644,
            ),
        )
        .add(
            "main",
            DebBuilder::new("docs", "1:0.1", "all").file(
                "usr/share/doc/docs/README",
                b"docs\n",
                0o644,
            ),
        )
        .add("non-free-firmware", fw("1.0"))
        .add(
            "main",
            DebBuilder::new("linux-image-6.1.0-1-test", "6.1.1-1", "amd64").file(
                "boot/vmlinuz-6.1.0-1-test",
                b"kernel",
                0o644,
            ),
        )
        .write(root)
        .unwrap();
    RepoBuilder::new("bookworm-updates")
        .date("Mon, 12 Jun 2023 09:30:00 UTC")
        .add("main", hello("1.1"))
        .add("non-free-firmware", fw("2.0"))
        .write(root)
        .unwrap();
    for suite in ["bookworm", "bookworm-updates"] {
        sign_suite(root, suite, key);
    }
}

/// Incompressible bytes (a fixed LCG stream), so a .deb has some size.
pub fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 56) as u8
        })
        .collect()
}

/// Signs `dists/SUITE/Release` as InRelease and Release.gpg.
pub fn sign_suite(root: &Path, suite: &str, key: &GpgKey) {
    let dir = root.join("dists").join(suite);
    key.clearsign(&dir.join("Release"), &dir.join("InRelease"));
    key.detach_sign(&dir.join("Release"), &dir.join("Release.gpg"));
}

/// Every file and symlink under `dir` with its digest (or link target):
/// equal maps mean a byte-identical tree.
pub fn tree_digest(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(dir).unwrap().to_owned();
            if meta.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("-> {}", std::fs::read_link(&path).unwrap().display()),
                );
            } else if meta.is_dir() {
                stack.push(path);
            } else {
                out.insert(
                    rel,
                    hex::encode(Sha256::digest(std::fs::read(&path).unwrap())),
                );
            }
        }
    }
    out
}

/// Flips one byte in the middle of a file (keeping its size).
pub fn flip_byte(path: &Path) {
    let mut data = std::fs::read(path).unwrap();
    let i = data.len() / 2;
    data[i] ^= 0x55;
    std::fs::write(path, data).unwrap();
}
