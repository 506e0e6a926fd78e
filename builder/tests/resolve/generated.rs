//! apt's rules, one at a time, on small generated repositories: our
//! closure equals the real apt's, or differs exactly where documented.

use ironrack_builder::source::Version;
use ironrack_builder::source::resolve::{BaseSet, Problem, ResolveError, resolve};

use crate::repo::{Fixture, catalog, closure, names, pkg, request};

#[test]
fn alternatives_take_the_first_installable_one() {
    let f = Fixture::new(&[
        pkg("app", "1", &[("Depends", "a | b")]),
        pkg("a", "1", &[("Depends", "not-there")]),
        pkg("b", "1", &[]),
    ]);
    assert_eq!(names(&f.agree(&request(&["app"]))), ["app", "b"]);
}

#[test]
fn providers_are_ordered_like_apt() {
    // Real package first; then Essential, Important, Priority, as apt's
    // CompareProviders.
    let f = Fixture::new(&[
        pkg("app", "1", &[("Depends", "virt")]),
        pkg("app2", "1", &[("Depends", "virt2")]),
        pkg("app3", "1", &[("Depends", "p-opt")]),
        pkg(
            "p-opt",
            "1",
            &[("Provides", "virt, virt2"), ("Priority", "optional")],
        ),
        pkg(
            "p-req",
            "1",
            &[("Provides", "virt, virt2"), ("Priority", "required")],
        ),
        pkg(
            "p-ess",
            "1",
            &[
                ("Provides", "virt"),
                ("Priority", "optional"),
                ("Essential", "yes"),
            ],
        ),
        pkg("p-none", "1", &[("Provides", "p-opt")]),
    ]);
    assert_eq!(names(&f.agree(&request(&["app"]))), ["app", "p-ess"]);
    assert_eq!(names(&f.agree(&request(&["app2"]))), ["app2", "p-req"]);
    assert_eq!(names(&f.agree(&request(&["app3"]))), ["app3", "p-opt"]);
}

#[test]
fn versioned_relations_need_versioned_provides() {
    let f = Fixture::new(&[
        pkg("app", "1", &[("Depends", "virt (>= 2)")]),
        pkg("p1", "1", &[("Provides", "virt (= 1)")]),
        pkg("p3", "1", &[("Provides", "virt (= 3)")]),
        pkg("pu", "1", &[("Provides", "virt"), ("Priority", "required")]),
    ]);
    assert_eq!(names(&f.agree(&request(&["app"]))), ["app", "p3"]);
}

#[test]
fn candidates_are_the_newest_and_constraints_can_fail_them() {
    let f = Fixture::new(&[
        pkg("app", "1", &[("Depends", "lib (>= 1.5) | other")]),
        pkg("lib", "1.0", &[]),
        pkg("lib", "2.0~rc1", &[]),
        pkg("lib", "1:0.1", &[]),
        pkg("old", "1", &[("Depends", "lib (<< 1:0)")]),
        pkg("other", "1", &[]),
    ]);
    let c = f.agree(&request(&["app"]));
    assert_eq!(c["lib"], "1:0.1", "the epoch wins");
    // apt: "Depends: lib (< 1:0) but 1:0.1 is to be installed".
    let err = closure(&f.catalog, &request(&["old"])).unwrap_err();
    assert!(err.to_string().contains("pin lib=2.0~rc1"), "{err}");
    assert!(!f.apt(&request(&["old"])).ok);
}

#[test]
fn pre_depends_come_before_depends() {
    let f = Fixture::new(&[
        pkg(
            "app",
            "1",
            &[("Pre-Depends", "x | y"), ("Depends", "y | x")],
        ),
        pkg("x", "1", &[]),
        pkg("y", "1", &[]),
    ]);
    assert_eq!(names(&f.agree(&request(&["app"]))), ["app", "x"]);
}

#[test]
fn any_qualifier_needs_multi_arch_allowed() {
    let f = Fixture::new(&[
        pkg("app", "1", &[("Depends", "tool:any, data")]),
        pkg("tool", "1", &[("Multi-Arch", "allowed")]),
        pkg(
            "data",
            "1",
            &[("Architecture", "all"), ("Multi-Arch", "foreign")],
        ),
        pkg("app2", "1", &[("Depends", "frn:any")]),
        pkg("frn", "1", &[("Multi-Arch", "foreign")]),
        pkg("app3", "1", &[("Depends", "libx:amd64")]),
        pkg("libx", "1", &[("Multi-Arch", "same")]),
        pkg("i386only", "1", &[("Architecture", "i386")]),
    ]);
    assert_eq!(names(&f.agree(&request(&["app"]))), ["app", "data", "tool"]);
    assert_eq!(names(&f.agree(&request(&["app3"]))), ["app3", "libx"]);
    // A Multi-Arch: foreign package does not meet `:any` for apt: both fail.
    assert!(closure(&f.catalog, &request(&["app2"])).is_err());
    assert!(!f.apt(&request(&["app2"])).ok);
    let err = closure(&f.catalog, &request(&["i386only"])).unwrap_err();
    assert!(
        matches!(err, ResolveError::NotForArchitecture { ref architectures, .. } if architectures == &["i386"]),
        "{err}"
    );
}

#[test]
fn recommends_only_when_asked_and_never_fatal() {
    let f = Fixture::new(&[
        pkg("app", "1", &[("Recommends", "extra, broken | extra2")]),
        pkg("extra", "1", &[]),
        pkg("extra2", "1", &[]),
        pkg("broken", "1", &[("Depends", "nothing")]),
    ]);
    assert_eq!(names(&f.agree(&request(&["app"]))), ["app"]);
    let mut with = request(&["app"]);
    with.recommends = true;
    assert_eq!(names(&f.agree(&with)), ["app", "extra", "extra2"]);
}

#[test]
fn a_failed_alternative_leaves_nothing_behind() {
    // apt marks c while trying a, drops a when d cannot be installed, and
    // its autoremover drops c again.
    let f = Fixture::new(&[
        pkg("app", "1", &[("Depends", "a | b")]),
        pkg("a", "1", &[("Depends", "c, d")]),
        pkg("c", "1", &[]),
        pkg("d", "1", &[("Depends", "missing")]),
        pkg("b", "1", &[]),
    ]);
    assert_eq!(names(&f.agree(&request(&["app"]))), ["app", "b"]);
}

#[test]
fn the_base_set_is_requested_by_name() {
    let f = Fixture::new(&[
        pkg(
            "base-a",
            "1",
            &[("Priority", "required"), ("Essential", "yes")],
        ),
        pkg(
            "base-b",
            "1",
            &[("Priority", "required"), ("Depends", "lib")],
        ),
        pkg("imp", "1", &[("Priority", "important")]),
        pkg("lib", "1", &[("Priority", "optional")]),
        pkg("opt", "1", &[("Priority", "optional")]),
    ]);
    let mut r = request(&["opt"]);
    r.base = BaseSet::Required;
    let ours = closure(&f.catalog, &r).unwrap();
    assert_eq!(names(&ours), ["base-a", "base-b", "lib", "opt"]);
    let apt = f.apt(&request(&["base-a", "base-b", "opt"]));
    assert_eq!(ours, apt.installs);
    r.base = BaseSet::Important;
    assert_eq!(
        names(&closure(&f.catalog, &r).unwrap()),
        ["base-a", "base-b", "imp", "lib", "opt"]
    );
    r.base = BaseSet::Essential;
    assert_eq!(names(&closure(&f.catalog, &r).unwrap()), ["base-a", "opt"]);
    // apt with an empty status does not add the Essential set by itself.
    assert_eq!(f.apt(&request(&["opt"])).installs.len(), 1);
}

#[test]
fn unsatisfiable_requests_name_the_chain() {
    let f = Fixture::new(&[
        pkg("top", "1", &[("Depends", "mid (= 1.0)")]),
        pkg("mid", "1.0", &[("Depends", "leaf (>= 3)")]),
        pkg("mid", "2.0", &[]),
        pkg("leaf", "2", &[]),
    ]);
    let err = resolve(&f.catalog, &request(&["top"])).unwrap_err();
    assert!(!f.apt(&request(&["top"])).ok, "apt fails too");
    // mid's candidate is 2.0: apt fails there; the chain says which pin
    // would get past it.
    assert_eq!(
        err.to_string(),
        "top 1 → mid (= 1.0): no version satisfies it (mid has 2.0, 1.0); pin mid=1.0 to use it"
    );
    // With the pin, the chain goes one level deeper.
    let pinned = request(&[])
        .with("top", None)
        .with("mid", Some(Version::parse("1.0").unwrap()));
    let err = resolve(&f.catalog, &pinned).unwrap_err();
    let ResolveError::Unsatisfiable { chain, problem } = &err else {
        panic!("{err}")
    };
    assert_eq!(chain.len(), 2, "{err}");
    assert!(matches!(problem, Problem::NoVersion { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "mid 1.0 → leaf (>= 3): no version satisfies it (leaf has 2)"
    );
}

#[test]
fn a_missing_pinned_version_lists_the_available_ones() {
    let c = catalog(&[
        pkg("fw", "535.309.01-0+deb12u1", &[]),
        pkg("fw", "535.261.03-1", &[]),
    ]);
    let r = request(&[]).with("fw", Some(Version::parse("535.216.01-1").unwrap()));
    let err = resolve(&c, &r).unwrap_err();
    assert_eq!(
        err.to_string(),
        "fw 535.216.01-1 is not in the index (available: 535.309.01-0+deb12u1, 535.261.03-1)"
    );
    let err = resolve(&c, &request(&["nope"])).unwrap_err();
    assert_eq!(err.to_string(), "package nope is not in the index");
}

#[test]
fn virtual_requests_need_a_single_provider() {
    let f = Fixture::new(&[
        pkg("one", "1", &[("Provides", "single")]),
        pkg("p1", "1", &[("Provides", "multi")]),
        pkg("p2", "1", &[("Provides", "multi")]),
    ]);
    // apt: "Note, selecting 'one' instead of 'single'".
    assert_eq!(names(&f.agree(&request(&["single"]))), ["one"]);
    let err = resolve(&f.catalog, &request(&["multi"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "multi is a virtual package provided by p1, p2: request one of them"
    );
    assert!(!f.apt(&request(&["multi"])).ok);
}

#[test]
fn pins_propagate_where_apt_gives_up() {
    let f = Fixture::new(&[
        pkg("smi", "2", &[("Depends", "libml (= 2)")]),
        pkg("smi", "1", &[("Depends", "libml (= 1), libx")]),
        pkg("libml", "2", &[]),
        pkg("libml", "1", &[("Depends", "alt (= 1)")]),
        pkg("alt", "2", &[]),
        pkg("alt", "1", &[]),
        pkg("libx", "1", &[]),
    ]);
    let pinned = request(&[]).with("smi", Some(Version::parse("1").unwrap()));
    // apt: "Depends: libml (= 1) but 2 is to be installed".
    let plain = f.apt(&pinned);
    assert!(!plain.ok, "{}", plain.output);
    let r = resolve(&f.catalog, &pinned).unwrap();
    let switched: Vec<String> = r
        .switched
        .iter()
        .map(|s| {
            let p = f.catalog.package(s.package);
            format!("{} {}", f.catalog.names().resolve(p.name), p.version)
        })
        .collect();
    assert_eq!(switched, ["libml 1", "alt 1"]);
    // apt given the switched versions as candidates agrees.
    f.apt
        .set_preferences(&[("libml".into(), "1".into()), ("alt".into(), "1".into())]);
    let sim = f.apt(&pinned);
    f.apt.set_preferences(&[]);
    let ours = closure(&f.catalog, &pinned).unwrap();
    assert_eq!(ours, sim.installs, "{}", sim.output);
    assert_eq!(names(&ours), ["alt", "libml", "libx", "smi"]);
}

#[test]
fn conflicts_of_requests_drop_candidates_others_are_refused() {
    let f = Fixture::new(&[
        pkg("x", "1", &[("Conflicts", "a")]),
        pkg("app", "1", &[("Depends", "a | b")]),
        pkg("a", "1", &[]),
        pkg("b", "1", &[]),
        pkg("y", "1", &[("Breaks", "old (<< 2)")]),
        pkg("app2", "1", &[("Depends", "old")]),
        pkg("old", "1", &[]),
        pkg("app3", "1", &[("Depends", "a")]),
    ]);
    // A requested package is protected: its Conflicts drop `a` before app's
    // dependencies are looked at (apt does the same).
    assert_eq!(names(&f.agree(&request(&["x", "app"]))), ["app", "b", "x"]);
    // The other way round apt marks `a` for app, unmarks it for x, and
    // needs its problem resolver; we never take a candidate that
    // conflicts with a package already chosen, so app gets b.
    let r = request(&["app", "x"]);
    let sim = f.apt(&r);
    assert!(sim.resolver_broken.iter().any(|&n| n > 0), "{}", sim.output);
    assert_eq!(names(&closure(&f.catalog, &r).unwrap()), ["app", "b", "x"]);
    // Without an alternative: an error naming the conflict (apt fails too).
    let r = request(&["app3", "x"]);
    assert!(!f.apt(&r).ok);
    let err = resolve(&f.catalog, &r).unwrap_err();
    assert_eq!(
        err.to_string(),
        "app3 1 → a → a 1: conflicts with x 1 (x 1 declares a)"
    );
    // Breaks drop a versioned candidate; apt fails as well.
    let r = request(&["y", "app2"]);
    assert!(!f.apt(&r).ok);
    let err = resolve(&f.catalog, &r).unwrap_err();
    assert_eq!(
        err.to_string(),
        "app2 1 → old → old 1: conflicts with y 1 (y 1 declares old (<< 2))"
    );
}

#[test]
fn ties_go_to_the_smaller_name_whatever_the_index_order() {
    let providers = [
        pkg("zeta", "1", &[("Provides", "virt")]),
        pkg("alpha", "1", &[("Provides", "virt")]),
    ];
    let app = pkg("app", "1", &[("Depends", "virt")]);
    let forward = Fixture::new(&[providers[0].clone(), providers[1].clone(), app.clone()]);
    let backward = Fixture::new(&[providers[1].clone(), providers[0].clone(), app]);
    let r = request(&["app"]);
    for f in [&forward, &backward] {
        assert_eq!(names(&closure(&f.catalog, &r).unwrap()), ["alpha", "app"]);
    }
    // apt takes the provider its cache met last: the answer follows the
    // order of the index.
    let (a, b) = (forward.apt(&r).installs, backward.apt(&r).installs);
    assert_ne!(a, b, "apt's choice did not depend on the index order");
}
