//! `ironrack build`: the stages in order, each cached by the digest of its
//! inputs, the output published atomically.
//!
//! ```text
//! Plan (lock + spec, cheap) ──key──▶ cache hit? ──yes──▶ publish
//!                                        │no
//!   verify + open .debs ─▶ unpack ─▶ configure ─▶ customize ─▶ normalize
//!     ─▶ tree manifest ─▶ images (tar, ...) ─▶ cache/rootfs/KEY ─▶ publish
//! ```
//!
//! A bootable image (the spec has `[initramfs]`) adds the [`boot`] stages:
//! the NVIDIA modules built in a sandbox of the lock's build set, installed
//! and checked before normalisation, and vmlinuz, initrd.img and node.efi
//! with their measurements after the filesystem images.
//!
//! The key is the SHA-256 of everything the root filesystem depends on:
//! builder and stage versions, architecture, SOURCE_DATE_EPOCH, every
//! locked package (name, version, sha256), and the customisation (overlay
//! tree digest included). Unchanged inputs find their images in the cache
//! and are published without opening a single .deb. A published version
//! is immutable: the same inputs are "up to date", different inputs under
//! an existing version are an error (bump `version` in the spec).
//!
//! One build at a time per cache directory (an exclusive lock); a build
//! cleans what killed builds left in the cache's `tmp/` and the output's
//! hidden staging directories.

pub mod boot;
mod cache;
mod image;
mod plan;
mod progress;
mod source;
mod summary;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use cache::{CacheLock, overlay_digest};
pub use image::{ImageCompression, ImageFormat};
pub use plan::{LockedSpec, lock_path};
pub use progress::Progress;
pub use source::{DirectorySource, PackageSource, check_listed};
pub use summary::summary_table;

use crate::publish::{self, Staging};
use crate::rootfs::customize::{self, Customization};
use crate::rootfs::tree::Manifest;
use crate::rootfs::{self, InstallOptions, InstalledPackage, Target};

/// The builder's version, part of every cache key.
pub const BUILDER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Bumped whenever the rootfs stage would produce different output for
/// the same inputs (a new normalisation rule, a changed writer).
pub const ROOTFS_STAGE_VERSION: u32 = 3;

/// An error building an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A root filesystem stage failed.
    #[error(transparent)]
    Rootfs(#[from] rootfs::Error),
    /// The lock does not match the spec or the snapshot (`--locked`).
    #[error(transparent)]
    Lock(#[from] crate::source::lock::LockError),
    /// Signing the published image failed.
    #[error("signing the image")]
    Release {
        /// Why.
        source: Box<crate::release::ReleaseError>,
    },
    /// The spec and lock do not make a buildable plan.
    #[error("planning the build: {problem}")]
    Plan {
        /// What is wrong.
        problem: String,
    },
    /// A package the lock names is not the locked file (another digest or
    /// size, or not in the snapshot).
    #[error("package {package} ({filename}): {problem}")]
    PackageMismatch {
        /// The package.
        package: String,
        /// Its pool file.
        filename: String,
        /// What is wrong.
        problem: String,
    },
    /// A package the lock names could not be opened or read (the cause
    /// says whether it failed a check).
    #[error("package {package} ({filename})")]
    Package {
        /// The package.
        package: String,
        /// Its pool file.
        filename: String,
        /// What failed.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// Writing a filesystem image failed.
    #[error("writing {path}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// The writer's error.
        source: crate::rootfs::fsimage::squashfs::Error,
    },
    /// A file operation on the output or cache failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The path.
        path: PathBuf,
        /// The system error.
        source: std::io::Error,
    },
    /// The version is already published, from other inputs.
    #[error(
        "{path} is already published from other inputs (build key {existing}, now {key}); \
         published versions are immutable: bump `version` in the spec"
    )]
    VersionExists {
        /// The published directory.
        path: PathBuf,
        /// Its key.
        existing: String,
        /// This build's key.
        key: String,
    },
    /// The output directory appeared while we built (another builder).
    #[error("{path} appeared while building; not replacing it")]
    OutputExists {
        /// The directory.
        path: PathBuf,
    },
    /// A boot stage (modules, chain, initramfs, UKI) failed.
    #[error("{stage}")]
    Boot {
        /// What was being done.
        stage: &'static str,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The lock pairs the driver with a package of another release.
    #[error("NVIDIA driver {driver}: the lock has {package} {found}: {fix}")]
    Chain {
        /// The package.
        package: String,
        /// Its locked version.
        found: String,
        /// The spec's driver release.
        driver: String,
        /// What to do.
        fix: String,
    },
    /// Modules of the image would not load into its kernel.
    #[error("kernel {release}: modules that would not load:{}", problems.iter().map(|p| format!("\n  - {p}")).collect::<String>())]
    Modules {
        /// The kernel release.
        release: String,
        /// Each module's problem.
        problems: Vec<String>,
    },
    /// A file the build reads or writes is not valid (a cached report).
    #[error("reading {path}: {problem}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

impl Error {
    /// Whether a check found something wrong (a changed spec, another
    /// snapshot, a package file that is not the locked one) rather than
    /// the build failing to do its work.
    pub fn is_verification_failure(&self) -> bool {
        match self {
            Self::Lock(e) => e.is_verification_failure(),
            Self::PackageMismatch { .. } => true,
            _ => false,
        }
    }
}

/// One package to install, as the lock names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedPackage {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Architecture.
    pub architecture: String,
    /// Pool path (relative to the mirror snapshot).
    pub filename: String,
    /// SHA-256 of the .deb (hex).
    pub sha256: String,
    /// Size of the .deb.
    pub size: u64,
}

/// Everything a build's output depends on, known before any .deb is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Image name.
    pub name: String,
    /// Release channel (trust scope `channel:NAME`).
    pub channel: String,
    /// Debian suite.
    pub suite: String,
    /// The image kernel, from the spec and the lock.
    pub kernel: crate::release::KernelRecord,
    /// The build set (compilers, headers): provenance materials.
    pub build_packages: Vec<PlannedPackage>,
    /// Image version (monotonic, from the spec).
    pub version: u64,
    /// Debian architecture.
    pub architecture: String,
    /// SOURCE_DATE_EPOCH: the snapshot's Release date.
    pub epoch: u64,
    /// The snapshot id the lock was made against.
    pub snapshot: String,
    /// SHA-256 of the spec file.
    pub spec_sha256: String,
    /// SHA-256 of the lock file.
    pub lock_sha256: String,
    /// The image set, in install order.
    pub packages: Vec<PlannedPackage>,
    /// The spec's `[rootfs]` customisation.
    pub customization: Customization,
    /// The images to write.
    pub formats: Vec<ImageFormat>,
    /// SquashFS compression.
    pub compression: ImageCompression,
    /// The NVIDIA modules to build, when the spec has `[nvidia]`.
    pub nvidia: Option<boot::NvidiaPlan>,
    /// The boot artifacts to make, when the spec has `[initramfs]`.
    pub boot: Option<boot::BootPlan>,
}

/// The inputs hashed into the key, in a fixed serialisation.
#[derive(Serialize)]
struct KeyInputs<'a> {
    builder: &'a str,
    rootfs_stage: u32,
    architecture: &'a str,
    epoch: u64,
    packages: Vec<(&'a str, &'a str, &'a str, &'a str)>,
    hostname: Option<&'a str>,
    overlay: Option<String>,
    users: Vec<(&'a str, &'a [String])>,
    units: &'a [String],
    formats: Vec<ImageFormat>,
    compression: String,
    build_packages: Vec<&'a str>,
    nvidia: Option<NvidiaKey<'a>>,
    boot: Option<(&'a [String], String, String, Option<String>)>,
}

/// The NVIDIA inputs of the key: driver, flavour, userspace, precompiled
/// package, patch digests.
type NvidiaKey<'a> = (&'a str, String, &'a [String], Option<&'a str>, Vec<String>);

fn file_sha256(path: &Path) -> Result<String, Error> {
    let bytes = fs::read(path).map_err(|source| Error::Io {
        operation: "reading",
        path: path.to_owned(),
        source,
    })?;
    Ok(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)))
}

impl Plan {
    /// The cache key: SHA-256 over the inputs (see the module docs). The
    /// image's name, version and the spec/lock bytes themselves are not
    /// in it: renaming or re-versioning an image with the same content
    /// reuses the work.
    pub fn key(&self) -> Result<String, Error> {
        let overlay = match &self.customization.overlay {
            Some(dir) => Some(overlay_digest(dir)?),
            None => None,
        };
        let mut formats = self.formats.clone();
        formats.sort();
        formats.dedup();
        let inputs = KeyInputs {
            builder: BUILDER_VERSION,
            rootfs_stage: ROOTFS_STAGE_VERSION,
            architecture: &self.architecture,
            epoch: self.epoch,
            packages: self
                .packages
                .iter()
                .map(|p| {
                    (
                        p.name.as_str(),
                        p.version.as_str(),
                        p.architecture.as_str(),
                        p.sha256.as_str(),
                    )
                })
                .collect(),
            hostname: self.customization.hostname.as_deref(),
            overlay,
            users: self
                .customization
                .users
                .iter()
                .map(|u| (u.name.as_str(), u.authorized_keys.as_slice()))
                .collect(),
            units: &self.customization.units,
            formats,
            compression: self.compression.to_key(),
            build_packages: self
                .build_packages
                .iter()
                .map(|p| p.sha256.as_str())
                .collect(),
            nvidia: match &self.nvidia {
                Some(n) => Some((
                    n.version.as_str(),
                    n.flavour.to_string(),
                    n.userspace.as_slice(),
                    n.precompiled.as_deref(),
                    n.patches
                        .iter()
                        .map(|p| file_sha256(p))
                        .collect::<Result<_, _>>()?,
                )),
                None => None,
            },
            boot: match &self.boot {
                Some(b) => Some((
                    b.drivers.as_slice(),
                    b.stub.sha256.clone(),
                    match &b.agent {
                        Some(agent) => file_sha256(agent)?,
                        None => String::new(),
                    },
                    b.trust
                        .as_ref()
                        .map(|t| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(t))),
                )),
                None => None,
            },
        };
        let json = serde_json::to_vec(&inputs).map_err(|e| Error::BadFile {
            path: PathBuf::from("(build key)"),
            problem: e.to_string(),
        })?;
        Ok(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&json)))
    }
}

/// Where and how to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The output root (`out`): images go to `OUT/NAME/VERSION/`.
    pub out_dir: PathBuf,
    /// The stage cache (default `OUT/.cache`).
    pub cache_dir: PathBuf,
    /// Unpack workers.
    pub jobs: usize,
    /// Sign the published image (manifest, SBOM, provenance) with this
    /// key; `None` publishes unsigned (nothing will serve it).
    pub signing: Option<Signing>,
}

/// How a published image is signed.
#[derive(Clone)]
pub struct Signing {
    /// The delegated image-signing key.
    pub signer: std::sync::Arc<dyn ironrack_keys::Signer + Send + Sync>,
    /// The manifest expires this many days after SOURCE_DATE_EPOCH (from
    /// the inputs, so the signed bytes stay reproducible).
    pub expires_days: u32,
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signing")
            .field("key_id", &self.signer.key_id())
            .field("expires_days", &self.expires_days)
            .finish()
    }
}

/// Time spent in one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTiming {
    /// Stage name.
    pub stage: String,
    /// Seconds.
    pub seconds: f64,
    /// Whether this run reused the cache instead of running it.
    pub cached: bool,
}

/// One output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// File name in the output directory.
    pub file: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 (hex).
    pub sha256: String,
}

/// What a build did and produced (`build.json` in the output, `--json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BuildReport {
    /// Image name.
    pub name: String,
    /// Image version.
    pub version: u64,
    /// The build key (see [`Plan::key`]).
    pub key: String,
    /// SOURCE_DATE_EPOCH used.
    pub epoch: u64,
    /// Snapshot id.
    pub snapshot: String,
    /// SHA-256 of the spec.
    pub spec_sha256: String,
    /// SHA-256 of the lock.
    pub lock_sha256: String,
    /// The builder's version.
    pub builder_version: String,
    /// The output directory.
    pub output: PathBuf,
    /// Already published with the same key: nothing was done.
    pub up_to_date: bool,
    /// The images came from the stage cache.
    pub from_cache: bool,
    /// Installed packages.
    pub packages: Vec<InstalledPackage>,
    /// Sum of their Installed-Size, KiB.
    pub installed_size_kib: u64,
    /// What each package's copyright file declares (for the SBOM).
    #[serde(default)]
    pub licenses: std::collections::BTreeMap<String, crate::release::license::Declared>,
    /// Digest of the tree manifest (`rootfs.manifest`).
    pub tree_sha256: String,
    /// Modules, NVIDIA chain and measurements of a bootable image.
    #[serde(default)]
    pub boot: Option<boot::BootRecord>,
    /// Output files.
    pub artifacts: Vec<Artifact>,
    /// Time per stage in this run.
    pub stages: Vec<StageTiming>,
    /// Wall time of this run, seconds.
    pub total_seconds: f64,
}

/// The report file in the output directory and in the cache.
pub const REPORT_FILE: &str = "build.json";
/// The tree manifest in the output directory.
pub const MANIFEST_FILE: &str = "rootfs.manifest";

/// Builds `plan` (see the module documentation).
pub fn build(
    plan: &Plan,
    source: &dyn PackageSource,
    options: &BuildOptions,
    progress: &Progress,
) -> Result<BuildReport, Error> {
    let started = Instant::now();
    let key = plan.key()?;
    check_listed(plan, source)?;
    if let Some(nvidia) = &plan.nvidia {
        boot::precheck(plan, nvidia)?;
    }
    let _lock = CacheLock::acquire(&options.cache_dir)?;
    publish::clean_stale(&options.out_dir, &plan.name)?;
    let published = publish::version_dir(&options.out_dir, &plan.name, plan.version);
    if published.join(REPORT_FILE).is_file() {
        let mut report = read_report(&published.join(REPORT_FILE))?;
        if report.key != key {
            return Err(Error::VersionExists {
                path: published,
                existing: report.key,
                key,
            });
        }
        if options.signing.is_some()
            && !published
                .join(ironrack_keys::manifest::MANIFEST_FILE)
                .is_file()
        {
            return Err(Error::Plan {
                problem: format!(
                    "{} was published unsigned and published versions are never replaced: bump `version` in the spec (or remove that directory) to publish a signed one",
                    published.display()
                ),
            });
        }
        report.up_to_date = true;
        report.from_cache = true;
        for stage in &mut report.stages {
            stage.cached = true;
        }
        report.total_seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    let entry = cache::entry_dir(&options.cache_dir, &key);
    let from_cache = entry.join(REPORT_FILE).is_file();
    if !from_cache {
        produce(plan, &key, source, options, progress, &entry)?;
    }
    let mut report = read_report(&entry.join(REPORT_FILE))?;
    let publish_started = Instant::now();
    let mut staging = Staging::begin(&options.out_dir, &plan.name, plan.version)?;
    for artifact in &report.artifacts {
        staging.add_file(&artifact.file, &entry.join(&artifact.file))?;
    }
    staging.add_file(MANIFEST_FILE, &entry.join(MANIFEST_FILE))?;
    report.name = plan.name.clone();
    report.version = plan.version;
    report.spec_sha256 = plan.spec_sha256.clone();
    report.lock_sha256 = plan.lock_sha256.clone();
    report.snapshot = plan.snapshot.clone();
    report.output = published.clone();
    report.from_cache = from_cache;
    if from_cache {
        for stage in &mut report.stages {
            stage.cached = true;
        }
    }
    let json = serde_json::to_vec_pretty(&report).map_err(|e| Error::BadFile {
        path: published.join(REPORT_FILE),
        problem: e.to_string(),
    })?;
    staging.write_file(REPORT_FILE, &json)?;
    if let Some(signing) = &options.signing {
        sign_release(staging.path(), plan, &report, signing)?;
    }
    staging.commit()?;
    report.stages.push(StageTiming {
        stage: "publish".into(),
        seconds: publish_started.elapsed().as_secs_f64(),
        cached: false,
    });
    report.total_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// What each installed package's copyright file declares. A package
/// without a readable one is left out (the SBOM says NOASSERTION).
fn licenses(
    target: &Target,
    packages: &[rootfs::install::InstalledPackage],
) -> std::collections::BTreeMap<String, crate::release::license::Declared> {
    packages
        .iter()
        .filter_map(|p| {
            let rel = PathBuf::from(format!("usr/share/doc/{}/copyright", p.name));
            let text = target.read_file(&rel).ok()??;
            Some((
                p.name.clone(),
                crate::release::license::declared(&String::from_utf8_lossy(&text)),
            ))
        })
        .collect()
}

/// Signs the staged output: manifest, SBOM, provenance (see
/// [`crate::release`]).
fn sign_release(
    dir: &Path,
    plan: &Plan,
    report: &BuildReport,
    signing: &Signing,
) -> Result<(), Error> {
    use crate::release::{BuildRecord, ImagePayload, ReleaseInput, provenance, sbom};
    let epoch = i64::try_from(plan.epoch).unwrap_or(i64::MAX);
    let expires = ironrack_keys::Timestamp::from_unix(epoch)
        .map(|t| t.plus_days(signing.expires_days))
        .ok_or_else(|| Error::Plan {
            problem: format!("SOURCE_DATE_EPOCH {epoch} is not a valid time"),
        })?;
    if expires <= ironrack_keys::Timestamp::now() {
        return Err(Error::Plan {
            problem: format!(
                "the manifest would expire at {expires} ({} days after the snapshot's date), which has passed: sync a newer snapshot or sign for longer (--expires-days)",
                signing.expires_days
            ),
        });
    }
    let sha_of = |name: &str, version: &str| {
        plan.packages
            .iter()
            .find(|p| p.name == name && p.version == version)
            .map(|p| p.sha256.clone())
            .unwrap_or_default()
    };
    let packages: Vec<sbom::SbomPackage> = report
        .packages
        .iter()
        .map(|p| sbom::SbomPackage {
            name: p.name.clone(),
            version: p.version.clone(),
            architecture: p.architecture.clone(),
            sha256: sha_of(&p.name, &p.version),
            license: report
                .licenses
                .get(&p.name)
                .cloned()
                .unwrap_or(crate::release::license::Declared::NoAssertion),
        })
        .collect();
    let materials: Vec<provenance::Material> = plan
        .packages
        .iter()
        .chain(&plan.build_packages)
        .map(|p| provenance::Material {
            uri: sbom::purl(
                &sbom::SbomPackage {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    architecture: p.architecture.clone(),
                    sha256: String::new(),
                    license: crate::release::license::Declared::NoAssertion,
                },
                &plan.suite,
            ),
            name: p.filename.clone(),
            sha256: p.sha256.clone(),
        })
        .collect();
    let spec_name = format!("images/{}.toml", plan.name);
    let lock_name = format!("images/{}.lock", plan.name);
    let input = ReleaseInput {
        name: &plan.name,
        channel: &plan.channel,
        version: plan.version,
        expires,
        payload: ImagePayload {
            build: BuildRecord {
                spec_sha256: plan.spec_sha256.clone(),
                lock_sha256: plan.lock_sha256.clone(),
                snapshot: plan.snapshot.clone(),
                source_date_epoch: epoch,
                builder_version: BUILDER_VERSION.into(),
            },
            kernel: Some(plan.kernel.clone()),
            modules: report
                .boot
                .as_ref()
                .map(|b| b.modules.clone())
                .unwrap_or_default(),
            nvidia: report.boot.as_ref().and_then(|b| b.nvidia.clone()),
            measurements: report.boot.as_ref().and_then(|b| b.measurements.clone()),
            agent: report.boot.as_ref().and_then(|b| b.agent.clone()),
            packages: packages.len() as u64,
        },
        suite: &plan.suite,
        packages: &packages,
        provenance: provenance::BuildInputs {
            image: &plan.name,
            version: plan.version,
            spec: (&spec_name, &plan.spec_sha256),
            lock: (&lock_name, &plan.lock_sha256),
            snapshot: &plan.snapshot,
            source_date_epoch: epoch,
            builder_version: BUILDER_VERSION,
            materials: &materials,
        },
    };
    crate::release::write_release(dir, &input, signing.signer.as_ref()).map_err(|source| {
        Error::Release {
            source: Box::new(source),
        }
    })
}

fn read_report(path: &Path) -> Result<BuildReport, Error> {
    let bytes = fs::read(path).map_err(|source| Error::Io {
        operation: "reading",
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::BadFile {
        path: path.to_owned(),
        problem: e.to_string(),
    })
}

/// Runs every stage into a fresh work directory and moves the results
/// into the cache entry `entry` (atomically: a rename).
fn produce(
    plan: &Plan,
    key: &str,
    source: &dyn PackageSource,
    options: &BuildOptions,
    progress: &Progress,
    entry: &Path,
) -> Result<(), Error> {
    let work = cache::work_dir(&options.cache_dir, key)?;
    let result = run_stages(plan, key, source, options, progress, &work, entry);
    cache::remove_work_dir(&work)?;
    result
}

struct Stages(Vec<StageTiming>);

impl Stages {
    fn record(&mut self, stage: &str, took: Duration) {
        tracing::info!(stage, seconds = took.as_secs_f64(), "stage done");
        self.0.push(StageTiming {
            stage: stage.into(),
            seconds: took.as_secs_f64(),
            cached: false,
        });
    }

    fn cached(&mut self, stage: &str) {
        tracing::info!(stage, "stage from the cache");
        self.0.push(StageTiming {
            stage: stage.into(),
            seconds: 0.0,
            cached: true,
        });
    }

    fn run<T>(&mut self, stage: &str, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
        let started = Instant::now();
        let value = f()?;
        self.record(stage, started.elapsed());
        Ok(value)
    }
}

/// Opens every package of a set (each checked against its locked digest),
/// one step of `bar` each.
fn open_all(
    packages: &[PlannedPackage],
    source: &dyn PackageSource,
    bar: &indicatif::ProgressBar,
) -> Result<Vec<rootfs::PackageFile>, Error> {
    packages
        .iter()
        .map(|p| {
            bar.set_message(p.name.clone());
            let file = source.open(p);
            bar.inc(1);
            file
        })
        .collect()
}

fn run_stages(
    plan: &Plan,
    key: &str,
    source: &dyn PackageSource,
    options: &BuildOptions,
    progress: &Progress,
    work: &Path,
    entry: &Path,
) -> Result<(), Error> {
    let mut stages = Stages(Vec::new());
    let io = |operation, path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io {
            operation,
            path,
            source,
        }
    };
    let root = work.join("root");
    let artifacts = work.join("artifacts");
    let logs = work.join("logs");
    for dir in [&root, &artifacts, &logs] {
        fs::create_dir(dir).map_err(io("creating", dir))?;
    }
    let target = Target::open(&root)?;

    let bar = progress.counter("verify", plan.packages.len() as u64);
    let files = stages.run("verify", || open_all(&plan.packages, source, &bar))?;
    bar.finish();

    let bar = progress.counter("install", files.len() as u64);
    let install_options = InstallOptions {
        jobs: options.jobs,
        architecture: plan.architecture.clone(),
        epoch: plan.epoch,
        log_dir: logs.clone(),
    };
    let installed = rootfs::install(&target, &files, &install_options, &bar)?;
    bar.finish_with_message("configured");
    drop(files);
    stages.record("unpack", installed.unpack_time);
    stages.record("configure", installed.configure_time);

    let custom = &plan.customization;
    stages.run("customize", || {
        Ok(customize::customize(&target, custom, plan.epoch, &logs)?)
    })?;
    let nvidia = match &plan.nvidia {
        Some(nvidia) => Some(boot::modules(
            plan,
            nvidia,
            source,
            options.jobs,
            progress,
            &target,
            work,
            &options.cache_dir,
            &mut stages,
        )?),
        None => None,
    };
    let spinner = progress.spinner("normalize");
    let manifest = stages.run("normalize", || {
        rootfs::normalize::normalize(&target, plan.epoch)?;
        Ok(Manifest::of(&target)?)
    })?;
    spinner.finish();
    let manifest_path = artifacts.join(MANIFEST_FILE);
    fs::write(&manifest_path, manifest.lines.join("\n") + "\n")
        .map_err(io("writing", &manifest_path))?;

    let mut outputs = Vec::new();
    let mut formats = plan.formats.clone();
    formats.sort();
    formats.dedup();
    let settings = image::ImageSettings {
        epoch: u32::try_from(plan.epoch).map_err(|_| Error::Plan {
            problem: format!(
                "SOURCE_DATE_EPOCH {} does not fit image timestamps",
                plan.epoch
            ),
        })?,
        compression: plan.compression,
        key,
        threads: options.jobs,
    };
    for format in formats {
        let path = artifacts.join(format.file_name());
        let bar = progress.bytes(format.file_name(), installed.unpacked_bytes);
        let artifact = stages.run(&format!("image {}", format.file_name()), || {
            image::write(format, &target, &path, &settings, &bar)
        })?;
        bar.finish();
        outputs.push(artifact);
    }
    let boot = match &plan.boot {
        Some(boot_plan) => {
            let (written, mut record) =
                boot::artifacts(plan, boot_plan, source, &target, &artifacts, &mut stages)?;
            outputs.extend(written);
            record.nvidia = nvidia;
            Some(record)
        }
        None => None,
    };

    let report = BuildReport {
        name: plan.name.clone(),
        version: plan.version,
        key: key.to_owned(),
        epoch: plan.epoch,
        snapshot: plan.snapshot.clone(),
        spec_sha256: plan.spec_sha256.clone(),
        lock_sha256: plan.lock_sha256.clone(),
        builder_version: BUILDER_VERSION.into(),
        output: PathBuf::new(),
        up_to_date: false,
        from_cache: false,
        installed_size_kib: installed
            .packages
            .iter()
            .map(|p| p.installed_size_kib)
            .sum(),
        licenses: licenses(&target, &installed.packages),
        packages: installed.packages,
        tree_sha256: manifest.digest,
        boot,
        artifacts: outputs,
        stages: stages.0,
        total_seconds: 0.0,
    };
    let report_path = artifacts.join(REPORT_FILE);
    let json = serde_json::to_vec_pretty(&report).map_err(|e| Error::BadFile {
        path: report_path.clone(),
        problem: e.to_string(),
    })?;
    fs::write(&report_path, json).map_err(io("writing", &report_path))?;
    cache::commit_entry(&artifacts, entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            name: "img".into(),
            channel: "stable".into(),
            suite: "bookworm".into(),
            kernel: crate::release::KernelRecord {
                release: "6.1.0-1-test".into(),
                package: "linux-image-test".into(),
                version: "1".into(),
                cmdline: String::new(),
            },
            build_packages: Vec::new(),
            version: 1,
            architecture: "amd64".into(),
            epoch: 1,
            snapshot: "s".into(),
            spec_sha256: "a".into(),
            lock_sha256: "b".into(),
            packages: vec![PlannedPackage {
                name: "p".into(),
                version: "1".into(),
                architecture: "all".into(),
                filename: "pool/p.deb".into(),
                sha256: "00".into(),
                size: 1,
            }],
            customization: Customization::default(),
            formats: vec![ImageFormat::Tar],
            compression: ImageCompression::default(),
            nvidia: None,
            boot: None,
        }
    }

    #[test]
    fn the_key_follows_the_inputs_that_shape_the_tree() {
        let base = plan().key().unwrap();
        let mut renamed = plan();
        renamed.name = "other".into();
        renamed.version = 7;
        assert_eq!(
            renamed.key().unwrap(),
            base,
            "name and version do not shape the tree"
        );
        let mut p = plan();
        p.epoch = 2;
        assert_ne!(p.key().unwrap(), base);
        let mut p = plan();
        p.packages[0].sha256 = "01".into();
        assert_ne!(p.key().unwrap(), base);
        let mut p = plan();
        p.customization.hostname = Some("node".into());
        assert_ne!(p.key().unwrap(), base);
        let mut p = plan();
        p.customization.units = vec!["ssh.service".into()];
        assert_ne!(p.key().unwrap(), base);
        let mut p = plan();
        p.compression = ImageCompression::parse("xz").unwrap();
        assert_ne!(p.key().unwrap(), base);
    }

    #[test]
    fn the_key_follows_the_boot_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("agent");
        let patch = dir.path().join("fix.patch");
        std::fs::write(&agent, b"agent 1").unwrap();
        std::fs::write(&patch, b"patch 1").unwrap();
        let bootable = || {
            let mut p = plan();
            p.boot = Some(boot::BootPlan {
                drivers: vec!["virtio_net".into()],
                stub: p.packages[0].clone(),
                agent: Some(agent.clone()),
                trust: Some(b"{}".to_vec()),
            });
            p.nvidia = Some(boot::NvidiaPlan {
                version: "535.261.03".into(),
                flavour: crate::boot::nvidia::Flavour::Open,
                userspace: vec!["libcuda1".into()],
                patches: vec![patch.clone()],
                precompiled: None,
            });
            p
        };
        let base = bootable().key().unwrap();
        assert_ne!(base, plan().key().unwrap());
        assert_eq!(bootable().key().unwrap(), base);
        let modules = |p: &Plan| boot::modules_key(p, p.nvidia.as_ref().unwrap()).unwrap();
        let modules_base = modules(&bootable());
        // The agent's and the patches' bytes, not their paths.
        std::fs::write(&agent, b"agent 2").unwrap();
        let after_agent = bootable().key().unwrap();
        assert_ne!(after_agent, base);
        // The module stage has its own key: a new agent, image package or
        // host name reuses the modules; what they are built from does not.
        assert_eq!(modules(&bootable()), modules_base);
        let mut p = bootable();
        p.packages[0].sha256 = "01".into();
        p.customization.hostname = Some("node".into());
        assert_eq!(modules(&p), modules_base);
        let mut p = bootable();
        p.build_packages.push(p.packages[0].clone());
        assert_ne!(modules(&p), modules_base);
        let mut p = bootable();
        p.kernel.release = "6.1.0-2-test".into();
        assert_ne!(modules(&p), modules_base);
        let mut p = bootable();
        p.nvidia.as_mut().unwrap().flavour = crate::boot::nvidia::Flavour::Proprietary;
        assert_ne!(modules(&p), modules_base);
        std::fs::write(&patch, b"patch 2").unwrap();
        assert_ne!(bootable().key().unwrap(), after_agent);
        assert_ne!(modules(&bootable()), modules_base);
        let mut p = bootable();
        p.boot.as_mut().unwrap().trust = None;
        assert_ne!(p.key().unwrap(), bootable().key().unwrap());
        let mut p = bootable();
        p.boot.as_mut().unwrap().drivers.push("nvme".into());
        assert_ne!(p.key().unwrap(), bootable().key().unwrap());
        let mut p = bootable();
        p.nvidia.as_mut().unwrap().version = "535.309.01".into();
        assert_ne!(p.key().unwrap(), bootable().key().unwrap());
        let mut p = bootable();
        p.build_packages.push(p.packages[0].clone());
        assert_ne!(p.key().unwrap(), bootable().key().unwrap());
        std::fs::remove_file(&patch).unwrap();
        assert!(bootable().key().is_err(), "a patch gone is an error");
    }
}
