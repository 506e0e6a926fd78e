//! Properties of the resolver on random repositories, against the real
//! apt and against an independent closure check; parsers of specs and
//! locks never panic, and locks round-trip.

use std::path::Path;

use ironrack_builder::source::lock::{Lock, LockedPackage};
use ironrack_builder::source::resolve::{Request, resolve};
use ironrack_builder::spec::{ImageSpec, PackageSet};
use proptest::prelude::*;

use crate::random::{Rng, check_closure, repository};
use crate::repo::{Fixture, catalog, closure};

fn request_of(names: &[String], recommends: bool) -> Request {
    let mut r = Request::new("amd64");
    for n in names {
        r = r.with(n, None);
    }
    r.recommends = recommends;
    r
}

/// apt and we agree wherever apt answers without its problem resolver,
/// and refuse the same requests; where apt's resolver repairs a broken
/// marking heuristically we do not follow (see the resolver's docs).
#[test]
fn apt_agrees_on_random_repositories() {
    let (mut same, mut both_refuse, mut repaired) = (0, 0, 0);
    let mut failures = Vec::new();
    for seed in 0..120u64 {
        let (paragraphs, names) = repository(seed);
        let f = Fixture::new(&paragraphs);
        let r = request_of(&names, seed % 4 == 0);
        let sim = f.apt(&r);
        let ours = closure(&f.catalog, &r);
        let apt_repaired = sim.resolver_broken.iter().any(|&n| n > 0);
        match (&ours, sim.ok, apt_repaired) {
            (Ok(ours), true, false) if *ours == sim.installs => same += 1,
            (Err(_), false, _) => both_refuse += 1,
            (_, true, true) => repaired += 1,
            _ => failures.push(format!(
                "seed {seed}: request {names:?}\nours: {ours:?}\napt: {:?}\n{}\n{}",
                sim.installs,
                paragraphs.join("\n"),
                sim.output
            )),
        }
    }
    eprintln!(
        "random repositories: {same} same closure as apt, {both_refuse} refused by both, \
         {repaired} repaired by apt's problem resolver"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n=====\n"));
    assert!(same >= 40 && both_refuse >= 10, "too few cases compared");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Closed and conflict-free; the same answer (or the same error)
    /// whatever the order of the index.
    #[test]
    fn closures_are_complete_consistent_and_order_independent(seed in any::<u64>(), recommends in any::<bool>()) {
        let (mut paragraphs, names) = repository(seed);
        let r = request_of(&names, recommends);
        let c = catalog(&paragraphs);
        let first = resolve(&c, &r);
        if let Ok(res) = &first {
            prop_assert!(check_closure(&c, &res.packages).is_ok(), "{:?}", check_closure(&c, &res.packages));
            for id in &res.requested {
                prop_assert!(res.packages.contains(id));
            }
        }
        let first = closure(&c, &r).map_err(|e| e.to_string());
        let mut rng = Rng::new(seed ^ 0x5eed);
        for _ in 0..3 {
            for i in (1..paragraphs.len()).rev() {
                paragraphs.swap(i, rng.below(i + 1));
            }
            let shuffled = closure(&catalog(&paragraphs), &r).map_err(|e| e.to_string());
            prop_assert_eq!(&shuffled, &first);
        }
    }

    #[test]
    fn spec_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = ImageSpec::parse_bytes(&bytes, Path::new("fuzz.toml"));
    }

    /// Mutations of the demo spec: every error is located in the file.
    #[test]
    fn mutated_specs_fail_with_a_location(at in 0usize..4000, len in 0usize..40, insert in "[a-z0-9=\"\\[\\]. \n-]{0,12}") {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../images/gpu-node.toml")).unwrap();
        let at = at.min(text.len());
        let end = (at + len).min(text.len());
        if text.is_char_boundary(at) && text.is_char_boundary(end) {
            let mutated = format!("{}{}{}", &text[..at], insert, &text[end..]);
            if let Err(e) = ImageSpec::parse(&mutated, Path::new("gpu-node.toml")) {
                let msg = e.to_string();
                prop_assert!(msg.starts_with("gpu-node.toml:"), "{}", msg);
                let line: usize = msg.split(':').nth(1).unwrap().parse().unwrap();
                prop_assert!(line >= 1 && line <= mutated.lines().count() + 1, "{}", msg);
            }
        }
    }

    #[test]
    fn lock_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        std::fs::write(&path, &bytes).unwrap();
        let _ = Lock::load(&path);
    }

    /// write → read gives the same lock, sorted, whatever the input order.
    #[test]
    fn locks_round_trip(entries in proptest::collection::vec(
        ("[a-z0-9][a-z0-9+.-]{0,20}", "[0-9]{1,3}(\\.[0-9a-z~+]{1,4}){0,2}(-[0-9a-z.~+]{1,6})?", any::<bool>(), any::<u64>(), any::<[u8; 32]>(), "[a-z0-9_+-]{1,12}(/[a-z0-9_+-]{1,12}){0,3}\\.deb"),
        0..20,
    ), spec in any::<[u8; 32]>(), snapshot in any::<[u8; 32]>()) {
        let mut packages: Vec<LockedPackage> = entries
            .into_iter()
            .map(|(name, version, build, size, sha, file)| LockedPackage {
                set: if build { PackageSet::Build } else { PackageSet::Image },
                name,
                version,
                architecture: "amd64".into(),
                size,
                sha256: hex::encode(sha),
                filename: format!("pool/{file}"),
            })
            .collect();
        packages.sort_by(|a, b| (a.set, &a.name).cmp(&(b.set, &b.name)));
        packages.dedup_by(|a, b| a.set == b.set && a.name == b.name);
        packages.reverse();
        let lock = Lock {
            version: 1,
            spec_sha256: hex::encode(spec),
            snapshot: hex::encode(snapshot),
            architecture: "amd64".into(),
            packages,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image.lock");
        lock.write(&path).unwrap();
        let back = Lock::load(&path).unwrap();
        let mut sorted = lock.clone();
        sorted.sort();
        prop_assert_eq!(&back, &sorted);
        prop_assert_eq!(back.to_toml(), lock.to_toml());
        prop_assert_eq!(std::fs::read_to_string(&path).unwrap(), lock.to_toml());
    }
}
