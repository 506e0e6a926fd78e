//! The mirror's parsers never panic on arbitrary bytes: apt sources
//! (one-line and deb822), armored keys, gpgv status, mirror.toml, refs,
//! and a snapshot's own Release and Packages.

use std::path::Path;

use ironrack_builder::source::mirror::host_apt::{
    AptPaths, dearmor, parse_deb822_sources, parse_sources_list,
};
use ironrack_builder::source::mirror::sync::gpgv::judge;
use ironrack_builder::source::mirror::{Mirror, Snapshot, SnapshotId, parse_config, parse_entries};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

fn text() -> impl Strategy<Value = String> {
    // Arbitrary bytes, and deb822/sources-shaped text that gets further.
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..400)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        "(deb|deb-src|Types:|URIs:|Suites:|Components:|Signed-By:|Enabled:|#|\\[|\\]|=| |\t|\n|-----BEGIN PGP PUBLIC KEY BLOCK-----|=abcd|[a-z/:.,]{1,12}){0,40}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn sources_parsers_never_panic(t in text()) {
        let _ = parse_sources_list(&t, "sources.list");
        let _ = parse_deb822_sources(&t, "x.sources");
        let _ = dearmor(&t, "key.asc");
        let _ = AptPaths::parse_shell(&t);
        let _ = judge(&t, &[]);
        let _ = parse_entries(&t, "Packages", "main");
    }

    #[test]
    fn config_parser_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_config(&b, Path::new("mirror.toml"));
    }

    #[test]
    fn gpgv_status_lines_never_panic(lines in proptest::collection::vec(
        "\\[GNUPG:\\] (GOODSIG|VALIDSIG|BADSIG|ERRSIG|NO_PUBKEY|EXPKEYSIG) ?[0-9A-F ]{0,60}", 0..6)) {
        let _ = judge(&lines.join("\n"), &["ABCD".to_owned()]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A snapshot directory whose files are arbitrary (with a Release that
    /// hashes to the id, so parsing is reached): an error, never a panic.
    #[test]
    fn snapshot_reader_never_panics(
        release in text(),
        packages in text(),
        reference in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mirror = Mirror::init(&dir.path().join("m"), "site", &[]).unwrap();
        let release = format!("Suite: s\nComponents: main\nArchitectures: amd64\n{release}");
        let id = SnapshotId(Sha256::digest(release.as_bytes()).into());
        let suite = mirror.snapshot_dir(id).join("dists/s");
        std::fs::create_dir_all(suite.join("main/binary-amd64")).unwrap();
        std::fs::write(suite.join("Release"), &release).unwrap();
        std::fs::write(suite.join("main/binary-amd64/Packages"), &packages).unwrap();
        let _ = Snapshot::summary_unverified(&mirror, id);
        std::fs::write(mirror.root().join("refs/r"), &reference).unwrap();
        let _ = mirror.resolve("r");
        let _ = mirror.refs();
    }
}
