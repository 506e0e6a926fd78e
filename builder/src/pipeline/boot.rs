//! The stages that make a root filesystem a bootable, provable node image
//! (issue 5), run when the spec has an `[initramfs]` section:
//!
//! 1. **modules** (when the spec has `[nvidia]`): the lock's `build` set
//!    installed and configured into a second root (the build sandbox: the
//!    compiler never reaches the image), the NVIDIA modules built there
//!    from the mirror's source package with the spec's patches, installed
//!    into the image's `updates/dkms`, the image's own depmod run, every
//!    module of the image checked against the kernel's exports
//!    (Module.symvers from the sandbox's headers, CRCs compared), and the
//!    version chain checked, failing closed;
//! 2. **boot artifacts** (after the filesystem images, from the normalised
//!    tree): `vmlinuz` from the image's kernel package, `initrd.img` (the
//!    agent as `/init`, busybox, the drivers' module closure, the trust
//!    root), `node.efi` (the mirror's systemd-stub with the kernel, the
//!    initramfs, the command line, os-release and the release), and the
//!    measurements a boot of it will produce.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::progress::Progress;
use super::source::PackageSource;
use super::{Artifact, Error, Plan, PlannedPackage, Stages};
use crate::boot::cpio::DEFAULT_COMPRESSION;
use crate::boot::elf::ImageRoot;
use crate::boot::initramfs::{self, AgentConfig, InitProgram, InitramfsSpec, MissingDrivers};
use crate::boot::kmod::image::{check_image_modules, install_modules, verify_modules_dep};
use crate::boot::nvidia::{
    self, ChainInputs, Flavour, Isolation, ModuleBuild, build_modules, check_chain,
};
use crate::boot::uki::{UkiInputs, build_uki, measure_uki};
use crate::release::{ChainCheck, Measurements, ModuleRecord, NvidiaRecord, PatchRecord};
use crate::rootfs::{self, InstallOptions, Target};

/// The stub's path in `systemd-boot-efi`.
pub const STUB_PATH: &str = "usr/lib/systemd/boot/efi/linuxx64.efi.stub";
/// The package that ships it (in the lock's build set of bootable images).
pub const STUB_PACKAGE: &str = crate::spec::UKI_STUB;
/// The PCR the agent extends with the manifest and rootfs digests.
pub const AGENT_PCR: u32 = 15;
/// Output file names (the PXE service serves them by these names).
pub const KERNEL_FILE: &str = "vmlinuz";
/// The initramfs.
pub const INITRD_FILE: &str = "initrd.img";
/// The unified kernel image.
pub const UKI_FILE: &str = "node.efi";

/// The spec's `[nvidia]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvidiaPlan {
    /// Driver release.
    pub version: String,
    /// Module flavour.
    pub flavour: Flavour,
    /// Userspace packages whose ELF files must resolve.
    pub userspace: Vec<String>,
    /// Patch files (absolute), applied in order.
    pub patches: Vec<PathBuf>,
    /// The image package that ships the modules built, instead of a build.
    pub precompiled: Option<String>,
}

/// What the boot stage needs besides the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootPlan {
    /// Drivers whose module closure the initramfs carries (those the
    /// kernel lacks are recorded, not fatal: the default list covers NICs
    /// a kernel flavour may not support).
    pub drivers: Vec<String>,
    /// systemd-boot-efi from the build set.
    pub stub: PlannedPackage,
    /// The agent binary (`/init`): the `ironrack` that builds, by default.
    pub agent: Option<PathBuf>,
    /// `trust.json` baked into the initramfs (the agent verifies the
    /// manifest with it).
    pub trust: Option<Vec<u8>>,
}

/// What the boot stages add to the report (and the manifest).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BootRecord {
    /// Every kernel module of the image.
    pub modules: Vec<ModuleRecord>,
    /// The NVIDIA chain, when built.
    pub nvidia: Option<NvidiaRecord>,
    /// Expected measurements.
    pub measurements: Option<Measurements>,
    /// The initramfs: modules carried, in load order.
    pub initramfs_modules: Vec<String>,
    /// Drivers asked for that the kernel has neither built in nor as a
    /// module.
    pub initramfs_missing: Vec<String>,
    /// The agent baked in, with its libraries.
    pub agent: Option<crate::release::AgentRecord>,
}

fn boxed<E: std::error::Error + Send + Sync + 'static>(
    stage: &'static str,
) -> impl FnOnce(E) -> Error {
    move |e| Error::Boot {
        stage,
        source: Box::new(e),
    }
}

/// The couplings the lock alone decides, checked before anything is
/// installed or compiled (the full chain is checked after the build): the
/// module source and, for the open flavour, the GSP firmware must be of
/// the driver release. apt's default firmware-nvidia-gsp (535.309.01)
/// beside the archive's open source (535.261.03) fails here in seconds.
pub(super) fn precheck(plan: &Plan, nvidia: &NvidiaPlan) -> Result<(), Error> {
    let upstream = |version: &str| {
        crate::source::Version::parse(version)
            .map(|v| v.upstream().to_owned())
            .unwrap_or_else(|_| version.to_owned())
    };
    let source = nvidia.flavour.source_package();
    let mut wanted = Vec::new();
    match &nvidia.precompiled {
        Some(package) => wanted.push((package.as_str(), &plan.packages)),
        None => wanted.push((source, &plan.build_packages)),
    }
    if nvidia.flavour == Flavour::Open {
        wanted.push((nvidia::chain::FIRMWARE_PACKAGE, &plan.packages));
    }
    for (package, set) in wanted {
        let Some(found) = set.iter().find(|p| p.name == package) else {
            return Err(Error::Chain {
                package: package.to_owned(),
                found: "not in the lock".into(),
                driver: nvidia.version.clone(),
                fix: format!("add {package} to the spec and lock it again"),
            });
        };
        if upstream(&found.version) != nvidia.version {
            return Err(Error::Chain {
                package: package.to_owned(),
                found: found.version.clone(),
                driver: nvidia.version.clone(),
                fix: format!(
                    "pin it in [packages] pin to a {}-* version the mirror has (e.g. \"{package}\" = \"{}-1\") and lock again",
                    nvidia.version, nvidia.version
                ),
            });
        }
    }
    Ok(())
}

/// Stage 1: the NVIDIA modules built in the build sandbox, installed,
/// indexed and checked. Returns the chain record for the manifest.
#[allow(clippy::too_many_arguments)]
pub(super) fn modules(
    plan: &Plan,
    nvidia: &NvidiaPlan,
    source: &dyn PackageSource,
    jobs: usize,
    progress: &Progress,
    image: &Target,
    work: &Path,
    cache_dir: &Path,
    stages: &mut Stages,
) -> Result<NvidiaRecord, Error> {
    let release = &plan.kernel.release;
    let sandbox_root = work.join("build-root");
    fs::create_dir(&sandbox_root).map_err(|source| Error::Io {
        operation: "creating",
        path: sandbox_root.clone(),
        source,
    })?;
    let sandbox = Target::open(&sandbox_root)?;
    let bar = progress.counter("build set", plan.build_packages.len() as u64);
    let files = stages.run("verify build set", || {
        super::open_all(&plan.build_packages, source, &bar)
    })?;
    let logs = work.join("logs/build-set");
    fs::create_dir_all(&logs).map_err(|source| Error::Io {
        operation: "creating",
        path: logs.clone(),
        source,
    })?;
    let installed = rootfs::install(
        &sandbox,
        &files,
        &InstallOptions {
            jobs,
            architecture: plan.architecture.clone(),
            epoch: plan.epoch,
            log_dir: logs,
        },
        &bar,
    )?;
    bar.finish_with_message("build sandbox ready");
    drop(files);
    stages.record(
        "build sandbox",
        installed.unpack_time + installed.configure_time,
    );

    let root = ImageRoot::new(image.path());
    let (modules_from, patches) = match &nvidia.precompiled {
        Some(package) => {
            let version = plan
                .packages
                .iter()
                .find(|p| &p.name == package)
                .map(|p| p.version.clone())
                .unwrap_or_default();
            (format!("precompiled {package} {version}"), Vec::new())
        }
        None => build_and_install(
            plan,
            nvidia,
            BuildPlace {
                jobs,
                sandbox_root: &sandbox_root,
                work,
                cache_dir,
            },
            progress,
            &root,
            stages,
        )?,
    };
    let headers = sandbox_root.join(format!("usr/src/linux-headers-{release}"));
    let report = stages.run("module checks", || {
        depmod_in_sandbox(image, plan.epoch, release, work)?;
        verify_modules_dep(&root, release).map_err(boxed("reading what depmod wrote"))?;
        let (_, report) = check_image_modules(&root, release, &headers)
            .map_err(boxed("checking the image's modules"))?;
        let errors: Vec<String> = report.errors().map(|p| p.to_string()).collect();
        if !errors.is_empty() {
            return Err(Error::Modules {
                release: release.clone(),
                problems: errors,
            });
        }
        let packages: BTreeMap<String, String> = plan
            .packages
            .iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect();
        let elf_files = userspace_elves(image, &nvidia.userspace)?;
        let sources = package_sources(image)?;
        check_chain(&ChainInputs {
            root: &root,
            release,
            headers: &headers,
            driver: &nvidia.version,
            flavour: nvidia.flavour,
            packages: &packages,
            sources: &sources,
            userspace: &nvidia.userspace,
            elf_files: &elf_files,
            catalog: None,
        })
        .and_then(nvidia::ChainReport::require_intact)
        .map_err(boxed("checking the NVIDIA version chain"))
    })?;
    Ok(NvidiaRecord {
        version: nvidia.version.clone(),
        flavour: nvidia.flavour.to_string(),
        modules_from,
        patches,
        independent: report.independent.clone(),
        checks: report
            .checks
            .into_iter()
            .map(|c| ChainCheck {
                check: c.check,
                expected: c.expected,
                found: c.found,
            })
            .collect(),
    })
}

/// The image's own depmod, run inside the image (the rootfs sandbox: no
/// network, its own namespaces), for the image's kernel release.
fn depmod_in_sandbox(image: &Target, epoch: u64, release: &str, work: &Path) -> Result<(), Error> {
    let log = work.join("logs/depmod.log");
    let sandbox = crate::rootfs::sandbox::Sandbox::new(image, epoch)?;
    let outcome = sandbox.run(&["/usr/sbin/depmod", "-a", release], &[], &log)?;
    if !outcome.status.success() {
        return Err(Error::Modules {
            release: release.to_owned(),
            problems: vec![format!(
                "the image's depmod failed ({}): {}",
                outcome.status,
                outcome.tail(5)
            )],
        });
    }
    Ok(())
}

/// Where the module build runs and what it may reuse.
struct BuildPlace<'a> {
    jobs: usize,
    /// The build sandbox (headers, compiler, the driver's source).
    sandbox_root: &'a Path,
    /// The build's work directory (inside the cache's `tmp/`).
    work: &'a Path,
    /// The stage cache: `modules/KEY/` holds modules built before.
    cache_dir: &'a Path,
}

/// The modules built in the sandbox (or taken from the module cache) and
/// installed into the image's `updates/dkms`: (`built`, the patches
/// applied).
fn build_and_install(
    plan: &Plan,
    nvidia: &NvidiaPlan,
    place: BuildPlace<'_>,
    progress: &Progress,
    root: &ImageRoot,
    stages: &mut Stages,
) -> Result<(String, Vec<PatchRecord>), Error> {
    let key = modules_key(plan, nvidia)?;
    let entry = super::cache::modules_entry_dir(place.cache_dir, &key);
    if let Some(cached) = CachedModules::load(&entry) {
        tracing::info!(entry = %entry.display(), "NVIDIA modules from the module cache");
        stages.cached("nvidia modules");
        install_modules(root, &plan.kernel.release, &cached.paths(&entry))
            .map_err(boxed("installing the modules"))?;
        return Ok(("built".into(), cached.patches));
    }
    let spinner = progress.spinner("nvidia modules");
    let build = ModuleBuild {
        root: place.sandbox_root.to_owned(),
        work: place.sandbox_root.join("ironrack-build/nvidia"),
        release: plan.kernel.release.clone(),
        version: nvidia.version.clone(),
        flavour: nvidia.flavour,
        patches: nvidia.patches.clone(),
        jobs: place.jobs,
        source_date_epoch: plan.epoch,
        isolation: Isolation::Sandbox,
    };
    let built = stages.run("nvidia modules", || {
        build_modules(&build).map_err(boxed("building the NVIDIA modules"))
    })?;
    spinner.finish();
    let paths: Vec<PathBuf> = built.modules.iter().map(|m| m.path.clone()).collect();
    install_modules(root, &plan.kernel.release, &paths).map_err(boxed("installing the modules"))?;
    let patches: Vec<PatchRecord> = built
        .patches
        .iter()
        .map(|p| PatchRecord {
            name: file_name(&p.path),
            sha256: p.sha256.clone(),
        })
        .collect();
    let cached = CachedModules {
        modules: built
            .modules
            .iter()
            .map(|m| CachedModule {
                file: file_name(&m.path),
                sha256: m.sha256.clone(),
            })
            .collect(),
        patches: patches.clone(),
    };
    // Best effort: a build that cannot fill the cache still succeeds.
    if let Err(e) = cached.store(&paths, place.work, &entry) {
        tracing::warn!(entry = %entry.display(), error = %e, "NVIDIA modules not cached");
    }
    Ok(("built".into(), patches))
}

/// The last component of `path`, as the manifest and the module cache
/// name a file.
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The module stage's own cache key: what the compiled modules depend on
/// (the build set's .debs, the driver release and flavour, the patches'
/// bytes, the kernel release, SOURCE_DATE_EPOCH, the builder), and not
/// the image around them. A new agent, overlay or package in the image
/// reuses modules built before instead of compiling them again.
pub(super) fn modules_key(plan: &Plan, nvidia: &NvidiaPlan) -> Result<String, Error> {
    let patches = nvidia
        .patches
        .iter()
        .map(|p| super::file_sha256(p))
        .collect::<Result<Vec<_>, _>>()?;
    let inputs = serde_json::json!({
        "builder": super::BUILDER_VERSION,
        "release": plan.kernel.release,
        "driver": nvidia.version,
        "flavour": nvidia.flavour.to_string(),
        "build-set": plan.build_packages.iter().map(|p| p.sha256.as_str()).collect::<Vec<_>>(),
        "patches": patches,
        "epoch": plan.epoch,
    });
    Ok(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        inputs.to_string(),
    )))
}

/// One module in a module-cache entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CachedModule {
    file: String,
    sha256: String,
}

/// A module-cache entry: `modules.json` and the `.ko` files it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CachedModules {
    modules: Vec<CachedModule>,
    patches: Vec<PatchRecord>,
}

/// The index file of a module-cache entry.
const MODULES_INDEX: &str = "modules.json";

impl CachedModules {
    /// The entry at `dir`, if it is whole and every file still has the
    /// digest it was stored with (anything else is rebuilt, with a warning).
    pub(super) fn load(dir: &Path) -> Option<CachedModules> {
        let index = dir.join(MODULES_INDEX);
        let bytes = fs::read(&index).ok()?;
        let entry: CachedModules = match serde_json::from_slice(&bytes) {
            Ok(entry) => entry,
            Err(e) => {
                tracing::warn!(file = %index.display(), error = %e, "module cache entry unreadable; building again");
                return None;
            }
        };
        for module in &entry.modules {
            let path = dir.join(&module.file);
            let plain = Path::new(&module.file).file_name() == Some(module.file.as_ref());
            match super::file_sha256(&path) {
                Ok(digest) if plain && digest == module.sha256 => {}
                _ => {
                    tracing::warn!(file = %path.display(), "module cache entry does not match its index; building again");
                    return None;
                }
            }
        }
        (!entry.modules.is_empty()).then_some(entry)
    }

    fn paths(&self, dir: &Path) -> Vec<PathBuf> {
        self.modules.iter().map(|m| dir.join(&m.file)).collect()
    }

    /// Copies `files` and the index into a directory under `work`, then
    /// renames it into place as `entry` (whole or not at all).
    pub(super) fn store(&self, files: &[PathBuf], work: &Path, entry: &Path) -> Result<(), Error> {
        let staged = work.join("modules-cache-entry");
        let io = |operation: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io {
                operation,
                path,
                source,
            }
        };
        fs::create_dir_all(&staged).map_err(io("creating", &staged))?;
        for (file, module) in files.iter().zip(&self.modules) {
            let to = staged.join(&module.file);
            fs::copy(file, &to).map_err(io("copying", &to))?;
        }
        let index = staged.join(MODULES_INDEX);
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::BadFile {
            path: index.clone(),
            problem: e.to_string(),
        })?;
        fs::write(&index, json).map_err(io("writing", &index))?;
        super::cache::commit_entry(&staged, entry)
    }
}

/// The ELF files the userspace packages installed (from dpkg's file
/// lists in the image): their DT_NEEDED closure must resolve.
fn userspace_elves(image: &Target, packages: &[String]) -> Result<Vec<PathBuf>, Error> {
    let info = image.path().join("var/lib/dpkg/info");
    let mut elves = Vec::new();
    for package in packages {
        let list = [format!("{package}.list"), format!("{package}:amd64.list")]
            .into_iter()
            .map(|name| info.join(name))
            .find(|p| p.is_file())
            .ok_or_else(|| Error::Plan {
                problem: format!(
                    "NVIDIA userspace package {package} is not installed in the image"
                ),
            })?;
        let text = fs::read_to_string(&list).map_err(|source| Error::Io {
            operation: "reading",
            path: list.clone(),
            source,
        })?;
        for line in text.lines() {
            let rel = line.trim_start_matches('/');
            let host = image.path().join(rel);
            let meta = match fs::symlink_metadata(&host) {
                Ok(m) => m,
                Err(_) => continue,
            };
            if !meta.is_file() {
                continue;
            }
            let mut magic = [0u8; 4];
            let is_elf = fs::File::open(&host)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
                .is_ok()
                && magic == *b"\x7fELF";
            if is_elf {
                elves.push(PathBuf::from(line));
            }
        }
    }
    elves.sort();
    elves.dedup();
    Ok(elves)
}

/// Binary package → source package, from the image's dpkg status (a
/// package without a Source field is its own source).
fn package_sources(image: &Target) -> Result<BTreeMap<String, String>, Error> {
    let path = image.path().join("var/lib/dpkg/status");
    let text = fs::read_to_string(&path).map_err(|source| Error::Io {
        operation: "reading",
        path: path.clone(),
        source,
    })?;
    let paragraphs = crate::source::control::parse_paragraphs(
        &text,
        &path.display().to_string(),
        Default::default(),
    )
    .map_err(|e| Error::BadFile {
        path: path.clone(),
        problem: e.to_string(),
    })?;
    Ok(paragraphs
        .iter()
        .filter_map(|p| {
            let name = p.get("Package")?.to_owned();
            let source = p
                .get("Source")
                .and_then(|s| s.split_whitespace().next())
                .unwrap_or(&name)
                .to_owned();
            Some((name, source))
        })
        .collect())
}

/// Every module of the image's tree for the kernel release, for the
/// manifest.
fn module_records(root: &ImageRoot, release: &str) -> Result<Vec<ModuleRecord>, Error> {
    let tree = crate::boot::kmod::depmod::ModuleTree::scan(root, release)
        .map_err(boxed("reading the image's modules"))?;
    let mut records: Vec<ModuleRecord> = tree
        .modules
        .values()
        .map(|m| ModuleRecord {
            path: format!("/usr/lib/modules/{release}/{}", m.relative),
            sha256: hex::encode(m.module.file_sha256),
            vermagic: m
                .module
                .modinfo
                .vermagic
                .as_deref()
                .unwrap_or_default()
                .trim_end()
                .to_owned(),
            signed: m.module.signature.is_some(),
        })
        .collect();
    records.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(records)
}

/// The stub out of the systemd-boot-efi package, read from the verified
/// .deb (it is not installed anywhere).
fn read_stub(source: &dyn PackageSource, stub: &PlannedPackage) -> Result<Vec<u8>, Error> {
    let file = source.open(stub)?;
    let package_error = |e: crate::source::Error| Error::Package {
        package: stub.name.clone(),
        filename: stub.filename.clone(),
        source: Box::new(e),
    };
    let deb = crate::source::deb::DebFile::open(&file.path).map_err(package_error)?;
    let mut data = deb.data().map_err(package_error)?;
    let mut found = None;
    for entry in data.entries().map_err(package_error)? {
        let mut entry = entry.map_err(package_error)?;
        let path = entry.header.path.to_string_lossy().into_owned();
        if path.trim_start_matches("./") == STUB_PATH {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).map_err(|source| Error::Io {
                operation: "reading the stub from",
                path: file.path.clone(),
                source,
            })?;
            found = Some(bytes);
        }
    }
    found.ok_or_else(|| Error::PackageMismatch {
        package: stub.name.clone(),
        filename: stub.filename.clone(),
        problem: format!("has no /{STUB_PATH}"),
    })
}

fn read_image_file(root: &ImageRoot, path: &str) -> Result<Vec<u8>, Error> {
    let (host, _) = root.resolve(Path::new(path)).map_err(|source| Error::Io {
        operation: "finding in the image",
        path: PathBuf::from(path),
        source,
    })?;
    fs::read(&host).map_err(|source| Error::Io {
        operation: "reading",
        path: host,
        source,
    })
}

fn write_artifact(dir: &Path, name: &str, bytes: &[u8]) -> Result<Artifact, Error> {
    let path = dir.join(name);
    fs::write(&path, bytes).map_err(|source| Error::Io {
        operation: "writing",
        path,
        source,
    })?;
    Ok(Artifact {
        file: name.to_owned(),
        size: bytes.len() as u64,
        sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes)),
    })
}

/// Stage 2: vmlinuz, initrd.img and node.efi from the normalised image,
/// and the measurements. Returns the artifacts and the record.
pub(super) fn artifacts(
    plan: &Plan,
    boot: &BootPlan,
    source: &dyn PackageSource,
    image: &Target,
    out: &Path,
    stages: &mut Stages,
) -> Result<(Vec<Artifact>, BootRecord), Error> {
    let release = &plan.kernel.release;
    let root = ImageRoot::new(image.path());
    let agent = boot.agent.clone().ok_or_else(|| Error::Plan {
        problem: "the boot stage needs the agent binary (the ironrack that builds)".into(),
    })?;
    let agent_bytes = fs::read(&agent).map_err(|source| Error::Io {
        operation: "reading the agent",
        path: agent.clone(),
        source,
    })?;
    let epoch = u32::try_from(plan.epoch).map_err(|_| Error::Plan {
        problem: format!("SOURCE_DATE_EPOCH {} does not fit a cpio mtime", plan.epoch),
    })?;
    let (initrd, closure, libraries) = stages.run("initramfs", || {
        let mut spec = InitramfsSpec::new(release, InitProgram::Agent(agent.clone()), epoch);
        spec.drivers = boot.drivers.clone();
        spec.missing_drivers = MissingDrivers::Report;
        spec.agent = Some(AgentConfig {
            version: 1,
            image: plan.name.clone(),
            channel: plan.channel.clone(),
            trust: format!("/{}", initramfs::TRUST_PATH),
            server: None,
            modules: Vec::new(),
            kernel_release: release.clone(),
        });
        spec.trust = boot.trust.clone();
        let assembled =
            initramfs::assemble(&root, &spec).map_err(boxed("assembling the initramfs"))?;
        let bytes = assembled
            .to_bytes(DEFAULT_COMPRESSION)
            .map_err(boxed("compressing the initramfs"))?;
        let libraries = assembled
            .report
            .agent_closure
            .iter()
            .flat_map(|c| &c.libraries)
            .map(|l| crate::release::AgentLibraryRecord {
                path: l.path.clone(),
                sha256: l.sha256.clone(),
                package: l
                    .package
                    .as_ref()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
            })
            .collect::<Vec<_>>();
        Ok((bytes, assembled.report.modules, libraries))
    })?;
    let linux = read_image_file(&root, &format!("/boot/vmlinuz-{release}"))?;
    let (uki, measured) = stages.run("uki", || {
        let stub = read_stub(source, &boot.stub)?;
        let osrel = read_image_file(&root, "/usr/lib/os-release")?;
        let uki = build_uki(&UkiInputs {
            stub: &stub,
            linux: &linux,
            initrd: &initrd,
            cmdline: &plan.kernel.cmdline,
            osrel: &osrel,
            uname: Some(release),
            splash: None,
        })
        .map_err(boxed("assembling the UKI"))?;
        let measured = measure_uki(&uki, &linux).map_err(boxed("measuring the UKI"))?;
        Ok((uki, measured))
    })?;
    let written = vec![
        write_artifact(out, KERNEL_FILE, &linux)?,
        write_artifact(out, INITRD_FILE, &initrd)?,
        write_artifact(out, UKI_FILE, &uki)?,
    ];
    let record = BootRecord {
        modules: module_records(&root, release)?,
        nvidia: None,
        measurements: Some(Measurements {
            uki: UKI_FILE.into(),
            uki_authenticode: measured.uki_authenticode,
            pcr11: measured.pcr11,
            kernel_authenticode: Some(measured.kernel_authenticode),
            agent_pcr: AGENT_PCR,
        }),
        initramfs_modules: closure.load_order,
        initramfs_missing: closure.missing,
        agent: Some(crate::release::AgentRecord {
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&agent_bytes)),
            libraries,
        }),
    };
    Ok((written, record))
}

#[cfg(test)]
mod module_cache_tests {
    use super::*;

    fn entry_of(files: &[(&str, &[u8])], dir: &Path) -> (CachedModules, Vec<PathBuf>) {
        let built = dir.join("built");
        fs::create_dir_all(&built).unwrap();
        let mut paths = Vec::new();
        let mut modules = Vec::new();
        for (name, bytes) in files {
            let path = built.join(name);
            fs::write(&path, bytes).unwrap();
            modules.push(CachedModule {
                file: (*name).to_owned(),
                sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes)),
            });
            paths.push(path);
        }
        let patches = vec![PatchRecord {
            name: "fix.patch".into(),
            sha256: "ab".into(),
        }];
        (CachedModules { modules, patches }, paths)
    }

    #[test]
    fn a_stored_entry_loads_whole_and_a_changed_one_is_built_again() {
        let dir = tempfile::tempdir().unwrap();
        let (cached, paths) = entry_of(
            &[
                ("nvidia.ko", b"module one"),
                ("nvidia-uvm.ko", b"module two"),
            ],
            dir.path(),
        );
        let work = dir.path().join("work");
        let entry = super::super::cache::modules_entry_dir(dir.path(), "k");
        assert!(CachedModules::load(&entry).is_none(), "nothing cached yet");
        cached.store(&paths, &work, &entry).unwrap();
        let loaded = CachedModules::load(&entry).unwrap();
        assert_eq!(loaded, cached);
        assert_eq!(
            fs::read(&loaded.paths(&entry)[1]).unwrap(),
            b"module two",
            "the files themselves are kept"
        );
        assert!(
            !work.join("modules-cache-entry").exists(),
            "moved, not copied"
        );

        // A module altered in the cache is not installed.
        fs::write(entry.join("nvidia-uvm.ko"), b"module 2wo").unwrap();
        assert!(CachedModules::load(&entry).is_none());
        fs::write(entry.join("nvidia-uvm.ko"), b"module two").unwrap();
        assert!(CachedModules::load(&entry).is_some());
        // Nor one the index places outside its entry, nor a torn index.
        let mut escaping = cached.clone();
        escaping.modules[0].file = "../nvidia.ko".into();
        fs::write(
            entry.join(MODULES_INDEX),
            serde_json::to_vec(&escaping).unwrap(),
        )
        .unwrap();
        assert!(CachedModules::load(&entry).is_none());
        fs::write(entry.join(MODULES_INDEX), b"{\"modules\": [").unwrap();
        assert!(CachedModules::load(&entry).is_none());
    }
}
