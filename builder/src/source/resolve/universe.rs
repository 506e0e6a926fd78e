//! The catalog as apt sees it for one architecture: the candidate of every
//! name, which versions satisfy a relation, and apt's order of providers.

use std::cell::Cell;
use std::cmp::Ordering;

use super::BaseSet;
use super::error::{self, ResolveError};
use crate::source::catalog::{Catalog, PackageId, Provider};
use crate::source::index::{MultiArch, Package, Priority};
use crate::source::names::Name;
use crate::source::relation::{ArchQualifier, Dependency};
use crate::source::version::Version;

/// Per-name flags apt keeps on the package (not the version), computed on
/// first use: most names are never compared.
#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    known: bool,
    essential: bool,
    important: bool,
}

/// A read-only view of a catalog for one native architecture.
#[derive(Debug)]
pub(super) struct Universe<'c> {
    pub catalog: &'c Catalog,
    native: Option<Name>,
    all: Option<Name>,
    /// The default candidate of each name (its highest usable version).
    newest: Vec<Option<PackageId>>,
    flags: Vec<Cell<Flags>>,
}

impl<'c> Universe<'c> {
    pub fn new(catalog: &'c Catalog, arch: &str) -> Self {
        let names = catalog.names();
        let native = names.get(arch);
        let all = names.get("all");
        let mut universe = Self {
            catalog,
            native,
            all,
            newest: vec![None; names.len()],
            flags: vec![Cell::new(Flags::default()); names.len()],
        };
        for p in catalog.packages() {
            if universe.newest[p.name.index()].is_none() {
                let first = universe.versions(p.name).next();
                universe.newest[p.name.index()] = first;
            }
        }
        universe
    }

    /// Whether a package is of the native architecture or `all`.
    pub fn usable(&self, package: &Package) -> bool {
        Some(package.architecture) == self.native || Some(package.architecture) == self.all
    }

    pub fn package(&self, id: PackageId) -> &'c Package {
        self.catalog.package(id)
    }

    pub fn name_count(&self) -> usize {
        self.newest.len()
    }

    /// The default candidates, indexed by [`Name::index`].
    pub fn newest(&self) -> &[Option<PackageId>] {
        &self.newest
    }

    pub fn text(&self, name: Name) -> &'c str {
        self.catalog.names().resolve(name)
    }

    /// Usable versions of a name, newest first.
    pub fn versions(&self, name: Name) -> impl Iterator<Item = PackageId> + '_ {
        self.catalog
            .by_name(name)
            .iter()
            .copied()
            .filter(|&id| self.usable(self.package(id)))
    }

    /// The usable package `name` at exactly `version`.
    pub fn version_of(&self, name: &str, version: &Version) -> Option<PackageId> {
        let name = self.catalog.names().get(name)?;
        self.versions(name)
            .find(|&id| self.package(id).version == *version)
    }

    /// The name a request for `text` installs: the package itself, or the
    /// only package providing it (apt: "Note, selecting X instead of Y").
    pub fn requested_name(
        &self,
        text: &str,
        candidates: &[Option<PackageId>],
    ) -> Result<Name, ResolveError> {
        let unknown = || ResolveError::UnknownPackage {
            name: text.to_owned(),
        };
        let name = self.catalog.names().get(text).ok_or_else(unknown)?;
        if candidates[name.index()].is_some() {
            return Ok(name);
        }
        let mut providers: Vec<Name> = self
            .catalog
            .providers(name)
            .iter()
            .map(|p| self.package(p.package))
            .filter(|p| self.usable(p))
            .map(|p| p.name)
            .filter(|n| candidates[n.index()].is_some())
            .collect();
        providers.sort_by(|a, b| self.text(*a).cmp(self.text(*b)));
        providers.dedup();
        match providers.as_slice() {
            [only] => Ok(*only),
            [] if self.catalog.by_name(name).is_empty() => Err(unknown()),
            [] => Err(ResolveError::NotForArchitecture {
                name: text.to_owned(),
                architectures: error::architectures(self, name),
            }),
            many => Err(ResolveError::VirtualPackage {
                name: text.to_owned(),
                providers: many.iter().map(|n| self.text(*n).to_owned()).collect(),
            }),
        }
    }

    /// The base set's packages (at their default candidates), by name.
    pub fn base_set(&self, base: BaseSet) -> Vec<PackageId> {
        if base == BaseSet::None {
            return Vec::new();
        }
        let mut out: Vec<PackageId> = self
            .newest
            .iter()
            .flatten()
            .copied()
            .filter(|&id| base.includes(self.package(id)))
            .collect();
        out.sort_by(|a, b| self.order(*a, *b));
        out
    }

    /// Sort order of results: by name, then version (one per name anyway).
    pub fn order(&self, a: PackageId, b: PackageId) -> Ordering {
        let (pa, pb) = (self.package(a), self.package(b));
        self.text(pa.name)
            .cmp(self.text(pb.name))
            .then_with(|| pa.version.cmp(&pb.version))
    }

    /// Whether a real package version satisfies `dep` (a relation naming it).
    pub fn version_satisfies(&self, dep: &Dependency, package: &Package) -> bool {
        let arch_ok = match dep.arch {
            None | Some(ArchQualifier::Native) => true,
            Some(ArchQualifier::Any) => package.multi_arch == MultiArch::Allowed,
            Some(ArchQualifier::Arch(a)) => Some(a) == self.native,
        };
        arch_ok && dep.allows(&package.version)
    }

    /// Whether a `Provides` entry satisfies `dep`: unversioned provides
    /// meet only unversioned relations.
    pub fn provide_satisfies(&self, dep: &Dependency, provider: &Provider) -> bool {
        let owner = self.package(provider.package);
        let arch_ok = match dep.arch {
            None | Some(ArchQualifier::Native) => true,
            Some(ArchQualifier::Any) => owner.multi_arch == MultiArch::Allowed,
            Some(ArchQualifier::Arch(a)) => Some(a) == self.native,
        };
        arch_ok
            && match (&dep.constraint, &provider.version) {
                (None, _) => true,
                (Some(c), Some(v)) => c.allows(v),
                (Some(_), None) => false,
            }
    }

    /// Whether apt's autoremover keeps a package whatever depends on it
    /// (package flag Essential or Important).
    pub fn never_garbage(&self, name: Name) -> bool {
        let f = self.flags(name);
        f.essential || f.important
    }

    fn flags(&self, name: Name) -> Flags {
        let cell = &self.flags[name.index()];
        let mut f = cell.get();
        if !f.known {
            f.known = true;
            // apt forces its own package Essential (pkgCacheGen::ForceEssential).
            f.essential = self.text(name) == "apt";
            for id in self.versions(name) {
                let p = self.package(id);
                f.essential |= p.essential;
                let other = p.other_text();
                f.important |= has_yes(other, "Important") || has_yes(other, "Protected");
            }
            cell.set(f);
        }
        f
    }

    /// apt's `CompareProviders` for two solutions of `dep`: `Less` means
    /// `a` is tried first.
    pub fn compare_providers(&self, dep: &Dependency, a: PackageId, b: PackageId) -> Ordering {
        let (pa, pb) = (self.package(a), self.package(b));
        // `foo:any` names its own (virtual) group in apt: no real package
        // of the target is preferred then.
        let own = |p: &Package| dep.arch != Some(ArchQualifier::Any) && p.name == dep.name;
        let (fa, fb) = (self.flags(pa.name), self.flags(pb.name));
        own(pb)
            .cmp(&own(pa))
            .then(fb.essential.cmp(&fa.essential))
            .then(fb.important.cmp(&fa.important))
            .then(priority_rank(pa).cmp(&priority_rank(pb)))
            // apt's last resort is its package ID (higher first), i.e. the
            // order in which its cache generator happened to meet each name
            // while reading the indexes. The name instead: the same answer
            // whatever order the indexes are read in.
            .then_with(|| self.text(pa.name).cmp(self.text(pb.name)))
    }
}

/// apt's numeric priority of a version: a missing field is 0 (which
/// sorts first), an unknown word counts as `extra`.
fn priority_rank(p: &Package) -> u8 {
    match &p.priority {
        None => 0,
        Some(Priority::Required) => 1,
        Some(Priority::Important) => 2,
        Some(Priority::Standard) => 3,
        Some(Priority::Optional) => 4,
        Some(Priority::Extra | Priority::Unlisted(_)) => 5,
    }
}

/// Whether deb822 text has `Field: yes` (field names case-insensitive).
fn has_yes(text: &str, field: &str) -> bool {
    text.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.eq_ignore_ascii_case(field) && value.trim().eq_ignore_ascii_case("yes")
        })
    })
}
