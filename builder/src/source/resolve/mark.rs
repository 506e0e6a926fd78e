//! apt's marking algorithm (`pkgDepCache::MarkInstall`, apt 2.6) on an
//! empty dpkg status: nothing is installed, so every `CurrentVer` branch of
//! apt is dead and a package's state is its candidate plus a mark.

use std::collections::HashMap;

use super::universe::Universe;
use crate::source::catalog::{PackageId, Provider};
use crate::source::index::Package;
use crate::source::names::Name;
use crate::source::relation::Dependency;

/// apt gives up past this depth (`IsModeChangeOk`).
const MAX_DEPTH: u32 = 3000;

/// Why a package could not be installed (the last reason seen).
#[derive(Debug, Clone)]
pub(super) struct Failure<'c> {
    /// The version that failed.
    pub package: PackageId,
    pub cause: Cause<'c>,
}

#[derive(Debug, Clone)]
pub(super) enum Cause<'c> {
    /// No candidate satisfies this group (apt drops the candidate).
    Unsatisfiable { group: &'c [Dependency] },
    /// Every solution of this group was tried and failed.
    SolutionsFailed {
        group: &'c [Dependency],
        tried: Vec<PackageId>,
    },
    /// The version conflicts with (or breaks, or is broken by) a package
    /// already chosen.
    Conflict {
        with: PackageId,
        relation: &'c Dependency,
        declared_by: PackageId,
    },
}

/// The marking state: a candidate and an install mark per name.
#[derive(Debug)]
pub(super) struct Marker<'u, 'c> {
    pub u: &'u Universe<'c>,
    cand: Vec<Option<PackageId>>,
    installed: Vec<bool>,
    /// apt's `Protected` flag: requested packages, the only solutions of
    /// their dependencies (recursively), and candidates their Conflicts
    /// dropped; only the user may change their state.
    protected: Vec<bool>,
    recommends: bool,
    pub failures: HashMap<Name, Failure<'c>>,
    /// A failed attempt left marks behind (apt's autoremover cleans up).
    pub leaked: bool,
    /// Conflicts and Breaks of marked packages, by the name they target.
    negative: HashMap<Name, Vec<(Name, &'c Dependency)>>,
}

impl<'u, 'c> Marker<'u, 'c> {
    pub fn new(u: &'u Universe<'c>, recommends: bool) -> Self {
        Self {
            u,
            cand: u.newest().to_vec(),
            installed: vec![false; u.name_count()],
            protected: vec![false; u.name_count()],
            recommends,
            failures: HashMap::new(),
            leaked: false,
            negative: HashMap::new(),
        }
    }

    pub fn candidates_mut(&mut self) -> &mut Vec<Option<PackageId>> {
        &mut self.cand
    }

    pub fn candidate(&self, name: Name) -> Option<PackageId> {
        self.cand[name.index()]
    }

    pub fn is_installed(&self, name: Name) -> bool {
        self.installed[name.index()]
    }

    /// The marked packages, in name order of the interner.
    pub fn installed_packages(&self) -> Vec<PackageId> {
        self.installed
            .iter()
            .zip(&self.cand)
            .filter(|(marked, _)| **marked)
            .filter_map(|(_, cand)| *cand)
            .collect()
    }

    /// apt-get's two passes: protect and mark every request, then install
    /// each one's dependencies, in order.
    pub fn install_requested(&mut self, requested: &[PackageId]) {
        for &id in requested {
            let name = self.u.package(id).name;
            // apt-get's TryToInstall: Fix->Protect(Pkg) marks it protected.
            self.protected[name.index()] = true;
            self.mark_install(name, false, 0, true);
        }
        for &id in requested {
            self.mark_install(self.u.package(id).name, true, 0, true);
        }
    }

    /// The dependency groups apt acts on, in its order: Pre-Depends,
    /// Depends, then Recommends (not critical) when asked.
    pub fn groups(&self, p: &'c Package) -> impl Iterator<Item = (&'c [Dependency], bool)> {
        let recommends = self.recommends.then_some(&p.recommends);
        p.pre_depends
            .groups()
            .chain(p.depends.groups())
            .map(|g| (g, true))
            .chain(
                recommends
                    .into_iter()
                    .flat_map(|r| r.groups())
                    .map(|g| (g, false)),
            )
    }

    /// Whether `dep` is met by a marked package (apt's `DepInstall`).
    pub fn atom_installed(&self, dep: &Dependency) -> bool {
        self.atom_met(dep, true)
    }

    /// Whether some candidate could meet `dep` (apt's `DepCVer`).
    fn atom_candidate(&self, dep: &Dependency) -> bool {
        self.atom_met(dep, false)
    }

    fn atom_met(&self, dep: &Dependency, installed_only: bool) -> bool {
        let ok = |name: Name| !installed_only || self.installed[name.index()];
        if let Some(id) = self.cand.get(dep.name.index()).copied().flatten()
            && ok(dep.name)
            && self.u.version_satisfies(dep, self.u.package(id))
        {
            return true;
        }
        self.u.catalog.providers(dep.name).iter().any(|prv| {
            let owner = self.u.package(prv.package).name;
            self.cand[owner.index()] == Some(prv.package)
                && ok(owner)
                && self.u.provide_satisfies(dep, prv)
        })
    }

    /// apt's `InstBroken`/`InstPolicyBroken` for a marked package.
    fn broken(&self, id: PackageId) -> bool {
        self.groups(self.u.package(id))
            .any(|(g, _)| !g.iter().any(|d| self.atom_installed(d)))
    }

    /// apt's `IsInstallOkDependenciesSatisfiableByCandidates`.
    fn satisfiable(&mut self, id: PackageId) -> bool {
        let p = self.u.package(id);
        let unmet = p
            .pre_depends
            .groups()
            .chain(p.depends.groups())
            .find(|g| !g.iter().any(|d| self.atom_candidate(d)));
        match unmet {
            None => true,
            Some(group) => {
                self.fail(id, Cause::Unsatisfiable { group });
                false
            }
        }
    }

    /// The candidates that satisfy a group, in the order apt tries them,
    /// without protected packages that are not to be installed (apt's
    /// `getAllPossibleSolutions`).
    pub fn solutions(&self, group: &'c [Dependency]) -> Vec<PackageId> {
        let mut out: Vec<PackageId> = Vec::new();
        for dep in group {
            let start = out.len();
            if let Some(id) = self.cand.get(dep.name.index()).copied().flatten()
                && self.u.version_satisfies(dep, self.u.package(id))
            {
                out.push(id);
            }
            for prv in self.u.catalog.providers(dep.name) {
                let owner = self.u.package(prv.package).name;
                if self.cand[owner.index()] == Some(prv.package)
                    && self.u.provide_satisfies(dep, prv)
                {
                    out.push(prv.package);
                }
            }
            out[start..].sort_by(|a, b| self.u.compare_providers(dep, *a, *b));
        }
        out.dedup();
        out.retain(|&id| {
            let n = self.u.package(id).name.index();
            !self.protected[n] || self.installed[n]
        });
        out
    }

    /// Candidates (other than `name`'s own) that a Conflicts or Breaks
    /// atom of `name` matches.
    fn conflicting(&self, name: Name, dep: &Dependency) -> Vec<PackageId> {
        let mut out = Vec::new();
        if dep.name != name
            && let Some(id) = self.cand.get(dep.name.index()).copied().flatten()
            && self.u.version_satisfies(dep, self.u.package(id))
        {
            out.push(id);
        }
        for prv in self.u.catalog.providers(dep.name) {
            let owner = self.u.package(prv.package).name;
            // Provides never apply against the package itself.
            if owner != name
                && self.cand[owner.index()] == Some(prv.package)
                && self.u.provide_satisfies(dep, prv)
            {
                out.push(prv.package);
            }
        }
        out
    }

    /// A marked package that `id` (of `name`, marked or not) conflicts
    /// with, in either direction.
    pub fn conflict_with_marked(&self, name: Name, id: PackageId) -> Option<Cause<'c>> {
        let p = self.u.package(id);
        for dep in p.conflicts.atoms().iter().chain(p.breaks.atoms()) {
            for other in self.conflicting(name, dep) {
                if self.installed[self.u.package(other).name.index()] {
                    return Some(conflict(other, dep, id));
                }
            }
        }
        self.conflicted_by(name, id)
    }

    /// A marked package whose Conflicts or Breaks match `id` (of `name`).
    /// apt does not look this way: it would mark both and leave the
    /// breakage to its problem resolver; we refuse the second one.
    fn conflicted_by(&self, name: Name, id: PackageId) -> Option<Cause<'c>> {
        let p = self.u.package(id);
        let marked = |n: Name| n != name && self.installed[n.index()];
        let against = |target: Name, met: &dyn Fn(&Dependency) -> bool| {
            self.negative.get(&target).and_then(|list| {
                list.iter()
                    .find(|(declarer, dep)| marked(*declarer) && met(dep))
                    .and_then(|(declarer, dep)| {
                        let by = self.cand[declarer.index()]?;
                        Some(conflict(by, dep, by))
                    })
            })
        };
        if let Some(c) = against(name, &|dep| self.u.version_satisfies(dep, p)) {
            return Some(c);
        }
        p.provides.atoms().iter().find_map(|provided| {
            let prv = Provider {
                package: id,
                version: provided.constraint.as_ref().map(|c| c.version.clone()),
            };
            against(provided.name, &|dep| self.u.provide_satisfies(dep, &prv))
        })
    }

    /// apt's `MarkInstall_RemoveConflictsIfNotUpgradeable` on an empty
    /// status: a protected package's Conflicts and Breaks drop the
    /// candidates they match for good. A match that is already marked
    /// fails the install (apt would unmark it, breaking what needed it).
    fn remove_conflicts(
        &mut self,
        name: Name,
        id: PackageId,
        protected: bool,
        from_user: bool,
    ) -> bool {
        let p = self.u.package(id);
        let mut failed = false;
        for dep in p.conflicts.atoms().iter().chain(p.breaks.atoms()) {
            for other in self.conflicting(name, dep) {
                let target = self.u.package(other).name;
                if self.installed[target.index()] {
                    self.fail(id, conflict(other, dep, id));
                    failed = true;
                    if !protected && !from_user {
                        return false;
                    }
                } else if protected {
                    self.cand[target.index()] = None;
                    self.protected[target.index()] = true;
                    self.fail(other, conflict(id, dep, id));
                }
            }
        }
        if let Some(cause) = self.conflicted_by(name, id) {
            self.fail(id, cause);
            failed = true;
        }
        !failed
    }

    fn set_installed(&mut self, name: Name) {
        if self.installed[name.index()] {
            return;
        }
        self.installed[name.index()] = true;
        if let Some(id) = self.cand[name.index()] {
            let p = self.u.package(id);
            for dep in p.conflicts.atoms().iter().chain(p.breaks.atoms()) {
                self.negative.entry(dep.name).or_default().push((name, dep));
            }
        }
    }

    /// Unmarks a package (its stale entries in `negative` are skipped by
    /// [`Marker::conflicted_by`], which looks at marks).
    pub fn unmark(&mut self, name: Name) {
        if self.installed[name.index()] {
            self.installed[name.index()] = false;
            self.leaked = true;
        }
    }

    /// apt's `MarkInstall_DiscardInstall`: unmarked, and never a candidate
    /// again in this run.
    fn discard(&mut self, name: Name) {
        self.unmark(name);
        self.cand[name.index()] = None;
        self.leaked = true;
    }

    fn fail(&mut self, package: PackageId, cause: Cause<'c>) {
        let name = self.u.package(package).name;
        self.failures.insert(name, Failure { package, cause });
    }

    /// `pkgDepCache::MarkInstall(Pkg, AutoInst, Depth, FromUser)`.
    pub fn mark_install(&mut self, name: Name, auto: bool, depth: u32, from_user: bool) -> bool {
        let i = name.index();
        // IsModeChangeOk: only the user may change a protected package.
        if depth > MAX_DEPTH || (!from_user && self.protected[i] && !self.installed[i]) {
            return false;
        }
        let Some(id) = self.cand[i] else {
            return false;
        };
        if !self.protected[i] && self.installed[i] && !self.broken(id) {
            return true;
        }
        if auto && !self.satisfiable(id) {
            // apt drops the candidate (and the mark) for good, unless the
            // package is protected.
            if !self.protected[i] {
                self.unmark(name);
                self.cand[i] = None;
            }
            return false;
        }
        if from_user || !auto {
            self.set_installed(name);
        }
        if !auto {
            return true;
        }
        let package = self.u.package(id);
        let already = self.protected[i];
        let fail_early = !already && !from_user;
        let to_install: Vec<(&'c [Dependency], bool)> = self
            .groups(package)
            .filter(|(g, _)| already || !g.iter().any(|d| self.atom_installed(d)))
            .collect();
        let mut failed = false;
        if !self.remove_conflicts(name, id, already, from_user) {
            if fail_early {
                return false;
            }
            failed = true;
        }
        self.set_installed(name);
        // Protected while its dependencies are installed (apt's
        // ScopedProtected): nothing they pull in may unmark it.
        self.protected[i] = true;
        failed |= !self.install_dependencies(id, to_install, depth, already, from_user);
        if !already {
            self.protected[i] = false;
        }
        if failed && fail_early {
            self.discard(name);
            return false;
        }
        !failed
    }

    /// apt's `MarkInstall_InstallDependencies`.
    fn install_dependencies(
        &mut self,
        id: PackageId,
        to_install: Vec<(&'c [Dependency], bool)>,
        depth: u32,
        protected: bool,
        from_user: bool,
    ) -> bool {
        let mut failed = false;
        for (group, critical) in to_install {
            if group.iter().any(|d| self.atom_installed(d)) {
                // A protected package protects the only solution of each
                // of its dependencies too.
                if !protected || !critical {
                    continue;
                }
                let only = match self.solutions(group).as_slice() {
                    [only] => self.u.package(*only).name,
                    _ => continue,
                };
                if self.protected[only.index()] {
                    continue;
                }
                self.protected[only.index()] = true;
                failed |= !self.mark_install(only, true, depth + 1, false);
                continue;
            }
            let solutions = self.solutions(group);
            let mut found = false;
            for &solution in &solutions {
                let target = self.u.package(solution).name;
                if self.cand[target.index()] != Some(solution) {
                    continue;
                }
                if protected && critical && solutions.len() == 1 {
                    if !self.mark_install(target, false, depth + 1, false) {
                        continue;
                    }
                    self.protected[target.index()] = true;
                }
                if self.mark_install(target, true, depth + 1, false) {
                    found = true;
                    break;
                }
            }
            if !found && critical {
                self.fail(
                    id,
                    Cause::SolutionsFailed {
                        group,
                        tried: solutions,
                    },
                );
                failed = true;
                if !protected && !from_user {
                    break;
                }
            }
        }
        !failed
    }
}

fn conflict<'c>(with: PackageId, relation: &'c Dependency, declared_by: PackageId) -> Cause<'c> {
    Cause::Conflict {
        with,
        relation,
        declared_by,
    }
}
