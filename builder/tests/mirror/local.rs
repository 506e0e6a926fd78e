//! A mirror made by `import`: snapshots that apt reads, verification on
//! every read (signature, id, indexes, .debs), trust-file scopes.

use std::path::{Path, PathBuf};

use ironrack_builder::fixtures::DebBuilder;
use ironrack_builder::source::mirror::import::{ImportOptions, import};
use ironrack_builder::source::mirror::{Error, Mirror, Snapshot, SnapshotId, Verifier};
use ironrack_keys::trust::{Delegation, Scope};
use ironrack_keys::{SecretKey, Timestamp, Trust, TrustFile};
use sha2::{Digest, Sha256};

use crate::support::apt::Apt;
use crate::support::{flip_byte, require_tool, signer, tree_digest};

fn debs(dir: &Path) -> Vec<PathBuf> {
    vec![
        DebBuilder::new("tool", "2.0-1", "amd64")
            .field("Source", "tool-src")
            .file("usr/bin/tool", b"#!/bin/sh\necho tool\n", 0o755)
            .write_to(dir)
            .unwrap(),
        DebBuilder::new("libbar1", "1:1.5", "amd64")
            .file("usr/lib/libbar.so.1", &[1; 5000], 0o644)
            .write_to(dir)
            .unwrap(),
    ]
}

fn options(suite: Option<&str>) -> ImportOptions {
    ImportOptions {
        ref_name: "site".into(),
        suite: suite.map(str::to_owned),
        component: None,
        date: Some(1_700_000_000),
    }
}

/// A mirror with one imported snapshot.
fn imported(dir: &Path, key: &SecretKey) -> (Mirror, SnapshotId) {
    let mirror = Mirror::init(&dir.join("mirror"), "site", &[]).unwrap();
    let id = import(&mirror, &debs(dir), &options(Some("bookworm")), key).unwrap();
    (mirror, id)
}

#[test]
fn imported_snapshot_verifies_and_apt_reads_it() {
    require_tool("apt-get");
    let dir = tempfile::tempdir().unwrap();
    let key = signer();
    let (mirror, first) = imported(dir.path(), &key);
    let verifier = Verifier::public_key(key.public_key());
    let snap = mirror.snapshot("site", &verifier).unwrap();
    assert_eq!(snap.id(), first);
    assert_eq!((snap.suite(), snap.date()), ("bookworm", 1_700_000_000));
    assert_eq!(snap.signer(), Some(key.key_id()));
    let tool = snap.catalog().lookup("tool");
    assert_eq!(tool.len(), 1);
    let entry = &snap.entries()[tool[0].index()];
    assert_eq!(entry.filename, "pool/main/t/tool-src/tool_2.0-1_amd64.deb");
    let path = snap.deb_path(&entry.filename, &entry.sha256).unwrap();
    assert!(path.starts_with(mirror.root()));
    // The epoch stays out of the file name, as in Debian.
    assert!(
        snap.entry("pool/main/libb/libbar1/libbar1_1.5_amd64.deb")
            .is_some()
    );

    // A second import extends the first; the first snapshot is untouched.
    let before = tree_digest(&mirror.snapshot_dir(first));
    let extra = DebBuilder::new("extra", "0.1", "all")
        .write_to(dir.path())
        .unwrap();
    let second = import(&mirror, &[extra], &options(None), &key).unwrap();
    assert_ne!(first, second);
    assert_eq!(mirror.resolve("site").unwrap(), second);
    assert_eq!(tree_digest(&mirror.snapshot_dir(first)), before);
    let snap2 = mirror.snapshot(&second.to_string(), &verifier).unwrap();
    assert_eq!(snap2.entries().len(), 3);
    assert_eq!(snap2.verify_files().unwrap().0, 3);

    // apt reads the snapshot as a plain file: repository.
    let line = format!(
        "deb [trusted=yes] file:{} bookworm main",
        mirror.snapshot_dir(second).display()
    );
    let apt = Apt::new(&dir.path().join("apt"), &line);
    let files = apt.update_and_download(&["tool", "extra", "libbar1"]);
    assert_eq!(files.len(), 3, "{files:?}");
    // Byte for byte the pooled files (apt names them with %3a for epochs).
    for f in &files {
        let digest: [u8; 32] = Sha256::digest(std::fs::read(f).unwrap()).into();
        assert!(
            snap2.entries().iter().any(|e| e.sha256 == digest),
            "{}",
            f.display()
        );
    }
    let sim = apt.run("apt-get", &["-s", "install", "tool"]);
    assert!(sim.contains("Inst tool (2.0-1 ironrack"), "{sim}");
}

#[test]
fn every_read_is_verified() {
    let dir = tempfile::tempdir().unwrap();
    let key = signer();
    let (mirror, id) = imported(dir.path(), &key);
    let snap_dir = mirror.snapshot_dir(id);
    let suite = snap_dir.join("dists/bookworm");
    let good = Verifier::public_key(key.public_key());

    // Wrong key.
    let other = Verifier::public_key(signer().public_key());
    let err = mirror.snapshot("site", &other).unwrap_err();
    assert!(matches!(err, Error::SnapshotSignature { .. }), "{err}");
    assert!(err.is_verification_failure());

    // A tampered package file: the snapshot opens, the .deb does not.
    let snap = mirror.snapshot("site", &good).unwrap();
    let e = snap.entries()[0].clone();
    let pooled = mirror.root().join(&e.filename);
    let saved = std::fs::read(&pooled).unwrap();
    make_writable(&pooled);
    flip_byte(&pooled);
    let err = snap.open_deb(&e.filename, &e.sha256).unwrap_err();
    assert!(matches!(err, Error::Digest { .. }), "{err}");
    assert!(err.to_string().contains(&e.filename), "{err}");
    std::fs::write(&pooled, &saved).unwrap();
    snap.open_deb(&e.filename, &e.sha256).unwrap();
    // Only files the snapshot lists, with the digest it lists.
    let err = snap.open_deb(&e.filename, &[0; 32]).unwrap_err();
    assert!(matches!(err, Error::NotInSnapshot { .. }), "{err}");
    std::fs::remove_file(&pooled).unwrap();
    let err = snap.open_deb(&e.filename, &e.sha256).unwrap_err();
    assert!(matches!(err, Error::Missing { .. }), "{err}");
    std::fs::write(&pooled, &saved).unwrap();

    // A tampered index: the Release lists its digest.
    let packages = suite.join("main/binary-amd64/Packages");
    let saved = std::fs::read(&packages).unwrap();
    make_writable(&packages);
    std::fs::write(
        &packages,
        String::from_utf8(saved.clone())
            .unwrap()
            .replace("2.0-1", "2.0-2"),
    )
    .unwrap();
    let err = mirror.snapshot("site", &good).unwrap_err();
    assert!(matches!(err, Error::Digest { .. }), "{err}");
    assert!(
        err.to_string().contains("main/binary-amd64/Packages"),
        "{err}"
    );
    std::fs::write(&packages, &saved).unwrap();

    // A changed Release no longer matches the id.
    let release = suite.join("Release");
    let saved = std::fs::read(&release).unwrap();
    make_writable(&release);
    std::fs::write(&release, [&saved[..], b"X-Extra: 1\n"].concat()).unwrap();
    let err = mirror.snapshot("site", &good).unwrap_err();
    assert!(matches!(err, Error::SnapshotIdMismatch { .. }), "{err}");
    std::fs::write(&release, &saved).unwrap();

    // A snapshot signed for another mirror and copied in.
    let other_dir = tempfile::tempdir().unwrap();
    let elsewhere = Mirror::init(&other_dir.path().join("m"), "lab", &[]).unwrap();
    let foreign = import(
        &elsewhere,
        &debs(other_dir.path()),
        &options(Some("bookworm")),
        &key,
    )
    .unwrap();
    copy_tree(
        &elsewhere.snapshot_dir(foreign),
        &mirror.snapshot_dir(foreign),
    );
    let err = mirror.snapshot(&foreign.to_string(), &good).unwrap_err();
    assert!(matches!(err, Error::SnapshotMirrorName { .. }), "{err}");

    // Everything restored: verifies again.
    let snap = mirror.snapshot("site", &good).unwrap();
    assert_eq!(snap.verify_files().unwrap().0, 2);
}

#[test]
fn trust_file_scopes_decide_who_signs_a_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let mirror_key = signer();
    let manifest_key = signer();
    let (mirror, _) = imported(dir.path(), &mirror_key);
    let root = signer();
    let now = Timestamp::now();
    let mut file = TrustFile::new(vec![root.public_key()], 1, now.plus_days(30)).unwrap();
    let delegate = |name: &str, key: &SecretKey, scope: &[&str]| Delegation {
        name: name.into(),
        id: key.key_id(),
        public: key.public_key(),
        expires: now.plus_days(10),
        scope: scope.iter().map(|s| s.parse::<Scope>().unwrap()).collect(),
    };
    file.signed
        .add_signer(delegate("mirror", &mirror_key, &["mirror:si*"]))
        .unwrap();
    file.signed
        .add_signer(delegate("ci", &manifest_key, &["image:*", "channel:*"]))
        .unwrap();
    file.sign(&root).unwrap();
    let trust = Trust::from_installed(&file.to_bytes().unwrap(), &[root.public_key()]).unwrap();

    mirror
        .snapshot("site", &Verifier::trust(trust.clone(), "site"))
        .unwrap();
    // The caller expects another mirror: out of the signer's scope.
    let err = mirror
        .snapshot("site", &Verifier::trust(trust.clone(), "lab"))
        .unwrap_err();
    assert!(
        chain(&err).contains("may not sign snapshots of mirror \"lab\""),
        "{}",
        chain(&err)
    );
    // In scope, but the signature names another mirror.
    let err = mirror
        .snapshot("site", &Verifier::trust(trust.clone(), "sister"))
        .unwrap_err();
    assert!(
        matches!(err, Error::SnapshotMirrorName { .. }),
        "{}",
        chain(&err)
    );
    // Expired delegation.
    let later = Verifier::trust_at(trust.clone(), "site", now.plus_days(11));
    let err = mirror.snapshot("site", &later).unwrap_err();
    assert!(chain(&err).contains("expired"), "{}", chain(&err));
    // A manifest signer cannot sign mirror snapshots.
    let other_dir = tempfile::tempdir().unwrap();
    let (other, _) = imported(other_dir.path(), &manifest_key);
    let err = other
        .snapshot("site", &Verifier::trust(trust, "site"))
        .unwrap_err();
    assert!(
        chain(&err).contains("may not sign snapshots"),
        "{}",
        chain(&err)
    );
}

#[test]
fn import_refuses_bad_input_without_publishing() {
    let dir = tempfile::tempdir().unwrap();
    let key = signer();
    let (mirror, id) = imported(dir.path(), &key);
    let before = tree_digest(mirror.root());
    let junk = dir.path().join("junk.deb");
    std::fs::write(&junk, b"!<arch>\nnot really").unwrap();
    let err = import(&mirror, &[junk], &options(None), &key).unwrap_err();
    assert!(err.to_string().contains("junk.deb"), "{err}");
    let err = import(&mirror, &debs(dir.path()), &options(Some("trixie")), &key).unwrap_err();
    assert!(matches!(err, Error::SuiteMismatch { .. }), "{err}");
    // A different file under a package version the snapshot has.
    let clash = DebBuilder::new("tool", "2.0-1", "amd64")
        .field("Source", "tool-src")
        .file("usr/bin/tool", b"other\n", 0o755);
    let clash_dir = dir.path().join("clash");
    std::fs::create_dir(&clash_dir).unwrap();
    let err = import(
        &mirror,
        &[clash.write_to(&clash_dir).unwrap()],
        &options(None),
        &key,
    )
    .unwrap_err();
    assert!(matches!(err, Error::PoolConflict { .. }), "{err}");
    let mut after = tree_digest(mirror.root());
    after.retain(|p, _| !p.starts_with("tmp"));
    let mut before = before;
    before.retain(|p, _| !p.starts_with("tmp"));
    assert_eq!(after, before, "nothing published, nothing pooled");
    assert_eq!(mirror.resolve("site").unwrap(), id);
}

/// The error and its causes, as the CLI prints them.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn make_writable(path: &Path) {
    let mut p = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o644);
    std::fs::set_permissions(path, p).unwrap();
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let meta = std::fs::symlink_metadata(&src).unwrap();
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if meta.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

#[test]
fn snapshot_listing() {
    let dir = tempfile::tempdir().unwrap();
    let key = signer();
    let (mirror, id) = imported(dir.path(), &key);
    let s = Snapshot::summary_unverified(&mirror, id).unwrap();
    assert_eq!((s.packages, s.suite.as_str()), (2, "bookworm"));
    assert_eq!(s.date.as_deref(), Some("Tue, 14 Nov 2023 22:13:20 UTC"));
    assert_eq!(mirror.snapshot_ids().unwrap(), [id]);
}
