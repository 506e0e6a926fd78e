//! From an image spec and its lock to a [`Plan`]: `--locked` semantics,
//! always. The spec must be the one locked, the snapshot the one locked;
//! the packages are the lock's image set, nothing resolved again.

use std::path::{Path, PathBuf};

use super::boot::{BootPlan, NvidiaPlan, STUB_PACKAGE};
use super::{Error, ImageCompression, ImageFormat, Plan, PlannedPackage};
use crate::rootfs::customize::{Customization, User};
use crate::source::lock::{Lock, LockError, spec_digest};
use crate::spec::{ImageSpec, PackageSet};

/// The spec file, parsed, and the lock file, parsed.
#[derive(Debug)]
pub struct LockedSpec<'a> {
    /// The spec.
    pub spec: &'a ImageSpec,
    /// Its path (overlay paths are relative to its directory).
    pub spec_path: &'a Path,
    /// Its bytes (their digest must be the lock's `spec-sha256`).
    pub spec_bytes: &'a [u8],
    /// The lock.
    pub lock: &'a Lock,
    /// Its bytes.
    pub lock_bytes: &'a [u8],
}

impl Plan {
    /// The plan for a locked spec, against the snapshot `snapshot_id`
    /// (whose Release date, `date`, becomes SOURCE_DATE_EPOCH).
    pub fn from_lock(locked: &LockedSpec<'_>, snapshot_id: &str, date: i64) -> Result<Self, Error> {
        let LockedSpec {
            spec,
            spec_path,
            spec_bytes,
            lock,
            lock_bytes,
        } = locked;
        let actual = spec_digest(spec_bytes);
        if actual != lock.spec_sha256 {
            return Err(LockError::SpecChanged {
                locked: lock.spec_sha256.clone(),
                actual,
            }
            .into());
        }
        if lock.snapshot != snapshot_id {
            return Err(LockError::SnapshotMismatch {
                locked: lock.snapshot.clone(),
                actual: snapshot_id.to_owned(),
            }
            .into());
        }
        if lock.architecture != spec.architecture {
            return Err(Error::Plan {
                problem: format!(
                    "the lock is for {}, {} for {}",
                    lock.architecture,
                    spec_path.display(),
                    spec.architecture
                ),
            });
        }
        let epoch = u64::try_from(date).map_err(|_| Error::Plan {
            problem: format!("the snapshot's Release date ({date}) is before 1970"),
        })?;
        let packages: Vec<PlannedPackage> = lock.packages(PackageSet::Image).map(planned).collect();
        if packages.is_empty() {
            return Err(Error::Plan {
                problem: "the lock's image set is empty".into(),
            });
        }
        let rootfs = spec.rootfs.clone().unwrap_or_default();
        let compression = match rootfs.compression.as_deref() {
            None => ImageCompression::default(),
            Some(text) => ImageCompression::parse(text).ok_or_else(|| Error::Plan {
                problem: format!(
                    "{}: [rootfs] compression {text:?}: expected zstd, zstd:LEVEL (1-22), xz or xz:LEVEL (0-9)",
                    spec_path.display()
                ),
            })?,
        };
        let spec_dir = spec_path.parent().unwrap_or(Path::new("."));
        let overlay = match &rootfs.overlay {
            Some(dir) => Some(spec_dir.join(dir)),
            // images/NAME/overlay, when there is one.
            None => Some(spec_dir.join(&spec.name).join("overlay")).filter(|d| d.is_dir()),
        };
        if let Some(dir) = &overlay
            && !dir.is_dir()
        {
            return Err(Error::Plan {
                problem: format!(
                    "{}: overlay {} is not a directory",
                    spec_path.display(),
                    dir.display()
                ),
            });
        }
        let kernel = crate::release::KernelRecord {
            release: spec.kernel.release.clone(),
            package: spec.kernel.package.clone(),
            version: packages
                .iter()
                .find(|p| p.name == spec.kernel.package)
                .map(|p| p.version.clone())
                .unwrap_or_default(),
            cmdline: spec.kernel.cmdline.clone(),
        };
        let build_packages: Vec<PlannedPackage> =
            lock.packages(PackageSet::Build).map(planned).collect();
        let nvidia = match &spec.nvidia {
            Some(n) => {
                let patch_dir = spec_dir.join(&spec.name).join("patches");
                let patches = n
                    .patches
                    .iter()
                    .map(|p| {
                        let path = patch_dir.join(p);
                        if path.is_file() {
                            Ok(path)
                        } else {
                            Err(Error::Plan {
                                problem: format!(
                                    "{}: [nvidia] patch {} is not a file",
                                    spec_path.display(),
                                    path.display()
                                ),
                            })
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Some(NvidiaPlan {
                    version: n.version.clone(),
                    flavour: match n.flavour {
                        crate::spec::Flavour::Open => crate::boot::nvidia::Flavour::Open,
                        crate::spec::Flavour::Proprietary => {
                            crate::boot::nvidia::Flavour::Proprietary
                        }
                    },
                    userspace: n.userspace.clone(),
                    patches,
                    precompiled: n.precompiled.clone(),
                })
            }
            None => None,
        };
        let boot = match &spec.initramfs {
            Some(initramfs) => {
                let stub = build_packages
                    .iter()
                    .find(|p| p.name == STUB_PACKAGE)
                    .cloned()
                    .ok_or_else(|| Error::Plan {
                        problem: format!(
                            "the lock's build set has no {STUB_PACKAGE} (the UKI's stub): lock {} again",
                            spec_path.display()
                        ),
                    })?;
                let drivers = if initramfs.drivers.is_empty() {
                    crate::boot::initramfs::DEFAULT_DRIVERS
                        .iter()
                        .map(|d| (*d).to_owned())
                        .collect()
                } else {
                    initramfs.drivers.clone()
                };
                Some(BootPlan {
                    drivers,
                    stub,
                    agent: None,
                    trust: None,
                })
            }
            None => None,
        };
        Ok(Self {
            name: spec.name.clone(),
            channel: spec.channel.clone(),
            suite: spec.suite.clone(),
            kernel,
            build_packages,
            version: spec.version,
            architecture: spec.architecture.clone(),
            epoch,
            snapshot: lock.snapshot.clone(),
            spec_sha256: lock.spec_sha256.clone(),
            lock_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(lock_bytes)),
            packages,
            customization: Customization {
                hostname: rootfs.hostname.clone(),
                overlay,
                users: rootfs
                    .users
                    .iter()
                    .map(|u| User {
                        name: u.name.clone(),
                        authorized_keys: u.authorized_keys.clone(),
                    })
                    .collect(),
                units: rootfs.units.clone(),
            },
            formats: ImageFormat::from_spec(&rootfs.formats),
            compression,
            nvidia,
            boot,
        })
    }
}

fn planned(p: &crate::source::lock::LockedPackage) -> PlannedPackage {
    PlannedPackage {
        name: p.name.clone(),
        version: p.version.clone(),
        architecture: p.architecture.clone(),
        filename: p.filename.clone(),
        sha256: p.sha256.clone(),
        size: p.size,
    }
}

/// `images/NAME.toml` → `images/NAME.lock`.
pub fn lock_path(spec_path: &Path) -> PathBuf {
    spec_path.with_extension("lock")
}
