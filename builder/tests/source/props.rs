//! Property tests: every parser takes arbitrary and mutated bytes without
//! panicking, and every writer round-trips through its reader.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::Path;

use ironrack_builder::fixtures::deb::{compress, write_ar};
use ironrack_builder::fixtures::{DebBuilder, TarEntry, TarKind};
use ironrack_builder::source::ar::ArReader;
use ironrack_builder::source::compress::Compression;
use ironrack_builder::source::control::{self, Paragraph, ParseOptions};
use ironrack_builder::source::deb::DebFile;
use ironrack_builder::source::index::parse_packages;
use ironrack_builder::source::names::Interner;
use ironrack_builder::source::relation::parse_relations;
use ironrack_builder::source::release::{ClearSigned, Release};
use ironrack_builder::source::{Error, Version};
use proptest::prelude::*;

fn hash_of(v: &Version) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

fn version_text() -> impl Strategy<Value = String> {
    "([0-9]{1,3}:)?[0-9a-z~.+]{0,3}[0-9]{0,2}[a-z~.+:-]{0,3}[0-9]{0,3}(-[0-9a-z~.+]{1,4})?"
}

/// Reads a whole .deb (control, every data entry, the tail), as the rootfs
/// stage would; any error is fine, a panic is not.
fn read_deb(bytes: &[u8]) -> Result<usize, Error> {
    let deb = DebFile::from_reader(bytes, Path::new("p.deb"))?;
    let mut data = deb.data()?;
    let mut n = 0;
    for entry in data.entries()? {
        let mut entry = entry?;
        let mut sink = Vec::new();
        let _ = entry.by_ref().take(1 << 20).read_to_end(&mut sink);
        n += 1;
    }
    data.finish()?;
    Ok(n)
}

fn sample_deb() -> Vec<u8> {
    DebBuilder::new("p", "1.0-1", "amd64")
        .compression(Compression::Gzip, Compression::None)
        .script("postinst", "#!/bin/sh\n")
        .file("usr/bin/p", b"binary", 0o755)
        .symlink("usr/bin/q", "p")
        .build()
        .unwrap()
}

const PACKAGES: &str = "Package: a\nVersion: 1.0-1\nArchitecture: amd64\nDepends: b (>= 2) | c, d:any\nProvides: e (= 1)\nFilename: pool/a.deb\nSize: 10\nSHA256: 3a2118df47bf3f04285649f0455c2fc6fe2dc7f0b237073038aa00af41f0d5f2\nDescription: x\n y\n\nPackage: b\nVersion: 2\nArchitecture: all\nFilename: pool/b.deb\nSize: 1\n";

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn version_parse_never_panics(s in any::<String>()) {
        if let Ok(v) = Version::parse(&s) {
            let _ = v.lint();
            let again = Version::parse(v.as_str()).unwrap();
            prop_assert_eq!(again.as_str(), v.as_str());
        }
    }

    #[test]
    fn version_order_is_consistent(a in version_text(), b in version_text(), c in version_text()) {
        let (Ok(a), Ok(b), Ok(c)) = (Version::parse(&a), Version::parse(&b), Version::parse(&c)) else {
            return Ok(());
        };
        prop_assert_eq!(a.compare(&b), b.compare(&a).reverse());
        if a == b {
            prop_assert_eq!(hash_of(&a), hash_of(&b));
        }
        if a <= b && b <= c {
            prop_assert!(a <= c, "{} <= {} <= {}", a, b, c);
        }
        let again = Version::parse(a.as_str()).unwrap();
        prop_assert_eq!((again.epoch(), again.upstream(), again.revision()), (a.epoch(), a.upstream(), a.revision()));
    }

    #[test]
    fn equal_versions_hash_equal(a in "[0-9]{1,2}(\\.0{0,3}[0-9a]{0,2}){0,3}(-0{0,2}[0-9])?") {
        // Leading zeros, "-0" revisions and epoch 0 are where dpkg equality
        // is subtle: pad every digit run and compare.
        let mut padded = String::from("0:");
        let mut prev_digit = false;
        for ch in a.chars() {
            if ch.is_ascii_digit() && !prev_digit {
                padded.push('0');
            }
            prev_digit = ch.is_ascii_digit();
            padded.push(ch);
        }
        if !a.contains('-') {
            padded.push_str("-0");
        }
        let (v, w) = (Version::parse(&a).unwrap(), Version::parse(&padded).unwrap());
        prop_assert_eq!(&v, &w);
        prop_assert_eq!(hash_of(&v), hash_of(&w));
    }

    #[test]
    fn control_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400), comments: bool) {
        if let Ok(text) = control::utf8(&bytes, "prop") {
            let _ = control::parse_paragraphs(text, "prop", ParseOptions { comments });
        }
    }

    #[test]
    fn control_writer_round_trips(
        fields in proptest::collection::btree_map(
            "[A-Za-z][A-Za-z0-9-]{0,12}",
            ("[!-~]([ -~]{0,20}[!-~])?", proptest::collection::vec("[!-~]{1,10}( [!-~]{1,5})?", 0..3)),
            1..8,
        )
    ) {
        let mut p = Paragraph::default();
        let mut seen = std::collections::HashSet::new();
        for (name, (first, more)) in &fields {
            if !seen.insert(name.to_ascii_lowercase()) || name.starts_with('-') {
                continue;
            }
            let mut value = first.clone();
            for line in more {
                value.push_str("\n ");
                value.push_str(line);
            }
            p.set(name, value);
        }
        let back = control::parse_single(&p.to_text(), "w").unwrap();
        let pairs = |q: &Paragraph| q.fields.iter().map(|f| (f.name.clone(), f.value.clone())).collect::<Vec<_>>();
        prop_assert_eq!(pairs(&back), pairs(&p));
    }

    #[test]
    fn relation_parse_never_panics(s in any::<String>(), field in "(Depends|Provides|Conflicts)") {
        let _ = parse_relations(&field, &s, &mut Interner::new());
    }

    #[test]
    fn relations_round_trip_through_display(
        groups in proptest::collection::vec(
            proptest::collection::vec(
                ("[a-z0-9][a-z0-9+.-]{0,8}", "(:any|:amd64)?", proptest::option::of(("(<<|<=|=|>=|>>)", version_text()))),
                1..3,
            ),
            0..5,
        )
    ) {
        let text = groups
            .iter()
            .map(|alts| {
                alts.iter()
                    .map(|(n, q, c)| match c {
                        Some((op, v)) => format!("{n}{q} ({op} {v})"),
                        None => format!("{n}{q}"),
                    })
                    .collect::<Vec<_>>()
                    .join(" | ")
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut names = Interner::new();
        if let Ok(r) = parse_relations("Depends", &text, &mut names) {
            let shown = r.display(&names).to_string();
            let again = parse_relations("Depends", &shown, &mut names).unwrap();
            prop_assert_eq!(again, r);
        }
    }

    #[test]
    fn ar_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut data = b"!<arch>\n".to_vec();
        data.extend(&bytes);
        for input in [&bytes[..], &data[..]] {
            if let Ok(mut ar) = ArReader::new(input, Path::new("p.a")) {
                while let Ok(Some(_)) = ar.next_member() {
                    let _ = std::io::copy(&mut ar, &mut std::io::sink());
                }
            }
        }
    }

    #[test]
    fn packages_parse_never_panics(s in any::<String>()) {
        let _ = parse_packages(&s, "prop", &mut Interner::new());
    }

    #[test]
    fn packages_parse_survives_mutation(at in 0..PACKAGES.len(), len in 0usize..6, with in "[ -~\n]{0,6}") {
        let mut text = PACKAGES.as_bytes().to_vec();
        let end = (at + len).min(text.len());
        text.splice(at..end, with.bytes());
        if let Ok(text) = std::str::from_utf8(&text) {
            let _ = parse_packages(text, "prop", &mut Interner::new());
        }
    }

    #[test]
    fn release_and_clearsigned_never_panic(s in any::<String>()) {
        let _ = Release::parse(&s, "prop");
        let _ = ClearSigned::parse(&s, "prop");
        let wrapped = format!("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{s}\n-----BEGIN PGP SIGNATURE-----\nx\n-----END PGP SIGNATURE-----\n");
        let _ = ClearSigned::parse(&wrapped, "prop");
    }

    #[test]
    fn release_dates_never_panic(s in "([A-Z][a-z]{2}, )?[0-9]{1,2} [A-Za-z]{3} [0-9]{4} [0-9:]{5,8} .{1,5}") {
        let _ = ironrack_builder::source::release::parse_date(&s);
        let _ = Release::parse(&format!("Date: {s}\nValid-Until: {s}\n"), "prop");
    }

    #[test]
    fn clearsigned_round_trips(lines in proptest::collection::vec("[ -~]{0,30}", 0..12)) {
        let mut armored = String::from("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n");
        for l in &lines {
            if l.starts_with('-') {
                armored.push_str("- ");
            }
            armored.push_str(l);
            armored.push('\n');
        }
        armored.push_str("-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n");
        let m = ClearSigned::parse(&armored, "prop").unwrap();
        let want: String = lines.iter().map(|l| format!("{}\n", l.trim_end_matches([' ', '\t']))).collect();
        prop_assert_eq!(&m.text, &want);
        let signed = want.strip_suffix('\n').unwrap_or(&want).replace('\n', "\r\n");
        prop_assert_eq!(m.signed_data(), signed.into_bytes());
    }
}

proptest! {
    // Each case compresses and decompresses whole archives: fewer cases.
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn deb_reader_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..800)) {
        let _ = read_deb(&bytes);
        // Garbage in each member position of an otherwise valid container.
        for (i, member) in ["debian-binary", "control.tar", "data.tar"].iter().enumerate() {
            let mut members: Vec<(&str, Vec<u8>)> = vec![
                ("debian-binary", b"2.0\n".to_vec()),
                ("control.tar", ironrack_builder::fixtures::tar::archive(&[TarEntry::new("./control", TarKind::File(b"Package: p\n".to_vec()), 0o644)]).unwrap()),
                ("data.tar", Vec::new()),
            ];
            members[i] = (member, bytes.clone());
            let refs: Vec<(&str, &[u8])> = members.iter().map(|(n, d)| (*n, &d[..])).collect();
            let mut out = Vec::new();
            write_ar(&mut out, &refs, 0).unwrap();
            let _ = read_deb(&out);
        }
    }

    #[test]
    fn deb_reader_never_panics_on_mutation(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        let mut deb = sample_deb();
        for (at, byte) in &flips {
            let i = at.index(deb.len());
            deb[i] = *byte;
        }
        let _ = read_deb(&deb);
        let _ = read_deb(&deb[..cut.index(deb.len())]);
    }

    #[test]
    fn compressed_garbage_is_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..300), c in prop::sample::select(vec![Compression::Gzip, Compression::Xz, Compression::Zstd, Compression::Bzip2, Compression::Lzma])) {
        let mut out = Vec::new();
        if let Ok(mut d) = c.decoder(&bytes[..]) {
            let _ = d.read_to_end(&mut out);
        }
    }

    #[test]
    fn fixture_debs_round_trip(
        files in proptest::collection::btree_map("[a-z]{1,8}(/[a-z0-9._-]{1,12}){0,3}", (proptest::collection::vec(any::<u8>(), 0..300), 0u32..0o7777), 0..6),
        c in prop::sample::select(vec![Compression::None, Compression::Gzip, Compression::Xz, Compression::Zstd]),
    ) {
        let mut b = DebBuilder::new("rt", "1", "all").compression(c, c);
        // A name can't be both a file and a directory: keep the first.
        let mut taken: Vec<String> = Vec::new();
        for (path, (data, mode)) in &files {
            if taken.iter().any(|t| path.starts_with(&format!("{t}/")) || t.starts_with(&format!("{path}/"))) {
                continue;
            }
            taken.push(path.clone());
            b = b.file(path, data, *mode);
        }
        let bytes = b.build().unwrap();
        prop_assert_eq!(&bytes, &b.build().unwrap(), "deterministic");
        let deb = DebFile::from_reader(&bytes[..], Path::new("rt.deb")).unwrap();
        prop_assert_eq!(deb.control().get("Package"), Some("rt"));
        let mut data = deb.data().unwrap();
        let mut got = Vec::new();
        for entry in data.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            got.push((entry.header.path.as_os_str().as_encoded_bytes().to_vec(), entry.header.mode, content));
        }
        data.finish().unwrap();
        let want: Vec<_> = b.entries().iter().map(|e| {
            let content = match &e.kind { TarKind::File(d) => d.clone(), _ => Vec::new() };
            (e.path.clone(), e.mode, content)
        }).collect();
        prop_assert_eq!(got, want);
    }
}

#[test]
fn compress_helpers_round_trip() {
    let text = b"some text\n".repeat(50);
    for c in [
        Compression::None,
        Compression::Gzip,
        Compression::Xz,
        Compression::Zstd,
        Compression::Bzip2,
        Compression::Lzma,
    ] {
        let packed = compress(&text, c).unwrap();
        let mut out = Vec::new();
        c.decoder(&packed[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, text, "{c}");
    }
}
