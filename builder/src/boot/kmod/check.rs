//! Will these modules load into this kernel? The rules the 6.1 loader
//! applies (`kernel/module/main.c`, `version.c`), checked at build time:
//!
//! - vermagic must equal the kernel's (release and flags; the kernel itself
//!   skips the release when modversions is on, but a module built for
//!   another release is a chain break we refuse);
//! - every non-weak undefined symbol must be exported by vmlinux or by a
//!   module of the set, exactly once;
//! - with modversions, the CRC in the module's `__versions` must equal the
//!   exporter's (`module_layout` included);
//! - `EXPORT_SYMBOL_GPL` symbols only for GPL-compatible licences;
//! - namespaced exports only for modules that `MODULE_IMPORT_NS` them;
//! - every `depends=` module must be in the set.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use super::Module;
use super::abi::{ExportSource, KernelAbi, Vermagic};

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// The kernel refuses the module.
    Error,
    /// The module loads, but the kernel warns or taints.
    Warning,
}

/// One finding about one module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ModuleProblem {
    /// The module has no vermagic.
    VermagicMissing {
        /// The module.
        module: String,
    },
    /// Built for another kernel release or configuration.
    VermagicMismatch {
        /// The module.
        module: String,
        /// The kernel's vermagic.
        want: String,
        /// The module's.
        got: String,
    },
    /// Nobody exports a symbol the module needs.
    UnresolvedSymbol {
        /// The module.
        module: String,
        /// The symbol.
        symbol: String,
    },
    /// Exported only by an in-tree module that is not in the set.
    ProviderNotInSet {
        /// The module.
        module: String,
        /// The symbol.
        symbol: String,
        /// The in-tree module that would export it (Module.symvers path).
        provider: String,
    },
    /// The module was built against another version of the symbol.
    CrcMismatch {
        /// The module.
        module: String,
        /// The symbol.
        symbol: String,
        /// The CRC the module recorded in `__versions`.
        wanted: u32,
        /// The exporter's CRC.
        found: u32,
        /// The exporter (`vmlinux` or a module name).
        provider: String,
    },
    /// Modversions on, but the module has no CRC for a symbol it uses (the
    /// kernel warns "no symbol version").
    MissingVersion {
        /// The module.
        module: String,
        /// The symbol.
        symbol: String,
    },
    /// Modversions on, but the module has no `__versions` at all: it loads
    /// only by force and taints the kernel.
    NoVersions {
        /// The module.
        module: String,
    },
    /// A GPL-only symbol used by a module whose licence is not compatible.
    GplOnlySymbol {
        /// The module.
        module: String,
        /// The symbol.
        symbol: String,
        /// The module's licence.
        license: Option<String>,
    },
    /// A namespaced symbol used without importing the namespace.
    NamespaceNotImported {
        /// The module.
        module: String,
        /// The symbol.
        symbol: String,
        /// Its namespace.
        namespace: String,
    },
    /// Two exporters of one symbol: the second one fails to load.
    DuplicateExport {
        /// The symbol.
        symbol: String,
        /// The exporters.
        providers: Vec<String>,
    },
    /// A `depends=` module that is not in the set.
    MissingDependency {
        /// The module.
        module: String,
        /// The module it depends on.
        dependency: String,
    },
    /// Two modules of the set have the same name.
    DuplicateModule {
        /// The name.
        module: String,
        /// Their files.
        paths: Vec<PathBuf>,
    },
}

impl ModuleProblem {
    /// Whether the kernel would refuse the module.
    pub fn severity(&self) -> Severity {
        match self {
            Self::MissingVersion { .. } | Self::NoVersions { .. } => Severity::Warning,
            _ => Severity::Error,
        }
    }
}

impl fmt::Display for ModuleProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::VermagicMissing { module } => write!(f, "{module}: no vermagic"),
            Self::VermagicMismatch { module, want, got } => {
                write!(f, "{module}: vermagic {got:?}, kernel wants {want:?}")
            }
            Self::UnresolvedSymbol { module, symbol } => {
                write!(f, "{module}: unresolved symbol {symbol}")
            }
            Self::ProviderNotInSet {
                module,
                symbol,
                provider,
            } => write!(
                f,
                "{module}: symbol {symbol} is exported by {provider}, which is not in the set"
            ),
            Self::CrcMismatch {
                module,
                symbol,
                wanted,
                found,
                provider,
            } => write!(
                f,
                "{module}: symbol {symbol}: module wants CRC {wanted:#010x}, {provider} has {found:#010x}"
            ),
            Self::MissingVersion { module, symbol } => {
                write!(f, "{module}: no CRC recorded for {symbol}")
            }
            Self::NoVersions { module } => write!(
                f,
                "{module}: built without modversions for a modversions kernel (loads only forced, taints)"
            ),
            Self::GplOnlySymbol {
                module,
                symbol,
                license,
            } => write!(
                f,
                "{module}: uses GPL-only {symbol} with licence {}",
                license.as_deref().unwrap_or("(none)")
            ),
            Self::NamespaceNotImported {
                module,
                symbol,
                namespace,
            } => write!(
                f,
                "{module}: uses {symbol} from namespace {namespace} without MODULE_IMPORT_NS"
            ),
            Self::DuplicateExport { symbol, providers } => {
                write!(f, "symbol {symbol} exported by {}", providers.join(" and "))
            }
            Self::MissingDependency { module, dependency } => {
                write!(
                    f,
                    "{module}: depends on {dependency}, which is not in the set"
                )
            }
            Self::DuplicateModule { module, paths } => {
                write!(
                    f,
                    "module {module} appears {} times: {paths:?}",
                    paths.len()
                )
            }
        }
    }
}

/// One module's line in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ModuleEntry {
    /// The module name.
    pub name: String,
    /// Its file.
    pub path: PathBuf,
    /// Its vermagic as written.
    pub vermagic: Option<String>,
    /// Whether a signature is appended.
    pub signed: bool,
    /// `srcversion=`.
    pub srcversion: Option<String>,
    /// SHA-256 of the file (hex).
    pub sha256: String,
}

/// The result of [`check_modules`]: every module and every problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ModuleReport {
    /// The kernel's vermagic.
    pub kernel: String,
    /// Where the kernel's exports came from.
    pub symbols_from: PathBuf,
    /// Whether CRCs were compared (false with System.map).
    pub crcs_checked: bool,
    /// The modules, sorted by name.
    pub modules: Vec<ModuleEntry>,
    /// The problems, in module order.
    pub problems: Vec<ModuleProblem>,
}

impl ModuleReport {
    /// Problems the kernel would refuse a module for.
    pub fn errors(&self) -> impl Iterator<Item = &ModuleProblem> {
        self.problems
            .iter()
            .filter(|p| p.severity() == Severity::Error)
    }

    /// Whether every module loads.
    pub fn is_clean(&self) -> bool {
        self.errors().next().is_none()
    }
}

struct Provider<'a> {
    name: String,
    crc: Option<u32>,
    gpl_only: Option<bool>,
    namespace: Option<&'a str>,
}

/// Checks `modules` against `kernel` (see the module documentation).
pub fn check_modules(kernel: &KernelAbi, modules: &[Module]) -> ModuleReport {
    let mut problems = Vec::new();
    let mut sorted: Vec<&Module> = modules.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name).then(a.path.cmp(&b.path)));
    duplicate_modules(&sorted, &mut problems);
    let providers = providers(kernel, &sorted, &mut problems);
    let in_set: HashMap<&str, &Module> = sorted.iter().map(|m| (m.name.as_str(), *m)).collect();
    for module in &sorted {
        check_vermagic(&kernel.vermagic, module, &mut problems);
        for dependency in &module.modinfo.depends {
            if !in_set.contains_key(dependency.as_str()) {
                problems.push(ModuleProblem::MissingDependency {
                    module: module.name.clone(),
                    dependency: dependency.clone(),
                });
            }
        }
        check_symbols(kernel, module, &providers, &mut problems);
    }
    ModuleReport {
        kernel: kernel.vermagic.to_string(),
        symbols_from: kernel.symbols_from.clone(),
        crcs_checked: kernel.has_crcs,
        modules: sorted.iter().map(|m| entry(m)).collect(),
        problems,
    }
}

fn entry(module: &Module) -> ModuleEntry {
    ModuleEntry {
        name: module.name.clone(),
        path: module.path.clone(),
        vermagic: module.modinfo.vermagic.clone(),
        signed: module.signature.is_some(),
        srcversion: module.modinfo.srcversion.clone(),
        sha256: hex::encode(module.file_sha256),
    }
}

fn duplicate_modules(sorted: &[&Module], problems: &mut Vec<ModuleProblem>) {
    for group in sorted.chunk_by(|a, b| a.name == b.name) {
        if group.len() > 1 {
            problems.push(ModuleProblem::DuplicateModule {
                module: group[0].name.clone(),
                paths: group.iter().map(|m| m.path.clone()).collect(),
            });
        }
    }
}

/// Exports of vmlinux and of the set's modules, by symbol; duplicates are
/// reported.
fn providers<'a>(
    kernel: &'a KernelAbi,
    modules: &[&'a Module],
    problems: &mut Vec<ModuleProblem>,
) -> HashMap<&'a str, Provider<'a>> {
    let mut map: HashMap<&str, Provider<'a>> = kernel
        .exports
        .iter()
        .filter(|(_, e)| e.source == ExportSource::Vmlinux)
        .map(|(name, e)| {
            let provider = Provider {
                name: "vmlinux".to_owned(),
                crc: e.crc,
                gpl_only: e.gpl_only,
                namespace: e.namespace.as_deref(),
            };
            (name.as_str(), provider)
        })
        .collect();
    let mut duplicates: Vec<(String, Vec<String>)> = Vec::new();
    for module in modules {
        for export in &module.exports {
            let provider = Provider {
                name: module.name.clone(),
                crc: export.crc,
                gpl_only: Some(export.gpl_only),
                namespace: export.namespace.as_deref(),
            };
            if let Some(first) = map.get(export.name.as_str()) {
                duplicates.push((
                    export.name.clone(),
                    vec![first.name.clone(), module.name.clone()],
                ));
            } else {
                map.insert(export.name.as_str(), provider);
            }
        }
    }
    duplicates.sort();
    problems.extend(
        duplicates
            .into_iter()
            .map(|(symbol, providers)| ModuleProblem::DuplicateExport { symbol, providers }),
    );
    map
}

fn check_vermagic(kernel: &Vermagic, module: &Module, problems: &mut Vec<ModuleProblem>) {
    let name = module.name.clone();
    match module.modinfo.vermagic.as_deref().and_then(Vermagic::parse) {
        None => problems.push(ModuleProblem::VermagicMissing { module: name }),
        Some(got) if got != *kernel => problems.push(ModuleProblem::VermagicMismatch {
            module: name,
            want: kernel.to_string(),
            got: got.to_string(),
        }),
        Some(_) => {}
    }
}

fn check_symbols(
    kernel: &KernelAbi,
    module: &Module,
    providers: &HashMap<&str, Provider<'_>>,
    problems: &mut Vec<ModuleProblem>,
) {
    let name = || module.name.clone();
    let modversions = kernel.vermagic.modversions() && kernel.has_crcs;
    if modversions && module.versions.is_empty() {
        problems.push(ModuleProblem::NoVersions { module: name() });
    }
    for symbol in &module.undefined {
        let Some(provider) = providers.get(symbol.name.as_str()) else {
            if let Some(export) = kernel.exports.get(&symbol.name) {
                problems.push(ModuleProblem::ProviderNotInSet {
                    module: name(),
                    symbol: symbol.name.clone(),
                    provider: export.source.to_string(),
                });
            } else if !symbol.weak {
                problems.push(ModuleProblem::UnresolvedSymbol {
                    module: name(),
                    symbol: symbol.name.clone(),
                });
            }
            continue;
        };
        if provider.name == module.name {
            continue;
        }
        if provider.gpl_only == Some(true) && !module.modinfo.is_gpl_compatible() {
            problems.push(ModuleProblem::GplOnlySymbol {
                module: name(),
                symbol: symbol.name.clone(),
                license: module.modinfo.license.clone(),
            });
        }
        if let Some(namespace) = provider.namespace
            && !module.modinfo.import_ns.iter().any(|ns| ns == namespace)
        {
            problems.push(ModuleProblem::NamespaceNotImported {
                module: name(),
                symbol: symbol.name.clone(),
                namespace: namespace.to_owned(),
            });
        }
        if modversions && !module.versions.is_empty() && module.version_of(&symbol.name).is_none() {
            problems.push(ModuleProblem::MissingVersion {
                module: name(),
                symbol: symbol.name.clone(),
            });
        }
    }
    if modversions {
        check_crcs(module, providers, problems);
    }
}

/// Every `__versions` entry against its exporter: the undefined symbols and
/// `module_layout`, which the loader checks before anything else.
fn check_crcs(
    module: &Module,
    providers: &HashMap<&str, Provider<'_>>,
    problems: &mut Vec<ModuleProblem>,
) {
    for version in &module.versions {
        let Some(provider) = providers.get(version.name.as_str()) else {
            continue;
        };
        if let Some(found) = provider.crc
            && found != version.crc
            && provider.name != module.name
        {
            problems.push(ModuleProblem::CrcMismatch {
                module: module.name.clone(),
                symbol: version.name.clone(),
                wanted: version.crc,
                found,
                provider: provider.name.clone(),
            });
        }
    }
}
