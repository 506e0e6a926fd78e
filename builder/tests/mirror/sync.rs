//! `mirror sync` from a signed repository served over HTTP on loopback by
//! the test server (and from file:), verified with the real gpgv; every
//! tampering refused with an error naming what failed, and the previous
//! snapshot left byte-identical and valid.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ironrack_builder::source::mirror::sync::{
    ExactPackages, Keyring, PackageRequest, Sources, SpecClosure, SyncOptions, SyncReport,
    Upstream, sync,
};
use ironrack_builder::source::mirror::{Error, Mirror, SnapshotId, Verifier};
use ironrack_keys::SecretKey;

use crate::support::apt::Apt;
use crate::support::gpg::GpgKey;
use crate::support::server::{Fault, Server};
use crate::support::{flip_byte, require_tool, signer, tree_digest, write_upstream};

/// An upstream repository, its key, a server for it, and a mirror.
struct World {
    dir: tempfile::TempDir,
    upstream: PathBuf,
    gpg: GpgKey,
    server: Server,
    mirror: Mirror,
    key: SecretKey,
}

impl World {
    fn new() -> World {
        require_tool("gpg");
        require_tool("gpgv");
        let dir = tempfile::tempdir().unwrap();
        let upstream = dir.path().join("upstream");
        let gpg = GpgKey::generate("archive");
        write_upstream(&upstream, &gpg);
        let server = Server::start(&upstream);
        let mirror = Mirror::init(&dir.path().join("mirror"), "site", &[]).unwrap();
        World {
            dir,
            upstream,
            gpg,
            server,
            mirror,
            key: signer(),
        }
    }

    fn options(&self, url: &str, keyring: &Path) -> SyncOptions {
        SyncOptions {
            sources: Sources::Upstreams(vec![Upstream {
                url: url.to_owned(),
                suites: vec!["bookworm".into(), "bookworm-updates".into()],
                components: vec!["main".into(), "non-free-firmware".into()],
                keyring: Keyring::file(keyring),
            }]),
            ref_name: "site".into(),
            local_suite: None,
            fresh: false,
            jobs: 3,
            check_valid_until: true,
            progress: false,
        }
    }

    fn sync(&self, packages: &[&str]) -> Result<SyncReport, Error> {
        self.sync_with(
            &self.options(&self.server.url(), &self.gpg.keyring),
            packages,
        )
    }

    fn sync_with(&self, options: &SyncOptions, packages: &[&str]) -> Result<SyncReport, Error> {
        let requests = packages
            .iter()
            .map(|p| PackageRequest::parse(p).unwrap())
            .collect();
        sync(
            &self.mirror,
            options,
            &ExactPackages { requests },
            &self.key,
        )
    }

    fn verifier(&self) -> Verifier {
        Verifier::public_key(self.key.public_key())
    }

    fn upstream_file(&self, rel: &str) -> PathBuf {
        self.upstream.join(rel)
    }

    /// What a failed sync must leave alone: the ref and every published
    /// file (snapshots, refs, pool). Verified files may be added to the
    /// pool (a content-checked cache no snapshot lists yet).
    fn published(&self) -> (Option<SnapshotId>, BTreeMap<PathBuf, String>) {
        let mut tree = tree_digest(self.mirror.root());
        tree.retain(|p, _| !p.starts_with("tmp"));
        (self.mirror.read_ref("site").unwrap(), tree)
    }

    /// Asserts a failed sync changed nothing published and the previous
    /// snapshot still verifies, files included.
    fn assert_intact(&self, before: &(Option<SnapshotId>, BTreeMap<PathBuf, String>)) {
        let now = self.published();
        assert_eq!(now.0, before.0, "ref moved");
        for (path, digest) in &before.1 {
            assert_eq!(now.1.get(path), Some(digest), "{} changed", path.display());
        }
        for path in now.1.keys().filter(|p| !before.1.contains_key(*p)) {
            assert!(path.starts_with("pool"), "{} appeared", path.display());
        }
        if let Some(id) = now.0 {
            let snap = self
                .mirror
                .snapshot(&id.to_string(), &self.verifier())
                .unwrap();
            snap.verify_files().unwrap();
        }
        let leftovers: Vec<String> = std::fs::read_dir(self.mirror.root().join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("snapshot-") || n.starts_with("sync-"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "half-built snapshot left: {leftovers:?}"
        );
    }
}

#[test]
fn good_sync_merges_suites_and_apt_reads_the_snapshot() {
    require_tool("apt-get");
    let w = World::new();
    let report = w.sync(&["hello", "fw=1.0", "fw=2.0", "libfoo1"]).unwrap();
    assert_eq!(
        (report.selected, report.downloaded, report.reused),
        (4, 4, 0)
    );
    let snap = w.mirror.snapshot("site", &w.verifier()).unwrap();
    assert_eq!(snap.id(), report.snapshot);
    // One local suite named after the first upstream Codename, both
    // firmware versions kept, dated by the newest upstream Release.
    assert_eq!(snap.suite(), "bookworm");
    assert_eq!(snap.date(), 1_686_562_200);
    let versions = |name: &str| -> Vec<String> {
        snap.catalog()
            .lookup(name)
            .iter()
            .map(|id| snap.catalog().package(*id).version.to_string())
            .collect()
    };
    assert_eq!(versions("hello"), ["1.1"], "newest across the suites");
    assert_eq!(versions("fw"), ["2.0", "1.0"]);
    assert!(versions("docs").is_empty(), "only what was asked for");
    let sources = snap.release().fields.get("X-Ironrack-Sources").unwrap();
    assert!(
        sources.contains("/dists/bookworm-updates/InRelease"),
        "{sources}"
    );
    snap.verify_files().unwrap();

    // Only the wanted .debs were fetched, each once.
    let debs: Vec<_> = w
        .server
        .log()
        .into_iter()
        .filter(|l| l.path.ends_with(".deb"))
        .collect();
    assert_eq!(debs.len(), 4, "{debs:?}");

    let line = format!(
        "deb [trusted=yes] file:{} bookworm main non-free-firmware",
        w.mirror.snapshot_dir(snap.id()).display()
    );
    let apt = Apt::new(&w.dir.path().join("apt"), &line);
    let files = apt.update_and_download(&["hello", "fw=1.0"]);
    assert_eq!(files.len(), 2, "{files:?}");
    let sim = apt.run("apt-get", &["-s", "install", "hello"]);
    assert!(
        sim.contains("Inst libfoo1") && sim.contains("Inst hello (1.1"),
        "{sim}"
    );

    // The same sync again: the same content, so the same snapshot, and
    // nothing downloaded.
    w.server.clear_log();
    let again = w.sync(&["hello", "fw=1.0", "fw=2.0", "libfoo1"]).unwrap();
    assert_eq!(again.snapshot, report.snapshot);
    assert_eq!((again.downloaded, again.reused), (0, 4));
    assert!(w.server.requests_for(".deb").is_empty());
}

#[test]
fn file_urls_and_detached_release_signatures() {
    let w = World::new();
    // No InRelease: Release + Release.gpg are used.
    for suite in ["bookworm", "bookworm-updates"] {
        std::fs::remove_file(w.upstream_file(&format!("dists/{suite}/InRelease"))).unwrap();
    }
    let url = format!("file://{}", w.upstream.display());
    let report = w
        .sync_with(&w.options(&url, &w.gpg.keyring), &["docs"])
        .unwrap();
    assert_eq!(report.downloaded, 1);
    let report = w.sync(&["libfoo1"]).unwrap();
    let snap = w.mirror.snapshot("site", &w.verifier()).unwrap();
    assert_eq!(snap.id(), report.snapshot);
    assert_eq!(
        snap.entries().len(),
        2,
        "the previous snapshot's packages are kept"
    );
    assert!(w.server.requests_for("/InRelease").len() == 2);
    assert!(!w.server.requests_for("/Release.gpg").is_empty());
}

#[test]
fn tampered_index_is_refused() {
    let w = World::new();
    w.sync(&["docs"]).unwrap();
    let before = w.published();
    let index = w.upstream_file("dists/bookworm/main/binary-amd64/Packages.xz");
    flip_byte(&index);
    let err = w.sync(&["hello"]).unwrap_err();
    assert!(matches!(err, Error::Digest { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("dists/bookworm/main/binary-amd64/Packages.xz") && text.contains("sha256"),
        "{text}"
    );
    w.assert_intact(&before);
}

#[test]
fn tampered_deb_is_refused_and_not_pooled() {
    let w = World::new();
    w.sync(&["docs"]).unwrap();
    let before = w.published();
    let deb = w.upstream_file("pool/main/libf/libfoo1/libfoo1_1.0_amd64.deb");
    flip_byte(&deb);
    let err = w.sync(&["hello", "libfoo1"]).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("libfoo1_1.0_amd64.deb") && text.contains("sha256"),
        "{text}"
    );
    assert!(err.is_verification_failure());
    // hello's .deb verified and may be pooled (a shared, content-checked
    // cache), but no snapshot lists it and the ref did not move.
    let (r, _) = w.published();
    assert_eq!(r, before.0);
    let snap = w.mirror.snapshot("site", &w.verifier()).unwrap();
    assert!(snap.catalog().lookup("hello").is_empty());
    assert!(
        !w.mirror
            .root()
            .join("pool/main/libf/libfoo1/libfoo1_1.0_amd64.deb")
            .exists()
    );
    snap.verify_files().unwrap();
    let leftovers = std::fs::read_dir(w.mirror.root().join("tmp/downloads"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0, "the bad download is not kept");
}

#[test]
fn release_signed_by_another_key_is_refused() {
    let w = World::new();
    w.sync(&["docs"]).unwrap();
    let before = w.published();
    let stranger = GpgKey::generate("stranger");
    crate::support::sign_suite(&w.upstream, "bookworm-updates", &stranger);
    let err = w.sync(&["hello"]).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Gpgv { .. }), "{text}");
    assert!(
        text.contains("dists/bookworm-updates/InRelease") && text.contains("no good signature"),
        "{text}"
    );
    w.assert_intact(&before);
}

#[test]
fn modified_signed_text_is_refused() {
    let w = World::new();
    w.sync(&["docs"]).unwrap();
    let before = w.published();
    let path = w.upstream_file("dists/bookworm/InRelease");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("Suite: bookworm", "Suite: bookworm ")).unwrap();
    // Trailing blanks are not signed (RFC 4880 §7.1): still good.
    w.sync(&["docs"]).unwrap();
    std::fs::write(
        &path,
        text.replace("Codename: bookworm", "Codename: bookwork"),
    )
    .unwrap();
    let err = w.sync(&["hello"]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Gpgv {
                problem: ironrack_builder::source::mirror::GpgvProblem::BadSignature(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("dists/bookworm/InRelease"),
        "{err}"
    );
    w.assert_intact(&before);
}

#[test]
fn a_sibling_suites_release_cannot_stand_in() {
    let w = World::new();
    let dists = w.upstream.join("dists");
    let (a, b) = (
        dists.join("bookworm-updates/InRelease"),
        dists.join("bookworm/InRelease"),
    );
    std::fs::copy(&a, &b).unwrap();
    let err = w.sync(&["hello"]).unwrap_err();
    assert!(matches!(err, Error::WrongSuite { .. }), "{err}");
}

#[test]
fn truncated_download_is_refused_then_resumed() {
    let w = World::new();
    w.sync(&["docs"]).unwrap();
    let before = w.published();
    let name = "libfoo1_1.0_amd64.deb";
    let size = std::fs::metadata(w.upstream_file(&format!("pool/main/libf/libfoo1/{name}")))
        .unwrap()
        .len();
    w.server.fault(Fault::Truncate {
        suffix: name.into(),
        after: 3000,
    });
    let err = w.sync(&["hello", "libfoo1"]).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(name), "{text}");
    assert!(matches!(err, Error::Fetch { .. }), "{text}");
    w.assert_intact(&before);
    // The partial file waits in tmp/ under the hash it must have.
    let parts: Vec<_> = std::fs::read_dir(w.mirror.root().join("tmp/downloads"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(parts.len(), 1, "{parts:?}");
    assert_eq!(std::fs::metadata(&parts[0]).unwrap().len(), 3000);

    w.server.clear_faults();
    w.server.clear_log();
    let report = w.sync(&["hello", "libfoo1"]).unwrap();
    let libfoo = w.server.requests_for(name);
    assert_eq!(libfoo.len(), 1);
    assert_eq!((libfoo[0].range, libfoo[0].status), (Some(3000), 206));
    // hello was verified and pooled by the failed run: not fetched again.
    assert!(w.server.requests_for("hello_1.1_amd64.deb").is_empty());
    assert_eq!((report.downloaded, report.reused), (1, 1));
    assert_eq!(report.downloaded_bytes, size - 3000);
    w.mirror
        .snapshot("site", &w.verifier())
        .unwrap()
        .verify_files()
        .unwrap();
}

#[test]
fn unknown_package_names_what_exists() {
    let w = World::new();
    let err = w.sync(&["fw=3.0"]).unwrap_err().to_string();
    assert!(
        err.contains("fw version 3.0") && err.contains("1.0") && err.contains("2.0"),
        "{err}"
    );
    let mut options = w.options(&w.server.url(), &w.gpg.keyring);
    if let Sources::Upstreams(u) = &mut options.sources {
        u[0].components.push("contrib".into());
    }
    let err = w.sync_with(&options, &["docs"]).unwrap_err();
    assert!(
        matches!(err, Error::NoIndex { ref component, .. } if component == "contrib"),
        "{err}"
    );
    assert!(w.mirror.read_ref("site").unwrap().is_none());
}

#[test]
fn the_closure_of_image_specs() {
    let w = World::new();
    let spec = w.dir.path().join("node.toml");
    std::fs::write(
        &spec,
        "name = \"node\"\nchannel = \"stable\"\nversion = 1\nsuite = \"bookworm\"\n\
         [mirror]\npath = \"mirror\"\nsnapshot = \"site\"\n\
         [packages]\nbase = \"none\"\ninclude = [\"hello\"]\n\
         [kernel]\npackage = \"linux-image-6.1.0-1-test\"\nrelease = \"6.1.0-1-test\"\n",
    )
    .unwrap();
    let closure = SpecClosure::load(std::slice::from_ref(&spec)).unwrap();
    let options = w.options(&w.server.url(), &w.gpg.keyring);
    let report = sync(&w.mirror, &options, &closure, &w.key).unwrap();
    let snap = w.mirror.snapshot("site", &w.verifier()).unwrap();
    assert_eq!(snap.id(), report.snapshot);
    let mut names: Vec<String> = snap
        .entries()
        .iter()
        .map(|e| format!("{} {}", e.name, e.version))
        .collect();
    names.sort();
    // hello's dependency comes along; nothing else does.
    assert_eq!(
        names,
        [
            "hello 1.1",
            "libfoo1 1.0",
            "linux-image-6.1.0-1-test 6.1.1-1"
        ]
    );

    // A spec that cannot resolve names the spec and the package.
    let bad = w.dir.path().join("bad.toml");
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("\"hello\"", "\"nonesuch\"");
    std::fs::write(&bad, text).unwrap();
    let closure = SpecClosure::load(std::slice::from_ref(&bad)).unwrap();
    let err = sync(&w.mirror, &options, &closure, &w.key).unwrap_err();
    let mut text = err.to_string();
    let mut cause = std::error::Error::source(&err);
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    assert!(
        text.contains("bad.toml") && text.contains("nonesuch"),
        "{text}"
    );
    assert_eq!(w.mirror.resolve("site").unwrap(), report.snapshot);
}
