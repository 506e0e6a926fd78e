//! Change every byte of a signed manifest, its signature, the trust file
//! and an artifact, three ways each (bit 0, the ASCII case bit, the high
//! bit): every change is refused, with the error that names what broke.
//!
//! The files are small (hundreds of bytes to 4 KiB), so testing every byte
//! costs a few thousand Ed25519 verifications: no sampling is needed.

use std::collections::BTreeSet;
use std::os::unix::fs::FileExt;

use ironrack_keys::{Error, SignedManifest, Trust};

use crate::common::*;

fn variant(err: &Error) -> String {
    format!("{:?}", err.innermost())
        .split([' ', '(', '{'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn every_byte_of_the_manifest_is_signed() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let (bytes, sig) = signed(
        &world.signer,
        &manifest("gpu-node", "stable", 7, artifacts(dir.path())),
    );
    for i in 0..bytes.len() {
        for flip in FLIPS {
            let mut changed = bytes.clone();
            changed[i] ^= flip;
            let err = SignedManifest::<serde_json::Value>::verify(
                &world.trust,
                &changed,
                &sig,
                None,
                now(),
            )
            .expect_err("a changed manifest verified");
            assert!(
                matches!(err, Error::SignatureInvalid { key_id } if key_id == world.signer.key_id()),
                "byte {i} ^ {flip:#x}: {err}"
            );
        }
    }
}

#[test]
fn every_byte_of_the_signature_file_matters_except_the_untrusted_comment() {
    let world = World::new();
    let (bytes, sig) = signed(&world.signer, &manifest("gpu-node", "stable", 7, vec![]));
    let text = String::from_utf8(sig.clone()).unwrap();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let starts: Vec<usize> = lines
        .iter()
        .scan(0, |pos, line| {
            let start = *pos;
            *pos += line.len();
            Some(start)
        })
        .collect();
    let untrusted_text = "untrusted comment: ".len()..lines[0].len() - 1;

    let mut seen = BTreeSet::new();
    for i in 0..sig.len() {
        let line = starts.iter().rposition(|&s| s <= i).unwrap();
        let column = i - starts[line];
        for flip in FLIPS {
            let mut changed = sig.clone();
            changed[i] ^= flip;
            let result = SignedManifest::<serde_json::Value>::verify(
                &world.trust,
                &bytes,
                &changed,
                None,
                now(),
            );
            if line == 0 && untrusted_text.contains(&column) {
                // Not signed, by minisign's design; only shown to people.
                assert!(result.is_ok(), "byte {i}: {:?}", result.err());
                continue;
            }
            let err = result.expect_err("a changed signature verified");
            let name = variant(&err);
            let at_newline = sig[i] == b'\n';
            let allowed: &[&str] = match (line, at_newline) {
                (_, true) => &[
                    "Base64",
                    "Length",
                    "LinePrefix",
                    "MissingLine",
                    "TrailingData",
                    "Comment",
                ],
                (0, false) => &["LinePrefix"],
                (1, false) => &[
                    "Base64",
                    "Length",
                    "Algorithm",
                    "UnknownKey",
                    "SignatureInvalid",
                ],
                (2, false) if column < "trusted comment: ".len() => &["LinePrefix"],
                (2, false) => &["GlobalSignatureInvalid", "Comment"],
                _ => &["Base64", "Length", "GlobalSignatureInvalid"],
            };
            assert!(
                allowed.contains(&name.as_str()),
                "line {line} byte {i} ^ {flip:#x}: {err}"
            );
            seen.insert(name);
        }
    }
    // Each part of the file failed with its own error somewhere.
    for expected in [
        "LinePrefix",
        "Base64",
        "Algorithm",
        "UnknownKey",
        "SignatureInvalid",
        "GlobalSignatureInvalid",
    ] {
        assert!(seen.contains(expected), "{expected} never seen: {seen:?}");
    }
}

#[test]
fn every_byte_of_the_trust_file_matters() {
    let world = World::new();
    let bytes = world.trust_file.to_bytes().unwrap();
    let pinned = [world.roots[0].public_key(), world.roots[1].public_key()];
    let mut seen = BTreeSet::new();
    for i in 0..bytes.len() {
        for flip in FLIPS {
            let mut changed = bytes.clone();
            changed[i] ^= flip;
            let err = Trust::from_installed(&changed, &pinned)
                .expect_err("a changed trust file was accepted");
            assert!(err.is_verification_failure(), "byte {i} ^ {flip:#x}: {err}");
            seen.insert(variant(&err));
        }
    }
    // Signed content and signatures fail the threshold; syntax and spelling
    // fail parsing.
    for expected in ["ThresholdNotMet", "Json", "NotCanonical"] {
        assert!(seen.contains(expected), "{expected} never seen: {seen:?}");
    }
}

#[test]
fn every_byte_of_an_artifact_matters() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let m = manifest("gpu-node", "stable", 7, artifacts(dir.path()));
    let (bytes, sig) = signed(&world.signer, &m);
    let m = SignedManifest::<serde_json::Value>::verify(&world.trust, &bytes, &sig, None, now())
        .unwrap()
        .manifest;
    let path = dir.path().join("node.efi");
    let original = std::fs::read(&path).unwrap();
    // Flip in place: rewriting the file each time would make the test slow
    // on disks that discard truncated blocks.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for (i, &byte) in original.iter().enumerate() {
        file.write_all_at(&[byte ^ 0x01], i as u64).unwrap();
        let err = m
            .verify_artifacts(dir.path())
            .expect_err("a changed artifact verified");
        assert!(
            matches!(err, Error::ArtifactDigestMismatch { ref name, .. } if name == "node.efi"),
            "byte {i}: {err}"
        );
        file.write_all_at(&[byte], i as u64).unwrap();
    }
    m.verify_artifacts(dir.path()).unwrap();
}
