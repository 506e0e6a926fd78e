//! The few system calls nix does not wrap safely: extended attributes on
//! file descriptors, and the sandbox's set-up between `fork` and `exec`.
//!
//! Everything `unsafe` in the rootfs stages lives here, one function at a
//! time, each with the reason it is sound.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};
use nix::sys::wait::WaitStatus;
use nix::unistd::ForkResult;

/// Sets extended attribute `name` on an open file or directory.
#[allow(unsafe_code)]
pub fn fsetxattr(fd: BorrowedFd<'_>, name: &str, value: &[u8]) -> io::Result<()> {
    let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `name` is a NUL-terminated string and `value` a live slice
    // whose length we pass; the kernel only reads them during the call.
    let rc = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The extended attributes of an open file or directory, sorted by name.
pub fn fxattrs(fd: BorrowedFd<'_>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let names = xattr_buffer(|buf| flistxattr_raw(fd, buf))?;
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        let value = match xattr_buffer(|buf| fgetxattr_raw(fd, &cname, buf)) {
            Ok(v) => v,
            // Removed between list and get: it is not there.
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => continue,
            Err(e) => return Err(e),
        };
        out.push((String::from_utf8_lossy(name).into_owned(), value));
    }
    out.sort();
    Ok(out)
}

/// Calls a size-probing xattr function: first with an empty buffer for the
/// size, then with a buffer that big (again if it grew in between).
fn xattr_buffer(mut call: impl FnMut(&mut [u8]) -> io::Result<usize>) -> io::Result<Vec<u8>> {
    loop {
        let size = call(&mut [])?;
        let mut buf = vec![0u8; size];
        match call(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

#[allow(unsafe_code)]
fn flistxattr_raw(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`
    // (nothing when the length is 0, which asks for the size).
    let n = unsafe { libc::flistxattr(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

#[allow(unsafe_code)]
fn fgetxattr_raw(fd: BorrowedFd<'_>, name: &CStr, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: as above; `name` is NUL-terminated.
    let n = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// A mount to make inside the sandbox, all strings prepared beforehand
/// (nothing may allocate between `fork` and `exec`).
#[derive(Debug)]
pub struct MountSpec {
    /// Source (`proc`, `tmpfs`, or a path for bind mounts).
    pub source: CString,
    /// Absolute path of the mount point (inside the target root).
    pub target: CString,
    /// Filesystem type; `None` for bind mounts.
    pub fstype: Option<CString>,
    /// Mount flags.
    pub flags: MsFlags,
    /// Filesystem options.
    pub data: Option<CString>,
}

/// A device node to create in the sandbox's /dev.
#[derive(Debug)]
pub struct NodeSpec {
    /// Absolute path.
    pub path: CString,
    /// Character device major/minor.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
}

/// Everything the sandbox sets up between `fork` and `exec`.
#[derive(Debug)]
pub struct SandboxSetup {
    /// The target root (absolute, a real directory).
    pub root: CString,
    /// The hostname inside the UTS namespace.
    pub hostname: CString,
    /// Mounts, in order (a mount point may be inside an earlier mount).
    pub mounts: Vec<MountSpec>,
    /// Directories to create after the mounts (inside /dev), with modes.
    pub dirs: Vec<(CString, u32)>,
    /// Character devices to create inside /dev, mode 0666.
    pub nodes: Vec<NodeSpec>,
    /// Symlinks `(target, path)` to create inside /dev.
    pub symlinks: Vec<(CString, CString)>,
    /// A mount made after `dirs` (the devpts instance on /dev/pts).
    pub late_mounts: Vec<MountSpec>,
}

/// Spawns `command` inside new mount, PID, UTS, IPC and network
/// namespaces, with the target root as its `/` (pivot_root, the host's
/// tree detached). The returned child is an intermediate process that
/// exits with the sandboxed command's status; if the builder dies, the
/// kernel kills the sandbox (parent-death signals on both levels, and PID
/// 1 of the namespace taking everything with it).
#[allow(unsafe_code)]
pub fn spawn_sandboxed(command: &mut Command, setup: SandboxSetup) -> io::Result<Child> {
    // SAFETY: the closure runs in the forked child before exec. It only
    // makes system calls (through nix wrappers given pre-built C strings,
    // which do not allocate) and never returns from the intermediate
    // process, which leaves with `_exit`. No locks are taken, no memory is
    // allocated, so the multi-threaded parent cannot deadlock it.
    unsafe {
        command.pre_exec(move || enter_sandbox(&setup));
    }
    command.spawn()
}

/// Runs in the forked child; see [`spawn_sandboxed`].
#[allow(unsafe_code)]
fn enter_sandbox(setup: &SandboxSetup) -> io::Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    nix::sched::unshare(
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWNET,
    )?;
    // Nothing we mount may propagate back to the host.
    nix::mount::mount(
        None::<&CStr>,
        c"/",
        None::<&CStr>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&CStr>,
    )?;
    // SAFETY: fork in a single-threaded child (pre_exec runs after the
    // parent's fork; only this thread exists here).
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => {
            // The intermediate: drop every inherited descriptor but stdio
            // (so the spawner sees EOF on its exec-status pipe as soon as
            // the inner process execs), then relay the inner status.
            // SAFETY: a plain system call closing descriptors we own.
            unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
            let code = loop {
                match nix::sys::wait::waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => break code,
                    Ok(WaitStatus::Signaled(_, signal, _)) => break 128 + signal as i32,
                    Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => break 125,
                }
            };
            // SAFETY: `_exit` is async-signal-safe and skips the parent's
            // atexit handlers and buffers, which belong to the builder.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Child => {}
    }
    // PID 1 of the new namespace from here on.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    // The builder's umask is the caller's business; what maintainer
    // scripts create must not depend on it.
    nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
    nix::unistd::sethostname(std::ffi::OsStr::from_bytes(setup.hostname.to_bytes()))?;
    // pivot_root needs the new root to be a mount point.
    nix::mount::mount(
        Some(setup.root.as_c_str()),
        setup.root.as_c_str(),
        None::<&CStr>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&CStr>,
    )?;
    for m in &setup.mounts {
        mount_one(m)?;
    }
    for (dir, mode) in &setup.dirs {
        nix::unistd::mkdir(dir.as_c_str(), Mode::from_bits_truncate(*mode))?;
        // mkdir's mode is masked by the umask: set it exactly.
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            dir.as_c_str(),
            Mode::from_bits_truncate(*mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )?;
    }
    for node in &setup.nodes {
        let dev = nix::sys::stat::makedev(node.major, node.minor);
        nix::sys::stat::mknod(
            node.path.as_c_str(),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            dev,
        )?;
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            node.path.as_c_str(),
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )?;
    }
    for (target, path) in &setup.symlinks {
        nix::unistd::symlinkat(target.as_c_str(), nix::fcntl::AT_FDCWD, path.as_c_str())?;
    }
    for m in &setup.late_mounts {
        mount_one(m)?;
    }
    nix::unistd::chdir(setup.root.as_c_str())?;
    nix::unistd::pivot_root(c".", c".")?;
    // The old root is stacked under the new one: detach it, so nothing
    // of the host stays reachable (a chroot could be walked out of).
    nix::mount::umount2(c".", MntFlags::MNT_DETACH)?;
    nix::unistd::chdir(c"/")?;
    Ok(())
}

fn mount_one(m: &MountSpec) -> nix::Result<()> {
    nix::mount::mount(
        Some(m.source.as_c_str()),
        m.target.as_c_str(),
        m.fstype.as_deref(),
        m.flags,
        m.data.as_deref(),
    )
}
