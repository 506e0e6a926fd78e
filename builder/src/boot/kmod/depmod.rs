//! The module tree of one kernel release (`/lib/modules/REL`): the
//! modules in it, `modules.builtin`, `modules.dep`, dependency closures,
//! and the index files regenerated for a subset (what the initramfs
//! carries).
//!
//! Debian's linux-image packages ship no modules.dep (depmod makes it in
//! postinst), so closures follow each module's `depends=` (modpost's list,
//! from the same symbol resolution depmod does) and `softdep=`; the text
//! indexes written here agree with `depmod`'s (tested against kmod's).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{KmodError, Module, module_name, module_name_from_path};
use crate::boot::elf::ImageRoot;

/// Modules of one release, by name, with their paths relative to the
/// release directory (`kernel/fs/squashfs/squashfs.ko`).
#[derive(Debug, Clone)]
pub struct ModuleTree {
    /// The kernel release.
    pub release: String,
    /// The release directory on the host.
    pub dir: PathBuf,
    /// Modules by name.
    pub modules: BTreeMap<String, TreeModule>,
    /// modules.builtin: name → path (built into the kernel: no .ko).
    pub builtin: BTreeMap<String, String>,
}

/// A module file in the tree.
#[derive(Debug, Clone)]
pub struct TreeModule {
    /// Path relative to the release directory.
    pub relative: String,
    /// The parsed module.
    pub module: Module,
}

/// Where a requested driver comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Closure {
    /// Modules to carry, in load order (dependencies first).
    pub load_order: Vec<String>,
    /// Requested names the kernel has built in.
    pub builtin: Vec<String>,
    /// Requested names neither built in nor present as a module.
    pub missing: Vec<String>,
    /// Soft dependencies named but absent (not an error: kmod skips them).
    pub missing_softdeps: Vec<String>,
}

impl ModuleTree {
    /// Reads every `.ko`, `.ko.xz`, `.ko.zst`, `.ko.gz` under
    /// `/lib/modules/RELEASE` of an image root (symlinks resolved inside
    /// the root), and its modules.builtin when present.
    pub fn scan(root: &ImageRoot, release: &str) -> Result<Self, KmodError> {
        let image_dir = PathBuf::from(format!("/lib/modules/{release}"));
        let (dir, _) = root.resolve(&image_dir).map_err(|source| KmodError::Read {
            path: root
                .path()
                .join(image_dir.strip_prefix("/").unwrap_or(&image_dir)),
            source,
        })?;
        Self::scan_dir(&dir, release)
    }

    /// Like [`ModuleTree::scan`] for a release directory on the host.
    pub fn scan_dir(dir: &Path, release: &str) -> Result<Self, KmodError> {
        let mut files = Vec::new();
        collect_modules(dir, dir, &mut files)?;
        // Two files with one name: depmod keeps the first by its default
        // search order, `updates/` before the rest (how DKMS modules
        // replace in-tree ones); then the first path in sort order. The
        // check reports duplicates (DuplicateModule) if both are passed
        // to it.
        files.sort_by(|a, b| {
            let updates = |p: &str| !p.starts_with("updates/");
            updates(a).cmp(&updates(b)).then(a.cmp(b))
        });
        let mut modules = BTreeMap::new();
        for relative in files {
            let module = Module::read(&dir.join(&relative))?;
            modules
                .entry(module.name.clone())
                .or_insert(TreeModule { relative, module });
        }
        let builtin_path = dir.join("modules.builtin");
        let builtin = if builtin_path.exists() {
            read_modules_builtin(&builtin_path)?
        } else {
            BTreeMap::new()
        };
        Ok(Self {
            release: release.to_owned(),
            dir: dir.to_owned(),
            modules,
            builtin,
        })
    }

    /// The parsed modules.
    pub fn modules(&self) -> impl Iterator<Item = &Module> {
        self.modules.values().map(|m| &m.module)
    }

    /// The closure of `requested` (module names; dashes allowed): each
    /// module, its `depends=` and the `softdep=` modules present, in an
    /// order that loads dependencies first.
    pub fn closure<S: AsRef<str>>(&self, requested: &[S]) -> Closure {
        let mut closure = Closure {
            load_order: Vec::new(),
            builtin: Vec::new(),
            missing: Vec::new(),
            missing_softdeps: Vec::new(),
        };
        let mut selected = BTreeSet::new();
        let mut stack: Vec<String> = Vec::new();
        for name in requested.iter().map(|n| module_name(n.as_ref())) {
            if self.modules.contains_key(&name) {
                stack.push(name);
            } else if self.builtin.contains_key(&name) {
                closure.builtin.push(name);
            } else {
                closure.missing.push(name);
            }
        }
        while let Some(name) = stack.pop() {
            if !selected.insert(name.clone()) {
                continue;
            }
            let info = &self.modules[&name].module.modinfo;
            for dependency in &info.depends {
                // A depends= that is absent is reported by check_modules.
                if self.modules.contains_key(dependency) {
                    stack.push(dependency.clone());
                }
            }
            for soft in softdep_modules(&info.softdep) {
                if self.modules.contains_key(&soft) {
                    stack.push(soft);
                } else if !self.builtin.contains_key(&soft) {
                    closure.missing_softdeps.push(soft);
                }
            }
        }
        closure.load_order = self.load_order(&selected);
        for list in [
            &mut closure.builtin,
            &mut closure.missing,
            &mut closure.missing_softdeps,
        ] {
            list.sort();
            list.dedup();
        }
        closure
    }

    /// `names` ordered so that every module follows its dependencies;
    /// ties broken by name (deterministic).
    pub fn load_order(&self, names: &BTreeSet<String>) -> Vec<String> {
        let rank = self.users_first_rank(names);
        let mut order: Vec<String> = names.iter().cloned().collect();
        order.sort_by_key(|n| std::cmp::Reverse(rank[n.as_str()]));
        order
    }

    /// depmod's ranking: a topological order that lists modules nobody in
    /// the set uses first (Kahn's algorithm, ties by name).
    fn users_first_rank<'a>(&'a self, names: &'a BTreeSet<String>) -> HashMap<&'a str, usize> {
        let deps = |n: &str| -> Vec<&'a str> {
            self.modules[n]
                .module
                .modinfo
                .depends
                .iter()
                .filter(|d| names.contains(*d))
                .map(String::as_str)
                .collect()
        };
        let mut users: HashMap<&str, usize> = names.iter().map(|n| (n.as_str(), 0)).collect();
        for name in names {
            for d in deps(name) {
                *users.get_mut(d).expect("in set") += 1;
            }
        }
        let mut ready: BTreeSet<&str> = users
            .iter()
            .filter(|(_, u)| **u == 0)
            .map(|(n, _)| *n)
            .collect();
        let mut rank = HashMap::new();
        while let Some(name) = ready.pop_first() {
            rank.insert(name, rank.len());
            for d in deps(name) {
                let count = users.get_mut(d).expect("in set");
                *count -= 1;
                if *count == 0 {
                    ready.insert(d);
                }
            }
        }
        // A dependency cycle (the kernel refuses those) keeps its members
        // out of the ranking: put them last, by name.
        for name in names {
            let next = rank.len();
            rank.entry(name.as_str()).or_insert(next);
        }
        rank
    }

    /// The text of `modules.dep`, `modules.alias`, `modules.softdep` and
    /// `modules.builtin` for the modules in `names` (plus the builtin
    /// list), in depmod's formats, deterministically.
    pub fn index_files(&self, names: &BTreeSet<String>) -> [(&'static str, String); 4] {
        [
            ("modules.dep", self.modules_dep(names)),
            ("modules.alias", self.modules_alias(names)),
            ("modules.softdep", self.modules_softdep(names)),
            ("modules.builtin", self.modules_builtin()),
        ]
    }

    /// Writes [`ModuleTree::index_files`] into `out` (a release directory
    /// of another tree).
    pub fn write_indexes(&self, names: &BTreeSet<String>, out: &Path) -> Result<(), KmodError> {
        for (name, text) in self.index_files(names) {
            let path = out.join(name);
            std::fs::write(&path, text).map_err(|source| KmodError::Read { path, source })?;
        }
        Ok(())
    }

    /// modules.dep text: `path: dep dep ...`, every transitive dependency,
    /// users before what they use (modprobe loads from the end).
    pub fn modules_dep(&self, names: &BTreeSet<String>) -> String {
        let rank = self.users_first_rank(names);
        let mut text = String::new();
        for name in self.order_by_path(names) {
            let mut deps: Vec<&str> = self.transitive_depends(name, names).into_iter().collect();
            deps.sort_by_key(|d| rank[d]);
            let _ = write!(text, "{}:", self.modules[name].relative);
            for d in deps {
                let _ = write!(text, " {}", self.modules[d].relative);
            }
            text.push('\n');
        }
        text
    }

    fn order_by_path<'a>(&'a self, names: &'a BTreeSet<String>) -> Vec<&'a str> {
        let mut list: Vec<&str> = names.iter().map(String::as_str).collect();
        list.sort_by(|a, b| self.modules[*a].relative.cmp(&self.modules[*b].relative));
        list
    }

    fn transitive_depends<'a>(
        &'a self,
        name: &str,
        names: &'a BTreeSet<String>,
    ) -> BTreeSet<&'a str> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![name.to_owned()];
        while let Some(n) = stack.pop() {
            for d in &self.modules[&n].module.modinfo.depends {
                if let Some(d) = names.get(d)
                    && d != name
                    && seen.insert(d.as_str())
                {
                    stack.push(d.clone());
                }
            }
        }
        seen
    }

    fn modules_alias(&self, names: &BTreeSet<String>) -> String {
        let mut text = String::from("# Aliases extracted from modules themselves.\n");
        for name in names {
            for alias in &self.modules[name].module.modinfo.alias {
                let _ = writeln!(text, "alias {alias} {name}");
            }
        }
        text
    }

    fn modules_softdep(&self, names: &BTreeSet<String>) -> String {
        let mut text = String::from("# Soft dependencies extracted from modules themselves.\n");
        for name in names {
            for softdep in &self.modules[name].module.modinfo.softdep {
                let _ = writeln!(text, "softdep {name} {softdep}");
            }
        }
        text
    }

    fn modules_builtin(&self) -> String {
        self.builtin.values().map(|p| format!("{p}\n")).collect()
    }
}

/// The module names a `softdep=` value lists (`pre: a b post: c`).
fn softdep_modules(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split_whitespace())
        .filter(|w| !w.ends_with(':'))
        .map(module_name)
        .collect()
}

fn collect_modules(base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), KmodError> {
    let entries = std::fs::read_dir(dir).map_err(|source| KmodError::Read {
        path: dir.to_owned(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| KmodError::Read {
            path: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|source| KmodError::Read {
            path: path.clone(),
            source,
        })?;
        // `build` and `source` are symlinks to the headers: not followed.
        if kind.is_dir() {
            collect_modules(base, &path, out)?;
        } else if kind.is_file() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
                .iter()
                .any(|s| name.ends_with(s))
            {
                let relative = path.strip_prefix(base).expect("under base");
                out.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    Ok(())
}

/// A modules.builtin file: module name → path as listed.
pub fn read_modules_builtin(path: &Path) -> Result<BTreeMap<String, String>, KmodError> {
    let text = std::fs::read_to_string(path).map_err(|source| KmodError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut names = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.ends_with(".ko") {
            return Err(KmodError::Syntax {
                path: path.to_owned(),
                line: index + 1,
                what: "expected a module path ending in .ko",
            });
        }
        names.insert(module_name_from_path(line), line.to_owned());
    }
    Ok(names)
}

/// A modules.dep file: module path → its dependencies' paths, as listed.
pub fn read_modules_dep(path: &Path) -> Result<BTreeMap<String, Vec<String>>, KmodError> {
    let text = std::fs::read_to_string(path).map_err(|source| KmodError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_modules_dep(&text, path)
}

/// Parses modules.dep text (see [`read_modules_dep`]).
pub fn parse_modules_dep(
    text: &str,
    path: &Path,
) -> Result<BTreeMap<String, Vec<String>>, KmodError> {
    let mut map = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (module, deps) = line.split_once(':').ok_or(KmodError::Syntax {
            path: path.to_owned(),
            line: index + 1,
            what: "expected MODULE: DEPENDENCIES",
        })?;
        map.insert(
            module.trim().to_owned(),
            deps.split_whitespace().map(str::to_owned).collect(),
        );
    }
    Ok(map)
}
