//! The agent in the initramfs: `bin/ironrack`, with `/init` linking to it.
//!
//! A static agent goes in alone. A dynamic one (the glibc `ironrack`
//! binary as cargo builds it) brings its library closure, taken from the
//! image root: the image's own libc6 and libgcc-s1, so the initramfs runs
//! the C library the signed image ships, not the build host's.
//!
//! - every DT_NEEDED library, transitively, resolved as ld.so resolves it
//!   in the image, goes in as `lib/<multiarch>/<name>`: the first default
//!   directory ld.so searches when there is no ld.so.cache;
//! - PT_INTERP goes in at the path the binary names
//!   (`lib64/ld-linux-x86-64.so.2`), as a link to the library copy when
//!   the image's interpreter is one of them (libc needs it by name too);
//! - every symbol version the agent or a library needs must be defined by
//!   the image's library: an agent built against a newer glibc than the
//!   image's is refused, naming the version and the image's package.
//!
//! `lib` is a real directory in the initramfs (no merged /usr).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{InitramfsError, MissingSymbolVersions};
use crate::boot::cpio::Archive;
use crate::boot::elf::owner::{PackageOwner, package_owning};
use crate::boot::elf::{
    ClosureReport, ClosureRequest, ElfInfo, FoundBy, ImageRoot, MissingVersion, check_closure,
};

/// Where the agent goes; `/init` links to it.
pub const AGENT_PATH: &str = "bin/ironrack";

/// A library shipped for a dynamic agent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct AgentLibrary {
    /// Path in the initramfs (`lib/x86_64-linux-gnu/libc.so.6`).
    pub path: String,
    /// The image file it copies (`/usr/lib/x86_64-linux-gnu/libc.so.6`).
    pub source: PathBuf,
    /// SHA-256 of its bytes (hex).
    pub sha256: String,
    /// The image package that ships it (`None` without a dpkg database).
    pub package: Option<PackageOwner>,
}

/// What a dynamic agent brought into the initramfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct AgentClosure {
    /// PT_INTERP as the agent names it, shipped at that path.
    pub interpreter: String,
    /// The libraries, by initramfs path (the interpreter's file among
    /// them when the image's interpreter is also a DT_NEEDED library).
    pub libraries: Vec<AgentLibrary>,
}

/// The multiarch library directory ld.so searches first, by e_machine.
fn multiarch_dir(machine: u16) -> Option<&'static str> {
    match machine {
        62 => Some("lib/x86_64-linux-gnu"),
        183 => Some("lib/aarch64-linux-gnu"),
        _ => None,
    }
}

/// Adds the agent at [`AGENT_PATH`] and, when it is dynamic, its closure
/// from `root`. Returns the closure shipped (`None` for a static agent).
pub(super) fn add_agent(
    root: &ImageRoot,
    agent: &Path,
    archive: &mut Archive,
) -> Result<Option<AgentClosure>, InitramfsError> {
    let info = ElfInfo::read(agent)?;
    archive.host_file(AGENT_PATH, 0o755, agent)?;
    archive.symlink("init", AGENT_PATH)?;
    if info.is_static() {
        return Ok(None);
    }
    let lib_dir = multiarch_dir(info.machine).ok_or(InitramfsError::AgentArchitecture {
        agent: agent.to_owned(),
        machine: info.machine,
    })?;
    let Some(interpreter) = info.interpreter.clone() else {
        return Err(InitramfsError::AgentLayout {
            agent: agent.to_owned(),
            name: info.needed.join(" "),
            why: "has libraries but no program interpreter (PT_INTERP)",
        });
    };
    let report = check_closure(
        root,
        &ClosureRequest {
            foreign: vec![agent.to_owned()],
            ..ClosureRequest::default()
        },
    )?;
    refuse_incomplete(root, agent, &report)?;
    let sources = library_sources(agent, &report)?;
    let mut libraries = Vec::new();
    for (name, source) in &sources {
        let path = format!("{lib_dir}/{name}");
        archive.host_file(&path, 0o755, &image_file(root, source)?)?;
        libraries.push(shipped(root, path, source)?);
    }
    let (_, interp_source) =
        root.resolve(Path::new(&interpreter))
            .map_err(|source| InitramfsError::ImageFile {
                path: PathBuf::from(&interpreter),
                source,
            })?;
    let interp_path = interpreter.trim_start_matches('/').to_owned();
    match libraries.iter().find(|l| l.source == interp_source) {
        Some(library) => {
            archive.symlink(&interp_path, &relative_link(&interp_path, &library.path))?
        }
        None => {
            archive.host_file(&interp_path, 0o755, &image_file(root, &interp_source)?)?;
            libraries.push(shipped(root, interp_path, &interp_source)?);
        }
    }
    libraries.sort();
    tracing::info!(agent = %agent.display(), libraries = libraries.len(), "dynamic agent: closure shipped from the image");
    Ok(Some(AgentClosure {
        interpreter,
        libraries,
    }))
}

fn image_file(root: &ImageRoot, path: &Path) -> Result<PathBuf, InitramfsError> {
    super::image_file(root, path)
}

/// Fails on a library the image lacks, then on a symbol version it lacks
/// (naming the image package of the library at fault).
fn refuse_incomplete(
    root: &ImageRoot,
    agent: &Path,
    report: &ClosureReport,
) -> Result<(), InitramfsError> {
    if !report.missing.is_empty() {
        return Err(InitramfsError::AgentLibrariesMissing {
            agent: agent.to_owned(),
            missing: report.missing.clone(),
        });
    }
    let Some(first) = report.missing_versions.first() else {
        return Ok(());
    };
    let same_library: Vec<&MissingVersion> = report
        .missing_versions
        .iter()
        .filter(|m| m.library == first.library && m.needed_by == first.needed_by)
        .collect();
    let package = match package_owning(root, &first.library)? {
        Some(owner) => owner.to_string(),
        None => "not in the image's dpkg database".to_owned(),
    };
    Err(InitramfsError::AgentSymbolVersions(Box::new(
        MissingSymbolVersions {
            agent: agent.to_owned(),
            needed_by: first.needed_by.clone(),
            versions: same_library.iter().map(|m| m.version.clone()).collect(),
            name: first.name.clone(),
            library: first.library.clone(),
            package,
        },
    )))
}

/// DT_NEEDED name → image file, one file per name.
fn library_sources(
    agent: &Path,
    report: &ClosureReport,
) -> Result<BTreeMap<String, PathBuf>, InitramfsError> {
    let mut sources: BTreeMap<String, PathBuf> = BTreeMap::new();
    for found in &report.resolved {
        if found.found_by == FoundBy::Interpreter {
            continue;
        }
        if found.name.contains('/') {
            return Err(InitramfsError::AgentLayout {
                agent: agent.to_owned(),
                name: found.name.clone(),
                why: "is needed by path; only library names can be shipped",
            });
        }
        match sources.get(&found.name) {
            Some(earlier) if *earlier != found.path => {
                return Err(InitramfsError::AgentLayout {
                    agent: agent.to_owned(),
                    name: found.name.clone(),
                    why: "resolves to different files for different objects (RPATH)",
                });
            }
            _ => {
                sources.insert(found.name.clone(), found.path.clone());
            }
        }
    }
    Ok(sources)
}

fn shipped(root: &ImageRoot, path: String, source: &Path) -> Result<AgentLibrary, InitramfsError> {
    let host = image_file(root, source)?;
    let bytes = std::fs::read(&host).map_err(|e| InitramfsError::ImageFile {
        path: source.to_owned(),
        source: e,
    })?;
    Ok(AgentLibrary {
        path,
        source: source.to_owned(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        package: package_owning(root, source)?,
    })
}

/// The relative symlink target from archive path `from` to `to`.
fn relative_link(from: &str, to: &str) -> String {
    let depth = from.matches('/').count();
    format!("{}{to}", "../".repeat(depth))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_links() {
        assert_eq!(
            relative_link(
                "lib64/ld-linux-x86-64.so.2",
                "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
            ),
            "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
        );
        assert_eq!(relative_link("ld.so", "lib/ld.so"), "lib/ld.so");
    }
}
