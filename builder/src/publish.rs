//! Publishing a build's output: `OUT/NAME/VERSION/` appears complete, or
//! not at all.
//!
//! Files are gathered in a hidden sibling (`OUT/NAME/.VERSION.tmp-PID`),
//! each fsynced, then the directory is renamed into place and its parent
//! fsynced. An interrupted build leaves only a hidden `.tmp-` directory,
//! which the next build removes ([`clean_stale`]); nothing that looks
//! like a published version. A published version is never replaced.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::pipeline::Error;

/// An output directory being filled.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    target: PathBuf,
    files: Vec<PathBuf>,
    committed: bool,
}

fn io_error<'a>(
    operation: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        operation,
        path: path.to_owned(),
        source,
    }
}

/// Where version `version` of image `name` is published under `out`.
pub fn version_dir(out: &Path, name: &str, version: u64) -> PathBuf {
    out.join(name).join(version.to_string())
}

/// Removes hidden staging directories left under `OUT/NAME` by builds
/// that did not finish. Call with the build lock held.
pub fn clean_stale(out: &Path, name: &str) -> Result<(), Error> {
    let dir = out.join(name);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("listing", &dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_error("listing", &dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".tmp-") {
            let path = entry.path();
            tracing::info!(path = %path.display(), "removing an unfinished output directory");
            fs::remove_dir_all(&path).map_err(io_error("removing", &path))?;
        }
    }
    Ok(())
}

impl Staging {
    /// Starts the output of `name` version `version` under `out`.
    pub fn begin(out: &Path, name: &str, version: u64) -> Result<Self, Error> {
        let parent = out.join(name);
        fs::create_dir_all(&parent).map_err(io_error("creating", &parent))?;
        let target = version_dir(out, name, version);
        let dir = parent.join(format!(".{version}.tmp-{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(io_error("removing", &dir))?;
        }
        fs::create_dir(&dir).map_err(io_error("creating", &dir))?;
        Ok(Self {
            dir,
            target,
            files: Vec::new(),
            committed: false,
        })
    }

    /// The directory being filled.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Adds `from` as `name`: a hard link when on the same filesystem (the
    /// cache's files are never modified in place), else a copy.
    pub fn add_file(&mut self, name: &str, from: &Path) -> Result<(), Error> {
        let to = self.dir.join(name);
        if fs::hard_link(from, &to).is_err() {
            fs::copy(from, &to).map_err(io_error("copying", from))?;
        }
        self.files.push(to);
        Ok(())
    }

    /// Writes `data` as `name`.
    pub fn write_file(&mut self, name: &str, data: &[u8]) -> Result<(), Error> {
        let to = self.dir.join(name);
        File::create(&to)
            .and_then(|mut f| f.write_all(data))
            .map_err(io_error("writing", &to))?;
        self.files.push(to);
        Ok(())
    }

    /// Makes the output durable, then visible: fsync every file and the
    /// directory, rename it to `OUT/NAME/VERSION`, fsync the parent.
    pub fn commit(mut self) -> Result<PathBuf, Error> {
        for file in &self.files {
            File::open(file)
                .and_then(|f| f.sync_all())
                .map_err(io_error("syncing", file))?;
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error("syncing", &self.dir))?;
        if self.target.exists() {
            return Err(Error::OutputExists {
                path: self.target.clone(),
            });
        }
        fs::rename(&self.dir, &self.target).map_err(io_error("publishing", &self.target))?;
        self.committed = true;
        let parent = self.target.parent().unwrap_or(Path::new("."));
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io_error("syncing", parent))?;
        Ok(self.target.clone())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_appears_only_on_commit_and_is_never_replaced() {
        let out = tempfile::tempdir().unwrap();
        let mut staging = Staging::begin(out.path(), "img", 3).unwrap();
        staging.write_file("a", b"x").unwrap();
        assert!(!version_dir(out.path(), "img", 3).exists());
        let published = staging.commit().unwrap();
        assert_eq!(fs::read(published.join("a")).unwrap(), b"x");

        let mut again = Staging::begin(out.path(), "img", 3).unwrap();
        again.write_file("a", b"y").unwrap();
        assert!(matches!(again.commit(), Err(Error::OutputExists { .. })));
        assert_eq!(
            fs::read(version_dir(out.path(), "img", 3).join("a")).unwrap(),
            b"x"
        );
    }

    #[test]
    fn abandoned_staging_is_removed_now_or_by_the_next_build() {
        let out = tempfile::tempdir().unwrap();
        let staging = Staging::begin(out.path(), "img", 1).unwrap();
        let dir = staging.path().to_owned();
        drop(staging);
        assert!(!dir.exists());
        // A killed build cannot run Drop: its directory stays until cleaned.
        let stale = out.path().join("img/.1.tmp-999999");
        fs::create_dir_all(stale.join("sub")).unwrap();
        clean_stale(out.path(), "img").unwrap();
        assert!(!stale.exists());
    }
}
