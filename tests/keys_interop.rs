//! Interoperability with the real `minisign` (0.11) and `signify-openbsd`
//! (31) from Debian: what we sign they verify, what they sign we verify,
//! and the secret keys are the same format both ways.
//!
//! Findings that shaped these tests:
//! - signify accepts minisign files as they are: it needs the
//!   `untrusted comment: ` line (non-empty) and the base64 line, and ignores
//!   the trusted comment lines after them. It refuses `ED` signatures
//!   ("unsupported file"), which is why we write `Ed`.
//! - minisign reads passwords from stdin when it is not a terminal, so
//!   encrypted keys can be made and used non-interactively.
//! - `minisign -G -W` writes an all-zero checksum in unencrypted keys.

mod keys_support;

use keys_support::*;

/// Runs in a fresh directory: everything below uses relative names.
fn workdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn our_signatures_verify_with_minisign_and_signify() {
    let dir = workdir();
    let d = dir.path();
    ironrack(d, &["keys", "generate", "ci"]).ok();
    sample_file(&d.join("data.bin"));
    ironrack(
        d,
        &[
            "sign",
            "data.bin",
            "--key",
            "ci.key",
            "--trusted-comment",
            "built by ironrack ci",
        ],
    )
    .ok();

    let run = run_in(d, "minisign", &["-Vm", "data.bin", "-p", "ci.pub"], b"").ok();
    assert!(
        run.stdout.contains("Trusted comment: built by ironrack ci"),
        "{}",
        run.stdout
    );
    let run = run_in(
        d,
        "signify-openbsd",
        &[
            "-V",
            "-p",
            "ci.pub",
            "-x",
            "data.bin.minisig",
            "-m",
            "data.bin",
        ],
        b"",
    )
    .ok();
    assert!(run.all().contains("Signature Verified"), "{}", run.all());

    // The tools really check: one flipped byte and both refuse.
    flip_byte(&d.join("data.bin"), 31_337);
    run_in(d, "minisign", &["-Vm", "data.bin", "-p", "ci.pub"], b"").code(1);
    run_in(
        d,
        "signify-openbsd",
        &[
            "-V",
            "-p",
            "ci.pub",
            "-x",
            "data.bin.minisig",
            "-m",
            "data.bin",
        ],
        b"",
    )
    .code(1);
}

#[test]
fn minisign_signatures_verify_with_ironrack() {
    let dir = workdir();
    let d = dir.path();
    run_in(
        d,
        "minisign",
        &["-G", "-W", "-p", "m.pub", "-s", "m.key"],
        b"",
    )
    .ok();
    sample_file(&d.join("data.bin"));
    for (args, label) in [
        (&["-S"][..], "prehashed ED"),
        (&["-S", "-l"][..], "legacy Ed"),
    ] {
        let mut all = args.to_vec();
        all.extend(["-s", "m.key", "-m", "data.bin", "-t", label]);
        run_in(d, "minisign", &all, b"").ok();
        let run = ironrack(d, &["verify-sig", "data.bin", "--pub", "m.pub"]).ok();
        assert!(
            run.stdout.contains(&format!("Trusted comment: {label}")),
            "{}",
            run.stdout
        );
    }

    // A changed file, and a changed trusted comment, fail verification (exit 3).
    let sig = std::fs::read_to_string(d.join("data.bin.minisig")).unwrap();
    std::fs::write(
        d.join("data.bin.minisig"),
        sig.replace("legacy Ed", "legacy ED"),
    )
    .unwrap();
    let run = ironrack(d, &["verify-sig", "data.bin", "--pub", "m.pub"]).code(3);
    assert!(run.stderr.contains("trusted comment"), "{}", run.stderr);
    std::fs::write(d.join("data.bin.minisig"), sig).unwrap();
    flip_byte(&d.join("data.bin"), 0);
    let run = ironrack(d, &["verify-sig", "data.bin", "--pub", "m.pub"]).code(3);
    assert!(
        run.stderr.contains("does not match the data"),
        "{}",
        run.stderr
    );
}

#[test]
fn key_id_mismatch_is_its_own_error() {
    let dir = workdir();
    let d = dir.path();
    run_in(
        d,
        "minisign",
        &["-G", "-W", "-p", "a.pub", "-s", "a.key"],
        b"",
    )
    .ok();
    ironrack(d, &["keys", "generate", "b"]).ok();
    sample_file(&d.join("data.bin"));
    run_in(d, "minisign", &["-S", "-s", "a.key", "-m", "data.bin"], b"").ok();
    let run = ironrack(d, &["verify-sig", "data.bin", "--pub", "b.pub"]).code(3);
    assert!(
        run.stderr.contains("signature was made by key"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_minisign_key_signs_with_ironrack() {
    let dir = workdir();
    let d = dir.path();
    run_in(
        d,
        "minisign",
        &["-G", "-W", "-p", "m.pub", "-s", "m.key"],
        b"",
    )
    .ok();
    assert_eq!(mode(&d.join("m.key")), 0o600);
    sample_file(&d.join("data.bin"));
    ironrack(d, &["sign", "data.bin", "--key", "m.key"]).ok();
    run_in(d, "minisign", &["-Vm", "data.bin", "-p", "m.pub"], b"").ok();
    run_in(
        d,
        "signify-openbsd",
        &[
            "-V",
            "-p",
            "m.pub",
            "-x",
            "data.bin.minisig",
            "-m",
            "data.bin",
        ],
        b"",
    )
    .ok();
}

/// minisign's own scrypt encryption (N = 2^20), read by us.
#[test]
fn an_encrypted_minisign_key_signs_with_ironrack() {
    let dir = workdir();
    let d = dir.path();
    run_in(
        d,
        "minisign",
        &["-G", "-p", "e.pub", "-s", "e.key"],
        b"hunter2 hunter2\nhunter2 hunter2\n",
    )
    .ok();
    write_secret(&d.join("pass"), "hunter2 hunter2\n");
    sample_file(&d.join("data.bin"));
    ironrack(
        d,
        &[
            "sign",
            "data.bin",
            "--key",
            "e.key",
            "--passphrase-file",
            "pass",
        ],
    )
    .ok();
    run_in(d, "minisign", &["-Vm", "data.bin", "-p", "e.pub"], b"").ok();

    write_secret(&d.join("wrong"), "hunter3 hunter3\n");
    let run = ironrack(
        d,
        &[
            "sign",
            "data.bin",
            "--key",
            "e.key",
            "--passphrase-file",
            "wrong",
        ],
    );
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("wrong passphrase"), "{}", run.stderr);
    assert!(!run.all().contains("hunter"), "{}", run.all());
    let run = ironrack(d, &["sign", "data.bin", "--key", "e.key"]);
    assert!(run.stderr.contains("--passphrase-file"), "{}", run.stderr);
}

/// Our secret keys, encrypted or not, are minisign secret keys.
#[test]
fn our_secret_keys_sign_with_minisign() {
    let dir = workdir();
    let d = dir.path();
    write_secret(&d.join("pass"), "correct horse\n");
    ironrack(d, &["keys", "generate", "enc", "--passphrase-file", "pass"]).ok();
    ironrack(d, &["keys", "generate", "plain"]).ok();
    sample_file(&d.join("data.bin"));

    run_in(
        d,
        "minisign",
        &["-S", "-s", "enc.key", "-m", "data.bin", "-t", "enc"],
        b"correct horse\n",
    )
    .ok();
    let run = ironrack(d, &["verify-sig", "data.bin", "--pub", "enc.pub"]).ok();
    assert!(
        run.stdout.contains("Trusted comment: enc"),
        "{}",
        run.stdout
    );

    run_in(
        d,
        "minisign",
        &[
            "-S",
            "-l",
            "-s",
            "plain.key",
            "-m",
            "data.bin",
            "-t",
            "plain",
        ],
        b"",
    )
    .ok();
    run_in(d, "minisign", &["-Vm", "data.bin", "-p", "plain.pub"], b"").ok();
    ironrack(d, &["verify-sig", "data.bin", "--pub", "plain.pub"]).ok();
}

/// A signed manifest is an ordinary minisign-signed file.
#[test]
fn manifests_verify_with_minisign_and_signify() {
    use ironrack_keys::{Artifact, SecretKey, SignedManifest, Timestamp, write_signed_manifest};
    let dir = workdir();
    let d = dir.path();
    ironrack(d, &["keys", "generate", "ci"]).ok();
    sample_file(&d.join("rootfs.squashfs"));
    let key = SecretKey::load(&d.join("ci.key"), None).unwrap();
    let artifact = Artifact::from_file(d, "rootfs.squashfs").unwrap();
    let manifest = SignedManifest::new(
        "gpu-node",
        "stable",
        1,
        Timestamp::now().plus_days(30),
        vec![artifact],
        serde_json::json!({"kernel": "6.1.0-50-cloud-amd64"}),
    );
    write_signed_manifest(d, &key, &manifest).unwrap();
    run_in(
        d,
        "minisign",
        &["-Vm", "manifest.json", "-p", "ci.pub"],
        b"",
    )
    .ok();
    run_in(
        d,
        "signify-openbsd",
        &[
            "-V",
            "-p",
            "ci.pub",
            "-x",
            "manifest.json.minisig",
            "-m",
            "manifest.json",
        ],
        b"",
    )
    .ok();
}
