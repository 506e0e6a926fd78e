//! Running the image's own programs inside the image: new mount, PID, UTS,
//! IPC and network namespaces (no network: the namespace has only `lo`,
//! down), the target as `/` by pivot_root with the host's tree detached, a
//! minimal /dev (a tmpfs with null, zero, full, random, urandom, tty and a
//! private devpts), /proc of the new PID namespace, /sys read-only, /run
//! and /tmp as fresh tmpfs, and a scrubbed environment.
//!
//! Every mount lives in the sandbox's private mount namespace: nothing
//! propagates to the host, and the kernel tears it all down when the
//! sandbox's PID 1 exits. Nothing is ever mounted in the builder's own
//! namespace.

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use nix::mount::MsFlags;
use nix::sys::stat::SFlag;

use super::error::Error;
use super::sys::{self, MountSpec, NodeSpec, SandboxSetup};
use super::target::{Target, file_type};

/// The PATH inside the sandbox (Debian's default for root).
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The hostname maintainer scripts see while the image is configured.
pub const BUILD_HOSTNAME: &str = "localhost";

/// Mount points the sandbox needs, with the modes they get when missing.
const MOUNT_POINTS: &[(&str, u32)] = &[
    ("dev", 0o755),
    ("proc", 0o555),
    ("sys", 0o555),
    ("run", 0o755),
    ("tmp", 0o1777),
];

/// Character devices in the sandbox's /dev: (name, major, minor).
const DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// What a sandboxed command did.
#[derive(Debug)]
pub struct Outcome {
    /// Its exit status (as relayed by the sandbox's intermediate process).
    pub status: ExitStatus,
    /// Everything it wrote to stdout and stderr, interleaved.
    pub output: Vec<u8>,
}

impl Outcome {
    /// The last `lines` lines of output, as text.
    pub fn tail(&self, lines: usize) -> String {
        let text = String::from_utf8_lossy(&self.output);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// A sandbox over a target root.
#[derive(Debug)]
pub struct Sandbox<'a> {
    target: &'a Target,
    root: PathBuf,
    env: Vec<(String, String)>,
}

impl<'a> Sandbox<'a> {
    /// Prepares the mount points in `target` and the environment: PATH,
    /// `LC_ALL=C`, `TZ=UTC`, `SOURCE_DATE_EPOCH=epoch`, non-interactive
    /// debconf, `HOME=/root`; nothing from the builder's environment.
    pub fn new(target: &'a Target, epoch: u64) -> Result<Self, Error> {
        let root = std::fs::canonicalize(target.path())
            .map_err(|e| target.error("resolving", Path::new("/"), e))?;
        for (dir, mode) in MOUNT_POINTS {
            let rel = Path::new(dir);
            if target.lstat(rel)?.is_none() {
                target.create_dir_all(rel, *mode)?;
            }
            // A package may have planted a symlink here: mount(2) would
            // follow it. Only a real directory will do.
            match target.lstat(rel)? {
                Some(st) if file_type(&st) == SFlag::S_IFDIR => {}
                _ => {
                    return Err(target.error(
                        "using as a mount point",
                        rel,
                        std::io::Error::other("not a directory"),
                    ));
                }
            }
        }
        let env = [
            ("PATH", PATH.to_owned()),
            ("LC_ALL", "C".to_owned()),
            ("LANG", "C".to_owned()),
            ("TZ", "UTC".to_owned()),
            ("SOURCE_DATE_EPOCH", epoch.to_string()),
            ("DEBIAN_FRONTEND", "noninteractive".to_owned()),
            ("DEBCONF_NONINTERACTIVE_SEEN", "true".to_owned()),
            ("HOME", "/root".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Ok(Self { target, root, env })
    }

    /// Runs `argv` (an absolute program path inside the image, then its
    /// arguments) with `extra_env` added; output goes to `log` (a file
    /// outside the target) and is returned.
    pub fn run(
        &self,
        argv: &[&str],
        extra_env: &[(&str, &str)],
        log: &Path,
    ) -> Result<Outcome, Error> {
        let command_text = argv.first().copied().unwrap_or("").to_owned();
        let sandbox_error = |source| Error::Sandbox {
            root: self.root.clone(),
            command: command_text.clone(),
            source,
        };
        let log_file = File::create(log).map_err(sandbox_error)?;
        let mut command = Command::new(argv.first().copied().unwrap_or("/bin/false"));
        command
            .args(&argv[1..])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(sandbox_error)?)
            .stderr(log_file);
        let setup = self.setup().map_err(sandbox_error)?;
        let mut child = sys::spawn_sandboxed(&mut command, setup).map_err(sandbox_error)?;
        let status = child.wait().map_err(sandbox_error)?;
        let mut output = Vec::new();
        File::open(log)
            .and_then(|mut f| f.read_to_end(&mut output))
            .map_err(sandbox_error)?;
        tracing::debug!(
            root = %self.target.path().display(),
            command = %argv.join(" "),
            %status,
            "sandboxed command finished"
        );
        Ok(Outcome { status, output })
    }

    fn setup(&self) -> std::io::Result<SandboxSetup> {
        let under = |rel: &str| -> std::io::Result<CString> {
            let mut bytes = self.root.as_os_str().as_bytes().to_vec();
            bytes.push(b'/');
            bytes.extend_from_slice(rel.as_bytes());
            CString::new(bytes).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
        };
        let c = |s: &str| {
            CString::new(s).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
        };
        let mount =
            |source: &str, target: &str, fstype: Option<&str>, flags, data: Option<&str>| {
                Ok::<_, std::io::Error>(MountSpec {
                    source: c(source)?,
                    target: under(target)?,
                    fstype: fstype.map(c).transpose()?,
                    flags,
                    data: data.map(c).transpose()?,
                })
            };
        let hardened = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        let mounts = vec![
            mount(
                "tmpfs",
                "dev",
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                Some("mode=0755,size=65536k"),
            )?,
            mount("proc", "proc", Some("proc"), hardened, None)?,
            mount(
                "sysfs",
                "sys",
                Some("sysfs"),
                hardened | MsFlags::MS_RDONLY,
                None,
            )?,
            mount(
                "tmpfs",
                "run",
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some("mode=0755"),
            )?,
            mount(
                "tmpfs",
                "tmp",
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some("mode=1777"),
            )?,
        ];
        let nodes = DEVICES
            .iter()
            .map(|(name, major, minor)| {
                Ok(NodeSpec {
                    path: under(&format!("dev/{name}"))?,
                    major: *major,
                    minor: *minor,
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let symlinks = [
            ("/proc/self/fd", "dev/fd"),
            ("/proc/self/fd/0", "dev/stdin"),
            ("/proc/self/fd/1", "dev/stdout"),
            ("/proc/self/fd/2", "dev/stderr"),
            ("pts/ptmx", "dev/ptmx"),
        ]
        .iter()
        .map(|(target, path)| Ok((c(target)?, under(path)?)))
        .collect::<std::io::Result<Vec<_>>>()?;
        Ok(SandboxSetup {
            root: CString::new(self.root.as_os_str().as_bytes())
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?,
            hostname: c(BUILD_HOSTNAME)?,
            mounts,
            dirs: vec![(under("dev/pts")?, 0o755), (under("dev/shm")?, 0o1777)],
            nodes,
            symlinks,
            late_mounts: vec![mount(
                "devpts",
                "dev/pts",
                Some("devpts"),
                MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
            )?],
        })
    }
}
