//! All packages a resolver may choose from, indexed by name and by the
//! (virtual) names they provide.
//!
//! Names are interned once for every index read into the catalog, so a
//! [`Name`] from any relation field indexes the tables directly: finding the
//! candidates for `Depends: foo` is two vector lookups, no hashing.

use std::path::Path;

use super::error::Error;
use super::index::{self, Package};
use super::names::{Interner, Name};
use super::version::Version;

/// The position of a package in its [`Catalog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageId(u32);

impl PackageId {
    /// The dense index (0, 1, 2, ... in order of addition).
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A package providing a name, with the version it provides (`Provides:
/// foo (= 1.0)`), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// The providing package.
    pub package: PackageId,
    /// The provided version; `None` for an unversioned Provides, which
    /// satisfies only unversioned dependencies.
    pub version: Option<Version>,
}

/// Packages from one or more indexes, with name and provider tables.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    names: Interner,
    packages: Vec<Package>,
    by_name: Vec<Vec<PackageId>>,
    providers: Vec<Vec<Provider>>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a Packages file (`.gz`/`.xz` by extension) into the catalog.
    pub fn read_packages_file(&mut self, path: &Path) -> Result<usize, Error> {
        let text = index::read_index_text(path)?;
        self.add_packages_text(&text, &path.display().to_string())
    }

    /// Parses Packages text into the catalog; returns how many were added.
    pub fn add_packages_text(&mut self, text: &str, origin: &str) -> Result<usize, Error> {
        // One thread: on this project's 2-core machines, splitting bookworm
        // main across two threads cost ~60% more CPU (fresh per-thread
        // malloc arenas, cross-thread frees, the merge) for no wall-time gain.
        // `index::parse_packages_parallel` stays available (and tested).
        let packages = index::parse_packages(text, origin, &mut self.names)?;
        let count = packages.len();
        self.extend(packages);
        Ok(count)
    }

    /// Adds packages whose names were interned with [`Catalog::names_mut`].
    pub fn extend(&mut self, packages: impl IntoIterator<Item = Package>) {
        let first_new = self.packages.len();
        self.packages.extend(packages);
        self.by_name.resize_with(self.names.len(), Vec::new);
        self.providers.resize_with(self.names.len(), Vec::new);
        let mut touched = Vec::new();
        for (i, p) in self.packages.iter().enumerate().skip(first_new) {
            let id = PackageId(u32::try_from(i).unwrap_or(u32::MAX));
            self.by_name[p.name.index()].push(id);
            touched.push(p.name);
            for dep in p.provides.atoms() {
                self.providers[dep.name.index()].push(Provider {
                    package: id,
                    version: dep.constraint.as_ref().map(|c| c.version.clone()),
                });
            }
        }
        // Newest first, then by architecture name, then first seen: a
        // deterministic order for resolvers that take the first candidate.
        touched.sort_unstable();
        touched.dedup();
        for name in touched {
            let (packages, names) = (&self.packages, &self.names);
            self.by_name[name.index()].sort_by(|a, b| {
                let (pa, pb) = (&packages[a.index()], &packages[b.index()]);
                pb.version
                    .cmp(&pa.version)
                    .then_with(|| {
                        names
                            .resolve(pa.architecture)
                            .cmp(names.resolve(pb.architecture))
                    })
                    .then(a.cmp(b))
            });
        }
    }

    /// The name table (to resolve [`Name`]s for display, or look names up).
    pub fn names(&self) -> &Interner {
        &self.names
    }

    /// The name table, for interning names of packages built in code.
    pub fn names_mut(&mut self) -> &mut Interner {
        &mut self.names
    }

    /// Every package, in order of addition.
    pub fn packages(&self) -> &[Package] {
        &self.packages
    }

    /// One package.
    ///
    /// # Panics
    /// If `id` is from another catalog with more packages.
    pub fn package(&self, id: PackageId) -> &Package {
        &self.packages[id.index()]
    }

    /// The packages of a real name, newest version first.
    pub fn by_name(&self, name: Name) -> &[PackageId] {
        self.by_name.get(name.index()).map_or(&[], Vec::as_slice)
    }

    /// The packages that provide `name` (virtual or real), in order of addition.
    pub fn providers(&self, name: Name) -> &[Provider] {
        self.providers.get(name.index()).map_or(&[], Vec::as_slice)
    }

    /// The packages of a name given as text (`[]` for an unknown name).
    pub fn lookup(&self, name: &str) -> &[PackageId] {
        self.names.get(name).map_or(&[], |n| self.by_name(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
Package: mawk
Version: 1.3.4-1
Architecture: amd64
Provides: awk
Filename: a
Size: 1

Package: gawk
Version: 5.2.1-2
Architecture: amd64
Provides: awk (= 5.2)
Filename: b
Size: 1

Package: mawk
Version: 1.3.4-2
Architecture: amd64
Provides: awk
Filename: c
Size: 1
";

    #[test]
    fn indexes_by_name_and_provided_name() {
        let mut c = Catalog::new();
        assert_eq!(c.add_packages_text(TEXT, "P").unwrap(), 3);
        let mawk = c.lookup("mawk");
        assert_eq!(mawk.len(), 2);
        assert_eq!(
            c.package(mawk[0]).version.as_str(),
            "1.3.4-2",
            "newest first"
        );
        let awk = c.names().get("awk").unwrap();
        assert!(c.by_name(awk).is_empty(), "awk is only virtual");
        let providers = c.providers(awk);
        assert_eq!(providers.len(), 3);
        assert_eq!(providers[1].version.as_ref().unwrap().as_str(), "5.2");
        assert!(c.lookup("nothing").is_empty());
    }
}
