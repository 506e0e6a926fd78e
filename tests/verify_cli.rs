//! `ironrack verify` end to end: a release written by the builder's
//! release writer, a trust file made with `ironrack keys trust`, the real
//! binary's report and exit codes (0 verified, 3 failed).

use std::path::Path;
use std::process::{Command, Output};

use ironrack_builder::boot::pe_fixture::PeFixture;
use ironrack_builder::release::provenance::BuildInputs;
use ironrack_builder::release::{BuildRecord, ImagePayload, ReleaseInput, write_release};
use ironrack_keys::{SecretKey, Timestamp};

fn ironrack(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ironrack"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn verify_reports_and_exits_by_outcome() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for k in ["root", "ci"] {
        ok(ironrack(d, &["keys", "generate", k, "--dir", "keys"]));
    }
    ok(ironrack(
        d,
        &[
            "keys",
            "trust",
            "init",
            "--root",
            "keys/root.key",
            "--threshold",
            "1",
            "--expires",
            "30d",
            "-o",
            "trust.json",
        ],
    ));
    ok(ironrack(
        d,
        &[
            "keys",
            "trust",
            "add-signer",
            "trust.json",
            "--pub",
            "keys/ci.pub",
            "--name",
            "ci",
            "--scope",
            "image:gpu-node",
            "--scope",
            "channel:stable",
            "--expires",
            "30d",
            "--root",
            "keys/root.key",
        ],
    ));
    let release = d.join("out/gpu-node/1");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::write(release.join("rootfs.squashfs"), b"image bytes").unwrap();
    std::fs::write(
        release.join("node.efi"),
        PeFixture::uki_like(b"k", b"i", "console=ttyS0").build(),
    )
    .unwrap();
    let key = SecretKey::load(&d.join("keys/ci.key"), None).unwrap();
    let sha = "ab".repeat(32);
    let input = ReleaseInput {
        name: "gpu-node",
        channel: "stable",
        version: 1,
        expires: Timestamp::now().plus_days(7),
        payload: ImagePayload {
            build: BuildRecord {
                spec_sha256: sha.clone(),
                lock_sha256: sha.clone(),
                snapshot: sha.clone(),
                source_date_epoch: 1_700_000_000,
                builder_version: "test".into(),
            },
            kernel: None,
            modules: Vec::new(),
            nvidia: None,
            measurements: None,
            agent: None,
            packages: 0,
        },
        suite: "bookworm",
        packages: &[],
        provenance: BuildInputs {
            image: "gpu-node",
            version: 1,
            spec: ("images/gpu-node.toml", &sha),
            lock: ("images/gpu-node.lock", &sha),
            snapshot: &sha,
            source_date_epoch: 1_700_000_000,
            builder_version: "test",
            materials: &[],
        },
    };
    write_release(&release, &input, &key).unwrap();

    let args = [
        "verify",
        "out/gpu-node/1",
        "--trust",
        "trust.json",
        "--pin",
        "keys/root.pub",
        "--state",
        "seen.json",
    ];
    let report = ok(ironrack(d, &args));
    assert!(
        report.contains("gpu-node version 1 (channel stable), signed by ci"),
        "{report}"
    );
    assert!(
        report.contains("ok      artifact rootfs.squashfs"),
        "{report}"
    );
    assert!(report.contains("ok      provenance"), "{report}");

    std::fs::write(release.join("rootfs.squashfs"), b"image bytez").unwrap();
    let out = ironrack(d, &args);
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("FAILED  artifact rootfs.squashfs"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("verification failed"));
}
