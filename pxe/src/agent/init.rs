//! Stage 1 of `ironrack agent` as PID 1 in the initramfs: the mounts, the
//! configuration baked in by the builder, the kernel command line, the
//! kernel modules, then stage 2 ([`super::boot`]: network, fetch, verify,
//! measure, attest, new root) and the switch to the image. Every stage
//! prints one line on the console, so a serial log tells what the node did.
//!
//! PID 1 must never exit (the kernel panics with "Attempted to kill
//! init"): every error, and a panic, is printed, then the node syncs and
//! powers off.
//!
//! [`run_stage1`] is everything after the mounts, over a root directory
//! and a module loader given by the caller, so it runs in tests too;
//! [`run_as_pid1`] adds the mounts, the console, stage 2, the switch and
//! the power-off.

use std::io::Write;
use std::path::{Path, PathBuf};

use ironrack_builder::boot::initramfs::{AGENT_CONFIG_PATH, AgentConfig};
use nix::errno::Errno;

use super::boot::{IMAGE_INIT, ReadyRoot, Stage2Options, run_stage2};
use super::cmdline::KernelCmdline;
use super::modules::{LoadOutcome, ModuleIndex, finit_module, load_all};
use super::switch_root::switch_root;

/// Errors of stage 1, naming the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The agent configuration does not parse (bad JSON, unknown key).
    #[error("{path}: not a valid agent configuration")]
    Config {
        /// The file.
        path: PathBuf,
        /// serde's error (names the line and the key).
        #[source]
        source: serde_json::Error,
    },
    /// The configuration parses but this agent cannot use it.
    #[error("{path}: {problem}")]
    ConfigValue {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// The configuration format version this agent reads.
pub const CONFIG_VERSION: u32 = 1;

/// Reads and checks an agent configuration (unknown keys refused).
pub fn read_config(path: &Path) -> Result<AgentConfig, InitError> {
    let bytes = std::fs::read(path).map_err(|source| InitError::Read {
        path: path.to_owned(),
        source,
    })?;
    let config = AgentConfig::parse(&bytes).map_err(|source| InitError::Config {
        path: path.to_owned(),
        source,
    })?;
    let problem = if config.version != CONFIG_VERSION {
        Some(format!(
            "format version {} (this agent reads version {CONFIG_VERSION})",
            config.version
        ))
    } else if !config.trust.starts_with('/') {
        Some(format!("trust {:?} is not an absolute path", config.trust))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(InitError::ConfigValue {
            path: path.to_owned(),
            problem,
        }),
        None => Ok(config),
    }
}

/// The console: one line per stage, prefixed so the agent's lines stand
/// out among the kernel's. A console that cannot be written to is no
/// reason to stop booting, so write errors are dropped.
#[derive(Debug)]
pub struct Console<W: Write> {
    out: W,
}

impl<W: Write> Console<W> {
    /// A console writing to `out`.
    pub fn new(out: W) -> Self {
        Self { out }
    }

    /// Writes `ironrack agent: TEXT`.
    pub fn line(&mut self, text: impl std::fmt::Display) {
        let _ = writeln!(self.out, "ironrack agent: {text}");
        let _ = self.out.flush();
    }

    /// Writes a line as it is (the first line has its own shape).
    pub fn raw(&mut self, text: impl std::fmt::Display) {
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }

    /// The writer (for tests).
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// An error with its causes, on one line.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What stage 1 found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage1 {
    /// The baked-in configuration.
    pub config: AgentConfig,
    /// The kernel command line's parameters.
    pub cmdline: KernelCmdline,
    /// The server to use: the command line's, else the configuration's.
    pub server: Option<String>,
    /// Every module and what became of it, in load order.
    pub modules: Vec<(String, LoadOutcome)>,
}

/// Stage 1 after the mounts, over `root` (`/` on the node): configuration,
/// command line, modules of kernel `release` (handed to `load`). Prints a
/// line per stage and per module.
pub fn run_stage1<W: Write>(
    root: &Path,
    release: &str,
    console: &mut Console<W>,
    load: impl FnMut(&Path) -> Result<(), Errno>,
) -> Result<Stage1, InitError> {
    let config_path = root.join(AGENT_CONFIG_PATH);
    let config = read_config(&config_path)?;
    console.line(format_args!(
        "config /{AGENT_CONFIG_PATH}: image {}, channel {}, {} modules for kernel {}",
        config.image,
        config.channel,
        config.modules.len(),
        config.kernel_release
    ));
    let cmdline_path = root.join("proc/cmdline");
    let text = std::fs::read_to_string(&cmdline_path).map_err(|source| InitError::Read {
        path: cmdline_path.clone(),
        source,
    })?;
    let cmdline = KernelCmdline::parse(&text);
    let server = cmdline.server.clone().or_else(|| config.server.clone());
    console.line(format_args!(
        "kernel command line: server {} ({}), image {}",
        server.as_deref().unwrap_or("none"),
        match (&cmdline.server, &config.server) {
            (Some(_), _) => "ironrack.server=",
            (None, Some(_)) => "agent.json",
            (None, None) => "not given",
        },
        cmdline.image.as_deref().unwrap_or(&config.image),
    ));
    if config.kernel_release != release {
        console.line(format_args!(
            "warning: the modules were taken from kernel {} but kernel {release} is running",
            config.kernel_release
        ));
    }
    let modules = load_modules(root, release, &config, console, load)?;
    Ok(Stage1 {
        config,
        cmdline,
        server,
        modules,
    })
}

fn load_modules<W: Write>(
    root: &Path,
    release: &str,
    config: &AgentConfig,
    console: &mut Console<W>,
    load: impl FnMut(&Path) -> Result<(), Errno>,
) -> Result<Vec<(String, LoadOutcome)>, InitError> {
    let dir = root.join("lib/modules").join(release);
    let index = ModuleIndex::read(&dir).map_err(|source| InitError::Read {
        path: dir.join("modules.dep"),
        source,
    })?;
    let plan = index.plan(&config.modules);
    let outcomes = load_all(&dir, &plan, load, |name, outcome| {
        console.line(format_args!("module {name}: {}", describe(outcome)));
    });
    let count = |f: fn(&LoadOutcome) -> bool| outcomes.iter().filter(|(_, o)| f(o)).count();
    console.line(format_args!(
        "modules: {} loaded, {} already loaded, {} built in, {} failed",
        count(|o| *o == LoadOutcome::Loaded),
        count(|o| *o == LoadOutcome::AlreadyLoaded),
        count(|o| *o == LoadOutcome::Builtin),
        count(|o| !o.is_ok()),
    ));
    Ok(outcomes)
}

fn describe(outcome: LoadOutcome) -> String {
    match outcome {
        LoadOutcome::Loaded => "loaded".into(),
        LoadOutcome::AlreadyLoaded => "already loaded".into(),
        LoadOutcome::Builtin => "built in".into(),
        LoadOutcome::Unknown => "FAILED: not in modules.dep nor built in".into(),
        LoadOutcome::Failed(errno) => format!("FAILED: {errno:?} ({})", errno.desc()),
    }
}

/// Filesystems PID 1 mounts: (source, target, type). securityfs shows
/// the firmware's TPM event log.
const MOUNTS: [(&str, &str, &str); 5] = [
    ("proc", "/proc", "proc"),
    ("sysfs", "/sys", "sysfs"),
    ("securityfs", "/sys/kernel/security", "securityfs"),
    ("devtmpfs", "/dev", "devtmpfs"),
    ("tmpfs", "/run", "tmpfs"),
];

fn mount_all() -> Vec<String> {
    use nix::mount::{MsFlags, mount};
    let mut failures = Vec::new();
    for (source, target, fstype) in MOUNTS {
        let flags = MsFlags::MS_NOSUID
            | if fstype == "devtmpfs" {
                MsFlags::empty()
            } else {
                MsFlags::MS_NODEV
            };
        let _ = std::fs::create_dir_all(target);
        match mount(Some(source), target, Some(fstype), flags, None::<&str>) {
            // Already mounted (a kernel with DEVTMPFS_MOUNT, a re-run).
            Ok(()) | Err(Errno::EBUSY) => {}
            Err(errno) => failures.push(format!("mounting {fstype} on {target}: {errno}")),
        }
    }
    failures
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// PID 1: mounts, stage 1, then sync and power off. Never returns.
pub fn run_as_pid1(version: &str) -> ! {
    let failures = mount_all();
    let release = kernel_release();
    let mut console = Console::new(std::io::stdout());
    console.raw(format_args!(
        "ironrack agent {version}: starting (kernel {release})"
    ));
    if failures.is_empty() {
        console.line("mounted /proc, /sys, /sys/kernel/security, /dev (devtmpfs), /run (tmpfs)");
    }
    for failure in &failures {
        console.line(format_args!("ERROR {failure}"));
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        boot(&release, &mut console)
    }));
    match result {
        Ok(Ok(ready)) => {
            console.line(format_args!(
                "switching root to {}@{} (verified, measured, attested): exec {IMAGE_INIT}",
                ready.image.image.name, ready.image.image.version
            ));
            let err = switch_root(&ready.newroot, IMAGE_INIT);
            console.line(format_args!("ERROR {}; powering off", chain(&err)));
        }
        Ok(Err(err)) => console.line(format_args!("ERROR {err}; powering off")),
        Err(_) => console.line("ERROR the agent panicked (see above); powering off"),
    }
    power_off(&mut console)
}

/// Stage 1 then stage 2; the error as one line with its causes.
fn boot<W: Write>(release: &str, console: &mut Console<W>) -> Result<ReadyRoot, String> {
    let stage1 =
        run_stage1(Path::new("/"), release, console, finit_module).map_err(|e| chain(&e))?;
    run_stage2(
        &stage1,
        console,
        &Stage2Options::node(),
        &mut std::thread::sleep,
    )
    .map_err(|e| chain(&e))
}

/// Syncs and powers off; if the kernel refuses, waits forever (PID 1
/// must not exit).
fn power_off<W: Write>(console: &mut Console<W>) -> ! {
    nix::unistd::sync();
    let Err(errno) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    console.line(format_args!(
        "ERROR power off refused ({errno}); halting here"
    ));
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AgentConfig {
        AgentConfig {
            version: 1,
            image: "gpu-node".into(),
            channel: "stable".into(),
            trust: "/etc/ironrack/trust.json".into(),
            server: Some("http://198.18.0.1:8080".into()),
            modules: vec!["failover".into(), "virtio_net".into(), "tpm_tis".into()],
            kernel_release: "6.1.0-50-cloud-amd64".into(),
        }
    }

    /// A root with the files stage 1 reads. (The real thing runs as PID 1
    /// under qemu in tests/agent_boot.rs.)
    fn root(config: &[u8], cmdline: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let modules = root.join("lib/modules/6.1.0-50-cloud-amd64");
        std::fs::create_dir_all(&modules).unwrap();
        std::fs::create_dir_all(root.join("etc/ironrack")).unwrap();
        std::fs::create_dir_all(root.join("proc")).unwrap();
        std::fs::write(root.join(AGENT_CONFIG_PATH), config).unwrap();
        std::fs::write(root.join("proc/cmdline"), cmdline).unwrap();
        std::fs::write(
            modules.join("modules.dep"),
            "kernel/net/virtio_net.ko: kernel/net/failover.ko\nkernel/net/failover.ko:\n",
        )
        .unwrap();
        std::fs::write(modules.join("modules.builtin"), "kernel/tpm/tpm_tis.ko\n").unwrap();
        dir
    }

    fn run(root: &Path) -> (Result<Stage1, InitError>, String) {
        let mut console = Console::new(Vec::new());
        let result = run_stage1(root, "6.1.0-50-cloud-amd64", &mut console, |file| {
            if file.ends_with("virtio_net.ko") {
                Err(Errno::ENOEXEC)
            } else {
                Ok(())
            }
        });
        (result, String::from_utf8(console.into_inner()).unwrap())
    }

    #[test]
    fn stages_print_a_line_each_and_a_failed_module_does_not_stop_them() {
        let dir = root(
            &config().to_bytes(),
            "console=ttyS0 ironrack.server=http://198.18.0.2:80\n",
        );
        let (result, text) = run(dir.path());
        let stage = result.unwrap();
        assert_eq!(stage.server.as_deref(), Some("http://198.18.0.2:80"));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "ironrack agent: config /etc/ironrack/agent.json: image gpu-node, channel stable, 3 modules for kernel 6.1.0-50-cloud-amd64",
                "ironrack agent: kernel command line: server http://198.18.0.2:80 (ironrack.server=), image gpu-node",
                "ironrack agent: module failover: loaded",
                "ironrack agent: module virtio_net: FAILED: ENOEXEC (Exec format error)",
                "ironrack agent: module tpm_tis: built in",
                "ironrack agent: modules: 1 loaded, 0 already loaded, 1 built in, 1 failed",
            ]
        );
    }

    #[test]
    fn unknown_keys_and_other_versions_are_refused_naming_the_file() {
        let text = String::from_utf8(config().to_bytes()).unwrap();
        let dir = root(text.replacen('{', "{\"debug\": true,", 1).as_bytes(), "");
        let (result, _) = run(dir.path());
        let err = result.unwrap_err();
        assert!(matches!(err, InitError::Config { .. }), "{err:?}");
        let message = chain(&err);
        assert!(
            message.contains("agent.json") && message.contains("debug"),
            "{message}"
        );

        let mut other = config();
        other.version = 2;
        let dir = root(&other.to_bytes(), "");
        let err = run(dir.path()).0.unwrap_err();
        assert!(chain(&err).contains("format version 2"), "{}", chain(&err));
    }
}
