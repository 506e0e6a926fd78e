//! Pins propagate: when a pinned (or preferred) version depends on an
//! exact or bounded version of another package that its candidate does not
//! meet, that package's candidate becomes the newest version that does.
//!
//! apt does this for `apt-get install pkg/release` (`SetCandidateRelease`)
//! but not for `pkg=version`, where it fails instead ("Depends: libfoo
//! (= 1) but 2 is to be installed"). An image spec pins the NVIDIA stack
//! by its few top packages; the dozen libraries they need at the same
//! version follow here, and every switch is reported.

use std::collections::HashSet;

use super::Switch;
use super::universe::Universe;
use crate::source::catalog::PackageId;
use crate::source::names::Name;
use crate::source::relation::Dependency;

/// Walks the closure from the requests (pinned ones first, as given) and
/// switches candidates where a group of (Pre-)Depends is met by no
/// candidate but a versioned alternative has a satisfying version.
/// `pinned` candidates never switch; preferred ones may, once.
pub(super) fn propagate(
    u: &Universe<'_>,
    cand: &mut [Option<PackageId>],
    requested: &[PackageId],
    pinned: &[PackageId],
) -> Vec<Switch> {
    let mut switched = Vec::new();
    let mut visited: HashSet<PackageId> = HashSet::new();
    let (first, rest): (Vec<PackageId>, Vec<PackageId>) = requested
        .iter()
        .partition(|&&id| u.newest()[u.package(id).name.index()] != Some(id));
    // A candidate decided once (pinned, or switched) stays: a newer
    // package met later on the walk must not switch it back.
    let mut fixed: HashSet<Name> = pinned.iter().map(|&id| u.package(id).name).collect();
    for start in first.into_iter().chain(rest) {
        let mut stack = vec![start];
        while let Some(id) = stack.pop() {
            if !visited.insert(id) {
                continue;
            }
            let p = u.package(id);
            let mut next = Vec::new();
            for group in p.pre_depends.groups().chain(p.depends.groups()) {
                if let Some(met) = first_met(u, cand, group) {
                    next.push(met);
                    continue;
                }
                if let Some(v) = switch_for(u, cand, &mut fixed, group) {
                    switched.push(Switch {
                        package: v,
                        because_of: id,
                    });
                    next.push(v);
                }
            }
            stack.extend(next.into_iter().rev());
        }
    }
    switched
}

/// The candidate apt would try first among those meeting `group`.
fn first_met(
    u: &Universe<'_>,
    cand: &[Option<PackageId>],
    group: &[Dependency],
) -> Option<PackageId> {
    group.iter().find_map(|dep| {
        let mut met: Vec<PackageId> = Vec::new();
        if let Some(id) = cand.get(dep.name.index()).copied().flatten()
            && u.version_satisfies(dep, u.package(id))
        {
            met.push(id);
        }
        for prv in u.catalog.providers(dep.name) {
            let owner = u.package(prv.package).name;
            if cand[owner.index()] == Some(prv.package) && u.provide_satisfies(dep, prv) {
                met.push(prv.package);
            }
        }
        met.into_iter()
            .min_by(|a, b| u.compare_providers(dep, *a, *b))
    })
}

/// Switches the candidate of the first versioned alternative that some
/// version satisfies; returns that version.
fn switch_for(
    u: &Universe<'_>,
    cand: &mut [Option<PackageId>],
    fixed: &mut HashSet<Name>,
    group: &[Dependency],
) -> Option<PackageId> {
    let (dep, v) = group
        .iter()
        .filter(|dep| dep.constraint.is_some() && !fixed.contains(&dep.name))
        .find_map(|dep| {
            let v = u
                .versions(dep.name)
                .find(|&v| u.version_satisfies(dep, u.package(v)))?;
            Some((dep, v))
        })?;
    cand[dep.name.index()] = Some(v);
    fixed.insert(dep.name);
    Some(v)
}
