//! Where a build's .debs come from: a verified mirror snapshot (the
//! normal case) or a plain repository directory (`--repo`, for locks made
//! from one). Either way every file is hashed against the lock before a
//! byte of it is unpacked, and the open file (not the path) is what the
//! install reads.

use std::path::PathBuf;

use super::{Error, Plan, PlannedPackage, cache};
use crate::rootfs::PackageFile;
use crate::source::mirror::Snapshot;

/// Opens the .debs a plan names, verified.
pub trait PackageSource {
    /// Checks, without reading any .deb, that the source lists `package`
    /// with the locked digest and size (the cheap half of `--locked`,
    /// run even when the stage cache answers).
    fn check_listed(&self, package: &PlannedPackage) -> Result<(), Error>;

    /// Opens `package`'s file after checking its sha256 (and size).
    fn open(&self, package: &PlannedPackage) -> Result<PackageFile, Error>;
}

/// Checks that `source` lists every package of `plan` as locked.
pub fn check_listed(plan: &Plan, source: &dyn PackageSource) -> Result<(), Error> {
    plan.packages
        .iter()
        .try_for_each(|p| source.check_listed(p))
}

fn mismatch(package: &PlannedPackage, problem: String) -> Error {
    Error::PackageMismatch {
        package: package.name.clone(),
        filename: package.filename.clone(),
        problem,
    }
}

fn unreadable(
    package: &PlannedPackage,
    source: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::Package {
        package: package.name.clone(),
        filename: package.filename.clone(),
        source: Box::new(source),
    }
}

fn locked_digest(package: &PlannedPackage) -> Result<[u8; 32], Error> {
    let mut digest = [0u8; 32];
    hex::decode_to_slice(&package.sha256, &mut digest).map_err(|_| {
        mismatch(
            package,
            format!("locked sha256 {:?} is not hex", package.sha256),
        )
    })?;
    Ok(digest)
}

/// Packages of a verified mirror snapshot: only files its signed index
/// lists with the locked sha256 can be opened, and they are hashed first.
impl PackageSource for Snapshot {
    fn check_listed(&self, package: &PlannedPackage) -> Result<(), Error> {
        let digest = locked_digest(package)?;
        match self.entry(&package.filename) {
            None => Err(mismatch(package, format!("not in snapshot {}", self.id()))),
            Some(e) if e.sha256 != digest || e.size != package.size => Err(mismatch(
                package,
                format!(
                    "snapshot {} lists sha256 {} and size {}, the lock {} and {}",
                    self.id(),
                    hex::encode(e.sha256),
                    e.size,
                    package.sha256,
                    package.size
                ),
            )),
            Some(_) => Ok(()),
        }
    }

    fn open(&self, package: &PlannedPackage) -> Result<PackageFile, Error> {
        self.check_listed(package)?;
        let deb = self
            .open_deb(&package.filename, &locked_digest(package)?)
            .map_err(|e| unreadable(package, e))?;
        Ok(PackageFile {
            path: deb.path,
            file: deb.file,
            size: deb.size,
        })
    }
}

/// Packages in a plain directory (`DIR/FILENAME`, a repository tree made
/// with `ironrack lock --repo`), checked against the lock before use.
#[derive(Debug, Clone)]
pub struct DirectorySource(pub PathBuf);

impl PackageSource for DirectorySource {
    fn check_listed(&self, package: &PlannedPackage) -> Result<(), Error> {
        if !crate::source::lock::is_safe_relative(&package.filename) {
            return Err(mismatch(
                package,
                "not a relative path inside the repository".into(),
            ));
        }
        Ok(())
    }

    fn open(&self, package: &PlannedPackage) -> Result<PackageFile, Error> {
        self.check_listed(package)?;
        let path = self.0.join(&package.filename);
        let file = PackageFile::open(&path).map_err(|e| unreadable(package, e))?;
        let digest = cache::sha256_of(&file.file).map_err(|e| unreadable(package, e))?;
        if digest != package.sha256 || file.size != package.size {
            return Err(mismatch(
                package,
                format!(
                    "sha256 {digest} and size {} do not match the lock ({} and {})",
                    file.size, package.sha256, package.size
                ),
            ));
        }
        Ok(file)
    }
}
