//! Library closure inside an image: does every DT_NEEDED resolve, the way
//! glibc's ld.so will resolve it on the node?
//!
//! Search order per needed name (glibc, `elf/dl-load.c`):
//! 1. a name with a `/` is a path;
//! 2. DT_RPATH of the object, then of the executable that loaded it,
//!    unless the object has DT_RUNPATH;
//! 3. DT_RUNPATH of the object;
//! 4. ld.so.cache: the directories of /etc/ld.so.conf (with its `include`
//!    globs), by file name or by SONAME (ldconfig links a SONAME to the
//!    file that carries it, so a library whose SONAME link is missing in
//!    the tree still resolves after ldconfig: reported as [`FoundBy::Soname`]);
//! 5. the default directories /lib/x86_64-linux-gnu, /usr/lib/x86_64-linux-gnu,
//!    /lib, /usr/lib.
//!
//! `$ORIGIN`, `$LIB` and `$PLATFORM` are expanded. A candidate of another
//! ELF class or machine is skipped, as ld.so skips it. PT_INTERP must
//! exist too.
//!
//! Symbol versions are checked as ld.so checks them at startup: every
//! non-weak DT_VERNEED version must be among the DT_VERDEF versions of the
//! library that resolved for that name (a library with no DT_VERDEF only
//! draws a warning from ld.so, so it passes here too).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{ElfError, ElfInfo, ImageRoot};

/// glibc's trusted directories on Debian amd64, searched last.
pub const DEFAULT_DIRS: [&str; 4] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib",
    "/usr/lib",
];

/// Debian's expansion of `$LIB` on amd64.
const LIB_EXPANSION: &str = "lib/x86_64-linux-gnu";
const INCLUDE_DEPTH: usize = 8;

/// The library directories an image's /etc/ld.so.conf names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LdSoConfig {
    /// Directories in file order (image paths), duplicates removed.
    pub dirs: Vec<PathBuf>,
}

impl LdSoConfig {
    /// Reads /etc/ld.so.conf and its includes inside the image; a missing
    /// file is an empty configuration.
    pub fn read(root: &ImageRoot) -> Result<Self, ElfError> {
        let mut config = Self::default();
        config.read_file(root, Path::new("/etc/ld.so.conf"), 0)?;
        Ok(config)
    }

    fn read_file(&mut self, root: &ImageRoot, file: &Path, depth: usize) -> Result<(), ElfError> {
        let Ok((host, _)) = root.resolve(file) else {
            return Ok(());
        };
        let text = std::fs::read_to_string(&host).map_err(|source| ElfError::Read {
            path: host.clone(),
            source,
        })?;
        let base = file.parent().unwrap_or(Path::new("/"));
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if let Some(pattern) = line.strip_prefix("include") {
                if depth < INCLUDE_DEPTH && pattern.starts_with(char::is_whitespace) {
                    for pattern in pattern.split_whitespace() {
                        for included in glob_in_root(root, &base.join(pattern)) {
                            self.read_file(root, &included, depth + 1)?;
                        }
                    }
                }
                continue;
            }
            if line.starts_with("hwcap") {
                continue;
            }
            for dir in line
                .split([' ', '\t', ':', ','])
                .filter(|d| d.starts_with('/'))
            {
                let dir = PathBuf::from(dir);
                if !self.dirs.contains(&dir) {
                    self.dirs.push(dir);
                }
            }
        }
        Ok(())
    }

    /// The ld.so.cache directories followed by the defaults, deduplicated.
    pub fn search_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = self.dirs.clone();
        for d in DEFAULT_DIRS {
            let d = PathBuf::from(d);
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        dirs
    }
}

/// Files matching `pattern` (`*` and `?` in the last component only),
/// sorted, as ldconfig's glob does.
fn glob_in_root(root: &ImageRoot, pattern: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (pattern.parent(), pattern.file_name()) else {
        return Vec::new();
    };
    let name = name.to_string_lossy();
    if !name.contains(['*', '?']) {
        return vec![pattern.to_owned()];
    }
    let Ok((host_dir, image_dir)) = root.resolve(dir) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(host_dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| wildcard(&name, &e.file_name().to_string_lossy()))
        .map(|e| image_dir.join(e.file_name()))
        .collect();
    found.sort();
    found
}

fn wildcard(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct ClosureRequest {
    /// Files (image paths) whose closure must resolve.
    pub files: Vec<PathBuf>,
    /// Libraries a file loads with dlopen (not in DT_NEEDED) that must
    /// resolve too: (file, name), e.g. nvidia-smi → libnvidia-ml.so.1.
    pub dlopen: Vec<(PathBuf, String)>,
    /// Programs from outside the image (host paths) whose libraries must
    /// come from the image, e.g. the agent binary going into the
    /// initramfs. Reports name them by their host path.
    pub foreign: Vec<PathBuf>,
}

/// How a library was found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FoundBy {
    /// The name is a path.
    Path,
    /// A DT_RPATH directory.
    Rpath,
    /// A DT_RUNPATH directory.
    Runpath,
    /// A file of that name in an ld.so.conf or default directory.
    SearchPath,
    /// A file whose DT_SONAME is the name, in an ld.so.conf or default
    /// directory: resolves once ldconfig has made the SONAME link.
    Soname,
    /// The program interpreter.
    Interpreter,
}

/// A library that resolved.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ResolvedLibrary {
    /// The file that needs it (image path).
    pub needed_by: PathBuf,
    /// The DT_NEEDED (or PT_INTERP, or dlopen) name.
    pub name: String,
    /// The file it resolved to (image path, symlinks resolved).
    pub path: PathBuf,
    /// How.
    pub found_by: FoundBy,
}

/// A library that did not resolve.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MissingLibrary {
    /// The file that needs it (image path).
    pub needed_by: PathBuf,
    /// The DT_NEEDED (or PT_INTERP, or dlopen) name.
    pub name: String,
    /// Directories searched, in order.
    pub searched: Vec<PathBuf>,
}

impl std::fmt::Display for MissingLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} needs {}, not found in the image",
            self.needed_by.display(),
            self.name
        )
    }
}

/// A symbol version a library does not define.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MissingVersion {
    /// The file that needs it (image path, or host path of a foreign program).
    pub needed_by: PathBuf,
    /// The library's DT_NEEDED name (`libc.so.6`).
    pub name: String,
    /// The library that resolved for it (image path).
    pub library: PathBuf,
    /// The version (`GLIBC_2.38`).
    pub version: String,
}

impl std::fmt::Display for MissingVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} needs {} from {}, which {} does not define",
            self.needed_by.display(),
            self.version,
            self.name,
            self.library.display()
        )
    }
}

/// The result of [`check_closure`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ClosureReport {
    /// Every ELF file visited (image paths, resolved), sorted.
    pub files: Vec<PathBuf>,
    /// Every resolution, sorted.
    pub resolved: Vec<ResolvedLibrary>,
    /// Every failure, sorted.
    pub missing: Vec<MissingLibrary>,
    /// Every symbol version a resolved library lacks, sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_versions: Vec<MissingVersion>,
}

impl ClosureReport {
    /// Whether everything resolved, with every symbol version needed.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.missing_versions.is_empty()
    }
}

struct Walker<'a> {
    root: &'a ImageRoot,
    search: Vec<PathBuf>,
    cache_dirs: Vec<PathBuf>,
    infos: HashMap<PathBuf, Option<ElfInfo>>,
    report: ClosureReport,
}

/// Resolves the closure of `request` inside `root`. A requested file that
/// is missing or not ELF is an error; a missing library is a finding.
pub fn check_closure(
    root: &ImageRoot,
    request: &ClosureRequest,
) -> Result<ClosureReport, ElfError> {
    let config = LdSoConfig::read(root)?;
    let mut walker = Walker {
        root,
        search: config.search_dirs(),
        cache_dirs: config.search_dirs(),
        infos: HashMap::new(),
        report: ClosureReport::default(),
    };
    // (file image path, rpath of the executable that loads it)
    let mut queue: VecDeque<(PathBuf, Vec<String>)> = VecDeque::new();
    let mut seen = BTreeSet::new();
    let mut starts = Vec::new();
    for file in &request.files {
        let (host, image) = root.resolve(file).map_err(|source| ElfError::Read {
            path: root.path().join(file.strip_prefix("/").unwrap_or(file)),
            source,
        })?;
        starts.push((image, ElfInfo::read(&host)?));
    }
    for program in &request.foreign {
        starts.push((program.clone(), ElfInfo::read(program)?));
    }
    for (image, info) in starts {
        let exe_rpath = if info.runpath.is_empty() {
            expand_all(&info.rpath, &image)
        } else {
            Vec::new()
        };
        walker.infos.insert(image.clone(), Some(info));
        queue.push_back((image, exe_rpath));
    }
    while let Some((file, exe_rpath)) = queue.pop_front() {
        if !seen.insert(file.clone()) {
            continue;
        }
        let Some(info) = walker.info(&file) else {
            continue;
        };
        if let Some(interp) = &info.interpreter {
            walker.interpreter(&file, interp);
        }
        let extra = request
            .dlopen
            .iter()
            .filter(|(f, _)| root.resolve(f).is_ok_and(|(_, image)| image == file))
            .map(|(_, name)| name.clone());
        for name in info.needed.iter().cloned().chain(extra) {
            if let Some(found) = walker.resolve(&file, &info, &exe_rpath, &name) {
                queue.push_back((found, exe_rpath.clone()));
            }
        }
    }
    walker.check_versions();
    let mut report = walker.report;
    report.files = seen.into_iter().collect();
    report.resolved.sort();
    report.resolved.dedup();
    report.missing.sort();
    report.missing.dedup();
    report.missing_versions.sort();
    report.missing_versions.dedup();
    Ok(report)
}

impl Walker<'_> {
    /// Every DT_VERNEED of every visited file against the DT_VERDEF of the
    /// library that resolved for it from that file.
    fn check_versions(&mut self) {
        let mut missing = Vec::new();
        for found in &self.report.resolved {
            let Some(Some(needer)) = self.infos.get(&found.needed_by) else {
                continue;
            };
            let Some(Some(library)) = self.infos.get(&found.path) else {
                continue;
            };
            if library.version_defs.is_empty() {
                continue;
            }
            let wanted = needer
                .version_needs
                .iter()
                .filter(|need| need.file == found.name)
                .flat_map(|need| &need.versions);
            for version in wanted {
                if !library.version_defs.contains(version) {
                    missing.push(MissingVersion {
                        needed_by: found.needed_by.clone(),
                        name: found.name.clone(),
                        library: found.path.clone(),
                        version: version.clone(),
                    });
                }
            }
        }
        self.report.missing_versions = missing;
    }

    /// The parsed file at an image path (cached; `None` if not ELF).
    fn info(&mut self, image: &Path) -> Option<ElfInfo> {
        if let Some(info) = self.infos.get(image) {
            return info.clone();
        }
        let info = self
            .root
            .resolve(image)
            .ok()
            .and_then(|(host, _)| ElfInfo::read(&host).ok());
        self.infos.insert(image.to_owned(), info.clone());
        info
    }

    fn interpreter(&mut self, file: &Path, interp: &str) {
        match self.root.resolve(Path::new(interp)) {
            Ok((_, path)) => self.report.resolved.push(ResolvedLibrary {
                needed_by: file.to_owned(),
                name: interp.to_owned(),
                path,
                found_by: FoundBy::Interpreter,
            }),
            Err(_) => self.report.missing.push(MissingLibrary {
                needed_by: file.to_owned(),
                name: interp.to_owned(),
                searched: Vec::new(),
            }),
        }
    }

    /// Resolves one needed name; records the outcome; returns the library
    /// found (to visit).
    fn resolve(
        &mut self,
        file: &Path,
        info: &ElfInfo,
        exe_rpath: &[String],
        name: &str,
    ) -> Option<PathBuf> {
        let mut searched = Vec::new();
        let record = |walker: &mut Self, path: PathBuf, found_by| {
            walker.report.resolved.push(ResolvedLibrary {
                needed_by: file.to_owned(),
                name: name.to_owned(),
                path: path.clone(),
                found_by,
            });
            Some(path)
        };
        if name.contains('/') {
            if let Some(path) = self.compatible(Path::new(name), info) {
                return record(self, path, FoundBy::Path);
            }
        } else {
            let mut stages: Vec<(Vec<PathBuf>, FoundBy)> = Vec::new();
            if info.runpath.is_empty() {
                let mut rpath = expand_all(&info.rpath, file);
                rpath.extend(exe_rpath.iter().cloned());
                stages.push((
                    rpath.into_iter().map(PathBuf::from).collect(),
                    FoundBy::Rpath,
                ));
            }
            let runpath = expand_all(&info.runpath, file);
            stages.push((
                runpath.into_iter().map(PathBuf::from).collect(),
                FoundBy::Runpath,
            ));
            stages.push((self.search.clone(), FoundBy::SearchPath));
            for (dirs, found_by) in stages {
                for dir in dirs {
                    if let Some(path) = self.compatible(&dir.join(name), info) {
                        return record(self, path, found_by);
                    }
                    searched.push(dir);
                }
            }
            if let Some(path) = self.by_soname(name, info) {
                return record(self, path, FoundBy::Soname);
            }
        }
        self.report.missing.push(MissingLibrary {
            needed_by: file.to_owned(),
            name: name.to_owned(),
            searched,
        });
        None
    }

    /// The resolved image path of `candidate` if it is an ELF file of the
    /// same class and machine as `needer`.
    fn compatible(&mut self, candidate: &Path, needer: &ElfInfo) -> Option<PathBuf> {
        let (_, image) = self.root.resolve(candidate).ok()?;
        let info = self.info(&image)?;
        (info.is_64 == needer.is_64 && info.machine == needer.machine).then_some(image)
    }

    /// ldconfig's view: a file in a cache directory whose SONAME is `name`.
    fn by_soname(&mut self, name: &str, needer: &ElfInfo) -> Option<PathBuf> {
        // Only files that share the name's stem can carry that SONAME in
        // practice (libfoo.so.1 lives in libfoo.so.1.2.3); this keeps the
        // scan from parsing every library of the image.
        let stem = name.split(".so").next().unwrap_or(name).to_owned();
        for dir in self.cache_dirs.clone() {
            let Ok((host_dir, image_dir)) = self.root.resolve(&dir) else {
                continue;
            };
            let Ok(entries) = std::fs::read_dir(host_dir) else {
                continue;
            };
            let mut names: Vec<_> = entries
                .filter_map(Result::ok)
                .map(|e| e.file_name())
                .filter(|n| n.to_string_lossy().starts_with(&stem))
                .collect();
            names.sort();
            for file in names {
                if let Some(image) = self.compatible(&image_dir.join(&file), needer)
                    && self
                        .info(&image)
                        .is_some_and(|i| i.soname.as_deref() == Some(name))
                {
                    return Some(image);
                }
            }
        }
        None
    }
}

/// Expands `$ORIGIN`, `$LIB`, `$PLATFORM` (and their `${}` forms) in
/// RPATH/RUNPATH entries of the object at image path `object`.
fn expand_all(entries: &[String], object: &Path) -> Vec<String> {
    let origin = object
        .parent()
        .unwrap_or(Path::new("/"))
        .to_string_lossy()
        .into_owned();
    entries
        .iter()
        .map(|e| {
            e.replace("${ORIGIN}", &origin)
                .replace("$ORIGIN", &origin)
                .replace("${LIB}", LIB_EXPANSION)
                .replace("$LIB", LIB_EXPANSION)
                .replace("${PLATFORM}", "x86_64")
                .replace("$PLATFORM", "x86_64")
        })
        .filter(|e| e.starts_with('/'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("*.conf", "libc.conf"));
        assert!(!wildcard("*.conf", "libc.conf.bak"));
        assert!(wildcard("a?c", "abc"));
    }

    #[test]
    fn origin_expansion() {
        let e = expand_all(
            &[
                "$ORIGIN/../lib".into(),
                "${ORIGIN}/x".into(),
                "/$LIB".into(),
                "rel".into(),
            ],
            Path::new("/opt/app/bin/tool"),
        );
        assert_eq!(
            e,
            [
                "/opt/app/bin/../lib",
                "/opt/app/bin/x",
                "/lib/x86_64-linux-gnu"
            ]
        );
    }
}
