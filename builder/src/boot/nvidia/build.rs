//! Building the NVIDIA kernel modules from a staged build root, the way
//! Debian's DKMS does (`make modules` with SYSSRC = the headers' common
//! directory and SYSOUT = the flavour directory), but reproducibly and for
//! an explicit kernel release:
//!
//! - `KERNEL_UNAME` is the image's release, never the build host's
//!   `uname -r`;
//! - `.rodata` keeps `__FILE__` paths, so `-ffile-prefix-map` maps the
//!   source tree to `/usr/src/nvidia-VERSION` and the build root to `/`
//!   (measured here: without it the modules differ with the build path;
//!   `KBUILD_BUILD_*` and SOURCE_DATE_EPOCH alone change nothing, and are
//!   fixed anyway);
//! - the environment is cleared (PATH, LC_ALL=C, TZ=UTC only);
//! - modules are stripped of debug information (185 MB → 11 MB for
//!   nvidia.ko), which stays reproducible.
//!
//! Two ways to run it:
//!
//! - [`Isolation::Sandbox`] (the pipeline): the build root is a Debian
//!   system installed and configured from the lock's `build` set, and
//!   make, gcc, patch's output and strip are that root's own, run inside
//!   it by the rootfs sandbox (no network, own mount and PID namespaces).
//!   Nothing of the build host's toolchain reaches the modules.
//! - [`Isolation::None`] / [`Isolation::NoNetwork`] (tests of the module
//!   build alone): the root is a scratch tree of unpacked headers and
//!   source, the flavour headers' Makefile (which includes the common one
//!   by absolute path) is rewritten to point into it, and the tools are
//!   those of the process's PATH.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest as _, Sha256};

use super::{Flavour, NvidiaError};
use crate::boot::elf::ImageRoot;
use crate::boot::kmod::{KernelAbi, Module, Vermagic};

/// The modules a build must produce (the others, nvidia-drm and
/// nvidia-peermem, are kept when built).
pub const REQUIRED_MODULES: [&str; 3] = ["nvidia.ko", "nvidia-uvm.ko", "nvidia-modeset.ko"];

/// How the build is cut off from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Run as is (tests without root).
    None,
    /// In a new network namespace with no interfaces (`unshare --net`;
    /// needs root): a conftest or Makefile cannot fetch anything.
    NoNetwork,
    /// Inside the (installed, configured) build root with its own tools,
    /// in the rootfs sandbox (needs root). `work` must lie inside `root`.
    Sandbox,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct ModuleBuild {
    /// The staged build root (headers, linux-kbuild, the source package
    /// unpacked with merged /usr).
    pub root: PathBuf,
    /// A scratch directory for the source tree, objects and outputs;
    /// emptied first.
    pub work: PathBuf,
    /// The image's kernel release.
    pub release: String,
    /// The driver release the spec asks for (`535.261.03`).
    pub version: String,
    /// Open or proprietary.
    pub flavour: Flavour,
    /// Patch files (`-p1`) applied in order before the build.
    pub patches: Vec<PathBuf>,
    /// make's `-j`.
    pub jobs: usize,
    /// SOURCE_DATE_EPOCH of the build (the snapshot's date).
    pub source_date_epoch: u64,
    /// Network isolation.
    pub isolation: Isolation,
}

/// A built, stripped module.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct BuiltModule {
    /// Module name (`nvidia_uvm`).
    pub name: String,
    /// The stripped file (under `work/out`).
    pub path: PathBuf,
    /// SHA-256 of the file (hex).
    pub sha256: String,
    /// Its vermagic.
    pub vermagic: String,
    /// Its `version=` (the driver release).
    pub version: Option<String>,
}

/// A patch applied before the build, for the manifest and the SBOM.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct AppliedPatch {
    /// The file.
    pub path: PathBuf,
    /// SHA-256 of its bytes (hex).
    pub sha256: String,
}

/// The result of [`build_modules`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct BuiltModules {
    /// The driver release of the source.
    pub version: String,
    /// The kernel release built for.
    pub release: String,
    /// SHA-256 of the source tarball (hex).
    pub source_sha256: String,
    /// Patches applied, in order.
    pub patches: Vec<AppliedPatch>,
    /// The modules, sorted by file name.
    pub modules: Vec<BuiltModule>,
}

fn sha256_file(path: &Path) -> Result<String, NvidiaError> {
    let mut file = std::fs::File::open(path).map_err(NvidiaError::io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(NvidiaError::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Builds the modules (see the module documentation) and returns the
/// stripped `.ko` files, each checked to carry the kernel's vermagic.
pub fn build_modules(build: &ModuleBuild) -> Result<BuiltModules, NvidiaError> {
    let root = ImageRoot::new(&build.root);
    let runner = Runner::new(build)?;
    let (flavour_dir, common_dir) = headers(&root, &build.release, &runner)?;
    let kernel = KernelAbi::from_headers(&flavour_dir)?;
    let (tarball, _) = root
        .resolve(Path::new(build.flavour.tarball()))
        .map_err(|_| NvidiaError::SourceMissing {
            path: build.flavour.tarball().into(),
            package: build.flavour.source_package(),
        })?;
    let _ = std::fs::remove_dir_all(&build.work);
    let src_parent = build.work.join("src");
    std::fs::create_dir_all(&src_parent).map_err(NvidiaError::io(&src_parent))?;
    unpack(&tarball, &src_parent)?;
    let src = src_parent.join(build.flavour.tree());
    check_source_version(&src, build)?;
    let patches = apply_patches(&src, build)?;

    let log = build.work.join("build.log");
    run_make(build, &runner, &src, &common_dir, &flavour_dir, &log)?;

    let out = build.work.join("out");
    std::fs::create_dir_all(&out).map_err(NvidiaError::io(&out))?;
    let modules = collect(&runner, &src, &out, &kernel.vermagic)?;
    tracing::info!(version = %build.version, release = %build.release, modules = modules.len(), "NVIDIA modules built");
    Ok(BuiltModules {
        version: build.version.clone(),
        release: build.release.clone(),
        source_sha256: sha256_file(&tarball)?,
        patches,
        modules,
    })
}

/// Where the build's programs run: on the host, or inside the build root.
enum Runner {
    Host(Isolation),
    Sandbox(crate::rootfs::Target, u64),
}

impl Runner {
    fn new(build: &ModuleBuild) -> Result<Self, NvidiaError> {
        match build.isolation {
            Isolation::Sandbox => {
                if !build.work.starts_with(&build.root) {
                    return Err(NvidiaError::Io {
                        path: build.work.clone(),
                        source: std::io::Error::other(format!(
                            "a sandboxed build works inside its root {}",
                            build.root.display()
                        )),
                    });
                }
                let target = crate::rootfs::Target::open(&build.root)
                    .map_err(|e| NvidiaError::Sandbox(Box::new(e)))?;
                Ok(Self::Sandbox(target, build.source_date_epoch))
            }
            other => Ok(Self::Host(other)),
        }
    }

    /// `path` as the build's programs see it.
    fn path(&self, root: &Path, path: &Path) -> PathBuf {
        match self {
            Self::Host(_) => path.to_owned(),
            Self::Sandbox(..) => Path::new("/").join(path.strip_prefix(root).unwrap_or(path)),
        }
    }

    /// Runs `argv` with the build's environment (`env` added), output to
    /// `log`; true when it succeeded.
    fn run(
        &self,
        argv: &[String],
        env: &[(&str, String)],
        log: &Path,
    ) -> Result<bool, NvidiaError> {
        let program = argv.first().cloned().unwrap_or_default();
        match self {
            Self::Sandbox(target, epoch) => {
                let sandbox = crate::rootfs::sandbox::Sandbox::new(target, *epoch)
                    .map_err(|e| NvidiaError::Sandbox(Box::new(e)))?;
                // The sandbox runs programs by their path in the root.
                let program = format!("/usr/bin/{program}");
                let argv: Vec<&str> = std::iter::once(program.as_str())
                    .chain(argv[1..].iter().map(String::as_str))
                    .collect();
                let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let outcome = sandbox
                    .run(&argv, &env, log)
                    .map_err(|e| NvidiaError::Sandbox(Box::new(e)))?;
                Ok(outcome.status.success())
            }
            Self::Host(isolation) => {
                let mut command = match isolation {
                    Isolation::NoNetwork => {
                        let mut c = Command::new("unshare");
                        c.args(["--net", "--"]).arg(&program);
                        c
                    }
                    _ => Command::new(&program),
                };
                command
                    .args(&argv[1..])
                    .env_clear()
                    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                    .env("LC_ALL", "C")
                    .env("TZ", "UTC")
                    .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
                let file = std::fs::File::create(log).map_err(NvidiaError::io(log))?;
                let err = file.try_clone().map_err(NvidiaError::io(log))?;
                command.stdin(Stdio::null()).stdout(file).stderr(err);
                let status = command
                    .status()
                    .map_err(|source| NvidiaError::Spawn { program, source })?;
                Ok(status.success())
            }
        }
    }
}

/// The flavour and common headers directories (host paths). On the host,
/// the flavour Makefile is pointed at the common one inside the root;
/// inside the root, its absolute include is already right.
fn headers(
    root: &ImageRoot,
    release: &str,
    runner: &Runner,
) -> Result<(PathBuf, PathBuf), NvidiaError> {
    let image = PathBuf::from(format!("/usr/src/linux-headers-{release}"));
    let (flavour, _) = root
        .resolve(&image)
        .map_err(|_| NvidiaError::HeadersMissing {
            release: release.to_owned(),
            path: root.path().join(image.strip_prefix("/").unwrap_or(&image)),
        })?;
    let makefile = flavour.join("Makefile");
    let text = std::fs::read_to_string(&makefile).map_err(NvidiaError::io(&makefile))?;
    let included = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("include "))
        .map(str::trim)
        .filter(|p| p.starts_with("/usr/src/linux-headers-") && p.ends_with("/Makefile"))
        .ok_or_else(|| NvidiaError::HeadersMakefile {
            path: makefile.clone(),
        })?;
    let common_makefile = root
        .resolve(Path::new(included))
        .map_err(|_| NvidiaError::HeadersMissing {
            release: release.to_owned(),
            path: root.path().join(&included[1..]),
        })?
        .0;
    let common = common_makefile
        .parent()
        .expect("a Makefile has a directory")
        .to_owned();
    if matches!(runner, Runner::Sandbox(..)) {
        return Ok((flavour, common));
    }
    // Replaced, not written through: the root may be hard-linked to a cache.
    let partial = flavour.join(".Makefile.partial");
    std::fs::write(&partial, format!("include {}\n", common_makefile.display()))
        .and_then(|()| std::fs::rename(&partial, &makefile))
        .map_err(NvidiaError::io(&makefile))?;
    Ok((flavour, common))
}

fn unpack(tarball: &Path, dest: &Path) -> Result<(), NvidiaError> {
    let file = std::fs::File::open(tarball).map_err(NvidiaError::io(tarball))?;
    let mut archive = tar::Archive::new(liblzma::read::XzDecoder::new(file));
    archive.set_preserve_mtime(true);
    archive.unpack(dest).map_err(NvidiaError::io(tarball))
}

fn check_source_version(src: &Path, build: &ModuleBuild) -> Result<(), NvidiaError> {
    let kbuild = src.join("Kbuild");
    let text = std::fs::read_to_string(&kbuild).map_err(NvidiaError::io(&kbuild))?;
    let found = text.lines().find_map(|l| {
        let rest = l.split("-DNV_VERSION_STRING=").nth(1)?;
        Some(rest.trim().trim_matches(['\\', '"']).to_owned())
    });
    if found.as_deref() != Some(build.version.as_str()) {
        return Err(NvidiaError::SourceVersion {
            path: kbuild,
            found,
            want: build.version.clone(),
            package: build.flavour.source_package(),
        });
    }
    Ok(())
}

fn apply_patches(src: &Path, build: &ModuleBuild) -> Result<Vec<AppliedPatch>, NvidiaError> {
    let mut applied = Vec::new();
    for patch in &build.patches {
        let sha256 = sha256_file(patch)?;
        let out = Command::new("patch")
            .args([
                "-p1",
                "--batch",
                "--forward",
                "--no-backup-if-mismatch",
                "-d",
            ])
            .arg(src)
            .arg("-i")
            .arg(patch)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| NvidiaError::Spawn {
                program: "patch".into(),
                source,
            })?;
        if !out.status.success() {
            let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
            output.push_str(&String::from_utf8_lossy(&out.stderr));
            return Err(NvidiaError::Patch {
                patch: patch.clone(),
                version: build.version.clone(),
                output: output.trim().to_owned(),
            });
        }
        tracing::info!(patch = %patch.display(), %sha256, "NVIDIA patch applied");
        applied.push(AppliedPatch {
            path: patch.clone(),
            sha256,
        });
    }
    Ok(applied)
}

fn run_make(
    build: &ModuleBuild,
    runner: &Runner,
    src: &Path,
    common: &Path,
    flavour: &Path,
    log: &Path,
) -> Result<(), NvidiaError> {
    let inside = |p: &Path| runner.path(&build.root, p).display().to_string();
    let mut prefix_maps = format!(
        "-ffile-prefix-map={}=/usr/src/nvidia-{}",
        inside(src),
        build.version
    );
    if let Runner::Host(_) = runner {
        prefix_maps.push_str(&format!(" -ffile-prefix-map={}=", build.root.display()));
    }
    let argv = vec![
        "make".to_owned(),
        "-C".to_owned(),
        inside(src),
        format!("-j{}", build.jobs.max(1)),
        "modules".to_owned(),
        format!("SYSSRC={}", inside(common)),
        format!("SYSOUT={}", inside(flavour)),
        format!("KERNEL_UNAME={}", build.release),
        format!("KCFLAGS={prefix_maps}"),
    ];
    let epoch = build.source_date_epoch.to_string();
    let env = [
        ("HOME", inside(&build.work)),
        ("SOURCE_DATE_EPOCH", epoch.clone()),
        ("KBUILD_BUILD_TIMESTAMP", format!("@{epoch}")),
        ("KBUILD_BUILD_USER", "ironrack".to_owned()),
        ("KBUILD_BUILD_HOST", "ironrack".to_owned()),
        ("KBUILD_BUILD_VERSION", "1".to_owned()),
    ];
    tracing::info!(release = %build.release, version = %build.version, log = %log.display(), "building NVIDIA modules");
    if runner.run(&argv, &env, log)? {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    // Named as the prefix maps name the tree: the scratch path means
    // nothing once the build directory is gone.
    let first_error = first_error(&text)
        .map(|line| line.replace(&inside(src), &format!("/usr/src/nvidia-{}", build.version)))
        .unwrap_or_else(|| "make failed without an error line".to_owned());
    Err(NvidiaError::Compile {
        flavour: build.flavour,
        version: build.version.clone(),
        release: build.release.clone(),
        first_error,
        log: log.to_owned(),
    })
}

/// The first compiler or linker error of a build log (`file:line:col:
/// error: ...`), else make's first `Error` line.
pub fn first_error(log: &str) -> Option<String> {
    let any = |needles: &[&str]| log.lines().find(|l| needles.iter().any(|n| l.contains(n)));
    any(&[": error: ", ": fatal error: "])
        // The linker, modpost, and the machine itself.
        .or_else(|| {
            any(&[
                "final link failed",
                "undefined reference",
                "ERROR: ",
                "No space left",
                "Killed",
                "Segmentation fault",
            ])
        })
        .or_else(|| {
            log.lines()
                .find(|l| l.starts_with("make") && l.contains("Error"))
        })
        .map(|l| l.trim().to_owned())
}

/// Strips every top-level `.ko` of the source tree into `out` and checks
/// each against the kernel's vermagic.
fn collect(
    runner: &Runner,
    src: &Path,
    out: &Path,
    vermagic: &Vermagic,
) -> Result<Vec<BuiltModule>, NvidiaError> {
    for name in REQUIRED_MODULES {
        if !src.join(name).is_file() {
            return Err(NvidiaError::ModuleMissing {
                name,
                dir: src.to_owned(),
            });
        }
    }
    let mut names: Vec<String> = std::fs::read_dir(src)
        .map_err(NvidiaError::io(src))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".ko"))
        .collect();
    names.sort();
    let mut modules = Vec::new();
    for name in names {
        let built = src.join(&name);
        let stripped = out.join(&name);
        let log = out.join(format!(".{name}.strip.log"));
        let root = match runner {
            Runner::Sandbox(target, _) => target.path().to_owned(),
            Runner::Host(_) => PathBuf::new(),
        };
        let argv = [
            "strip".to_owned(),
            "--strip-debug".to_owned(),
            "-o".to_owned(),
            runner.path(&root, &stripped).display().to_string(),
            runner.path(&root, &built).display().to_string(),
        ];
        let stripped_ok = runner.run(&argv, &[], &log)?;
        let output = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        if !stripped_ok {
            return Err(NvidiaError::Strip {
                path: built,
                output: output.trim().to_owned(),
            });
        }
        let module = Module::read(&stripped)?;
        if module.modinfo.vermagic.as_deref().and_then(Vermagic::parse) != Some(vermagic.clone()) {
            return Err(NvidiaError::VermagicMismatch {
                module: stripped,
                want: vermagic.to_string(),
                got: module.modinfo.vermagic,
            });
        }
        modules.push(BuiltModule {
            name: module.name.clone(),
            sha256: sha256_file(&stripped)?,
            vermagic: vermagic.to_string(),
            version: module.modinfo.version.clone(),
            path: stripped,
        });
    }
    Ok(modules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_error_prefers_the_compiler() {
        let log = "make[1]: Entering\n  CC [M]  nv-pci.o\n\
/usr/src/nvidia-535.261.03/nvidia/nv-pci.c:123:13: error: too few arguments to function 'pci_resize_resource'\n\
make[2]: *** [scripts/Makefile.build:250: nv-pci.o] Error 1\n";
        assert_eq!(
            first_error(log).unwrap(),
            "/usr/src/nvidia-535.261.03/nvidia/nv-pci.c:123:13: error: too few arguments to function 'pci_resize_resource'"
        );
        assert_eq!(
            first_error("make: *** [Makefile:1: modules] Error 2\n").unwrap(),
            "make: *** [Makefile:1: modules] Error 2"
        );
        assert_eq!(
            first_error("  LD [M]  x.o\nld: final link failed: No space left on device\nmake[3]: *** [x.o] Error 1\n").unwrap(),
            "ld: final link failed: No space left on device"
        );
        assert_eq!(first_error("all good\n"), None);
    }
}
