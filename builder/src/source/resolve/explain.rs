//! The final check of a marking, and the chain of packages explaining why
//! a request could not be met.

use std::collections::HashSet;

use super::error::{Link, Problem, ResolveError};
use super::mark::{Cause, Marker};
use crate::source::catalog::PackageId;
use crate::source::names::Name;
use crate::source::relation::Dependency;

/// Longest chain reported (the marking itself stops at 3000 levels).
const MAX_CHAIN: usize = 64;

impl Marker<'_, '_> {
    /// Fails unless every request is marked, every marked package's
    /// Depends and Pre-Depends are met by marked packages, and no two
    /// marked packages conflict.
    pub fn check(&self, requested: &[PackageId]) -> Result<(), ResolveError> {
        // By name, so that which problem is reported first does not depend
        // on the order the indexes were read in.
        let mut installed = self.installed_packages();
        installed.sort_by(|a, b| self.u.order(*a, *b));
        for &id in requested {
            let name = self.u.package(id).name;
            if !self.is_installed(name) {
                return Err(self.explain(name, id));
            }
        }
        let conflicted = installed
            .iter()
            .copied()
            .find_map(|id| Some((id, self.conflict_with_marked(self.u.package(id).name, id)?)));
        if let Some((id, cause)) = conflicted {
            // Explain from a request whose installation failed, if any.
            if let Some(&r) = requested
                .iter()
                .find(|&&r| self.failures.contains_key(&self.u.package(r).name))
            {
                return Err(self.explain(self.u.package(r).name, r));
            }
            return Err(ResolveError::Unsatisfiable {
                chain: vec![self.link(id)],
                problem: self.conflict_problem(&cause),
            });
        }
        for &id in &installed {
            let p = self.u.package(id);
            let deps = p.pre_depends.groups().chain(p.depends.groups());
            for group in deps {
                if !group.iter().any(|d| self.atom_installed(d)) {
                    if self.failures.contains_key(&p.name) {
                        return Err(self.explain(p.name, id));
                    }
                    let chain = vec![self.link(id), Link::Relation(group_text(self, group))];
                    let problem = self.no_version(group);
                    return Err(ResolveError::Unsatisfiable { chain, problem });
                }
            }
        }
        Ok(())
    }

    fn link(&self, id: PackageId) -> Link {
        let p = self.u.package(id);
        Link::Package {
            name: self.u.text(p.name).to_owned(),
            version: p.version.to_string(),
        }
    }

    /// Follows the recorded failures from a requested package down to the
    /// first relation nothing could meet.
    fn explain(&self, mut name: Name, mut id: PackageId) -> ResolveError {
        let mut chain = Vec::new();
        let mut seen = HashSet::new();
        let problem = loop {
            let Some(failure) = self.failures.get(&name) else {
                chain.push(self.link(id));
                break Problem::NotInstalled;
            };
            chain.push(self.link(failure.package));
            if !seen.insert(name) || chain.len() >= MAX_CHAIN {
                break Problem::NotInstalled;
            }
            match &failure.cause {
                cause @ Cause::Conflict { .. } => break self.conflict_problem(cause),
                Cause::Unsatisfiable { group } => {
                    chain.push(Link::Relation(group_text(self, group)));
                    // A candidate that would have met the relation may have
                    // been dropped for a reason of its own: follow it.
                    match self.dropped_solution(group, &seen) {
                        Some((next_name, next_id)) => (name, id) = (next_name, next_id),
                        None => break self.no_version(group),
                    }
                }
                Cause::SolutionsFailed { group, tried } => {
                    chain.push(Link::Relation(group_text(self, group)));
                    let next = tried.iter().find_map(|&t| {
                        let n = self.u.package(t).name;
                        (self.failures.contains_key(&n) && !seen.contains(&n)).then_some((n, t))
                    });
                    match next {
                        Some((next_name, next_id)) => (name, id) = (next_name, next_id),
                        None if tried.is_empty() => break self.no_version(group),
                        None => {
                            break Problem::NothingInstallable {
                                tried: tried.iter().map(|&t| package_text(self, t)).collect(),
                            };
                        }
                    }
                }
            }
        };
        ResolveError::Unsatisfiable { chain, problem }
    }

    fn conflict_problem(&self, cause: &Cause<'_>) -> Problem {
        let Cause::Conflict {
            with,
            relation,
            declared_by,
        } = cause
        else {
            return Problem::NotInstalled;
        };
        let declarer = self.u.package(*declared_by);
        Problem::Conflict {
            with: package_text(self, *with),
            relation: format!(
                "{} {} declares {}",
                self.u.text(declarer.name),
                declarer.version,
                relation_text(self, relation)
            ),
        }
    }

    /// A failed package whose version satisfies an alternative of `group`.
    fn dropped_solution(
        &self,
        group: &[Dependency],
        seen: &HashSet<Name>,
    ) -> Option<(Name, PackageId)> {
        group.iter().find_map(|dep| {
            let f = self.failures.get(&dep.name)?;
            let ok = !seen.contains(&dep.name)
                && self.u.version_satisfies(dep, self.u.package(f.package));
            ok.then_some((dep.name, f.package))
        })
    }

    /// What the index has for each alternative of `group`.
    fn no_version(&self, group: &[Dependency]) -> Problem {
        let mut available = Vec::new();
        let mut hint = None;
        for dep in group {
            let name = self.u.text(dep.name);
            let versions: Vec<PackageId> = self.u.versions(dep.name).collect();
            let mut providers: Vec<String> = self
                .u
                .catalog
                .providers(dep.name)
                .iter()
                .filter(|p| self.u.usable(self.u.package(p.package)))
                .map(|p| package_text(self, p.package))
                .collect();
            providers.sort();
            providers.dedup();
            if hint.is_none()
                && let Some(&v) = versions.iter().find(|&&v| {
                    self.u.newest()[dep.name.index()] != Some(v)
                        && self.u.version_satisfies(dep, self.u.package(v))
                })
            {
                hint = Some(format!("{name}={}", self.u.package(v).version));
            }
            let text = match (versions.is_empty(), providers.is_empty()) {
                (true, true) => format!("{name} is not in the index"),
                (true, false) => format!("{name} is provided by {}", providers.join(", ")),
                (false, _) => {
                    let list: Vec<String> = versions
                        .iter()
                        .map(|&v| self.u.package(v).version.to_string())
                        .collect();
                    format!("{name} has {}", list.join(", "))
                }
            };
            available.push(text);
        }
        Problem::NoVersion { available, hint }
    }
}

fn package_text(m: &Marker<'_, '_>, id: PackageId) -> String {
    let p = m.u.package(id);
    format!("{} {}", m.u.text(p.name), p.version)
}

fn relation_text(m: &Marker<'_, '_>, dep: &Dependency) -> String {
    dep.display(m.u.catalog.names()).to_string()
}

fn group_text(m: &Marker<'_, '_>, group: &[Dependency]) -> String {
    let parts: Vec<String> = group.iter().map(|d| relation_text(m, d)).collect();
    parts.join(" | ")
}
