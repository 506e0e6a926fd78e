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
//! The build root is a scratch tree the caller staged from the lock's
//! `build` set (headers, linux-kbuild, the source package): the flavour
//! headers' Makefile, which includes the common one by absolute path, is
//! rewritten to point into it. The compiler, make and binutils are those
//! of the process's PATH: the pipeline runs this inside the build sandbox
//! made from the same mirror.

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
    let (flavour_dir, common_dir) = headers(&root, &build.release)?;
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
    run_make(build, &src, &common_dir, &flavour_dir, &log)?;

    let out = build.work.join("out");
    std::fs::create_dir_all(&out).map_err(NvidiaError::io(&out))?;
    let modules = collect(&src, &out, &kernel.vermagic)?;
    tracing::info!(version = %build.version, release = %build.release, modules = modules.len(), "NVIDIA modules built");
    Ok(BuiltModules {
        version: build.version.clone(),
        release: build.release.clone(),
        source_sha256: sha256_file(&tarball)?,
        patches,
        modules,
    })
}

/// The flavour and common headers directories (host paths); the flavour
/// Makefile is pointed at the common one inside the root.
fn headers(root: &ImageRoot, release: &str) -> Result<(PathBuf, PathBuf), NvidiaError> {
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
    src: &Path,
    common: &Path,
    flavour: &Path,
    log: &Path,
) -> Result<(), NvidiaError> {
    let mut command = match build.isolation {
        Isolation::None => Command::new("make"),
        Isolation::NoNetwork => {
            let mut c = Command::new("unshare");
            c.args(["--net", "--", "make"]);
            c
        }
    };
    let prefix_maps = format!(
        "-ffile-prefix-map={}=/usr/src/nvidia-{} -ffile-prefix-map={}=",
        src.display(),
        build.version,
        build.root.display()
    );
    command
        .current_dir(src)
        .arg(format!("-j{}", build.jobs.max(1)))
        .arg("modules")
        .arg(format!("SYSSRC={}", common.display()))
        .arg(format!("SYSOUT={}", flavour.display()))
        .arg(format!("KERNEL_UNAME={}", build.release))
        .arg(format!("KCFLAGS={prefix_maps}"))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .env("HOME", &build.work)
        .env("SOURCE_DATE_EPOCH", build.source_date_epoch.to_string())
        .env(
            "KBUILD_BUILD_TIMESTAMP",
            format!("@{}", build.source_date_epoch),
        )
        .env("KBUILD_BUILD_USER", "ironrack")
        .env("KBUILD_BUILD_HOST", "ironrack")
        .env("KBUILD_BUILD_VERSION", "1");
    let file = std::fs::File::create(log).map_err(NvidiaError::io(log))?;
    let err = file.try_clone().map_err(NvidiaError::io(log))?;
    command.stdin(Stdio::null()).stdout(file).stderr(err);
    tracing::info!(release = %build.release, version = %build.version, log = %log.display(), "building NVIDIA modules");
    let status = command.status().map_err(|source| NvidiaError::Spawn {
        program: "make".into(),
        source,
    })?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    // Named as the prefix maps name the tree: the scratch path means
    // nothing once the build directory is gone.
    let first_error = first_error(&text)
        .map(|line| {
            line.replace(
                &src.display().to_string(),
                &format!("/usr/src/nvidia-{}", build.version),
            )
        })
        .unwrap_or_else(|| format!("make exited with {status}"));
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
fn collect(src: &Path, out: &Path, vermagic: &Vermagic) -> Result<Vec<BuiltModule>, NvidiaError> {
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
        let status = Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&stripped)
            .arg(&built)
            .output()
            .map_err(|source| NvidiaError::Spawn {
                program: "strip".into(),
                source,
            })?;
        if !status.status.success() {
            return Err(NvidiaError::Strip {
                path: built,
                output: String::from_utf8_lossy(&status.stderr).trim().to_owned(),
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
