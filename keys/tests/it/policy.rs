//! Each trust and manifest rule, broken on purpose, refused with its own
//! error.

use ironrack_keys::trust::RootSignature;
use ironrack_keys::{
    Error, MinisignSignature, Quorum, RollbackStore, SignedManifest, Signer, Trust, TrustFile,
    write_signed_manifest,
};

use crate::common::*;

fn verify(world: &World, manifest: &[u8], sig: &[u8], highest: Option<u64>) -> Result<(), Error> {
    SignedManifest::<serde_json::Value>::verify(&world.trust, manifest, sig, highest, now())
        .map(drop)
}

#[test]
fn a_good_manifest_verifies_with_its_artifacts() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let m = manifest("gpu-node", "stable", 3, artifacts(dir.path()));
    let (bytes, sig) = signed(&world.signer, &m);
    let verified =
        SignedManifest::<serde_json::Value>::verify(&world.trust, &bytes, &sig, Some(3), now())
            .unwrap();
    assert_eq!(verified.manifest, m);
    assert_eq!(verified.signer, "ci");
    assert_eq!(verified.key_id, world.signer.key_id());
    verified.manifest.verify_artifacts(dir.path()).unwrap();
}

#[test]
fn typed_payloads_round_trip() {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    struct Payload {
        kernel: String,
        modules: Vec<String>,
    }
    let world = World::new();
    let m = manifest("gpu-node", "stable", 1, vec![]);
    let (bytes, sig) = signed(&world.signer, &m);
    let typed = SignedManifest::<Payload>::verify(&world.trust, &bytes, &sig, None, now()).unwrap();
    assert_eq!(typed.manifest.payload.kernel, "6.1.0-50-cloud-amd64");
    assert_eq!(typed.manifest.to_bytes().unwrap(), bytes);
}

#[test]
fn expired_signing_key() {
    let world = World::new();
    let m = manifest("gpu-node", "stable", 1, vec![]);
    let (bytes, sig) = signed(&world.signer, &m);
    let later = at("2030-12-31T00:00:00Z");
    let err = SignedManifest::<serde_json::Value>::verify(&world.trust, &bytes, &sig, None, later)
        .unwrap_err();
    assert!(
        matches!(err, Error::KeyExpired { ref name, .. } if name == "ci"),
        "{err}"
    );
}

#[test]
fn revoked_signing_key() {
    let world = World::new();
    let mut next = world.trust_file.next_version().unwrap();
    next.signed.revoke(world.signer.key_id()).unwrap();
    next.sign(&world.roots[0]).unwrap();
    next.sign(&world.roots[1]).unwrap();
    let trust = world
        .trust
        .update(&next.to_bytes().unwrap(), now())
        .unwrap();
    let (bytes, sig) = signed(&world.signer, &manifest("gpu-node", "stable", 1, vec![]));
    let err =
        SignedManifest::<serde_json::Value>::verify(&trust, &bytes, &sig, None, now()).unwrap_err();
    assert!(
        matches!(err, Error::KeyRevoked { key_id } if key_id == world.signer.key_id()),
        "{err}"
    );
    // And it cannot come back.
    let mut again = next.next_version().unwrap();
    let ci = delegation(
        "ci2",
        &world.signer,
        at("2030-12-01T00:00:00Z"),
        &["image:*", "channel:*"],
    );
    let err = again.signed.add_signer(ci).unwrap_err();
    assert!(matches!(err, Error::RevokedKeyReuse { .. }), "{err}");
}

#[test]
fn unknown_key_and_root_keys_cannot_sign_manifests() {
    let world = World::new();
    let m = manifest("gpu-node", "stable", 1, vec![]);
    for stranger in [key(), SecretKeyClone::of(&world.roots[0])] {
        let (bytes, sig) = signed(&stranger, &m);
        let err = verify(&world, &bytes, &sig, None).unwrap_err();
        assert!(matches!(err, Error::UnknownKey { .. }), "{err}");
    }
}

/// A root key reloaded from its own file text, to sign as a stranger would.
struct SecretKeyClone;
impl SecretKeyClone {
    fn of(key: &ironrack_keys::SecretKey) -> ironrack_keys::SecretKey {
        let text = key
            .to_file_text("copy", ironrack_keys::Protection::Unencrypted)
            .unwrap();
        ironrack_keys::SecretKey::parse(text.as_bytes(), None).unwrap()
    }
}

#[test]
fn out_of_scope_image_and_channel() {
    let world = World::new();
    for (image, channel) in [("cpu-node", "stable"), ("gpu-node", "testing")] {
        let (bytes, sig) = signed(&world.signer, &manifest(image, channel, 1, vec![]));
        let err = verify(&world, &bytes, &sig, None).unwrap_err();
        assert!(
            matches!(err, Error::OutOfScope { image: ref i, channel: ref c, .. } if i == image && c == channel),
            "{err}"
        );
    }
}

#[test]
fn expired_manifest() {
    let world = World::new();
    let mut m = manifest("gpu-node", "stable", 1, vec![]);
    m.expires = at("2030-05-31T23:59:59Z");
    let (bytes, sig) = signed(&world.signer, &m);
    let err = verify(&world, &bytes, &sig, None).unwrap_err();
    assert!(
        matches!(err, Error::ManifestExpired { version: 1, .. }),
        "{err}"
    );
}

#[test]
fn rollback_is_refused_and_the_same_version_is_not_a_rollback() {
    let world = World::new();
    let (bytes, sig) = signed(&world.signer, &manifest("gpu-node", "stable", 4, vec![]));
    verify(&world, &bytes, &sig, Some(4)).unwrap();
    let err = verify(&world, &bytes, &sig, Some(5)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Rollback {
                version: 4,
                highest_seen: 5,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn rollback_store_refuses_older_directories() {
    let world = World::new();
    let state = tempfile::tempdir().unwrap();
    let mut store = RollbackStore::open(&state.path().join("seen.json")).unwrap();
    let mut dirs = Vec::new();
    for version in [2, 1] {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest("gpu-node", "stable", version, artifacts(dir.path()));
        write_signed_manifest(dir.path(), &world.signer, &m).unwrap();
        dirs.push(dir);
    }
    SignedManifest::<serde_json::Value>::verify_dir(
        &world.trust,
        dirs[0].path(),
        &mut store,
        now(),
    )
    .unwrap();
    let mut reopened = RollbackStore::open(&state.path().join("seen.json")).unwrap();
    assert_eq!(reopened.highest("gpu-node", "stable"), Some(2));
    let err = SignedManifest::<serde_json::Value>::verify_dir(
        &world.trust,
        dirs[1].path(),
        &mut reopened,
        now(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err.innermost(),
            Error::Rollback {
                version: 1,
                highest_seen: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn expired_trust_authorizes_nothing() {
    let world = World::new();
    let (bytes, sig) = signed(&world.signer, &manifest("gpu-node", "stable", 1, vec![]));
    let later = at("2031-01-01T00:00:00Z");
    let err = SignedManifest::<serde_json::Value>::verify(&world.trust, &bytes, &sig, None, later)
        .unwrap_err();
    assert!(matches!(err, Error::TrustExpired { .. }), "{err}");
}

#[test]
fn prehashed_signatures_by_a_signer_verify_too() {
    // minisign's default ED form, made by hand with the signer's key.
    use blake2::Digest;
    let world = World::new();
    let m = manifest("gpu-node", "stable", 1, vec![]);
    let bytes = m.to_bytes().unwrap();
    let hash = blake2::Blake2b512::digest(&bytes);
    let signature = world.signer.sign(&hash).unwrap();
    let comment = "prehashed";
    let mut global = signature.to_bytes().to_vec();
    global.extend_from_slice(comment.as_bytes());
    let sig = MinisignSignature {
        algorithm: ironrack_keys::minisign::SignatureAlgorithm::Prehashed,
        key_id: world.signer.key_id(),
        signature,
        untrusted_comment: "x".into(),
        trusted_comment: comment.into(),
        global_signature: world.signer.sign(&global).unwrap(),
    };
    verify(&world, &bytes, sig.to_file_text().as_bytes(), None).unwrap();
}

#[test]
fn below_threshold_root_signatures() {
    let (a, b) = (key(), key());
    let mut file = TrustFile::new(
        vec![a.public_key(), b.public_key()],
        2,
        at("2031-01-01T00:00:00Z"),
    )
    .unwrap();
    file.sign(&a).unwrap();
    let err = Trust::from_installed(&file.to_bytes().unwrap(), &[]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ThresholdNotMet {
                quorum: Quorum::OwnRoots,
                valid: 1,
                threshold: 2,
                ..
            }
        ),
        "{err}"
    );
    // A signature by a key that is not a root counts for nothing.
    file.sign(&key()).unwrap();
    let err = Trust::from_installed(&file.to_bytes().unwrap(), &[]).unwrap_err();
    assert!(
        matches!(err, Error::ThresholdNotMet { valid: 1, .. }),
        "{err}"
    );
}

#[test]
fn duplicate_signatures_by_one_key_count_once() {
    let (a, b) = (key(), key());
    let mut file = TrustFile::new(
        vec![a.public_key(), b.public_key()],
        2,
        at("2031-01-01T00:00:00Z"),
    )
    .unwrap();
    file.sign(&a).unwrap();
    let copy: RootSignature = file.signatures[0].clone();
    file.signatures.push(copy);
    let err = Trust::from_installed(&file.to_bytes().unwrap(), &[]).unwrap_err();
    assert!(
        matches!(err, Error::ThresholdNotMet { valid: 1, .. }),
        "{err}"
    );
}

#[test]
fn one_key_listed_twice_is_refused() {
    let a = key();
    let err = TrustFile::new(
        vec![a.public_key(), a.public_key()],
        2,
        at("2031-01-01T00:00:00Z"),
    )
    .unwrap_err();
    assert!(matches!(err, Error::DuplicateKey { .. }), "{err}");
    let err = TrustFile::new(vec![a.public_key()], 2, at("2031-01-01T00:00:00Z")).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ThresholdInvalid {
                threshold: 2,
                roots: 1
            }
        ),
        "{err}"
    );
}

#[test]
fn pinned_roots_refuse_a_self_signed_replacement() {
    let world = World::new();
    let attacker = key();
    let forged = trust_file(&[&attacker], 1, vec![]);
    let pinned = [world.roots[0].public_key(), world.roots[1].public_key()];
    let err = Trust::from_installed(&forged.to_bytes().unwrap(), &pinned).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ThresholdNotMet {
                quorum: Quorum::PinnedRoots,
                ..
            }
        ),
        "{err}"
    );
    Trust::from_installed(&world.trust_file.to_bytes().unwrap(), &pinned).unwrap();
}

#[test]
fn one_stolen_root_cannot_lower_the_threshold() {
    let world = World::new();
    let stolen = &world.roots[0];
    let mut next = world.trust_file.next_version().unwrap();
    next.signed.roots.threshold = 1;
    next.sign(stolen).unwrap();
    let err = world
        .trust
        .update(&next.to_bytes().unwrap(), now())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ThresholdNotMet {
                quorum: Quorum::CurrentRoots,
                valid: 1,
                ..
            }
        ),
        "{err}"
    );
    // Nor replace the roots with its own.
    let mut swap = world.trust_file.next_version().unwrap();
    swap.signed.roots = ironrack_keys::trust::Roots {
        threshold: 1,
        keys: vec![ironrack_keys::trust::KeyEntry::new(stolen.public_key())],
    };
    swap.sign(stolen).unwrap();
    let err = world
        .trust
        .update(&swap.to_bytes().unwrap(), now())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ThresholdNotMet {
                quorum: Quorum::CurrentRoots,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn updates_must_be_newer_and_current() {
    let world = World::new();
    let same = world.trust_file.to_bytes().unwrap();
    let err = world.trust.update(&same, now()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TrustNotNewer {
                current: 1,
                offered: 1
            }
        ),
        "{err}"
    );
    let mut stale = world.trust_file.next_version().unwrap();
    stale.signed.expires = at("2030-05-01T00:00:00Z");
    stale.sign(&world.roots[0]).unwrap();
    stale.sign(&world.roots[1]).unwrap();
    let err = world
        .trust
        .update(&stale.to_bytes().unwrap(), now())
        .unwrap_err();
    assert!(
        matches!(err, Error::TrustExpired { version: 2, .. }),
        "{err}"
    );
}

#[test]
fn root_rotation_needs_old_and_new_quorums() {
    let world = World::new();
    let (c, d) = (key(), key());
    let rotated = |signers: &[&ironrack_keys::SecretKey]| {
        let mut next = world.trust_file.next_version().unwrap();
        next.signed.roots = ironrack_keys::trust::Roots {
            threshold: 2,
            keys: vec![
                ironrack_keys::trust::KeyEntry::new(c.public_key()),
                ironrack_keys::trust::KeyEntry::new(d.public_key()),
            ],
        };
        for s in signers {
            next.sign(*s).unwrap();
        }
        next.to_bytes().unwrap()
    };
    let (a, b) = (&world.roots[0], &world.roots[1]);
    let err = world.trust.update(&rotated(&[&c, &d]), now()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ThresholdNotMet {
                quorum: Quorum::CurrentRoots,
                ..
            }
        ),
        "{err}"
    );
    let err = world
        .trust
        .update(&rotated(&[a, b, &c]), now())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ThresholdNotMet {
                quorum: Quorum::OwnRoots,
                ..
            }
        ),
        "{err}"
    );
    let trust = world
        .trust
        .update(&rotated(&[a, b, &c, &d]), now())
        .unwrap();
    assert_eq!(trust.version(), 2);
    // The delegation survives the rotation: manifests still verify.
    let (bytes, sig) = signed(&world.signer, &manifest("gpu-node", "stable", 1, vec![]));
    SignedManifest::<serde_json::Value>::verify(&trust, &bytes, &sig, None, now()).unwrap();
}

#[test]
fn artifacts_missing_truncated_swapped_or_linked() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let m = manifest("gpu-node", "stable", 1, artifacts(dir.path()));
    let (bytes, sig) = signed(&world.signer, &m);
    let m = SignedManifest::<serde_json::Value>::verify(&world.trust, &bytes, &sig, None, now())
        .unwrap()
        .manifest;
    let efi = dir.path().join("node.efi");
    let original = std::fs::read(&efi).unwrap();

    std::fs::write(&efi, &original[..100]).unwrap();
    let err = m.verify_artifacts(dir.path()).unwrap_err();
    assert!(
        matches!(err, Error::ArtifactSizeMismatch { ref name, expected: 4096, actual: 100 } if name == "node.efi"),
        "{err}"
    );

    std::fs::remove_file(&efi).unwrap();
    let err = m.verify_artifacts(dir.path()).unwrap_err();
    assert!(
        matches!(err, Error::ArtifactMissing { ref name, .. } if name == "node.efi"),
        "{err}"
    );

    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(elsewhere.path().join("node.efi"), &original).unwrap();
    std::os::unix::fs::symlink(elsewhere.path().join("node.efi"), &efi).unwrap();
    let err = m.verify_artifacts(dir.path()).unwrap_err();
    assert!(matches!(err, Error::NotAFile { .. }), "{err}");
    assert!(err.is_verification_failure());
}

#[test]
fn artifact_names_cannot_leave_the_directory() {
    let world = World::new();
    for name in ["../etc/passwd", "/etc/passwd", "a/b", "..", ".", ""] {
        let mut m = manifest("gpu-node", "stable", 1, vec![]);
        m.artifacts.push(ironrack_keys::Artifact {
            name: name.to_owned(),
            size: 1,
            sha256: "00".repeat(32).parse().unwrap(),
        });
        assert!(
            matches!(m.to_bytes(), Err(Error::ArtifactName { .. })),
            "{name}"
        );
        // Even when signed by hand, a verifier refuses it.
        let mut bytes =
            ironrack_keys::canonical::to_vec(&m, ironrack_keys::Item::Manifest).unwrap();
        bytes.push(b'\n');
        let sig = MinisignSignature::sign(&world.signer, &bytes, "t", "u").unwrap();
        let err = verify(&world, &bytes, sig.to_file_text().as_bytes(), None).unwrap_err();
        assert!(matches!(err, Error::ArtifactName { .. }), "{name}: {err}");
    }
}

#[test]
fn a_delegation_must_name_images_and_channels() {
    let world = World::new();
    let mut next = world.trust_file.next_version().unwrap();
    for scope in [
        &["image:gpu-node"][..],
        &["channel:stable"][..],
        &["image:gpu-node", "mirror:site"][..],
    ] {
        let d = delegation("narrow", &key(), at("2030-12-01T00:00:00Z"), scope);
        let err = next.signed.add_signer(d).unwrap_err();
        assert!(matches!(err, Error::IncompleteScope { .. }), "{err}");
    }
}

#[test]
fn a_mirror_signer_signs_only_mirror_snapshots() {
    let world = World::new();
    let mut next = world.trust_file.next_version().unwrap();
    let mirror_key = key();
    let d = delegation(
        "mirror",
        &mirror_key,
        at("2030-12-01T00:00:00Z"),
        &["mirror:site-*"],
    );
    next.signed.add_signer(d).unwrap();
    for root in &world.roots {
        next.sign(root).unwrap();
    }
    let bytes = next.to_bytes().unwrap();
    let trust = world.trust.update(&bytes, now()).unwrap();
    let id = mirror_key.key_id();
    assert_eq!(
        trust.authorize_mirror(id, "site-a", now()).unwrap().name,
        "mirror"
    );
    let err = trust.authorize_mirror(id, "lab", now()).unwrap_err();
    assert!(
        matches!(err, Error::MirrorOutOfScope { ref mirror, .. } if mirror == "lab"),
        "{err}"
    );
    assert!(err.is_verification_failure());
    let err = trust.authorize(id, "site-a", "stable", now()).unwrap_err();
    assert!(matches!(err, Error::OutOfScope { .. }), "{err}");
    // The manifest signer has no mirror scope.
    let err = trust
        .authorize_mirror(world.signer.key_id(), "site-a", now())
        .unwrap_err();
    assert!(matches!(err, Error::MirrorOutOfScope { .. }), "{err}");
    let err = trust
        .authorize_mirror(id, "site-a", at("2031-01-01T00:00:00Z"))
        .unwrap_err();
    assert!(
        matches!(err, Error::KeyExpired { .. } | Error::TrustExpired { .. }),
        "{err}"
    );
}

#[test]
fn signing_is_reproducible() {
    let world = World::new();
    let m = manifest("gpu-node", "stable", 9, vec![]);
    let (bytes, sig) = signed(&world.signer, &m);
    assert_eq!(signed(&world.signer, &m), (bytes, sig.clone()));
    let text = String::from_utf8(sig).unwrap();
    assert!(
        text.contains(
            "trusted comment: file:manifest.json\tname:gpu-node\tchannel:stable\tversion:9\n"
        ),
        "{text}"
    );
}
