//! `ironrack lock`: resolve an image spec into its lock file, update one
//! package of it, or check it (`--check`, what builds run as `--locked`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use ironrack_builder::source::lock::{self, Lock, LockedFiles, RepoDir};
use ironrack_builder::spec::{ImageSpec, PackageSet};

use super::outln;

/// Arguments of `ironrack lock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// The image spec (images/NAME.toml); the lock is written beside it
    /// (images/NAME.lock).
    pub spec: PathBuf,

    /// Read packages from this Debian-format repository tree
    /// (dists/SUITE/COMPONENT/binary-ARCH/Packages*) instead of the
    /// spec's mirror snapshot.
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,

    /// Check the existing lock instead of writing one: the spec is the one
    /// locked, the repository is the locked snapshot, every locked file is
    /// there with its sha256.
    #[arg(long, alias = "locked", conflicts_with = "update")]
    pub check: bool,

    /// Re-resolve only this package (repeatable), keeping every other
    /// locked version unless the new one needs a newer one; prints what
    /// changed.
    #[arg(long, value_name = "PKG")]
    pub update: Vec<String>,
}

/// Runs `ironrack lock`.
pub fn run(args: LockArgs) -> anyhow::Result<()> {
    let spec_bytes =
        std::fs::read(&args.spec).with_context(|| format!("reading {}", args.spec.display()))?;
    let spec = ImageSpec::parse_bytes(&spec_bytes, &args.spec)?;
    let lock_path = lock_path(&args.spec);
    let repo = open_snapshot(&spec, &args.spec, args.repo.as_deref())?;
    if args.check {
        let lock = Lock::load(&lock_path)?;
        lock.verify_against(&spec_bytes, &repo)
            .with_context(|| format!("checking {}", lock_path.display()))?;
        return outln!(
            "{}: {} packages verified against snapshot {}",
            lock_path.display(),
            lock.packages.len(),
            repo.snapshot_id()
        );
    }
    let catalog = repo
        .catalog(&spec.architecture)
        .with_context(|| format!("reading repository {}", repo.root().display()))?;
    let old = lock_path
        .exists()
        .then(|| Lock::load(&lock_path))
        .transpose();
    let new = if args.update.is_empty() {
        lock::lock_spec(&spec, &spec_bytes, &catalog, repo.snapshot_id())?
    } else {
        let old = old.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?.as_ref();
        let Some(old) = old else {
            bail!(
                "{} does not exist: run `ironrack lock` first",
                lock_path.display()
            );
        };
        lock::update_lock(
            &spec,
            &spec_bytes,
            old,
            &catalog,
            repo.snapshot_id(),
            &args.update,
        )?
    };
    new.write(&lock_path)?;
    for set in [PackageSet::Image, PackageSet::Build] {
        let count = new.packages(set).count();
        if count > 0 {
            outln!("{set}: {count} packages")?;
        }
    }
    if let Ok(Some(old)) = &old {
        let diff = new.diff(old);
        outln!("{}", diff.to_string().trim_end())?;
    }
    outln!("wrote {} (snapshot {})", lock_path.display(), new.snapshot)
}

/// `images/NAME.toml` → `images/NAME.lock`.
fn lock_path(spec: &Path) -> PathBuf {
    spec.with_extension("lock")
}

/// The packages to lock from: `--repo DIR`, else the spec's mirror
/// snapshot directory (MIRROR/snapshots/ID, ID from MIRROR/refs/NAME).
// The mirror stage replaces this with `Mirror::snapshot`, which also
// verifies the snapshot's signature.
fn open_snapshot(
    spec: &ImageSpec,
    spec_path: &Path,
    repo: Option<&Path>,
) -> anyhow::Result<RepoDir> {
    if let Some(dir) = repo {
        return Ok(RepoDir::open(dir, &spec.suite)?);
    }
    let mirror = spec.mirror_root(spec_path);
    let reference = mirror.join("refs").join(&spec.mirror.snapshot);
    let id = if reference.is_file() {
        std::fs::read_to_string(&reference)
            .with_context(|| format!("reading {}", reference.display()))?
            .trim()
            .to_owned()
    } else {
        spec.mirror.snapshot.clone()
    };
    let dir = mirror.join("snapshots").join(&id);
    if !dir.is_dir() {
        bail!(
            "snapshot {} not found in mirror {} (give --repo DIR to lock from a repository tree)",
            spec.mirror.snapshot,
            mirror.display()
        );
    }
    tracing::warn!(snapshot = %id, "the snapshot's signature is not checked yet (mirror stage)");
    let repo = RepoDir::open(&dir, &spec.suite)?;
    if repo.snapshot_id() != id {
        bail!(
            "{}: its Release has sha256 {}, not the snapshot id {id}",
            dir.display(),
            repo.snapshot_id()
        );
    }
    Ok(repo)
}
