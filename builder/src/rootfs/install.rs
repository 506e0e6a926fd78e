//! Installing a set of verified .debs into a target root: merged /usr, a
//! parallel unpack, the shared paths settled deterministically, the dpkg
//! database, then configuration in the sandbox and a final audit.
//!
//! Unpacking is where the time goes (decompression), and packages are
//! independent there, so each worker thread takes the next package
//! (largest first, so no big one is left for last) and extracts it whole.
//! What dpkg would have decided by unpack order is decided afterwards by
//! rules that do not depend on timing:
//! - a directory shipped by several packages gets the owner and mode the
//!   first of them (in install order) ships;
//! - a file shipped by several packages is an error unless one of them
//!   `Replaces` the others; that one's copy is re-extracted, and the path
//!   leaves the others' file lists, as dpkg does;
//! - a path that is a directory in one package and not in another is an
//!   error.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};

use super::configure;
use super::dpkg_db::{self, PackageRecord};
use super::error::Error;
use super::extract::{self, DirMeta, Extracted, Placed, listed_path};
use super::target::{Target, file_type, open_nofollow};
use crate::source::DebFile;
use crate::source::deb::ControlMember;
use crate::source::relation::parse_relations;

/// How to install.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Worker threads for the unpack (at least 1).
    pub jobs: usize,
    /// The Debian architecture (decides which lib directories merged /usr
    /// links).
    pub architecture: String,
    /// SOURCE_DATE_EPOCH for maintainer scripts (from the inputs).
    pub epoch: u64,
    /// Where the sandbox logs go (outside the target).
    pub log_dir: PathBuf,
}

/// What an install did.
#[derive(Debug, Clone)]
pub struct InstallReport {
    /// Every package, in install order: name, version, architecture,
    /// Installed-Size (KiB).
    pub packages: Vec<InstalledPackage>,
    /// Entries kept inside the root only by confined resolution: (package,
    /// path). A well-formed package never needs that.
    pub redirected: Vec<(String, PathBuf)>,
    /// Bytes of file data unpacked.
    pub unpacked_bytes: u64,
    /// Time spent unpacking (and writing the database).
    pub unpack_time: Duration,
    /// Time spent in maintainer scripts and dpkg.
    pub configure_time: Duration,
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct InstalledPackage {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Architecture.
    pub architecture: String,
    /// Installed-Size in KiB, as declared.
    pub installed_size_kib: u64,
}

/// The merged-/usr links for an architecture, as debootstrap makes them.
pub fn merged_usr_dirs(architecture: &str) -> Vec<&'static str> {
    let mut dirs = vec!["bin", "sbin", "lib"];
    dirs.extend_from_slice(match architecture {
        "amd64" | "x32" => &["lib32", "lib64", "libx32"][..],
        "i386" => &["lib64", "libx32"],
        "ppc64el" | "powerpc" | "sparc" => &["lib64"],
        "ppc64" | "mips" | "mipsel" | "sparc64" => &["lib32", "lib64"],
        "s390x" => &["lib32"],
        _ => &[],
    });
    dirs
}

/// A package file to install, opened by the caller (after verifying its
/// digest: the open file cannot be swapped afterwards, its path could).
#[derive(Debug)]
pub struct PackageFile {
    /// Where it came from (for messages).
    pub path: PathBuf,
    /// The open file; read from offset 0 whatever its position.
    pub file: File,
    /// Its size in bytes (large packages are unpacked first).
    pub size: u64,
}

impl PackageFile {
    /// Opens a .deb by path (no digest check: for callers that verified
    /// it another way, and for tests).
    pub fn open(path: &Path) -> Result<Self, Error> {
        let open = || -> std::io::Result<Self> {
            let file = File::open(path)?;
            let size = file.metadata()?.len();
            Ok(Self {
                path: path.to_owned(),
                file,
                size,
            })
        };
        open().map_err(|e| Error::Package {
            package: path.display().to_string(),
            source: Box::new(crate::source::Error::Read {
                path: path.to_owned(),
                source: e,
            }),
        })
    }

    /// Opens every path in `paths`.
    pub fn open_all(paths: &[PathBuf]) -> Result<Vec<Self>, Error> {
        paths.iter().map(|p| Self::open(p)).collect()
    }

    /// Reads the .deb from its start.
    fn deb(&self) -> Result<DebFile<BufReader<&File>>, Error> {
        let read_error = |e| Error::Package {
            package: self.path.display().to_string(),
            source: Box::new(e),
        };
        (&self.file).seek(SeekFrom::Start(0)).map_err(|source| {
            read_error(crate::source::Error::Read {
                path: self.path.clone(),
                source,
            })
        })?;
        DebFile::from_reader(BufReader::with_capacity(128 << 10, &self.file), &self.path)
            .map_err(read_error)
    }
}

/// Installs `debs` (in install order) into `target`, configures them and
/// audits the result.
pub fn install(
    target: &Target,
    debs: &[PackageFile],
    options: &InstallOptions,
    progress: &ProgressBar,
) -> Result<InstallReport, Error> {
    let started = Instant::now();
    prepare(target, &options.architecture)?;
    let unpacked = unpack(target, debs, options.jobs, progress)?;
    dpkg_db::write(target, &unpacked.records)?;
    let unpack_time = started.elapsed();
    let started = Instant::now();
    progress.set_message("configuring");
    configure::configure(target, &unpacked.records, options.epoch, &options.log_dir)?;
    configure::audit(target, &unpacked.records, options.epoch, &options.log_dir)?;
    let packages = unpacked
        .records
        .iter()
        .map(|r| InstalledPackage {
            name: r.name().to_owned(),
            version: r.version().to_owned(),
            architecture: r.architecture().to_owned(),
            installed_size_kib: r
                .control
                .get("Installed-Size")
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
        })
        .collect();
    Ok(InstallReport {
        packages,
        redirected: unpacked.redirected,
        unpacked_bytes: unpacked.bytes,
        unpack_time,
        configure_time: started.elapsed(),
    })
}

/// Sets up an empty root for bookworm and later: `usr/{bin,sbin,lib,...}`
/// and the top-level links to them (merged /usr).
pub fn prepare(target: &Target, architecture: &str) -> Result<(), Error> {
    nix::sys::stat::fchmod(
        open_nofollow(
            &target.fd(),
            ".".as_ref(),
            OFlag::O_DIRECTORY | OFlag::O_RDONLY,
        )
        .map_err(|e| target.error("opening", Path::new("/"), e))?,
        Mode::from_bits_truncate(0o755),
    )
    .map_err(|e| target.error("setting the mode of", Path::new("/"), e.into()))?;
    for dir in merged_usr_dirs(architecture) {
        target.create_dir_all(&Path::new("usr").join(dir), 0o755)?;
        target.symlink(Path::new(dir), &Path::new("usr").join(dir))?;
    }
    Ok(())
}

/// Unpacked packages, database records ready.
#[derive(Debug)]
pub struct Unpacked {
    /// One record per package, in install order.
    pub records: Vec<PackageRecord>,
    /// See [`InstallReport::redirected`].
    pub redirected: Vec<(String, PathBuf)>,
    /// Bytes of file data written.
    pub bytes: u64,
}

type Slot = Mutex<Option<Result<(PackageRecord, Extracted), Error>>>;

/// Extracts every package's data into `target` with `jobs` threads, then
/// settles paths shared between packages (see the module documentation).
pub fn unpack(
    target: &Target,
    debs: &[PackageFile],
    jobs: usize,
    progress: &ProgressBar,
) -> Result<Unpacked, Error> {
    let mut schedule: Vec<usize> = (0..debs.len()).collect();
    schedule.sort_by_key(|&i| (std::cmp::Reverse(debs[i].size), i));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let slots: Vec<Slot> = debs.iter().map(|_| Mutex::new(None)).collect();
    progress.set_length(debs.len() as u64);
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1).min(debs.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= schedule.len() || failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let i = schedule[k];
                    let result = unpack_one(target, &debs[i]);
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    if let Ok((record, _)) = &result {
                        progress.set_message(record.name().to_owned());
                    }
                    progress.inc(1);
                    *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
                }
            });
        }
    });
    let mut results = Vec::with_capacity(debs.len());
    for slot in slots {
        match slot.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(Ok(done)) => results.push(done),
            Some(Err(e)) => return Err(e),
            // Not reached: another package failed first; its error wins.
            None => {}
        }
    }
    if results.len() != debs.len() {
        // Every failure left its error in a slot; if we got here without
        // one, a worker died (a panic, already reported by the runtime).
        return Err(Error::target(
            "unpacking into",
            target.path(),
            "/",
            std::io::Error::other("an unpack worker stopped early"),
        ));
    }
    let mut seen = HashSet::new();
    for (record, _) in &results {
        if !seen.insert((record.name().to_owned(), record.architecture().to_owned())) {
            return Err(Error::DuplicatePackage {
                package: record.name().to_owned(),
            });
        }
    }
    settle(target, debs, &mut results)?;
    let mut unpacked = Unpacked {
        records: Vec::with_capacity(results.len()),
        redirected: Vec::new(),
        bytes: 0,
    };
    for (mut record, extracted) in results {
        unpacked.bytes += extracted.bytes;
        unpacked.redirected.extend(
            extracted
                .redirected
                .iter()
                .map(|p| (record.name().to_owned(), p.clone())),
        );
        if record.list.is_empty() {
            record.list = extracted
                .entries
                .iter()
                .map(|e| listed_path(&e.path))
                .collect();
        }
        unpacked.records.push(record);
    }
    Ok(unpacked)
}

fn unpack_one(target: &Target, package: &PackageFile) -> Result<(PackageRecord, Extracted), Error> {
    let deb = package.deb()?;
    let record = PackageRecord {
        control: deb.control().clone(),
        members: deb.control_members().to_vec(),
        list: Vec::new(),
    };
    let conffiles: HashSet<Vec<u8>> = record
        .conffiles()
        .into_iter()
        .map(|(p, _)| p.into_bytes())
        .collect();
    let name = record.name().to_owned();
    let generate_md5sums = record.member("md5sums").is_none();
    let mut record = record;
    let extracted = extract::extract(target, deb, &name, &conffiles, None, generate_md5sums)?;
    if let Some(md5sums) = &extracted.md5sums {
        // dpkg generates one for packages that ship none (dpkg --audit
        // asks for it).
        record.members.push(ControlMember {
            name: "md5sums".into(),
            mode: 0o644,
            data: md5sums.clone(),
        });
    }
    Ok((record, extracted))
}

/// Applies the rules for paths shipped by more than one package.
fn settle(
    target: &Target,
    debs: &[PackageFile],
    results: &mut [(PackageRecord, Extracted)],
) -> Result<(), Error> {
    let mut claims: HashMap<&Path, Vec<(usize, &Placed)>> = HashMap::new();
    for (i, (_, extracted)) in results.iter().enumerate() {
        for entry in &extracted.entries {
            if !entry.path.as_os_str().is_empty() {
                claims
                    .entry(&entry.path)
                    .or_default()
                    .push((i, &entry.placed));
            }
        }
    }
    let name = |i: usize| results[i].0.name().to_owned();
    let mut paths: Vec<&Path> = claims.keys().copied().collect();
    paths.sort();
    let mut dir_fixes: Vec<(PathBuf, DirMeta)> = Vec::new();
    let mut rewrites: HashMap<usize, HashSet<PathBuf>> = HashMap::new();
    let mut dropped: HashMap<usize, HashSet<Vec<u8>>> = HashMap::new();
    for path in paths {
        let claimants = &claims[path];
        let first_dir = claimants
            .iter()
            .find(|(_, p)| matches!(p, Placed::Directory { .. }));
        let first_other = claimants.iter().find(|(_, p)| matches!(p, Placed::Other));
        match (first_dir, first_other) {
            (Some(&(d, _)), Some(&(o, _))) => {
                return Err(Error::TypeConflict {
                    path: String::from_utf8_lossy(&listed_path(path)).into_owned(),
                    directory_in: name(d),
                    other_in: name(o),
                });
            }
            (Some(&(winner, placed)), None) => {
                let Placed::Directory { meta: wanted, .. } = *placed else {
                    continue;
                };
                // What is on disk is what its creator shipped (or ours,
                // when no package created it).
                let creator = claimants.iter().find_map(|(i, p)| match p {
                    Placed::Directory {
                        meta,
                        created: true,
                    } => Some((*i, *meta)),
                    _ => None,
                });
                let needs_fix = match creator {
                    Some((i, meta)) => i != winner && meta != wanted,
                    None => true,
                };
                if needs_fix {
                    dir_fixes.push((path.to_owned(), wanted));
                }
            }
            (None, Some(_)) if claimants.len() > 1 => {
                let winner = replacing_claimant(&results[..], claimants.iter().map(|c| c.0))
                    .ok_or_else(|| Error::FileConflict {
                        path: String::from_utf8_lossy(&listed_path(path)).into_owned(),
                        first: name(claimants[0].0),
                        second: name(claimants[1].0),
                    })?;
                rewrites.entry(winner).or_default().insert(path.to_owned());
                for &(i, _) in claimants {
                    if i != winner {
                        dropped.entry(i).or_default().insert(listed_path(path));
                    }
                }
            }
            _ => {}
        }
    }
    for (path, meta) in dir_fixes {
        apply_dir_meta(target, &path, meta)?;
    }
    let mut winners: Vec<_> = rewrites.into_iter().collect();
    winners.sort_by_key(|(i, _)| *i);
    for (i, paths) in winners {
        let record = &results[i].0;
        let deb = debs[i].deb()?;
        let conffiles: HashSet<Vec<u8>> = record
            .conffiles()
            .into_iter()
            .map(|(p, _)| p.into_bytes())
            .collect();
        tracing::info!(
            package = record.name(),
            files = paths.len(),
            "re-extracting replaced files"
        );
        extract::extract(target, deb, record.name(), &conffiles, Some(&paths), false)?;
    }
    for (i, gone) in dropped {
        let (record, extracted) = &mut results[i];
        record.list = extracted
            .entries
            .iter()
            .map(|e| listed_path(&e.path))
            .filter(|p| !gone.contains(p))
            .collect();
    }
    Ok(())
}

/// The claimant that `Replaces` every other claimant, if there is one.
fn replacing_claimant(
    results: &[(PackageRecord, Extracted)],
    claimants: impl Iterator<Item = usize> + Clone,
) -> Option<usize> {
    let replaces = |i: usize| -> HashSet<String> {
        let mut names = crate::source::Interner::new();
        results[i]
            .0
            .control
            .get("Replaces")
            .and_then(|t| parse_relations("Replaces", t, &mut names).ok())
            .map(|rel| {
                rel.atoms()
                    .iter()
                    .map(|d| names.resolve(d.name).to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    claimants.clone().find(|&candidate| {
        let replaced = replaces(candidate);
        claimants
            .clone()
            .filter(|&o| o != candidate)
            .all(|o| replaced.contains(results[o].0.name()))
    })
}

/// Sets a shared directory's owner and mode, unless it is (our) symlink.
fn apply_dir_meta(target: &Target, path: &Path, meta: DirMeta) -> Result<(), Error> {
    let result = (|| {
        let (dir, name) = target.parent(path)?;
        let st = nix::sys::stat::fstatat(&dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        if file_type(&st) != SFlag::S_IFDIR {
            return Ok(());
        }
        let fd = open_nofollow(&dir, &name, OFlag::O_DIRECTORY | OFlag::O_RDONLY)?;
        nix::unistd::fchown(
            fd.as_fd(),
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )?;
        nix::sys::stat::fchmod(fd.as_fd(), Mode::from_bits_truncate(meta.mode))?;
        Ok::<(), std::io::Error>(())
    })();
    result.map_err(|e| target.error("setting owner and mode of", path, e))
}
