//! The NVIDIA version chain, checked at build time and failing closed:
//!
//! ```text
//! kernel release (spec) = headers release = every NVIDIA module's vermagic
//! driver version (spec) = every NVIDIA module's version=
//!                       = the GSP firmware directory nvidia.ko asks for
//!                       = firmware-nvidia-gsp, libcuda1, nvidia-smi, ...
//!                         (upstream part of each package version, for
//!                         every package built from the driver's source)
//!                       = fabric manager, when the spec asks for it
//! every NVIDIA module's undefined symbols resolve, CRCs equal
//! every NVIDIA userspace ELF's DT_NEEDED closure resolves in the image
//! ```
//!
//! The real trap (facts): apt's default firmware-nvidia-gsp is 535.309.01
//! while the open module source is 535.261.03; nvidia.ko then asks for
//! `nvidia/535.261.03/gsp_*.bin`, which the image lacks, and no GPU comes
//! up. Each break names both sides and, when a package is at fault, the
//! pin to add (a version the mirror snapshot has, when a catalog is given).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Flavour, NvidiaError};
use crate::boot::elf::{ClosureRequest, ImageRoot, check_closure};
use crate::boot::kmod::check::ModuleEntry;
use crate::boot::kmod::depmod::ModuleTree;
use crate::boot::kmod::{KernelAbi, ModuleProblem, Vermagic, check_modules};
use crate::source::{Catalog, Version};

/// The modules every NVIDIA image must carry.
pub const REQUIRED: [&str; 3] = ["nvidia", "nvidia_uvm", "nvidia_modeset"];

/// The GSP firmware package.
pub const FIRMWARE_PACKAGE: &str = "firmware-nvidia-gsp";

/// What the chain is checked over.
#[derive(Debug, Clone, Copy)]
pub struct ChainInputs<'a> {
    /// The image root, with the NVIDIA modules installed.
    pub root: &'a ImageRoot,
    /// The spec's kernel release.
    pub release: &'a str,
    /// The kernel's headers flavour directory (Module.symvers).
    pub headers: &'a Path,
    /// The spec's driver version (`535.261.03`).
    pub driver: &'a str,
    /// The module flavour (names the source package in a fix).
    pub flavour: Flavour,
    /// The image's packages (name → full Debian version), from the lock.
    pub packages: &'a BTreeMap<String, String>,
    /// Source package of each binary package, where known (dpkg's
    /// status). Userspace packages of another source than the driver's
    /// (`nvidia-persistenced`, `nvidia-modprobe`: tools Debian versions on
    /// their own, which talk to the driver through its versioned
    /// libraries) are recorded but not coupled; a package whose source is
    /// unknown is coupled (failing closed).
    pub sources: &'a BTreeMap<String, String>,
    /// The NVIDIA userspace packages the spec lists (+ fabric manager).
    pub userspace: &'a [String],
    /// NVIDIA userspace ELF files (image paths) whose closure must resolve.
    pub elf_files: &'a [PathBuf],
    /// The mirror snapshot's catalog, to suggest pins it can satisfy.
    pub catalog: Option<&'a Catalog>,
}

/// Which link of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChainLink {
    /// Headers (or the image's module tree) of another kernel release.
    KernelRelease,
    /// A required NVIDIA module is not in the image.
    ModuleMissing,
    /// An NVIDIA module built for another kernel.
    ModuleVermagic,
    /// An NVIDIA module of another driver release.
    ModuleVersion,
    /// An NVIDIA module that would not load (symbols, CRCs, licence).
    ModuleSymbols,
    /// A firmware file a module asks for is not in the image.
    Firmware,
    /// A package of another driver release (firmware, userspace, fabric
    /// manager) or missing.
    Package,
    /// A userspace library is missing from the image.
    Library,
}

/// One break of the chain: the two sides and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ChainBreak {
    /// The link.
    pub link: ChainLink,
    /// What the chain requires.
    pub want: String,
    /// What the image has.
    pub got: String,
    /// The fix: a pin to add to the spec, or what to change.
    pub fix: String,
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, but {}: {}", self.want, self.got, self.fix)
    }
}

/// The chain report for the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ChainReport {
    /// The driver release.
    pub driver: String,
    /// The kernel's vermagic.
    pub kernel: String,
    /// The NVIDIA modules found in the image.
    pub modules: Vec<ModuleEntry>,
    /// Firmware files the modules ask for that the image has.
    pub firmware: Vec<String>,
    /// NVIDIA packages checked: name → version.
    pub packages: BTreeMap<String, String>,
    /// Userspace packages of their own source, not coupled to the driver
    /// release: name → version.
    pub independent: BTreeMap<String, String>,
    /// Userspace libraries resolved (count).
    pub libraries_resolved: usize,
    /// Every coupling compared, held or not (for the manifest's record of
    /// how the chain was checked).
    pub checks: Vec<Coupling>,
    /// The breaks; empty when the chain holds.
    pub breaks: Vec<ChainBreak>,
}

/// One compared coupling: `nvidia.ko vermagic` must be the kernel's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Coupling {
    /// What was compared.
    pub check: String,
    /// The value it must have.
    pub expected: String,
    /// The value found.
    pub found: String,
}

impl ChainReport {
    /// The report when the chain holds, else [`NvidiaError::ChainBroken`].
    pub fn require_intact(self) -> Result<Self, NvidiaError> {
        if self.breaks.is_empty() {
            Ok(self)
        } else {
            Err(NvidiaError::ChainBroken(Box::new(self)))
        }
    }
}

/// The pin to add for `package` at the driver release.
fn pin(catalog: Option<&Catalog>, package: &str, driver: &str) -> String {
    let Some(catalog) = catalog else {
        return format!("pin {package} to a {driver}-* version in [packages] pin");
    };
    let best: Option<&Version> = catalog
        .lookup(package)
        .iter()
        .map(|id| &catalog.package(*id).version)
        .filter(|v| v.upstream() == driver)
        .max_by(|a, b| a.compare(b));
    match best {
        Some(v) => format!("add to [packages] pin: \"{package}\" = \"{}\"", v.as_str()),
        None => format!(
            "the mirror snapshot has no {package} {driver}: sync it, then pin it in [packages] pin"
        ),
    }
}

fn upstream(version: &str) -> String {
    Version::parse(version)
        .map(|v| v.upstream().to_owned())
        .unwrap_or_else(|_| version.to_owned())
}

/// Checks the chain (see the module documentation). I/O and parse
/// failures are errors; chain breaks are in the report (see
/// [`ChainReport::require_intact`]).
pub fn check_chain(inputs: &ChainInputs<'_>) -> Result<ChainReport, NvidiaError> {
    let mut breaks = Vec::new();
    let kernel = KernelAbi::from_headers(inputs.headers)?;
    if kernel.release() != inputs.release {
        breaks.push(ChainBreak {
            link: ChainLink::KernelRelease,
            want: format!("kernel {}", inputs.release),
            got: format!("the headers are for {}", kernel.release()),
            fix: format!(
                "build against linux-headers-{} (same version as the image's linux-image)",
                inputs.release
            ),
        });
    }
    let tree = ModuleTree::scan(inputs.root, inputs.release)?;
    let nvidia: Vec<_> = tree
        .modules()
        .filter(|m| m.name == "nvidia" || m.name.starts_with("nvidia_"))
        .cloned()
        .collect();
    for name in REQUIRED {
        if !nvidia.iter().any(|m| m.name == name) {
            breaks.push(ChainBreak {
                link: ChainLink::ModuleMissing,
                want: format!("module {name} for kernel {}", inputs.release),
                got: format!("/lib/modules/{}/ has none", inputs.release),
                fix: "install the built NVIDIA modules (updates/dkms) before the check".into(),
            });
        }
    }
    module_links(inputs, &kernel.vermagic, &nvidia, &mut breaks);
    // Symbols against the kernel and every module of the tree; only the
    // NVIDIA modules' problems are chain breaks.
    let all: Vec<_> = tree.modules().cloned().collect();
    let report = check_modules(&kernel, &all);
    for problem in report.errors() {
        // Vermagic is its own link, above.
        let module = match problem {
            ModuleProblem::UnresolvedSymbol { module, .. }
            | ModuleProblem::ProviderNotInSet { module, .. }
            | ModuleProblem::CrcMismatch { module, .. }
            | ModuleProblem::GplOnlySymbol { module, .. }
            | ModuleProblem::NamespaceNotImported { module, .. }
            | ModuleProblem::MissingDependency { module, .. }
            | ModuleProblem::DuplicateModule { module, .. } => Some(module),
            _ => None,
        };
        let text = problem.to_string();
        if module.is_some_and(|name| nvidia.iter().any(|m| &m.name == name)) {
            breaks.push(ChainBreak {
                link: ChainLink::ModuleSymbols,
                want: format!("NVIDIA modules that load into {}", kernel.vermagic),
                got: text,
                fix: format!(
                    "rebuild the modules against linux-headers-{}",
                    inputs.release
                ),
            });
        }
    }
    let firmware = firmware_links(inputs, &nvidia, &mut breaks);
    let (packages, independent) = package_links(inputs, &mut breaks);
    let libraries_resolved = library_links(inputs, &mut breaks)?;
    let libraries_missing = breaks
        .iter()
        .filter(|b| b.link == ChainLink::Library)
        .count();
    let mut checks = vec![Coupling {
        check: "kernel headers release".into(),
        expected: inputs.release.to_owned(),
        found: kernel.release().to_owned(),
    }];
    checks.extend(module_couplings(inputs, &kernel.vermagic, &nvidia));
    for (name, version) in &packages {
        checks.push(Coupling {
            check: format!("{name} version"),
            expected: inputs.driver.to_owned(),
            found: upstream(version),
        });
    }
    checks.push(Coupling {
        check: "NVIDIA userspace libraries missing".into(),
        expected: "0".into(),
        found: libraries_missing.to_string(),
    });
    let modules = report
        .modules
        .into_iter()
        .filter(|m| nvidia.iter().any(|n| n.name == m.name))
        .collect();
    Ok(ChainReport {
        driver: inputs.driver.to_owned(),
        kernel: kernel.vermagic.to_string(),
        modules,
        firmware,
        packages,
        independent,
        libraries_resolved,
        checks,
        breaks,
    })
}

/// Vermagic, version and firmware couplings of each NVIDIA module.
fn module_couplings(
    inputs: &ChainInputs<'_>,
    vermagic: &Vermagic,
    nvidia: &[crate::boot::kmod::Module],
) -> Vec<Coupling> {
    let mut checks = Vec::new();
    for module in nvidia {
        let file = module
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| module.name.clone());
        checks.push(Coupling {
            check: format!("{file} vermagic"),
            expected: vermagic.to_string(),
            found: module
                .modinfo
                .vermagic
                .as_deref()
                .unwrap_or("")
                .trim_end()
                .to_owned(),
        });
        checks.push(Coupling {
            check: format!("{file} version"),
            expected: inputs.driver.to_owned(),
            found: module.modinfo.version.clone().unwrap_or_default(),
        });
        for firmware in &module.modinfo.firmware {
            let image = PathBuf::from("/lib/firmware").join(firmware);
            checks.push(Coupling {
                check: format!("{file} firmware {firmware}"),
                expected: "in the image".into(),
                found: if inputs.root.resolve(&image).is_ok() {
                    "in the image".into()
                } else {
                    "missing".into()
                },
            });
        }
    }
    checks
}

fn module_links(
    inputs: &ChainInputs<'_>,
    vermagic: &Vermagic,
    nvidia: &[crate::boot::kmod::Module],
    breaks: &mut Vec<ChainBreak>,
) {
    for module in nvidia {
        let got = module.modinfo.vermagic.as_deref().unwrap_or("");
        if Vermagic::parse(got).as_ref() != Some(vermagic) {
            breaks.push(ChainBreak {
                link: ChainLink::ModuleVermagic,
                want: format!("kernel vermagic \"{vermagic}\""),
                got: format!("{} has \"{}\"", module.path.display(), got.trim_end()),
                fix: format!(
                    "rebuild it against linux-headers-{}, or pin the kernel to the release it was built for",
                    inputs.release
                ),
            });
        }
        if module.modinfo.version.as_deref() != Some(inputs.driver) {
            breaks.push(ChainBreak {
                link: ChainLink::ModuleVersion,
                want: format!("driver {}", inputs.driver),
                got: format!(
                    "{} is version {}",
                    module.path.display(),
                    module.modinfo.version.as_deref().unwrap_or("(none)")
                ),
                fix: pin(
                    inputs.catalog,
                    inputs.flavour.source_package(),
                    inputs.driver,
                ),
            });
        }
    }
}

/// GSP firmware directories present under /lib/firmware/nvidia.
fn firmware_versions(root: &ImageRoot) -> Vec<String> {
    let Ok((dir, _)) = root.resolve(Path::new("/lib/firmware/nvidia")) else {
        return Vec::new();
    };
    let mut versions: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    versions.sort();
    versions
}

fn firmware_links(
    inputs: &ChainInputs<'_>,
    nvidia: &[crate::boot::kmod::Module],
    breaks: &mut Vec<ChainBreak>,
) -> Vec<String> {
    let mut found = BTreeSet::new();
    for module in nvidia {
        for file in &module.modinfo.firmware {
            let image = PathBuf::from("/lib/firmware").join(file);
            if inputs.root.resolve(&image).is_ok() {
                found.insert(file.clone());
                continue;
            }
            let present = firmware_versions(inputs.root);
            let package = inputs
                .packages
                .get(FIRMWARE_PACKAGE)
                .map(|v| format!("{FIRMWARE_PACKAGE} {v}"))
                .unwrap_or_else(|| format!("no {FIRMWARE_PACKAGE}"));
            breaks.push(ChainBreak {
                link: ChainLink::Firmware,
                want: format!(
                    "{} (driver {}) asks for {}",
                    module.name,
                    inputs.driver,
                    image.display()
                ),
                got: format!(
                    "the image has GSP firmware {} ({package})",
                    if present.is_empty() {
                        "of no version".to_owned()
                    } else {
                        present.join(", ")
                    }
                ),
                fix: pin(inputs.catalog, FIRMWARE_PACKAGE, inputs.driver),
            });
        }
    }
    found.into_iter().collect()
}

/// (coupled packages checked, independent ones) → name → version.
type PackageVersions = (BTreeMap<String, String>, BTreeMap<String, String>);

fn package_links(inputs: &ChainInputs<'_>, breaks: &mut Vec<ChainBreak>) -> PackageVersions {
    let mut checked = BTreeMap::new();
    let mut independent = BTreeMap::new();
    let names =
        std::iter::once(FIRMWARE_PACKAGE).chain(inputs.userspace.iter().map(String::as_str));
    for name in names {
        if let Some(source) = inputs.sources.get(name)
            && !is_driver_source(source)
            && name != FIRMWARE_PACKAGE
        {
            if let Some(version) = inputs.packages.get(name) {
                independent.insert(name.to_owned(), version.clone());
            }
            continue;
        }
        match inputs.packages.get(name) {
            Some(version) if upstream(version) == inputs.driver => {
                checked.insert(name.to_owned(), version.clone());
            }
            Some(version) => {
                checked.insert(name.to_owned(), version.clone());
                breaks.push(ChainBreak {
                    link: ChainLink::Package,
                    want: format!("driver {}", inputs.driver),
                    got: format!("the image has {name} {version}"),
                    fix: pin(inputs.catalog, name, inputs.driver),
                });
            }
            None => breaks.push(ChainBreak {
                link: ChainLink::Package,
                want: format!("{name} {} in the image", inputs.driver),
                got: format!("{name} is not in the image's package set"),
                fix: format!(
                    "add {name} to [packages] include; {}",
                    pin(inputs.catalog, name, inputs.driver)
                ),
            }),
        }
    }
    (checked, independent)
}

/// Debian's NVIDIA driver source packages (`nvidia-graphics-drivers`,
/// `nvidia-graphics-drivers-tesla-535`, ...) and the fabric manager's,
/// which must match the driver too.
fn is_driver_source(source: &str) -> bool {
    source.starts_with("nvidia-graphics-drivers") || source.starts_with("nvidia-fabric-manager")
}

fn library_links(
    inputs: &ChainInputs<'_>,
    breaks: &mut Vec<ChainBreak>,
) -> Result<usize, NvidiaError> {
    if inputs.elf_files.is_empty() {
        return Ok(0);
    }
    let report = check_closure(
        inputs.root,
        &ClosureRequest {
            files: inputs.elf_files.to_vec(),
            dlopen: Vec::new(),
            foreign: Vec::new(),
        },
    )?;
    for missing in &report.missing {
        breaks.push(ChainBreak {
            link: ChainLink::Library,
            want: format!("{} needs {}", missing.needed_by.display(), missing.name),
            got: "no such library in the image".into(),
            fix: format!(
                "add the package that ships {} to [packages] include",
                missing.name
            ),
        });
    }
    Ok(report.resolved.len())
}
