//! The image spec, `images/NAME.toml`: what an image is made of.
//!
//! Read with serde (`deny_unknown_fields`, kebab-case keys), then checked
//! for meaning (names, versions, the kernel release against its package,
//! the NVIDIA flavour against its source package). Every error names the
//! file, line, column and dotted key at fault. Later stages own their
//! sections (`initramfs`, `rootfs`) and add fields there.
//!
//! [`ImageSpec::requests`] turns a spec into one resolver [`Request`] per
//! [`PackageSet`]: `image` (what the node runs) and, when NVIDIA modules
//! must be built, `build` (the compile sandbox).

mod check;
mod locate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::source::resolve::{BaseSet, Request};
use crate::source::version::Version;

pub use check::SpecProblem;

/// The GSP firmware package NVIDIA's open modules load their firmware from.
pub const GSP_FIRMWARE: &str = "firmware-nvidia-gsp";

/// What a module build needs besides the kernel headers and the driver
/// source (gcc comes with the headers, which depend on the kernel's own
/// compiler package).
pub const BUILD_TOOLS: [&str; 4] = ["make", "binutils", "libc6-dev", "kmod"];

/// The package whose systemd-stub becomes a bootable image's UKI (in the
/// build set of specs with `[initramfs]`).
pub const UKI_STUB: &str = "systemd-boot-efi";

/// `images/NAME.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImageSpec {
    /// Image name (trust scope `image:NAME`); also the lock's file name.
    pub name: String,
    /// Release channel (trust scope `channel:NAME`).
    pub channel: String,
    /// Monotonic image version, bumped by the operator.
    pub version: u64,
    /// The suite of the mirror snapshot (`bookworm`).
    pub suite: String,
    /// Native architecture (`amd64`).
    #[serde(default = "default_architecture")]
    pub architecture: String,
    /// Where packages come from.
    pub mirror: MirrorSpec,
    /// The package list.
    pub packages: PackagesSpec,
    /// The kernel.
    pub kernel: KernelSpec,
    /// The NVIDIA driver stack, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nvidia: Option<NvidiaSpec>,
    /// The initramfs (owned by the initramfs stage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initramfs: Option<InitramfsSpec>,
    /// The root filesystem (owned by the rootfs stage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<RootfsSpec>,
}

fn default_architecture() -> String {
    "amd64".to_owned()
}

/// `[mirror]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MirrorSpec {
    /// The local mirror's root, relative to the spec file.
    pub path: PathBuf,
    /// A snapshot id (64 hex digits) or a ref name in the mirror.
    pub snapshot: String,
}

/// `[packages]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PackagesSpec {
    /// The base set: `none`, `essential`, `required` or `important`.
    #[serde(default = "default_base")]
    pub base: BaseSetSpec,
    /// Packages to install, besides the base set and the kernel/NVIDIA ones.
    #[serde(default)]
    pub include: Vec<String>,
    /// Exact versions (`name = "version"`); a pinned package is installed.
    #[serde(default)]
    pub pin: BTreeMap<String, String>,
    /// Install Recommends too.
    #[serde(default)]
    pub recommends: bool,
}

fn default_base() -> BaseSetSpec {
    BaseSetSpec::Required
}

/// [`BaseSet`] as the spec spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BaseSetSpec {
    /// `none`.
    None,
    /// `essential`.
    Essential,
    /// `required`.
    Required,
    /// `important`.
    Important,
}

impl From<BaseSetSpec> for BaseSet {
    fn from(b: BaseSetSpec) -> Self {
        match b {
            BaseSetSpec::None => Self::None,
            BaseSetSpec::Essential => Self::Essential,
            BaseSetSpec::Required => Self::Required,
            BaseSetSpec::Important => Self::Important,
        }
    }
}

/// `[kernel]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KernelSpec {
    /// The kernel image package (`linux-image-6.1.0-50-cloud-amd64`).
    pub package: String,
    /// Its release, as in `/lib/modules/<release>` (`6.1.0-50-cloud-amd64`).
    pub release: String,
    /// The headers package for module builds (default
    /// `linux-headers-<release>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<String>,
    /// The kernel command line.
    #[serde(default)]
    pub cmdline: String,
}

impl KernelSpec {
    /// The headers package: as given, or `linux-headers-<release>`.
    pub fn headers_package(&self) -> String {
        self.headers
            .clone()
            .unwrap_or_else(|| format!("linux-headers-{}", self.release))
    }
}

/// `[nvidia]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NvidiaSpec {
    /// The driver release every part must match (`535.261.03`).
    pub version: String,
    /// Open or proprietary kernel modules.
    pub flavour: Flavour,
    /// The module source package (default from the flavour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Userspace packages (`libcuda1`, `nvidia-smi`, ...).
    #[serde(default)]
    pub userspace: Vec<String>,
    /// Install the fabric manager (NVSwitch systems).
    #[serde(default)]
    pub fabric_manager: bool,
    /// Patch files under `images/NAME/patches/`, applied to the module
    /// source before the build.
    #[serde(default)]
    pub patches: Vec<PathBuf>,
    /// A package of the mirror that ships the modules already built for
    /// the image's kernel (`/lib/modules/RELEASE/...`): installed into
    /// the image instead of a build from the source package. The version
    /// chain is checked all the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precompiled: Option<String>,
}

impl NvidiaSpec {
    /// The module source package: as given, or the flavour's default.
    pub fn source_package(&self) -> String {
        self.source
            .clone()
            .unwrap_or_else(|| self.flavour.default_source().to_owned())
    }
}

/// NVIDIA kernel module flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flavour {
    /// The open GPU kernel modules (needs GSP firmware).
    Open,
    /// The proprietary modules.
    Proprietary,
}

impl Flavour {
    /// Debian's source package for the flavour.
    pub fn default_source(self) -> &'static str {
        match self {
            Self::Open => "nvidia-open-kernel-source",
            Self::Proprietary => "nvidia-kernel-source",
        }
    }
}

/// `[initramfs]` (the initramfs stage adds fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct InitramfsSpec {
    /// Kernel modules to carry (with their dependencies and firmware).
    #[serde(default)]
    pub drivers: Vec<String>,
}

/// `[rootfs]` (the rootfs stage adds fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RootfsSpec {
    /// Filesystem images to write.
    #[serde(default)]
    pub formats: Vec<FsFormat>,
    /// Compression of the filesystem image (`zstd`, `xz`, `lz4`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    /// The node's hostname (template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Overlay directory, relative to the spec (default `NAME/overlay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<PathBuf>,
    /// systemd units to enable.
    #[serde(default)]
    pub units: Vec<String>,
    /// Users to create.
    #[serde(default)]
    pub users: Vec<UserSpec>,
}

/// A filesystem image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FsFormat {
    /// squashfs.
    Squashfs,
    /// erofs.
    Erofs,
    /// A plain tar, for inspection.
    Tar,
}

/// `[[rootfs.users]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UserSpec {
    /// Login name.
    pub name: String,
    /// OpenSSH public keys.
    #[serde(default)]
    pub authorized_keys: Vec<String>,
}

/// The package sets an image is resolved and locked as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PackageSet {
    /// What the node runs.
    Image,
    /// The sandbox that compiles kernel modules (never shipped).
    Build,
}

impl PackageSet {
    /// `image` or `build`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Build => "build",
        }
    }
}

impl fmt::Display for PackageSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error reading an image spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("reading {path}", path = path.display())]
    Read {
        /// The spec file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML, or not the spec's shape (unknown key, wrong type,
    /// missing key).
    #[error("{path}:{line}:{column}: {key}: {message}", path = path.display())]
    Syntax {
        /// The spec file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// The dotted key at fault (`packages.pin.libcuda1`), or
        /// `(document)`.
        key: String,
        /// What the TOML reader said.
        message: String,
    },
    /// Well-formed, but meaningless or inconsistent.
    #[error("{path}:{line}:{column}: {key}: {problem}", path = path.display())]
    Invalid {
        /// The spec file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The dotted key at fault.
        key: String,
        /// What is wrong.
        problem: SpecProblem,
    },
}

impl ImageSpec {
    /// Reads and checks a spec file.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let bytes = std::fs::read(path).map_err(|source| SpecError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_bytes(&bytes, path)
    }

    /// Parses and checks spec bytes; `path` names the file in errors.
    pub fn parse_bytes(bytes: &[u8], path: &Path) -> Result<Self, SpecError> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let (line, column) = locate::line_column(bytes, e.valid_up_to());
            SpecError::Syntax {
                path: path.to_owned(),
                line,
                column,
                key: "(document)".to_owned(),
                message: "not UTF-8 text".to_owned(),
            }
        })?;
        Self::parse(text, path)
    }

    /// Parses and checks spec text; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, SpecError> {
        let spec: Self = toml::from_str(text).map_err(|e| locate::syntax_error(text, path, &e))?;
        if let Some((key, problem)) = spec.problems().into_iter().next() {
            let (line, column) = locate::key_position(text, &key);
            return Err(SpecError::Invalid {
                path: path.to_owned(),
                line,
                column,
                key: key.join("."),
                problem,
            });
        }
        Ok(spec)
    }

    /// Everything wrong with the spec's meaning, each with its key path.
    pub fn problems(&self) -> Vec<(Vec<String>, SpecProblem)> {
        check::problems(self)
    }

    /// The mirror root, resolved against the directory of the spec file.
    pub fn mirror_root(&self, spec_path: &Path) -> PathBuf {
        spec_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&self.mirror.path)
    }

    /// The package sets of this image, each with its resolver request:
    /// `image` always; `build` when NVIDIA modules are built from source
    /// (the compile sandbox) or the image boots (`[initramfs]`: the UKI's
    /// stub).
    pub fn requests(&self) -> Result<Vec<(PackageSet, Request)>, SpecError> {
        let pins = self.pins()?;
        let pinned = |name: &str| pins.get(name).cloned();
        let mut image = Request::new(&self.architecture);
        image.base = self.packages.base.into();
        image.recommends = self.packages.recommends;
        let mut names: Vec<String> = self.packages.include.clone();
        names.push(self.kernel.package.clone());
        if let Some(nvidia) = &self.nvidia {
            names.extend(nvidia.userspace.iter().cloned());
            names.extend(nvidia.precompiled.iter().cloned());
            if nvidia.flavour == Flavour::Open {
                names.push(GSP_FIRMWARE.to_owned());
            }
            if nvidia.fabric_manager {
                names.push(fabric_manager_package(&nvidia.version));
            }
        }
        names.extend(pins.keys().cloned());
        let mut seen = std::collections::HashSet::new();
        for name in names {
            if seen.insert(name.clone()) {
                let version = pinned(&name);
                image.include.push((name, version));
            }
        }
        let mut sets = vec![(PackageSet::Image, image)];
        if self.nvidia.is_some() || self.initramfs.is_some() {
            let mut build = Request::new(&self.architecture);
            let mut names = Vec::new();
            if let Some(nvidia) = &self.nvidia {
                // The compile sandbox: a whole system with the tools; with
                // precompiled modules, the headers only (Module.symvers,
                // which the module check reads).
                build.base = self.packages.base.into();
                names.push(self.kernel.headers_package());
                if nvidia.precompiled.is_none() {
                    names.push(nvidia.source_package());
                    names.extend(BUILD_TOOLS.iter().map(|t| t.to_string()));
                }
            }
            if self.initramfs.is_some() {
                // Read out of its .deb, never installed.
                names.push(UKI_STUB.to_owned());
            }
            for name in names {
                let version = pinned(&name);
                build.include.push((name, version));
            }
            // The image's pins hold in the sandbox too, without pulling
            // pinned packages in: a module must be built against the same
            // kernel and driver versions the image gets.
            build.prefer = pins.into_iter().collect();
            sets.push((PackageSet::Build, build));
        }
        Ok(sets)
    }

    /// The pins as versions.
    pub fn pins(&self) -> Result<BTreeMap<String, Version>, SpecError> {
        self.packages
            .pin
            .iter()
            .map(|(name, text)| {
                Version::parse(text)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| SpecError::Invalid {
                        path: PathBuf::from("(spec)"),
                        line: 0,
                        column: 0,
                        key: format!("packages.pin.{name}"),
                        problem: SpecProblem::BadVersion {
                            value: text.clone(),
                            reason: e.to_string(),
                        },
                    })
            })
            .collect()
    }
}

/// Debian-style name of the fabric manager package for a driver branch.
fn fabric_manager_package(version: &str) -> String {
    let branch = version.split('.').next().unwrap_or(version);
    format!("nvidia-fabricmanager-{branch}")
}
