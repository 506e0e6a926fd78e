//! `ironrack mirror` end to end: the real binary, a signed upstream served
//! on loopback, a sync killed mid-download and resumed, and exit codes.

#![allow(clippy::print_stderr)]

mod keys_support;
#[path = "../builder/tests/mirror/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ironrack_builder::fixtures::DebBuilder;
use keys_support::ironrack;
use support::gpg::GpgKey;
use support::server::{Fault, Server};
use support::{flip_byte, require_tool, tree_digest, write_upstream};

fn stdout_id(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("snapshot "))
        .unwrap_or_else(|| panic!("no snapshot id in {text}"))
        .to_owned()
}

#[test]
fn init_import_list_verify() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ironrack(d, &["keys", "generate", "site", "--dir", "keys"]).ok();
    ironrack(d, &["keys", "generate", "other", "--dir", "keys"]).ok();
    let deb = DebBuilder::new("tool", "1.0", "amd64")
        .file("usr/bin/tool", b"#!/bin/sh\n", 0o755)
        .write_to(d)
        .unwrap();
    let deb = deb.file_name().unwrap().to_str().unwrap();
    ironrack(d, &["mirror", "init", "m", "--name", "site"]).ok();
    ironrack(d, &["mirror", "init", "m", "--name", "site"]).code(1);
    // No previous snapshot: the suite must be given.
    let run = ironrack(d, &["mirror", "import", "m", deb, "--key", "keys/site.key"]);
    assert!(run.all().contains("suite not given"), "{}", run.all());
    let run = ironrack(
        d,
        &[
            "mirror",
            "import",
            "m",
            deb,
            "--key",
            "keys/site.key",
            "--suite",
            "bookworm",
        ],
    )
    .ok();
    let id = stdout_id(&run.stdout);
    let run = ironrack(d, &["mirror", "list", "m"]).ok();
    assert!(
        run.stdout.contains(&format!("{id}  bookworm  1 packages")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("refs: site"), "{}", run.stdout);
    let run = ironrack(d, &["mirror", "verify", "m", "--pub", "keys/site.pub"]).ok();
    assert!(run.stdout.contains(&format!("{id}  OK")), "{}", run.stdout);
    ironrack(
        d,
        &["mirror", "verify", "m", "site", "--pub", "keys/other.pub"],
    )
    .code(3);

    // A damaged pool file: verification fails (exit 3) naming it.
    let pooled = d.join("m/pool/main/t/tool/tool_1.0_amd64.deb");
    let mut perms = std::fs::metadata(&pooled).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    std::fs::set_permissions(&pooled, perms).unwrap();
    flip_byte(&pooled);
    let run = ironrack(d, &["mirror", "verify", "m", "--pub", "keys/site.pub"]).code(3);
    assert!(run.stderr.contains("tool_1.0_amd64.deb"), "{}", run.stderr);
}

/// The command line of a sync from the test upstream.
fn sync_args<'a>(url: &'a str, keyring: &'a str, packages: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "mirror",
        "sync",
        "m",
        "--from",
        url,
        "--suite",
        "bookworm",
        "--suite",
        "bookworm-updates",
        "--components",
        "main,non-free-firmware",
        "--keyring",
        keyring,
        "--key",
        "keys/site.key",
        "--jobs",
        "1",
    ];
    for p in packages {
        args.extend(["--package", p]);
    }
    args
}

fn partial_len(mirror: &Path) -> u64 {
    std::fs::read_dir(mirror.join("tmp/downloads"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_killed_sync_publishes_nothing_and_the_rerun_resumes() {
    require_tool("gpg");
    require_tool("gpgv");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let upstream = d.join("upstream");
    let gpg = GpgKey::generate("archive");
    write_upstream(&upstream, &gpg);
    let server = Server::start(&upstream);
    let url = server.url();
    let keyring = gpg.keyring.display().to_string();
    ironrack(d, &["keys", "generate", "site", "--dir", "keys"]).ok();
    ironrack(d, &["mirror", "init", "m", "--name", "site"]).ok();
    let first = stdout_id(
        &ironrack(d, &sync_args(&url, &keyring, &["docs"]))
            .ok()
            .stdout,
    );
    let mirror = d.join("m");
    let published = || {
        let mut t = tree_digest(&mirror);
        t.retain(|p: &PathBuf, _| p.starts_with("snapshots") || p.starts_with("refs"));
        t
    };
    let before = published();

    // hello downloads; libfoo1 stalls after 5000 bytes; then the process is killed.
    let name = "libfoo1_1.0_amd64.deb";
    server.fault(Fault::Stall {
        suffix: name.into(),
        after: 5000,
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_ironrack"))
        .args(sync_args(&url, &keyring, &["hello", "libfoo1"]))
        .current_dir(d)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while partial_len(&mirror) < 5000 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the stalled download never started"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "sync ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    server.clear_faults();

    assert_eq!(
        published(),
        before,
        "a killed sync changed snapshots or refs"
    );
    assert_eq!(
        std::fs::read_to_string(mirror.join("refs/site"))
            .unwrap()
            .trim(),
        first
    );
    ironrack(d, &["mirror", "verify", "m", "--pub", "keys/site.pub"]).ok();
    assert_eq!(partial_len(&mirror), 5000, "the partial download is kept");

    server.clear_log();
    let run = ironrack(d, &sync_args(&url, &keyring, &["hello", "libfoo1"])).ok();
    let second = stdout_id(&run.stdout);
    assert_ne!(second, first);
    let libfoo = server.requests_for(name);
    assert_eq!(libfoo.len(), 1, "{libfoo:?}");
    assert_eq!((libfoo[0].range, libfoo[0].status), (Some(5000), 206));
    assert!(
        server.requests_for("hello_1.1_amd64.deb").is_empty(),
        "hello was re-downloaded"
    );
    assert!(
        run.stdout.contains("downloaded 1 files") && run.stdout.contains("1 already in the pool"),
        "{}",
        run.stdout
    );
    let run = ironrack(d, &["mirror", "verify", "m", "--pub", "keys/site.pub"]).ok();
    assert!(
        run.stdout
            .contains(&format!("{second}  OK  bookworm 3 packages")),
        "{}",
        run.stdout
    );
}

#[test]
fn refused_syncs_exit_with_the_verification_code() {
    require_tool("gpgv");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let upstream = d.join("upstream");
    let gpg = GpgKey::generate("archive");
    write_upstream(&upstream, &gpg);
    let server = Server::start(&upstream);
    let stranger = GpgKey::generate("stranger");
    ironrack(d, &["keys", "generate", "site", "--dir", "keys"]).ok();
    ironrack(d, &["mirror", "init", "m", "--name", "site"]).ok();
    let url = server.url();
    let keyring = stranger.keyring.display().to_string();
    let run = ironrack(d, &sync_args(&url, &keyring, &["hello"])).code(3);
    assert!(
        run.stderr.contains("dists/bookworm/InRelease"),
        "{}",
        run.stderr
    );
    // --for: a spec that cannot be read is named (exit 4: I/O).
    let run = ironrack(
        d,
        &[
            "mirror",
            "sync",
            "m",
            "--from",
            &url,
            "--suite",
            "bookworm",
            "--components",
            "main",
            "--keyring",
            &keyring,
            "--for",
            "images/x.toml",
            "--key",
            "keys/site.key",
        ],
    );
    assert_eq!(run.code, Some(4), "{}", run.all());
    assert!(run.stderr.contains("images/x.toml"), "{}", run.stderr);
}
