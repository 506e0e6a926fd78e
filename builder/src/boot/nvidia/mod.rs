//! The NVIDIA driver stack of an image: kernel modules built from the
//! mirror's source package against the image kernel's headers
//! ([`build`]), and the version chain that must hold between the
//! modules, the kernel, the GSP firmware and the CUDA userspace
//! ([`chain`]).
//!
//! Debian ships the open modules as `nvidia-open-kernel-source` (contrib):
//! `/usr/src/nvidia-open-kernel.tar.xz` holding `modules/nvidia-open-kernel/`,
//! most of the driver precompiled (`nv-kernel.o_binary`), the kernel
//! interface layer and ~376 conftests compiled locally. The proprietary
//! flavour is `nvidia-kernel-source` with `nvidia-kernel.tar.xz`.

pub mod build;
pub mod chain;

use std::fmt;
use std::path::PathBuf;

pub use build::{BuiltModule, BuiltModules, Isolation, ModuleBuild, build_modules};
pub use chain::{ChainInputs, ChainLink, ChainReport, Coupling, check_chain};

use super::elf::ElfError;
use super::kmod::KmodError;

/// Which NVIDIA kernel module source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// The open GPU kernel modules (Turing and later; GSP firmware).
    Open,
    /// The proprietary modules.
    Proprietary,
}

impl Flavour {
    /// The Debian source package that carries the tarball.
    pub fn source_package(self) -> &'static str {
        match self {
            Self::Open => "nvidia-open-kernel-source",
            Self::Proprietary => "nvidia-kernel-source",
        }
    }

    /// The tarball's image path.
    pub fn tarball(self) -> &'static str {
        match self {
            Self::Open => "/usr/src/nvidia-open-kernel.tar.xz",
            Self::Proprietary => "/usr/src/nvidia-kernel.tar.xz",
        }
    }

    /// The source directory inside the tarball.
    pub fn tree(self) -> &'static str {
        match self {
            Self::Open => "modules/nvidia-open-kernel",
            Self::Proprietary => "modules/nvidia-kernel",
        }
    }
}

impl fmt::Display for Flavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Open => "open",
            Self::Proprietary => "proprietary",
        })
    }
}

/// Errors building the NVIDIA modules, naming the file, package, driver
/// or kernel at fault.
#[derive(Debug, thiserror::Error)]
pub enum NvidiaError {
    /// The build root has no headers for the release.
    #[error(
        "no kernel headers for {release} in the build root ({path}): add linux-headers-{release} to the build set"
    )]
    HeadersMissing {
        /// The release.
        release: String,
        /// Where they were looked for.
        path: PathBuf,
    },
    /// The flavour headers' Makefile is not the one-line include Debian
    /// ships.
    #[error("{path}: expected `include /usr/src/linux-headers-*-common/Makefile`")]
    HeadersMakefile {
        /// The Makefile.
        path: PathBuf,
    },
    /// The module source tarball is missing from the build root.
    #[error("{path} not in the build root: add {package} to the build set")]
    SourceMissing {
        /// Its image path.
        path: PathBuf,
        /// The package that ships it.
        package: &'static str,
    },
    /// The source is of another driver release than the spec's.
    #[error(
        "{path}: the module source is driver {found:?}, the spec asks for {want}: pin {package} to {want}"
    )]
    SourceVersion {
        /// The Kbuild file read.
        path: PathBuf,
        /// What it says (None: no NV_VERSION_STRING).
        found: Option<String>,
        /// The spec's driver version.
        want: String,
        /// The source package.
        package: &'static str,
    },
    /// A patch does not apply.
    #[error("patch {patch} does not apply to NVIDIA {version}: {output}")]
    Patch {
        /// The patch file.
        patch: PathBuf,
        /// The driver version.
        version: String,
        /// What `patch` said.
        output: String,
    },
    /// The modules do not compile against the kernel.
    #[error(
        "NVIDIA {flavour} {version} does not compile against kernel {release}: {first_error} \
(full log: {log}); pin the kernel to a release this driver builds against, or add a patch to [nvidia] patches"
    )]
    Compile {
        /// The flavour.
        flavour: Flavour,
        /// The driver version.
        version: String,
        /// The kernel release.
        release: String,
        /// The compiler's first error line.
        first_error: String,
        /// The build log.
        log: PathBuf,
    },
    /// A build tool could not be started.
    #[error("starting {program}")]
    Spawn {
        /// The program.
        program: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `strip --strip-debug` failed on a module.
    #[error("stripping {path}: {output}")]
    Strip {
        /// The module.
        path: PathBuf,
        /// What strip said.
        output: String,
    },
    /// The build finished without a module it must make.
    #[error("the NVIDIA build made no {name} in {dir}")]
    ModuleMissing {
        /// The file name.
        name: &'static str,
        /// Where it was expected.
        dir: PathBuf,
    },
    /// A built module was made for another kernel.
    #[error("{module}: vermagic {got:?}, the kernel's is {want:?}")]
    VermagicMismatch {
        /// The module file.
        module: PathBuf,
        /// The kernel's vermagic.
        want: String,
        /// The module's.
        got: Option<String>,
    },
    /// The version chain is broken (every break listed).
    #[error("the NVIDIA version chain is broken:{}", breaks(.0))]
    ChainBroken(Box<ChainReport>),
    /// A userspace ELF file could not be read.
    #[error("reading NVIDIA userspace")]
    Elf(#[from] ElfError),
    /// Reading a module or the kernel's headers failed.
    #[error("reading the built modules")]
    Kmod(#[from] KmodError),
    /// The build sandbox could not be set up or run.
    #[error("running the NVIDIA build in its sandbox")]
    Sandbox(#[source] Box<crate::rootfs::Error>),
    /// A file or directory of the build could not be read or written.
    #[error("{path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn breaks(report: &ChainReport) -> String {
    report.breaks.iter().map(|b| format!("\n  - {b}")).collect()
}

impl NvidiaError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
