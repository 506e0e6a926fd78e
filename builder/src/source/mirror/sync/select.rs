//! Which upstream packages a sync fetches.
//!
//! [`Selection`] is the seam: [`ExactPackages`] takes named packages as
//! they are (no dependency closure: for an operator adding one .deb); the
//! image specs' closure (`mirror sync --for images/*.toml`) implements the
//! same trait with the resolver.

use crate::source::{Catalog, Version};

use super::super::error::Error;
use super::super::stanza::Entry;

/// Chooses packages among everything the synced upstream suites offer.
pub trait Selection {
    /// The positions in `entries` (equal to the `PackageId` indexes of
    /// `catalog`, built from the same entries in order) to fetch.
    /// `architectures` are the mirror's (`all` is implied).
    fn select(
        &self,
        catalog: &Catalog,
        entries: &[Entry],
        architectures: &[String],
    ) -> Result<Vec<usize>, Error>;
}

/// One `NAME` or `NAME=VERSION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRequest {
    /// The package name.
    pub name: String,
    /// An exact version, or `None` for the newest in the synced suites.
    pub version: Option<Version>,
}

impl PackageRequest {
    /// Parses `NAME` or `NAME=VERSION`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = || Error::BadRequest {
            text: text.chars().take(200).collect(),
        };
        let (name, version) = match text.split_once('=') {
            Some((n, v)) => (n, Some(Version::parse(v).map_err(|_| bad())?)),
            None => (text, None),
        };
        if !crate::source::relation::is_package_name(name) {
            return Err(bad());
        }
        Ok(Self {
            name: name.to_owned(),
            version,
        })
    }
}

/// Exactly the packages named: the newest version of each (every
/// architecture the mirror carries, and `all`), or the version pinned.
#[derive(Debug, Clone, Default)]
pub struct ExactPackages {
    /// The requests.
    pub requests: Vec<PackageRequest>,
}

impl Selection for ExactPackages {
    fn select(
        &self,
        catalog: &Catalog,
        entries: &[Entry],
        architectures: &[String],
    ) -> Result<Vec<usize>, Error> {
        let mut out = Vec::new();
        for request in &self.requests {
            let ours = |i: &usize| {
                let arch = &entries[*i].architecture;
                arch == "all" || architectures.contains(arch)
            };
            // Newest first (the catalog's order).
            let found: Vec<usize> = catalog
                .lookup(&request.name)
                .iter()
                .map(|id| id.index())
                .filter(ours)
                .collect();
            let want = request
                .version
                .as_ref()
                .or_else(|| found.first().map(|&i| &entries[i].version));
            let chosen: Vec<usize> = found
                .iter()
                .copied()
                .filter(|&i| want.is_some_and(|w| entries[i].version == *w))
                .collect();
            if chosen.is_empty() {
                let mut available: Vec<String> = found
                    .iter()
                    .map(|&i| entries[i].version.to_string())
                    .collect();
                available.dedup();
                return Err(Error::PackageNotFound {
                    name: request.name.clone(),
                    version: request.version.as_ref().map(ToString::to_string),
                    available,
                });
            }
            out.extend(chosen);
        }
        Ok(out)
    }
}

/// Everything any of several selections picks (`--for SPEC` and
/// `--package NAME` together: an image's closure plus what the server
/// needs beside it, such as `ipxe`).
pub struct Union(pub Vec<Box<dyn Selection>>);

impl std::fmt::Debug for Union {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Union({} selections)", self.0.len())
    }
}

impl Selection for Union {
    fn select(
        &self,
        catalog: &Catalog,
        entries: &[Entry],
        architectures: &[String],
    ) -> Result<Vec<usize>, Error> {
        let mut out = std::collections::BTreeSet::new();
        for selection in &self.0 {
            out.extend(selection.select(catalog, entries, architectures)?);
        }
        Ok(out.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::mirror::snapshot::catalog_of;
    use crate::source::mirror::stanza::parse_entries;

    fn stanza(name: &str, version: &str, arch: &str) -> String {
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: {arch}\n\
             Filename: pool/main/{name}_{version}_{arch}.deb\nSize: 1\nSHA256: {}\n",
            "00".repeat(32)
        )
    }

    #[test]
    fn picks_newest_or_pinned_and_names_what_exists() {
        let text = [
            stanza("fw", "535.261.03-1", "amd64"),
            stanza("fw", "535.309.01-1~deb12u1", "amd64"),
            stanza("fw", "535.309.01-1~deb12u1", "arm64"),
            stanza("doc", "1", "all"),
        ]
        .join("\n");
        let entries = parse_entries(&text, "P", "main").unwrap();
        let catalog = catalog_of(&entries, "P").unwrap();
        let archs = ["amd64".to_owned()];
        let pick = |reqs: &[&str]| {
            let requests = reqs
                .iter()
                .map(|r| PackageRequest::parse(r).unwrap())
                .collect();
            ExactPackages { requests }.select(&catalog, &entries, &archs)
        };
        assert_eq!(pick(&["fw"]).unwrap(), [1]);
        assert_eq!(pick(&["fw=535.261.03-1", "doc"]).unwrap(), [0, 3]);
        let err = pick(&["fw=1.0"]).unwrap_err().to_string();
        assert!(
            err.contains("535.261.03-1") && err.contains("535.309.01-1~deb12u1"),
            "{err}"
        );
        assert!(matches!(
            pick(&["nope"]),
            Err(Error::PackageNotFound { .. })
        ));
        let exact = |reqs: &[&str]| -> Box<dyn Selection> {
            let requests = reqs
                .iter()
                .map(|r| PackageRequest::parse(r).unwrap())
                .collect();
            Box::new(ExactPackages { requests })
        };
        let union = Union(vec![exact(&["doc", "fw"]), exact(&["doc"])]);
        assert_eq!(union.select(&catalog, &entries, &archs).unwrap(), [1, 3]);
        let union = Union(vec![exact(&["doc"]), exact(&["nope"])]);
        assert!(union.select(&catalog, &entries, &archs).is_err());
        for bad in ["", "=1", "a=", "A b", "x=1:"] {
            assert!(PackageRequest::parse(bad).is_err(), "{bad}");
        }
    }
}
