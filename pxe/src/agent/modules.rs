//! Loading the initramfs's kernel modules as PID 1, without kmod: the
//! files and their order come from `modules.dep` and `modules.builtin`
//! under `/lib/modules/RELEASE` (which the builder regenerated for
//! exactly the modules it carried), and each file goes to the kernel with
//! `finit_module`.
//!
//! Order: the configuration's list (already dependencies first), with
//! every module's `modules.dep` dependencies placed before it when the
//! list forgot one or put it later, so a reordered or hand-written
//! agent.json still loads. A module already loaded (EEXIST) or built into
//! the kernel is fine; a failure is reported and the next module tried.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use nix::errno::Errno;

/// The module index of one kernel release.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleIndex {
    /// Module name → (file relative to the release directory, direct
    /// dependencies by name).
    modules: BTreeMap<String, (PathBuf, Vec<String>)>,
    /// Modules built into the kernel.
    builtin: BTreeSet<String>,
}

/// One step of the load plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedModule {
    /// Load this file (relative to the release directory).
    Load {
        /// Module name.
        name: String,
        /// Its file.
        file: PathBuf,
    },
    /// Built into the kernel: nothing to load.
    Builtin(String),
    /// Neither in modules.dep nor built in.
    Unknown(String),
}

impl PlannedModule {
    /// The module's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Load { name, .. } | Self::Builtin(name) | Self::Unknown(name) => name,
        }
    }
}

/// What happened to one module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadOutcome {
    /// The kernel accepted it.
    Loaded,
    /// It was already loaded (EEXIST).
    AlreadyLoaded,
    /// It is built into the kernel.
    Builtin,
    /// No such module in the initramfs.
    Unknown,
    /// The kernel (or opening the file) refused it.
    Failed(Errno),
}

impl LoadOutcome {
    /// Whether the module is usable afterwards.
    pub fn is_ok(self) -> bool {
        !matches!(self, Self::Unknown | Self::Failed(_))
    }
}

/// The module name of a file path: `kernel/net/virtio_net.ko.xz` →
/// `virtio_net` (the kernel treats `-` and `_` alike; `_` is canonical).
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    normalise(stem)
}

fn normalise(name: &str) -> String {
    name.replace('-', "_")
}

impl ModuleIndex {
    /// Parses `modules.dep` and `modules.builtin` texts. Malformed lines
    /// are skipped: the index only guides the order, the kernel decides.
    pub fn parse(modules_dep: &str, modules_builtin: &str) -> Self {
        let mut index = Self::default();
        for line in modules_dep.lines() {
            let Some((file, deps)) = line.split_once(':') else {
                continue;
            };
            let file = file.trim();
            if file.is_empty() {
                continue;
            }
            let deps = deps.split_whitespace().map(module_name).collect();
            index
                .modules
                .insert(module_name(file), (PathBuf::from(file), deps));
        }
        index.builtin = modules_builtin
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(module_name)
            .collect();
        index
    }

    /// Reads the index under `dir` (`/lib/modules/RELEASE`); a missing
    /// modules.builtin is an empty one.
    pub fn read(dir: &Path) -> std::io::Result<Self> {
        let dep = std::fs::read_to_string(dir.join("modules.dep"))?;
        let builtin = match std::fs::read_to_string(dir.join("modules.builtin")) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        Ok(Self::parse(&dep, &builtin))
    }

    /// The load plan for `wanted` (names, in order): each module after
    /// its dependencies, each once.
    pub fn plan(&self, wanted: &[String]) -> Vec<PlannedModule> {
        let mut plan = Vec::new();
        let mut placed = BTreeSet::new();
        for name in wanted {
            self.place(
                &normalise(name),
                &mut plan,
                &mut placed,
                &mut BTreeSet::new(),
            );
        }
        plan
    }

    /// Depth-first: dependencies first; `visiting` breaks cycles (depmod
    /// refuses them, but the file is input).
    fn place(
        &self,
        name: &str,
        plan: &mut Vec<PlannedModule>,
        placed: &mut BTreeSet<String>,
        visiting: &mut BTreeSet<String>,
    ) {
        if placed.contains(name) || !visiting.insert(name.to_owned()) {
            return;
        }
        let step = match self.modules.get(name) {
            Some((file, deps)) => {
                for dep in deps {
                    self.place(dep, plan, placed, visiting);
                }
                PlannedModule::Load {
                    name: name.to_owned(),
                    file: file.clone(),
                }
            }
            None if self.builtin.contains(name) => PlannedModule::Builtin(name.to_owned()),
            None => PlannedModule::Unknown(name.to_owned()),
        };
        placed.insert(name.to_owned());
        plan.push(step);
    }
}

/// Carries out `plan` with files under `dir`, handing each to `load`
/// (`finit_module` on the node); calls `report` after each module.
pub fn load_all(
    dir: &Path,
    plan: &[PlannedModule],
    mut load: impl FnMut(&Path) -> Result<(), Errno>,
    mut report: impl FnMut(&str, LoadOutcome),
) -> Vec<(String, LoadOutcome)> {
    let mut outcomes = Vec::new();
    for step in plan {
        let outcome = match step {
            PlannedModule::Builtin(_) => LoadOutcome::Builtin,
            PlannedModule::Unknown(_) => LoadOutcome::Unknown,
            PlannedModule::Load { file, .. } => match load(&dir.join(file)) {
                Ok(()) => LoadOutcome::Loaded,
                Err(Errno::EEXIST) => LoadOutcome::AlreadyLoaded,
                Err(errno) => LoadOutcome::Failed(errno),
            },
        };
        report(step.name(), outcome);
        outcomes.push((step.name().to_owned(), outcome));
    }
    outcomes
}

/// Loads one module file into the running kernel.
pub fn finit_module(file: &Path) -> Result<(), Errno> {
    let file = std::fs::File::open(file)
        .map_err(|e| e.raw_os_error().map_or(Errno::EIO, Errno::from_raw))?;
    nix::kmod::finit_module(&file, c"", nix::kmod::ModuleInitFlags::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/fs/squashfs/squashfs.ko.xz:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/block/dm-mod.ko:
";
    const BUILTIN: &str = "kernel/drivers/char/tpm/tpm_tis.ko\nkernel/drivers/nvme/host/nvme.ko\n";

    fn names(plan: &[PlannedModule]) -> Vec<&str> {
        plan.iter().map(PlannedModule::name).collect()
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn a_closure_in_order_keeps_its_order() {
        let index = ModuleIndex::parse(DEP, BUILTIN);
        let wanted = strings(&["failover", "net_failover", "virtio_net", "squashfs"]);
        let plan = index.plan(&wanted);
        assert_eq!(
            names(&plan),
            ["failover", "net_failover", "virtio_net", "squashfs"]
        );
        assert_eq!(
            plan[3],
            PlannedModule::Load {
                name: "squashfs".into(),
                file: "kernel/fs/squashfs/squashfs.ko.xz".into()
            }
        );
    }

    #[test]
    fn dependencies_move_before_their_users_and_are_added_once() {
        let index = ModuleIndex::parse(DEP, BUILTIN);
        let wanted = strings(&["virtio_net", "virtio_pci", "failover", "virtio_net"]);
        assert_eq!(
            names(&index.plan(&wanted)),
            [
                "failover",
                "net_failover",
                "virtio_net",
                "virtio_pci_legacy_dev",
                "virtio_pci_modern_dev",
                "virtio_pci"
            ]
        );
    }

    #[test]
    fn builtin_unknown_and_dashes() {
        let index = ModuleIndex::parse(DEP, BUILTIN);
        let plan = index.plan(&strings(&["tpm_tis", "nosuch", "dm-mod"]));
        assert_eq!(
            plan,
            [
                PlannedModule::Builtin("tpm_tis".into()),
                PlannedModule::Unknown("nosuch".into()),
                PlannedModule::Load {
                    name: "dm_mod".into(),
                    file: "kernel/drivers/block/dm-mod.ko".into()
                },
            ]
        );
    }

    #[test]
    fn a_dependency_cycle_terminates() {
        let index = ModuleIndex::parse("a.ko: b.ko\nb.ko: a.ko\n", "");
        assert_eq!(names(&index.plan(&strings(&["a"]))), ["b", "a"]);
    }

    #[test]
    fn outcomes_already_loaded_and_failures_continue() {
        let index = ModuleIndex::parse(DEP, BUILTIN);
        let plan = index.plan(&strings(&["virtio_net", "tpm_tis", "squashfs", "nosuch"]));
        let mut tried = Vec::new();
        let mut reported = Vec::new();
        let outcomes = load_all(
            Path::new("/lib/modules/r"),
            &plan,
            |file| {
                tried.push(file.to_owned());
                match file.file_name().unwrap().to_str().unwrap() {
                    "failover.ko" => Err(Errno::EEXIST),
                    "net_failover.ko" => Err(Errno::ENOEXEC),
                    _ => Ok(()),
                }
            },
            |name, outcome| reported.push((name.to_owned(), outcome)),
        );
        assert_eq!(outcomes, reported);
        assert_eq!(
            outcomes,
            [
                ("failover".to_owned(), LoadOutcome::AlreadyLoaded),
                (
                    "net_failover".to_owned(),
                    LoadOutcome::Failed(Errno::ENOEXEC)
                ),
                ("virtio_net".to_owned(), LoadOutcome::Loaded),
                ("tpm_tis".to_owned(), LoadOutcome::Builtin),
                ("squashfs".to_owned(), LoadOutcome::Loaded),
                ("nosuch".to_owned(), LoadOutcome::Unknown),
            ]
        );
        assert_eq!(
            tried[0],
            Path::new("/lib/modules/r/kernel/net/core/failover.ko")
        );
        assert_eq!(tried.len(), 4);
    }
}
