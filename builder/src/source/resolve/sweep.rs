//! apt's autoremover on new installs: a package marked while trying an
//! alternative that then failed stays marked in apt's depcache, and
//! `apt-get install` drops it again when nothing that stays needs it
//! (`DoAutomaticRemove`: "if the package is a new install and already
//! garbage we don't need to install it in the first place").

use super::mark::Marker;
use super::universe::Universe;
use crate::source::catalog::PackageId;
use crate::source::names::{Interner, Name};
use crate::source::relation::{ArchQualifier, Dependency, parse_relations};

/// Unmarks every marked package that no root reaches through Depends,
/// Pre-Depends, Recommends or Suggests (apt follows all four). Roots: the
/// requests and packages apt never autoremoves (Essential, Important).
pub(super) fn drop_garbage(u: &Universe<'_>, marker: &mut Marker<'_, '_>, requested: &[PackageId]) {
    if !marker.leaked {
        return;
    }
    let installed = marker.installed_packages();
    let mut reached = vec![false; u.name_count()];
    let mut stack: Vec<PackageId> = Vec::new();
    let mut reach = |name: Name, stack: &mut Vec<PackageId>, marker: &Marker<'_, '_>| {
        if marker.is_installed(name) && !reached[name.index()] {
            reached[name.index()] = true;
            stack.extend(marker.candidate(name));
        }
    };
    for &id in requested {
        reach(u.package(id).name, &mut stack, marker);
    }
    for &id in &installed {
        let name = u.package(id).name;
        if u.never_garbage(name) {
            reach(name, &mut stack, marker);
        }
    }
    while let Some(id) = stack.pop() {
        let p = u.package(id);
        let suggests = suggests(u, id);
        let atoms = p
            .pre_depends
            .atoms()
            .iter()
            .chain(p.depends.atoms())
            .chain(p.recommends.atoms())
            .chain(&suggests);
        for dep in atoms {
            for target in satisfiers(u, marker, dep) {
                reach(target, &mut stack, marker);
            }
        }
    }
    for id in installed {
        let name = u.package(id).name;
        if !reached[name.index()] {
            marker.unmark(name);
        }
    }
}

/// Marked packages whose marked version meets `dep`, by name.
fn satisfiers(u: &Universe<'_>, marker: &Marker<'_, '_>, dep: &Dependency) -> Vec<Name> {
    let mut out = Vec::new();
    if let Some(id) = marker.candidate(dep.name)
        && marker.is_installed(dep.name)
        && u.version_satisfies(dep, u.package(id))
    {
        out.push(dep.name);
    }
    for prv in u.catalog.providers(dep.name) {
        let owner = u.package(prv.package).name;
        if marker.is_installed(owner)
            && marker.candidate(owner) == Some(prv.package)
            && u.provide_satisfies(dep, prv)
        {
            out.push(owner);
        }
    }
    out
}

/// A package's Suggests (kept as text by the index parser), with names
/// from the catalog; names the catalog never saw cannot be marked anyway.
fn suggests(u: &Universe<'_>, id: PackageId) -> Vec<Dependency> {
    let fields = u.package(id).other_fields();
    let Some(text) = fields.get("Suggests") else {
        return Vec::new();
    };
    let mut scratch = Interner::new();
    let Ok(parsed) = parse_relations("Suggests", text, &mut scratch) else {
        return Vec::new();
    };
    parsed
        .atoms()
        .iter()
        .filter_map(|d| {
            let name = u.catalog.names().get(scratch.resolve(d.name))?;
            let arch = match d.arch {
                Some(ArchQualifier::Arch(_)) => return None,
                other => other,
            };
            let mut dep = Dependency::new(name);
            dep.arch = arch;
            dep.constraint = d.constraint.clone();
            Some(dep)
        })
        .collect()
}
