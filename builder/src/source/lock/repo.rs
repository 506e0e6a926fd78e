//! A plain Debian-format repository tree as the source of a lock:
//! `dists/SUITE/Release` and `dists/SUITE/COMPONENT/binary-ARCH/Packages*`,
//! with `pool/` files beside. Its snapshot id is the SHA-256 of the
//! Release file, as for a mirror snapshot.
//!
//! This stands in for the mirror's `Snapshot` until it lands: it reads
//! the same layout (a snapshot directory is such a tree) but does not
//! check the snapshot's signature.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{LockError, LockedFiles, is_safe_relative};
use crate::source::catalog::Catalog;
use crate::source::release::Release;

/// A repository tree and one of its suites.
#[derive(Debug, Clone)]
pub struct RepoDir {
    root: PathBuf,
    suite: String,
    id: String,
    release: Release,
}

impl RepoDir {
    /// Opens `ROOT/dists/SUITE/Release`.
    pub fn open(root: &Path, suite: &str) -> Result<Self, LockError> {
        let path = root.join("dists").join(suite).join("Release");
        let repo_error = |source| LockError::Repository {
            root: root.to_owned(),
            source,
        };
        let bytes = std::fs::read(&path).map_err(|source| {
            repo_error(crate::source::Error::Read {
                path: path.clone(),
                source,
            })
        })?;
        let origin = path.display().to_string();
        let text = crate::source::control::utf8(&bytes, &origin).map_err(repo_error)?;
        let release = Release::parse(text, &origin).map_err(repo_error)?;
        Ok(Self {
            root: root.to_owned(),
            suite: suite.to_owned(),
            id: hex::encode(Sha256::digest(&bytes)),
            release,
        })
    }

    /// The Release `Date` in Unix seconds (builds use it as
    /// SOURCE_DATE_EPOCH), if the Release has one.
    pub fn date(&self) -> Option<i64> {
        self.release.date_unix
    }

    /// The repository root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The Release's components (those with a directory when it lists none).
    pub fn components(&self) -> Vec<String> {
        if !self.release.components.is_empty() {
            let mut listed = self.release.components.clone();
            listed.retain(|c| is_safe_relative(c));
            return listed;
        }
        let dists = self.root.join("dists").join(&self.suite);
        let mut found: Vec<String> = std::fs::read_dir(&dists)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        found
    }

    /// Every component's Packages index for `arch`, in the Release's
    /// component order, checked against the Release's SHA256 list when it
    /// lists the file.
    pub fn catalog(&self, arch: &str) -> Result<Catalog, LockError> {
        let mut catalog = Catalog::new();
        let mut read_any = false;
        for component in self.components() {
            let rel_dir = format!("{component}/binary-{arch}");
            let Some((rel, path)) = ["Packages.xz", "Packages.gz", "Packages"]
                .iter()
                .map(|n| {
                    let rel = format!("{rel_dir}/{n}");
                    let path = self.root.join("dists").join(&self.suite).join(&rel);
                    (rel, path)
                })
                .find(|(_, p)| p.is_file())
            else {
                continue;
            };
            self.check_index(&rel, &path)?;
            catalog
                .read_packages_file(&path)
                .map_err(|source| LockError::Repository {
                    root: self.root.clone(),
                    source,
                })?;
            read_any = true;
        }
        if !read_any {
            return Err(LockError::NoIndex {
                root: self.root.clone(),
                suite: self.suite.clone(),
                arch: arch.to_owned(),
            });
        }
        Ok(catalog)
    }

    fn check_index(&self, rel: &str, path: &Path) -> Result<(), LockError> {
        let Some(listed) = self.release.index_file(rel) else {
            return Ok(());
        };
        let bytes = std::fs::read(path).map_err(|source| LockError::Repository {
            root: self.root.clone(),
            source: crate::source::Error::Read {
                path: path.to_owned(),
                source,
            },
        })?;
        let actual = Sha256::digest(&bytes);
        if actual[..] != listed.sha256[..] {
            return Err(LockError::IndexMismatch {
                path: path.to_owned(),
                listed: hex::encode(listed.sha256),
                actual: hex::encode(actual),
            });
        }
        Ok(())
    }
}

impl LockedFiles for RepoDir {
    fn snapshot_id(&self) -> &str {
        &self.id
    }

    fn open(&self, filename: &str) -> io::Result<Box<dyn Read + '_>> {
        if !is_safe_relative(filename) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a relative path inside the repository",
            ));
        }
        Ok(Box::new(File::open(self.root.join(filename))?))
    }
}
