//! Making a configured root reproducible: whatever installing wrote that
//! depends on when, where or on which machine it ran is removed, emptied
//! or rewritten from the inputs, and every mtime is clamped to the
//! build's SOURCE_DATE_EPOCH (the snapshot's date, never the clock).
//!
//! Each rule here was found by building twice and diffing (see
//! ARCHITECTURE.md for the list with reasons); `tests/rootfs` builds twice
//! under different conditions and compares digests.

use std::path::Path;

use nix::fcntl::AtFlags;
use nix::sys::stat::UtimensatFlags;
use nix::sys::time::TimeSpec;

use super::error::Error;
use nix::sys::stat::SFlag;

use super::target::{Target, file_type};
use super::tree;

/// Files removed when present: logs of the install, caches rebuilt on
/// demand, per-machine identity and secrets.
const REMOVE: &[&str] = &[
    // Logs of this install (timestamps, host-dependent noise).
    "var/log/dpkg.log",
    "var/log/alternatives.log",
    "var/log/bootstrap.log",
    "var/log/apt/history.log",
    "var/log/apt/term.log",
    "var/log/apt/eipp.log.xz",
    // ldconfig's cache of file mtimes and inodes.
    "var/cache/ldconfig/aux-cache",
    // Per-machine identity: a node gets its own at first boot.
    "var/lib/dbus/machine-id",
    "var/lib/systemd/random-seed",
    "var/lib/urandom/random-seed",
    // Backups dpkg and debconf write when they rewrite their databases.
    "var/lib/dpkg/status-old",
    "var/lib/dpkg/diversions-old",
    "var/lib/dpkg/statoverride-old",
    "var/cache/debconf/config.dat-old",
    "var/cache/debconf/templates.dat-old",
    "var/cache/debconf/passwords.dat-old",
    // apt's binary caches (rebuilt on first use).
    "var/cache/apt/pkgcache.bin",
    "var/cache/apt/srcpkgcache.bin",
];

/// Directories emptied (kept, contents removed).
const EMPTY: &[&str] = &["tmp", "var/tmp"];

/// Directories whose files go (apt's lists and downloads, and their lock
/// files), subdirectories kept: apt ships `partial/` there itself.
const FILES_REMOVED: &[&str] = &["var/lib/apt/lists", "var/cache/apt/archives"];

/// SSH host keys: secrets that must differ per node; the node generates
/// its own (`ssh-keygen -A`) before sshd starts.
const SSH_DIR: &str = "etc/ssh";

/// Normalises `target` for epoch `epoch` (seconds).
pub fn normalize(target: &Target, epoch: u64) -> Result<(), Error> {
    for path in REMOVE {
        target.remove(Path::new(path))?;
    }
    for dir in EMPTY {
        target.empty_dir(Path::new(dir))?;
    }
    for dir in FILES_REMOVED {
        for name in target.list(Path::new(dir))? {
            let path = Path::new(dir).join(name);
            let is_dir = target
                .lstat(&path)?
                .is_some_and(|st| file_type(&st) == SFlag::S_IFDIR);
            if !is_dir {
                target.remove(&path)?;
            }
        }
    }
    remove_run_leftovers(target)?;
    // Name resolution is the node's business at run time (DHCP): an empty
    // file, unless a package made it a link (systemd-resolved's stub).
    let resolv = Path::new("etc/resolv.conf");
    let is_link = target
        .lstat(resolv)?
        .is_some_and(|st| file_type(&st) == SFlag::S_IFLNK);
    if !is_link {
        target.write_file(resolv, b"", 0o644)?;
    }
    remove_ssh_host_keys(target)?;
    // An empty machine-id means "generate at boot" (machine-id(5)).
    if target.lstat(Path::new("etc/machine-id"))?.is_some() {
        target.write_file(Path::new("etc/machine-id"), b"", 0o444)?;
    }
    for shadow in ["etc/shadow", "etc/shadow-"] {
        fix_last_change(target, Path::new(shadow), epoch)?;
    }
    clamp_mtimes(target, epoch)
}

/// /run is a tmpfs on a running system; keep only `lock` (/var/lock
/// points there, Debian policy 9.1.4).
fn remove_run_leftovers(target: &Target) -> Result<(), Error> {
    for name in target.list(Path::new("run"))? {
        if name != "lock" {
            target.remove(&Path::new("run").join(name))?;
        }
    }
    Ok(())
}

fn remove_ssh_host_keys(target: &Target) -> Result<(), Error> {
    for name in target.list(Path::new(SSH_DIR))? {
        if name.to_string_lossy().starts_with("ssh_host_") {
            target.remove(&Path::new(SSH_DIR).join(name))?;
        }
    }
    Ok(())
}

/// Sets the "last password change" field (days since the epoch) of every
/// /etc/shadow entry that has one to the build's day. shadow's tools honour
/// SOURCE_DATE_EPOCH, but a script calling them without it, or an overlay,
/// must not leak the build date.
fn fix_last_change(target: &Target, path: &Path, epoch: u64) -> Result<(), Error> {
    let Some(data) = target.read_file(path)? else {
        return Ok(());
    };
    let day = (epoch / 86_400).to_string();
    let text = String::from_utf8_lossy(&data);
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 3 && !fields[2].is_empty() {
            fields[2] = &day;
        }
        out.push_str(&fields.join(":"));
        out.push('\n');
    }
    if out.as_bytes() != data.as_slice() {
        let st = target.lstat(path)?;
        let mode = st.map_or(0o640, |s| s.st_mode & 0o7777);
        let (uid, gid) = st.map_or((0, 0), |s| (s.st_uid, s.st_gid));
        target.write_file(path, out.as_bytes(), mode)?;
        let (dir, name) = target
            .parent(path)
            .map_err(|e| target.error("opening", path, e))?;
        nix::unistd::fchownat(
            &dir,
            name.as_os_str(),
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| target.error("setting the owner of", path, e.into()))?;
    }
    Ok(())
}

/// Every mtime later than `epoch` becomes `epoch`; older ones (the
/// packages' own) stay, to the second. Links are not followed.
pub fn clamp_mtimes(target: &Target, epoch: u64) -> Result<(), Error> {
    let limit = i64::try_from(epoch).unwrap_or(i64::MAX);
    tree::walk_with(target, false, &mut |entry| {
        let (secs, nanos) = (entry.stat.st_mtime, entry.stat.st_mtime_nsec);
        if secs <= limit && nanos == 0 {
            return Ok(());
        }
        let mtime = TimeSpec::new(secs.min(limit), 0);
        nix::sys::stat::utimensat(
            entry.dir,
            entry.name,
            &TimeSpec::UTIME_OMIT,
            &mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| target.error("setting the mtime of", entry.path, e.into()))
    })
}
