//! Where `lock` and `build` read packages from: the spec's mirror snapshot
//! (its signature verified with the key or trust file given), or a plain
//! repository tree with `--repo`.

use std::borrow::Cow;
use std::path::Path;

use anyhow::{Context, bail};
use ironrack_builder::pipeline::{DirectorySource, PackageSource};
use ironrack_builder::source::Catalog;
use ironrack_builder::source::lock::{LockedFiles, RepoDir};
use ironrack_builder::source::mirror::Snapshot;
use ironrack_builder::spec::ImageSpec;

use super::mirror::SnapshotKeyArgs;

/// Where the packages come from.
pub enum Source {
    /// `--repo DIR`: a plain repository tree, unsigned.
    Repo(Box<RepoDir>, DirectorySource),
    /// The spec's (or `--mirror`'s) snapshot, verified.
    Snapshot(Box<Snapshot>),
}

impl Source {
    /// `--repo DIR` if given, else snapshot `spec.mirror.snapshot` of the
    /// mirror at `mirror` (default: the spec's `mirror.path`), its
    /// signature checked with `key`.
    pub fn open(
        spec: &ImageSpec,
        spec_path: &Path,
        repo: Option<&Path>,
        mirror: Option<&Path>,
        key: &SnapshotKeyArgs,
    ) -> anyhow::Result<Self> {
        if let Some(dir) = repo {
            let repo = RepoDir::open(dir, &spec.suite)?;
            let files = DirectorySource(repo.root().to_owned());
            return Ok(Self::Repo(Box::new(repo), files));
        }
        let root = mirror.map_or_else(|| spec.mirror_root(spec_path), Path::to_owned);
        let mirror = super::mirror::open(&root)?;
        let verifier = key.verifier(&mirror)?;
        let snapshot = mirror
            .snapshot(&spec.mirror.snapshot, &verifier)
            .with_context(|| {
                format!(
                    "opening snapshot {} of mirror {}",
                    spec.mirror.snapshot,
                    mirror.name()
                )
            })?;
        if snapshot.suite() != spec.suite {
            bail!(
                "{}: suite {} but snapshot {} carries suite {}",
                spec_path.display(),
                spec.suite,
                snapshot.id(),
                snapshot.suite()
            );
        }
        Ok(Self::Snapshot(Box::new(snapshot)))
    }

    /// The files, for the lock check.
    pub fn files(&self) -> &dyn LockedFiles {
        match self {
            Self::Repo(r, _) => r.as_ref(),
            Self::Snapshot(s) => s.as_ref(),
        }
    }

    /// The packages, for a build.
    pub fn packages(&self) -> &dyn PackageSource {
        match self {
            Self::Repo(_, files) => files,
            Self::Snapshot(s) => s.as_ref(),
        }
    }

    /// The Release date (a build's SOURCE_DATE_EPOCH), if it has one.
    pub fn date(&self) -> Option<i64> {
        match self {
            Self::Repo(r, _) => r.date(),
            Self::Snapshot(s) => Some(s.date()),
        }
    }

    /// What it is, for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Repo(r, _) => format!("repository {}", r.root().display()),
            Self::Snapshot(s) => format!("snapshot {}", s.id()),
        }
    }

    /// Every package, for the resolver.
    pub fn catalog(&self, arch: &str) -> anyhow::Result<Cow<'_, Catalog>> {
        Ok(match self {
            Self::Repo(r, _) => Cow::Owned(
                r.catalog(arch)
                    .with_context(|| format!("reading repository {}", r.root().display()))?,
            ),
            Self::Snapshot(s) => Cow::Borrowed(s.catalog()),
        })
    }
}
