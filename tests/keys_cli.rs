//! The keys commands end to end, through the `ironrack` binary: key files
//! and their permissions, the trust file's life (init, delegate, revoke,
//! rotate, update), manifest verification, exit codes, and no secret in any
//! output.

mod keys_support;

use std::path::Path;

use ironrack_keys::{Artifact, SecretKey, SignedManifest, Timestamp, write_signed_manifest};
use keys_support::*;

#[test]
fn help_reads_like_the_product() {
    let dir = tempfile::tempdir().unwrap();
    let run = ironrack(dir.path(), &["--help"]).ok();
    for word in ["keys", "sign", "verify-sig", "minisign"] {
        assert!(run.stdout.contains(word), "{word}: {}", run.stdout);
    }
    let run = ironrack(dir.path(), &["keys", "trust", "--help"]).ok();
    for word in ["init", "add-signer", "revoke", "rotate-root", "show"] {
        assert!(run.stdout.contains(word), "{word}: {}", run.stdout);
    }
    ironrack(dir.path(), &["keys", "generate"]).code(2);
}

#[test]
fn generate_creates_a_private_key_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = ironrack(d, &["keys", "generate", "ci", "--dir", "keys"]).ok();
    assert!(run.stderr.contains("unencrypted"), "{}", run.stderr);
    assert_eq!(mode(&d.join("keys")), 0o700);
    assert_eq!(mode(&d.join("keys/ci.key")), 0o600);
    let before = std::fs::read(d.join("keys/ci.key")).unwrap();
    let run = ironrack(d, &["keys", "generate", "ci", "--dir", "keys"]);
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("already exists"), "{}", run.stderr);
    assert_eq!(std::fs::read(d.join("keys/ci.key")).unwrap(), before);
    // No temporary files left behind.
    let names: Vec<String> = std::fs::read_dir(d.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn a_readable_secret_key_is_refused_like_ssh_does() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ironrack(d, &["keys", "generate", "ci"]).ok();
    std::fs::write(d.join("f"), "x").unwrap();
    std::fs::set_permissions(d.join("ci.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = ironrack(d, &["sign", "f", "--key", "ci.key"]).code(1);
    assert!(
        run.stderr
            .contains("permissions 0644 for secret key ci.key are too open"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("chmod 600 ci.key"), "{}", run.stderr);
    assert!(!d.join("f.minisig").exists());
    std::fs::set_permissions(d.join("ci.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    ironrack(d, &["sign", "f", "--key", "ci.key"]).ok();
}

#[test]
fn no_secret_in_logs_or_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pass = "Zq8-very-secret-passphrase";
    write_secret(&d.join("pass"), &format!("{pass}\n"));
    let mut outputs = vec![
        ironrack(
            d,
            &["-vvv", "keys", "generate", "k", "--passphrase-file", "pass"],
        )
        .ok(),
    ];
    let secret_line = std::fs::read_to_string(d.join("k.key"))
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    std::fs::write(d.join("f"), "x").unwrap();
    outputs.push(
        ironrack(
            d,
            &[
                "-vvv",
                "sign",
                "f",
                "--key",
                "k.key",
                "--passphrase-file",
                "pass",
            ],
        )
        .ok(),
    );
    write_secret(&d.join("wrong"), &format!("{pass}-not\n"));
    outputs.push(ironrack(
        d,
        &[
            "-vvv",
            "sign",
            "f",
            "--key",
            "k.key",
            "--passphrase-file",
            "wrong",
        ],
    ));
    for run in &outputs {
        let all = run.all();
        assert!(!all.contains(pass), "{all}");
        assert!(!all.contains(&secret_line), "{all}");
        assert!(!all.contains(&secret_line[10..40]), "{all}");
    }
}

#[test]
fn exit_codes_tell_failures_apart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ironrack(d, &["keys", "generate", "ci"]).ok();
    std::fs::write(d.join("f"), "x").unwrap();
    ironrack(d, &["sign", "f", "--key", "ci.key"]).ok();
    ironrack(
        d,
        &[
            "verify-sig",
            "missing",
            "--pub",
            "ci.pub",
            "--sig",
            "f.minisig",
        ],
    )
    .code(4);
    ironrack(d, &["verify-sig", "f", "--pub", "nope.pub"]).code(4);
    std::fs::write(d.join("f"), "y").unwrap();
    ironrack(d, &["verify-sig", "f", "--pub", "ci.pub"]).code(3);
    ironrack(d, &["verify-sig"]).code(2);
}

fn generate(d: &Path, names: &[&str]) {
    for name in names {
        ironrack(d, &["keys", "generate", name]).ok();
    }
}

/// A signed image directory `dir` for `version`, signed by `key`.
fn image_dir(d: &Path, dir: &str, key: &str, version: u64) {
    let out = d.join(dir);
    std::fs::create_dir(&out).unwrap();
    sample_file(&out.join("rootfs.squashfs"));
    let artifact = Artifact::from_file(&out, "rootfs.squashfs").unwrap();
    let manifest = SignedManifest::new(
        "gpu-node",
        "stable",
        version,
        Timestamp::now().plus_days(7),
        vec![artifact],
        serde_json::json!({}),
    );
    let key = SecretKey::load(&d.join(format!("{key}.key")), None).unwrap();
    write_signed_manifest(&out, &key, &manifest).unwrap();
}

fn verify_manifest(d: &Path, dir: &str) -> Run {
    ironrack(
        d,
        &[
            "keys",
            "verify-manifest",
            dir,
            "--trust",
            "trust.json",
            "--state",
            "seen.json",
        ],
    )
}

#[test]
fn the_life_of_a_trust_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, &["r1", "r2", "r3", "r4", "ci", "intruder"]);
    let copy = |from: &str, to: &str| std::fs::copy(d.join(from), d.join(to)).unwrap();

    // Version 1: three roots, two must sign; r3 signs later.
    ironrack(
        d,
        &[
            "keys",
            "trust",
            "init",
            "--root",
            "r1.key",
            "--root",
            "r2.key",
            "--root-pub",
            "r3.pub",
            "--threshold",
            "2",
            "--expires",
            "365d",
            "-o",
            "trust.json",
        ],
    )
    .ok();
    ironrack(
        d,
        &[
            "keys",
            "trust",
            "verify",
            "trust.json",
            "--root",
            "r1.pub",
            "--root",
            "r2.pub",
        ],
    )
    .ok();
    // Pinning only a key that is not a root: refused.
    ironrack(
        d,
        &[
            "keys",
            "trust",
            "verify",
            "trust.json",
            "--root",
            "intruder.pub",
        ],
    )
    .code(3);
    copy("trust.json", "v1.json");

    // Delegation signed by one root only: refused, file untouched...
    let add = [
        "keys",
        "trust",
        "add-signer",
        "trust.json",
        "--pub",
        "ci.pub",
        "--name",
        "ci",
        "--scope",
        "image:gpu-*",
        "--scope",
        "channel:stable",
        "--expires",
        "30d",
        "--root",
        "r1.key",
    ];
    let run = ironrack(d, &add).code(3);
    assert!(run.stderr.contains("threshold is 2"), "{}", run.stderr);
    assert_eq!(
        std::fs::read(d.join("trust.json")).unwrap(),
        std::fs::read(d.join("v1.json")).unwrap()
    );
    // ...unless asked for a partial file, which a second root completes.
    let mut partial = add.to_vec();
    partial.push("--partial");
    ironrack(d, &partial).ok();
    ironrack(d, &["keys", "trust", "verify", "trust.json"]).code(3);
    ironrack(
        d,
        &["keys", "trust", "sign", "trust.json", "--root", "r2.key"],
    )
    .ok();
    ironrack(
        d,
        &[
            "keys",
            "trust",
            "verify",
            "trust.json",
            "--root",
            "r1.pub",
            "--root",
            "r2.pub",
        ],
    )
    .ok();
    let run = ironrack(d, &["keys", "trust", "show", "trust.json"]).ok();
    assert!(
        run.stdout.contains("version 2") && run.stdout.contains(" ci "),
        "{}",
        run.stdout
    );

    // A verifier holding v1 moves to v2.
    copy("v1.json", "held.json");
    copy("trust.json", "v2.json");
    ironrack(d, &["keys", "trust", "update", "held.json", "v2.json"]).ok();
    ironrack(d, &["keys", "trust", "update", "held.json", "v1.json"]).code(3);

    // Manifests signed by ci verify; rollback and tampering are refused.
    image_dir(d, "img5", "ci", 5);
    image_dir(d, "img4", "ci", 4);
    image_dir(d, "bad", "intruder", 6);
    let run = verify_manifest(d, "img5").ok();
    assert!(
        run.stdout
            .contains("gpu-node stable version 5: signed by ci"),
        "{}",
        run.stdout
    );
    let run = verify_manifest(d, "img4").code(3);
    assert!(run.stderr.contains("rollback"), "{}", run.stderr);
    let run = verify_manifest(d, "bad").code(3);
    assert!(
        run.stderr.contains("not a delegated signer"),
        "{}",
        run.stderr
    );
    flip_byte(&d.join("img5/rootfs.squashfs"), 77);
    let run = verify_manifest(d, "img5").code(3);
    assert!(
        run.stderr
            .contains("artifact \"rootfs.squashfs\" has sha256"),
        "{}",
        run.stderr
    );

    // Revocation: version 3.
    let ci_id = ironrack_keys::PublicKey::load(&d.join("ci.pub"))
        .unwrap()
        .key_id()
        .to_string();
    ironrack(
        d,
        &[
            "keys",
            "trust",
            "revoke",
            "trust.json",
            &ci_id,
            "--root",
            "r1.key",
            "--root",
            "r2.key",
        ],
    )
    .ok();
    image_dir(d, "img6", "ci", 6);
    let run = verify_manifest(d, "img6").code(3);
    assert!(run.stderr.contains("has been revoked"), "{}", run.stderr);
    copy("trust.json", "v3.json");

    // Rotation to r3 + r4 (threshold 2): the new roots alone cannot do it.
    let rotate_new_only = [
        "keys",
        "trust",
        "rotate-root",
        "trust.json",
        "--new-root",
        "r3.key",
        "--new-root",
        "r4.key",
        "--threshold",
        "2",
    ];
    ironrack(d, &rotate_new_only).code(3);
    let mut rotate = rotate_new_only.to_vec();
    rotate.extend([
        "--old-root",
        "r1.key",
        "--old-root",
        "r2.key",
        "-o",
        "v4.json",
    ]);
    ironrack(d, &rotate).ok();
    ironrack(d, &["keys", "trust", "update", "held.json", "v3.json"]).ok();
    ironrack(d, &["keys", "trust", "update", "held.json", "v4.json"]).ok();
    let run = ironrack(
        d,
        &[
            "keys",
            "trust",
            "verify",
            "held.json",
            "--root",
            "r3.pub",
            "--root",
            "r4.pub",
        ],
    )
    .ok();
    assert!(run.stdout.contains("version 4 valid"), "{}", run.stdout);
    // The old roots no longer pin it.
    ironrack(
        d,
        &[
            "keys",
            "trust",
            "verify",
            "held.json",
            "--root",
            "r1.pub",
            "--root",
            "r2.pub",
        ],
    )
    .code(3);
    // Pinning fewer keys than the threshold can never be met.
    ironrack(
        d,
        &["keys", "trust", "verify", "held.json", "--root", "r3.pub"],
    )
    .code(3);
}
