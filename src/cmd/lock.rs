//! `ironrack lock`: resolve an image spec into its lock file, update one
//! package of it, or check it (`--check`, what builds run as `--locked`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use ironrack_builder::source::lock::{self, Lock};
use ironrack_builder::spec::{ImageSpec, PackageSet};

use super::mirror::SnapshotKeyArgs;
use super::outln;
use super::source::Source;

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

    /// The local mirror [default: the spec's `mirror.path`, relative to the
    /// spec file].
    #[arg(long, value_name = "DIR", conflicts_with = "repo")]
    pub mirror: Option<PathBuf>,

    /// The key that signs the mirror's snapshots (needed unless --repo).
    #[command(flatten)]
    pub key: SnapshotKeyArgs,

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
    let source = Source::open(
        &spec,
        &args.spec,
        args.repo.as_deref(),
        args.mirror.as_deref(),
        &args.key,
    )?;
    let repo = source.files();
    if args.check {
        let lock = Lock::load(&lock_path)?;
        lock.verify_against(&spec_bytes, repo)
            .with_context(|| format!("checking {}", lock_path.display()))?;
        return outln!(
            "{}: {} packages verified against snapshot {}",
            lock_path.display(),
            lock.packages.len(),
            repo.snapshot_id()
        );
    }
    let catalog = source.catalog(&spec.architecture)?;
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
