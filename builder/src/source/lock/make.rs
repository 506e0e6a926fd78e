//! Making a lock from a spec and a catalog, and updating one package.

use std::fmt;

use super::{LOCK_VERSION, Lock, LockError, LockedPackage, spec_digest};
use crate::source::catalog::{Catalog, PackageId};
use crate::source::resolve::{Request, resolve};
use crate::source::version::Version;
use crate::spec::{ImageSpec, PackageSet};

/// Source packages whose binaries must all be of the spec's driver
/// release: the driver (and its other branches, `nvidia-graphics-drivers-
/// tesla-470`, which an alternative can pull in instead), the open modules,
/// the fabric manager.
fn is_driver_source(source: &str) -> bool {
    source.starts_with("nvidia-graphics-drivers")
        || source == "nvidia-open-gpu-kernel-modules"
        || source.starts_with("nvidia-fabricmanager")
}

/// Resolves every package set of `spec` against `catalog` (read from
/// snapshot `snapshot`) into a lock. Warns (tracing) about NVIDIA packages
/// of another driver release, naming the pin to add.
pub fn lock_spec(
    spec: &ImageSpec,
    spec_bytes: &[u8],
    catalog: &Catalog,
    snapshot: &str,
) -> Result<Lock, LockError> {
    resolve_sets(spec, spec_bytes, catalog, snapshot, spec.requests()?)
}

/// Re-resolves with every package of `old` preferred at its locked
/// version except `names`, which take their newest version (and whatever
/// that version newly needs, at the newest version that satisfies it).
pub fn update_lock(
    spec: &ImageSpec,
    spec_bytes: &[u8],
    old: &Lock,
    catalog: &Catalog,
    snapshot: &str,
    names: &[String],
) -> Result<Lock, LockError> {
    for name in names {
        if let Some(version) = spec.packages.pin.get(name) {
            return Err(LockError::Pinned {
                name: name.clone(),
                version: version.clone(),
            });
        }
        if !old.packages.iter().any(|p| &p.name == name) {
            return Err(LockError::NotLocked { name: name.clone() });
        }
    }
    let mut sets = spec.requests()?;
    for (set, request) in &mut sets {
        let locked: Vec<(String, Version)> = old
            .packages(*set)
            .filter(|p| !names.contains(&p.name))
            .filter_map(|p| Some((p.name.clone(), Version::parse(&p.version).ok()?)))
            .collect();
        // The spec's own preferences come last, so they win.
        let spec_prefer = std::mem::take(&mut request.prefer);
        request.prefer = locked.into_iter().chain(spec_prefer).collect();
    }
    resolve_sets(spec, spec_bytes, catalog, snapshot, sets)
}

fn resolve_sets(
    spec: &ImageSpec,
    spec_bytes: &[u8],
    catalog: &Catalog,
    snapshot: &str,
    sets: Vec<(PackageSet, Request)>,
) -> Result<Lock, LockError> {
    let mut packages = Vec::new();
    for (set, request) in sets {
        let resolution =
            resolve(catalog, &request).map_err(|source| LockError::Resolve { set, source })?;
        for switch in &resolution.switched {
            let (p, by) = (
                catalog.package(switch.package),
                catalog.package(switch.because_of),
            );
            tracing::info!(
                set = %set,
                package = catalog.names().resolve(p.name),
                version = %p.version,
                needed_by = catalog.names().resolve(by.name),
                needed_by_version = %by.version,
                "candidate follows a pinned version"
            );
        }
        for id in resolution.packages {
            packages.push(locked(catalog, set, id)?);
        }
    }
    let mut lock = Lock {
        version: LOCK_VERSION,
        spec_sha256: spec_digest(spec_bytes),
        snapshot: snapshot.to_owned(),
        architecture: spec.architecture.clone(),
        packages,
    };
    lock.sort();
    for m in nvidia_mismatches(spec, catalog, &lock) {
        tracing::warn!(
            set = %m.set,
            package = %m.package,
            version = %m.version,
            driver = %m.driver,
            "{m}"
        );
    }
    Ok(lock)
}

fn locked(catalog: &Catalog, set: PackageSet, id: PackageId) -> Result<LockedPackage, LockError> {
    let p = catalog.package(id);
    let name = catalog.names().resolve(p.name).to_owned();
    let sha256 = p.sha256.ok_or_else(|| LockError::NoHash {
        package: name.clone(),
        version: p.version.to_string(),
        filename: p.filename().to_owned(),
    })?;
    Ok(LockedPackage {
        set,
        name,
        version: p.version.to_string(),
        architecture: catalog.names().resolve(p.architecture).to_owned(),
        size: p.size,
        sha256: hex::encode(sha256),
        filename: p.filename().to_owned(),
    })
}

/// A locked NVIDIA package of another release than the spec's driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvidiaMismatch {
    /// The set it is locked in.
    pub set: PackageSet,
    /// The package.
    pub package: String,
    /// Its locked version.
    pub version: String,
    /// The spec's `nvidia.version`.
    pub driver: String,
    /// A version of the package for the driver release, when the index
    /// has one.
    pub matching: Option<String>,
}

impl fmt::Display for NvidiaMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} {} is not of NVIDIA driver release {}",
            self.set, self.package, self.version, self.driver
        )?;
        match &self.matching {
            Some(v) => write!(
                f,
                "; add the pin {} = \"{v}\" to [packages.pin]",
                self.package
            ),
            None => write!(
                f,
                "; the index has no {} of that release: pin the package of release {} \
                 that should be chosen instead",
                self.package, self.driver
            ),
        }
    }
}

/// Locked packages built from NVIDIA's driver sources whose upstream
/// version is not the spec's `nvidia.version`. The resolver does not
/// couple versions silently; the build's chain check fails on these.
pub fn nvidia_mismatches(spec: &ImageSpec, catalog: &Catalog, lock: &Lock) -> Vec<NvidiaMismatch> {
    let Some(nvidia) = &spec.nvidia else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for locked in &lock.packages {
        let ids = catalog.lookup(&locked.name);
        let Some(&id) = ids
            .iter()
            .find(|&&id| catalog.package(id).version.as_str() == locked.version)
        else {
            continue;
        };
        let p = catalog.package(id);
        if !is_driver_source(p.source_name(catalog.names()))
            || p.version.upstream() == nvidia.version
        {
            continue;
        }
        let matching = ids
            .iter()
            .map(|&i| catalog.package(i))
            .find(|q| q.version.upstream() == nvidia.version && q.architecture == p.architecture)
            .map(|q| q.version.to_string());
        out.push(NvidiaMismatch {
            set: locked.set,
            package: locked.name.clone(),
            version: locked.version.clone(),
            driver: nvidia.version.clone(),
            matching,
        });
    }
    out
}
