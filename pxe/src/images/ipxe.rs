//! The first stage of the measured chain: iPXE binaries taken from the
//! Debian `ipxe` package, never from anywhere else.
//!
//! Each binary is recorded with its SHA-256 and, for EFI images, the
//! Authenticode SHA-256 that UEFI firmware extends into PCR 4 when it
//! starts it (EDK2's algorithm, `builder::boot::pe`): the attestation
//! checks PCR 4 against exactly these digests.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use ironrack_builder::source::DebFile;
use ironrack_builder::source::deb::EntryKind;
use sha2::{Digest, Sha256};

/// Where the package keeps the binaries.
const IPXE_DIR: &str = "usr/lib/ipxe/";
/// The first-stage binaries served (ROMs and ISOs are for other uses).
const SERVED_SUFFIXES: &[&str] = &[".efi", ".kpxe", ".kkpxe", ".pxe", ".lkrn"];
/// No iPXE binary comes near this.
const MAX_BINARY: u64 = 16 << 20;

/// One iPXE binary, in memory.
#[derive(Debug)]
pub struct IpxeBinary {
    /// File name (`snponly.efi`).
    pub name: String,
    /// The bytes served.
    pub bytes: Bytes,
    /// SHA-256.
    pub sha256: ironrack_keys::Sha256Digest,
    /// Authenticode SHA-256 (EDK2), lowercase hex, for EFI images.
    pub authenticode_sha256: Option<String>,
}

/// The binaries of one `ipxe` package.
#[derive(Debug, Default)]
pub struct IpxeBinaries {
    /// The .deb they came from.
    pub deb: PathBuf,
    /// Package version.
    pub version: String,
    /// Binaries by file name.
    pub files: BTreeMap<String, Arc<IpxeBinary>>,
}

/// Why the iPXE package could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IpxeError {
    /// Not a readable .deb.
    #[error("reading iPXE package {path}: {source}")]
    Deb {
        /// The .deb.
        path: PathBuf,
        /// The builder's error.
        source: Box<ironrack_builder::source::Error>,
    },
    /// Another package than `ipxe`.
    #[error("{path} is package {package:?}, not ipxe")]
    WrongPackage {
        /// The .deb.
        path: PathBuf,
        /// Its Package field.
        package: String,
    },
    /// A binary too large or unreadable.
    #[error("iPXE package {path}: {name}: {why}")]
    Binary {
        /// The .deb.
        path: PathBuf,
        /// The binary.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// No binary at all in the package.
    #[error("iPXE package {path} holds no binary under /{IPXE_DIR}")]
    Empty {
        /// The .deb.
        path: PathBuf,
    },
}

impl IpxeBinaries {
    /// Reads the binaries out of the `ipxe` .deb at `path`.
    pub fn from_deb(path: &Path) -> Result<IpxeBinaries, IpxeError> {
        let deb_err = |source| IpxeError::Deb {
            path: path.to_owned(),
            source: Box::new(source),
        };
        let deb = DebFile::open(path).map_err(deb_err)?;
        let package = deb.control().get("Package").unwrap_or_default().to_owned();
        if package != "ipxe" {
            return Err(IpxeError::WrongPackage {
                path: path.to_owned(),
                package,
            });
        }
        let version = deb.control().get("Version").unwrap_or_default().to_owned();
        let (regular, links) = candidates(path, deb)?;
        let mut files = BTreeMap::new();
        for (at, bytes) in follow_links(regular, links) {
            let Some(name) = served_name(&at) else {
                continue;
            };
            let binary = binary(name.clone(), bytes).map_err(|why| IpxeError::Binary {
                path: path.to_owned(),
                name: name.clone(),
                why,
            })?;
            tracing::info!(file = %binary.name, sha256 = %binary.sha256, authenticode = ?binary.authenticode_sha256, "iPXE binary loaded");
            files.insert(name, Arc::new(binary));
        }
        if files.is_empty() {
            return Err(IpxeError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(IpxeBinaries {
            deb: path.to_owned(),
            version,
            files,
        })
    }

    /// The binary called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<IpxeBinary>> {
        self.files.get(name)
    }
}

/// Regular files with a served suffix, by package path.
type Regular = BTreeMap<String, Vec<u8>>;
/// Links under the iPXE directory: (package path, resolved target).
type Links = Vec<(String, String)>;

/// Walks the data tar once. Debian ships some binaries as links
/// (`usr/lib/ipxe/ipxe.efi -> /boot/ipxe.efi`), and a tar stream can name
/// a link before its target: keep every regular file with a served suffix
/// (the package is small) and resolve the links afterwards.
fn candidates(
    path: &Path,
    deb: DebFile<std::io::BufReader<std::fs::File>>,
) -> Result<(Regular, Links), IpxeError> {
    let deb_err = |source| IpxeError::Deb {
        path: path.to_owned(),
        source: Box::new(source),
    };
    let bad = |name: &str, why: String| IpxeError::Binary {
        path: path.to_owned(),
        name: name.to_owned(),
        why,
    };
    let mut data = deb.data().map_err(deb_err)?;
    let mut regular = Regular::new();
    let mut links = Links::new();
    for entry in data.entries().map_err(deb_err)? {
        let mut entry = entry.map_err(deb_err)?;
        let Some(at) = package_path(&entry.header.path) else {
            continue;
        };
        if !SERVED_SUFFIXES.iter().any(|s| at.ends_with(s)) {
            continue;
        }
        let kind = entry.header.kind;
        if kind == EntryKind::File {
            if entry.header.size > MAX_BINARY {
                return Err(bad(
                    &at,
                    format!("{} bytes is too large", entry.header.size),
                ));
            }
            let mut bytes = Vec::with_capacity(entry.header.size as usize);
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| bad(&at, e.to_string()))?;
            regular.insert(at, bytes);
        } else if matches!(kind, EntryKind::Symlink | EntryKind::HardLink)
            && served_name(&at).is_some()
        {
            let target = entry.header.link.as_deref().and_then(Path::to_str);
            let resolved = target.and_then(|t| match kind {
                EntryKind::Symlink => resolve_symlink(&at, t),
                _ => package_path(Path::new(t)),
            });
            match resolved {
                Some(target) => links.push((at, target)),
                None => {
                    tracing::warn!(entry = %at, target = ?target, "iPXE package link unusable; not served")
                }
            }
        }
    }
    data.finish().map_err(deb_err)?;
    Ok((regular, links))
}

/// The regular files, then each link with its target's bytes (one hop:
/// a link to a link, or to nothing in the package, is not served).
fn follow_links(regular: Regular, links: Links) -> Vec<(String, Vec<u8>)> {
    let mut linked = Vec::new();
    for (at, target) in links {
        match regular.get(&target) {
            Some(bytes) => linked.push((at, bytes.clone())),
            None => {
                tracing::warn!(entry = %at, target = %target, "iPXE package link points at no binary in the package; not served")
            }
        }
    }
    regular.into_iter().chain(linked).collect()
}

/// A path as stored in the data tar (`./usr/lib/ipxe/x.efi`) → its path
/// in the package without the leading `./` or `/`; `None` for paths that
/// are not UTF-8 or hold `..` or `.` components.
fn package_path(path: &Path) -> Option<String> {
    let text = path.to_str()?;
    let text = text.trim_start_matches("./").trim_start_matches('/');
    let clean = !text.is_empty()
        && text
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    clean.then(|| text.to_owned())
}

/// The target of the symlink at package path `at`, as a package path:
/// absolute targets are taken from the package root, relative ones from
/// the link's directory; `..` never climbs above the root (as an
/// in-root resolution does).
fn resolve_symlink(at: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        at.split('/').collect::<Vec<_>>()[..at.matches('/').count()].to_vec()
    };
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// `usr/lib/ipxe/<name>` for a served suffix → `<name>` (no subdirectories).
fn served_name(at: &str) -> Option<String> {
    let name = at.strip_prefix(IPXE_DIR)?;
    let served = !name.contains('/') && SERVED_SUFFIXES.iter().any(|s| name.ends_with(s));
    served.then(|| name.to_owned())
}

fn binary(name: String, bytes: Vec<u8>) -> Result<IpxeBinary, String> {
    let sha256 = ironrack_keys::Sha256Digest(Sha256::digest(&bytes).into());
    let authenticode_sha256 = if name.ends_with(".efi") {
        let digest = ironrack_builder::boot::pe::authenticode_sha256(&bytes)
            .map_err(|e| format!("Authenticode digest: {e}"))?;
        Some(hex::encode(digest))
    } else {
        None
    };
    Ok(IpxeBinary {
        name,
        bytes: Bytes::from(bytes),
        sha256,
        authenticode_sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_first_stage_binaries_at_the_top_of_the_ipxe_dir() {
        let name = |p: &str| package_path(Path::new(p)).and_then(|at| served_name(&at));
        assert_eq!(
            name("./usr/lib/ipxe/snponly.efi").as_deref(),
            Some("snponly.efi")
        );
        assert_eq!(
            name("usr/lib/ipxe/undionly.kpxe").as_deref(),
            Some("undionly.kpxe")
        );
        assert_eq!(name("./usr/lib/ipxe/qemu/efi-virtio.rom"), None);
        assert_eq!(name("./usr/lib/ipxe/ipxe.iso"), None);
        assert_eq!(name("./usr/share/doc/ipxe/x.efi"), None);
        assert_eq!(name("./usr/lib/ipxe/../ipxe/x.efi"), None);
        assert_eq!(name("./boot/ipxe.efi"), None);
    }

    #[test]
    fn symlinks_resolve_inside_the_package() {
        let at = "usr/lib/ipxe/ipxe.efi";
        assert_eq!(
            resolve_symlink(at, "/boot/ipxe.efi").as_deref(),
            Some("boot/ipxe.efi")
        );
        assert_eq!(
            resolve_symlink(at, "../../../boot/ipxe.efi").as_deref(),
            Some("boot/ipxe.efi")
        );
        assert_eq!(
            resolve_symlink(at, "snponly.efi").as_deref(),
            Some("usr/lib/ipxe/snponly.efi")
        );
        // Climbing past the root stays in the package.
        assert_eq!(
            resolve_symlink(at, "../../../../../../boot/ipxe.efi").as_deref(),
            Some("boot/ipxe.efi")
        );
        assert_eq!(resolve_symlink(at, "/"), None);
    }
}
