//! The switch to the verified image: its squashfs (or erofs) mounted
//! read-only from the tmpfs through a loop device, a tmpfs for the
//! writable layer, an overlay of both at `/newroot`; `/proc`, `/sys`,
//! `/dev` and `/run` moved under it; then busybox `switch_root`, which
//! empties the initramfs, makes `/newroot` the root and execs its init.
//!
//! The loop device is set up by `mount -o loop` (busybox in the
//! initramfs, util-linux on a test host): the agent stays free of ioctls.

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{MsFlags, mount};

/// Where each layer goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootLayout {
    /// The read-only image mount (`/run/rootfs.ro`).
    pub lower: PathBuf,
    /// The tmpfs holding the writable layer (`/run/rootfs.rw`).
    pub overlay: PathBuf,
    /// The overlay, the future root (`/newroot`).
    pub newroot: PathBuf,
}

impl RootLayout {
    /// The node's layout under `root` (`/`).
    pub fn under(root: &Path) -> RootLayout {
        RootLayout {
            lower: root.join("run/rootfs.ro"),
            overlay: root.join("run/rootfs.rw"),
            newroot: root.join("newroot"),
        }
    }
}

/// Why the new root could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// The image is neither squashfs nor erofs by name.
    #[error("{path}: not a .squashfs or .erofs image")]
    FsType {
        /// The image.
        path: PathBuf,
    },
    /// A file of the new root could not be written.
    #[error("writing {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A directory could not be made.
    #[error("creating {path}")]
    Mkdir {
        /// The directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// `mount` could not run or failed.
    #[error("mounting {what} on {target}: {detail}")]
    Mount {
        /// What.
        what: String,
        /// Where.
        target: PathBuf,
        /// The error or mount's message.
        detail: String,
    },
    /// The image has no init to hand over to.
    #[error("the image has no {init} (looked at {path})")]
    NoInit {
        /// The init path in the image.
        init: String,
        /// The path checked.
        path: PathBuf,
    },
    /// The exec of switch_root returned.
    #[error("exec switch_root {newroot} {init}")]
    Exec {
        /// The new root.
        newroot: PathBuf,
        /// The init.
        init: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn mkdir(path: &Path) -> Result<(), SwitchError> {
    std::fs::create_dir_all(path).map_err(|source| SwitchError::Mkdir {
        path: path.to_owned(),
        source,
    })
}

fn fs_type(image: &Path) -> Result<&'static str, SwitchError> {
    match image.extension().and_then(|e| e.to_str()) {
        Some("squashfs") => Ok("squashfs"),
        Some("erofs") => Ok("erofs"),
        _ => Err(SwitchError::FsType {
            path: image.to_owned(),
        }),
    }
}

fn sys_mount(
    what: &str,
    source: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), SwitchError> {
    mount(Some(source), target, fstype, flags, data).map_err(|errno| SwitchError::Mount {
        what: what.to_owned(),
        target: target.to_owned(),
        detail: format!("{errno} ({})", errno.desc()),
    })
}

/// Mounts `image` read-only at `layout.lower`, a tmpfs at
/// `layout.overlay`, and the overlay at `layout.newroot`; checks that
/// `init` exists in it.
pub fn prepare_root(image: &Path, layout: &RootLayout, init: &str) -> Result<(), SwitchError> {
    let fstype = fs_type(image)?;
    mkdir(&layout.lower)?;
    let out = Command::new("mount")
        .args(["-t", fstype, "-o", "loop,ro"])
        .arg(image)
        .arg(&layout.lower)
        .output()
        .map_err(|e| SwitchError::Mount {
            what: image.display().to_string(),
            target: layout.lower.clone(),
            detail: format!("running mount: {e}"),
        })?;
    if !out.status.success() {
        return Err(SwitchError::Mount {
            what: image.display().to_string(),
            target: layout.lower.clone(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    mkdir(&layout.overlay)?;
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    sys_mount(
        "tmpfs",
        "tmpfs",
        &layout.overlay,
        Some("tmpfs"),
        nosuid,
        Some("mode=0755"),
    )?;
    let (upper, work) = (layout.overlay.join("upper"), layout.overlay.join("work"));
    mkdir(&upper)?;
    mkdir(&work)?;
    mkdir(&layout.newroot)?;
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        layout.lower.display(),
        upper.display(),
        work.display()
    );
    sys_mount(
        "overlay",
        "overlay",
        &layout.newroot,
        Some("overlay"),
        MsFlags::empty(),
        Some(&options),
    )?;
    let path = layout.newroot.join(init.trim_start_matches('/'));
    if std::fs::symlink_metadata(&path).is_err() {
        return Err(SwitchError::NoInit {
            init: init.to_owned(),
            path,
        });
    }
    Ok(())
}

/// Where the agent tells the image what it runs (`NAME@VERSION`), under
/// the `/run` the image inherits.
pub const IMAGE_FILE: &str = "run/ironrack/image";

/// Names the prepared root: `/etc/hostname` (in the writable layer) from
/// the DHCP lease when the server gave a valid host name, and
/// [`IMAGE_FILE`] under `root` with the image it runs.
pub fn name_root(
    root: &Path,
    layout: &RootLayout,
    hostname: Option<&str>,
    image: &str,
) -> Result<(), SwitchError> {
    if let Some(name) = hostname.filter(|h| valid_hostname(h)) {
        write(&layout.newroot.join("etc/hostname"), &format!("{name}\n"))?;
    }
    write(&root.join(IMAGE_FILE), &format!("{image}\n"))
}

/// RFC 1123 labels of letters, digits and `-`, at most 253 bytes in all.
pub fn valid_hostname(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn write(path: &Path, text: &str) -> Result<(), SwitchError> {
    if let Some(parent) = path.parent() {
        mkdir(parent)?;
    }
    std::fs::write(path, text).map_err(|source| SwitchError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Moves each of `mounts` (`/proc`, ...) to the same place under `newroot`.
pub fn move_mounts(newroot: &Path, mounts: &[&Path]) -> Result<(), SwitchError> {
    for from in mounts {
        let to = newroot.join(from.strip_prefix("/").unwrap_or(from));
        mkdir(&to)?;
        mount(
            Some(*from),
            &to,
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .map_err(|errno| SwitchError::Mount {
            what: from.display().to_string(),
            target: to.clone(),
            detail: format!("moving: {errno} ({})", errno.desc()),
        })?;
    }
    Ok(())
}

/// The API filesystems PID 1 moves into the new root.
pub const MOVED: [&str; 4] = ["/proc", "/sys", "/dev", "/run"];

/// Moves the API filesystems and execs busybox `switch_root newroot
/// init`. Returns only on failure.
pub fn switch_root(newroot: &Path, init: &str) -> SwitchError {
    let mounts: Vec<&Path> = MOVED.iter().map(Path::new).collect();
    if let Err(e) = move_mounts(newroot, &mounts) {
        return e;
    }
    use std::os::unix::process::CommandExt;
    let source = Command::new("switch_root").arg(newroot).arg(init).exec();
    SwitchError::Exec {
        newroot: newroot.to_owned(),
        init: init.to_owned(),
        source,
    }
}

#[cfg(test)]
#[path = "switch_root_tests.rs"]
mod tests;
