//! Which installed package ships a file of the image, from the image's
//! own dpkg database (`var/lib/dpkg/info/*.list`, `var/lib/dpkg/status`),
//! so that a report or an error can say "libc6 2.36-9+deb12u10" rather
//! than a bare path.
//!
//! `.list` files hold the paths as the package ships them (`/lib/...`
//! before merged /usr); each candidate is resolved in the image and
//! compared with the file's resolved path. Only lines with the same file
//! name are resolved, so a lookup costs one read of the lists.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{ElfError, ImageRoot};
use crate::source::control::{ParseOptions, parse_paragraphs};

const INFO_DIR: &str = "/var/lib/dpkg/info";
const STATUS: &str = "/var/lib/dpkg/status";

/// The package that ships a file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PackageOwner {
    /// Package name (`libc6`).
    pub package: String,
    /// Installed version (`2.36-9+deb12u10`), `None` when the status file
    /// has no paragraph for it.
    pub version: Option<String>,
}

impl std::fmt::Display for PackageOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some(version) => write!(f, "{} {version}", self.package),
            None => write!(f, "{} (version not in the dpkg status)", self.package),
        }
    }
}

fn read_error(root: &ImageRoot, path: &Path, source: std::io::Error) -> ElfError {
    ElfError::Read {
        path: root.path().join(path.strip_prefix("/").unwrap_or(path)),
        source,
    }
}

/// The package whose file list holds `file` (an image path, resolved or
/// not); `None` when no package does or the image has no dpkg database.
pub fn package_owning(root: &ImageRoot, file: &Path) -> Result<Option<PackageOwner>, ElfError> {
    let Ok((_, target)) = root.resolve(file) else {
        return Ok(None);
    };
    let Some(name) = target.file_name() else {
        return Ok(None);
    };
    let Ok((info_dir, _)) = root.resolve(Path::new(INFO_DIR)) else {
        return Ok(None);
    };
    let entries =
        std::fs::read_dir(&info_dir).map_err(|e| read_error(root, Path::new(INFO_DIR), e))?;
    let mut lists: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "list"))
        .collect();
    lists.sort();
    for list in lists {
        let text = std::fs::read(&list).map_err(|source| ElfError::Read {
            path: list.clone(),
            source,
        })?;
        let ships_it = text
            .split(|b| *b == b'\n')
            .map(|line| Path::new(std::str::from_utf8(line).unwrap_or("")))
            .filter(|line| line.file_name() == Some(name))
            .any(|line| {
                root.resolve(line)
                    .is_ok_and(|(_, resolved)| resolved == target)
            });
        if ships_it {
            let key = list
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            return installed(root, &key).map(Some);
        }
    }
    Ok(None)
}

/// The owner record for a `.list` key (`libc6:amd64` or `base-files`).
fn installed(root: &ImageRoot, key: &str) -> Result<PackageOwner, ElfError> {
    let (package, arch) = match key.split_once(':') {
        Some((name, arch)) => (name, Some(arch)),
        None => (key, None),
    };
    let mut owner = PackageOwner {
        package: package.to_owned(),
        version: None,
    };
    let Ok((status, _)) = root.resolve(Path::new(STATUS)) else {
        return Ok(owner);
    };
    let text = std::fs::read_to_string(&status).map_err(|source| ElfError::Read {
        path: status.clone(),
        source,
    })?;
    let paragraphs = parse_paragraphs(&text, &status.to_string_lossy(), ParseOptions::default())
        .map_err(|source| ElfError::DpkgStatus {
            path: status.clone(),
            source: Box::new(source),
        })?;
    owner.version = paragraphs
        .iter()
        .find(|p| {
            p.get("Package") == Some(package)
                && arch.is_none_or(|arch| p.get("Architecture") == Some(arch))
        })
        .and_then(|p| p.get("Version"))
        .map(str::to_owned);
    Ok(owner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn through_merged_usr_and_multiarch_keys() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["usr/lib/x86_64-linux-gnu", "var/lib/dpkg/info"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        symlink("usr/lib", root.join("lib")).unwrap();
        std::fs::write(root.join("usr/lib/x86_64-linux-gnu/libc.so.6"), b"").unwrap();
        std::fs::write(root.join("usr/lib/x86_64-linux-gnu/libm.so.6"), b"").unwrap();
        std::fs::write(
            root.join("var/lib/dpkg/info/libc6:amd64.list"),
            "/.\n/lib\n/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu/libc.so.6\n",
        )
        .unwrap();
        std::fs::write(
            root.join("var/lib/dpkg/status"),
            "Package: libc6\nStatus: install ok installed\nArchitecture: i386\nVersion: 1\n\n\
             Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9\n",
        )
        .unwrap();
        let image = ImageRoot::new(root);
        let owner = package_owning(&image, Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6"))
            .unwrap()
            .unwrap();
        assert_eq!(owner.to_string(), "libc6 2.36-9");
        assert_eq!(
            package_owning(&image, Path::new("/lib/x86_64-linux-gnu/libm.so.6")).unwrap(),
            None
        );
        std::fs::remove_file(root.join("var/lib/dpkg/status")).unwrap();
        let owner = package_owning(&image, Path::new("/lib/x86_64-linux-gnu/libc.so.6"))
            .unwrap()
            .unwrap();
        assert_eq!(owner.version, None);
    }
}
