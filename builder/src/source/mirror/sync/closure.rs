//! `mirror sync --for images/*.toml`: the packages image specs need, i.e.
//! every package set of every spec, resolved (as `ironrack lock` will
//! resolve it) against everything the synced upstream suites offer.

use std::path::{Path, PathBuf};

use super::super::error::Error;
use super::super::stanza::Entry;
use super::select::Selection;
use crate::source::Catalog;
use crate::source::resolve::resolve;
use crate::spec::ImageSpec;

/// The closure of some image specs.
#[derive(Debug)]
pub struct SpecClosure {
    specs: Vec<(PathBuf, ImageSpec)>,
}

impl SpecClosure {
    /// Loads the specs (each error names its file, line and key).
    pub fn load(paths: &[PathBuf]) -> Result<Self, Error> {
        let specs = paths
            .iter()
            .map(|p| {
                ImageSpec::load(p)
                    .map(|s| (p.clone(), s))
                    .map_err(|source| Error::Spec {
                        source: Box::new(source),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { specs })
    }

    /// The spec files.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.specs.iter().map(|(p, _)| p.as_path())
    }
}

impl Selection for SpecClosure {
    fn select(
        &self,
        catalog: &Catalog,
        _entries: &[Entry],
        _architectures: &[String],
    ) -> Result<Vec<usize>, Error> {
        let mut out = Vec::new();
        for (path, spec) in &self.specs {
            let requests = spec.requests().map_err(|source| Error::Spec {
                source: Box::new(source),
            })?;
            for (set, request) in requests {
                let resolution = resolve(catalog, &request).map_err(|source| Error::Resolve {
                    spec: path.clone(),
                    set: set.to_string(),
                    source: Box::new(source),
                })?;
                tracing::info!(spec = %path.display(), %set, packages = resolution.packages.len(), "closure resolved");
                out.extend(resolution.packages.iter().map(|id| id.index()));
            }
        }
        Ok(out)
    }
}
