//! The initramfs: the agent as `/init`, busybox, the kernel modules the
//! spec's drivers need (with dependencies, firmware and regenerated
//! indexes), the agent's configuration and trust root, as a deterministic
//! compressed cpio archive.
//!
//! Layout:
//!
//! ```text
//! init -> bin/ironrack          the agent (argv[0] is "/init")
//! lib64/ld-linux-x86-64.so.2    a dynamic agent's interpreter and
//! lib/x86_64-linux-gnu/<lib>    libraries, from the image (see [`agent`])
//! bin/busybox, bin/<applet> -> busybox
//! dev/console (c 5 1), dev/null (c 1 3)   stdio before devtmpfs is mounted
//! proc sys run tmp mnt newroot  mount points
//! lib/modules/<release>/<path>.ko, modules.{dep,alias,softdep,builtin}
//! lib/firmware/<file>           firmware= files of those modules found in the image
//! etc/ironrack/agent.json, etc/ironrack/trust.json
//! etc/udhcpc/default.script     udhcpc's event script (see [`udhcpc`])
//! ```
//!
//! `lib` is a directory here (no merged /usr): the initramfs is not a
//! Debian system, and the kernel's firmware loader and kmod both look in
//! /lib.

pub mod agent;
pub mod config;
pub mod udhcpc;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use agent::{AGENT_PATH, AgentClosure, AgentLibrary};
pub use config::{AGENT_CONFIG_PATH, AgentConfig, TRUST_PATH};
pub use udhcpc::{DHCP_LEASE_PATH, UDHCPC_SCRIPT, UDHCPC_SCRIPT_PATH};

use super::cpio::{Archive, Compression, CpioError, EntryKind, compress};
use super::elf::{ElfError, ElfInfo, ImageRoot, MissingLibrary};
use super::kmod::KmodError;
use super::kmod::depmod::{Closure, ModuleTree};

/// The drivers an initramfs carries when the spec names none: NICs from
/// virtio to 100G, TPM, NVMe/AHCI, and what the agent mounts. virtio_pci
/// is added to the issue's list: virtio_net finds no device under qemu
/// without the virtio PCI transport, which the cloud kernel builds as a
/// module.
pub const DEFAULT_DRIVERS: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "e1000e",
    "igb",
    "ixgbe",
    "i40e",
    "ice",
    "mlx5_core",
    "bnxt_en",
    "tpm_tis",
    "tpm_crb",
    "nvme",
    "ahci",
    "squashfs",
    "overlay",
    "loop",
];

/// busybox applets linked in `bin/` by default: what a shell-level rescue
/// and the agent's helpers (DHCP, mounts, switch_root) use.
pub const DEFAULT_APPLETS: &[&str] = &[
    "cat",
    "dmesg",
    "echo",
    "grep",
    "insmod",
    "ip",
    "ls",
    "lsmod",
    "mkdir",
    "mknod",
    "modprobe",
    "mount",
    "poweroff",
    "reboot",
    "sh",
    "sleep",
    "switch_root",
    "udhcpc",
    "umount",
];

/// Errors assembling an initramfs, naming the file or driver at fault.
#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    /// The module tree could not be read.
    #[error("reading the kernel modules")]
    Modules(#[from] KmodError),
    /// An ELF file (agent, busybox) could not be read.
    #[error("checking an initramfs program")]
    Elf(#[from] ElfError),
    /// The archive could not be built or written.
    #[error("writing the initramfs archive")]
    Cpio(#[from] CpioError),
    /// Drivers the spec asked for that the kernel has neither built in nor
    /// as modules.
    #[error("kernel {release} has no driver named {names:?} (neither built in nor a module)")]
    MissingDrivers {
        /// The kernel release.
        release: String,
        /// The names.
        names: Vec<String>,
    },
    /// A file of the image could not be found or read.
    #[error("image file {path}")]
    ImageFile {
        /// Path inside the image.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The trust root does not verify (bad JSON, too few root signatures).
    #[error("trust root for the initramfs does not verify")]
    Trust(#[source] ironrack_keys::Error),
    /// A dynamic agent needs libraries the image does not have.
    #[error(
        "agent {agent} is dynamically linked and the image lacks libraries it needs: {}",
        list(missing)
    )]
    AgentLibrariesMissing {
        /// The agent (host path).
        agent: PathBuf,
        /// What is missing, and for which file.
        missing: Vec<MissingLibrary>,
    },
    /// The agent (or a library of its closure) needs symbol versions the
    /// image's library does not define: it was built against a newer
    /// library than the image ships.
    #[error(transparent)]
    AgentSymbolVersions(Box<MissingSymbolVersions>),
    /// The agent's closure cannot be laid out in the initramfs.
    #[error("agent {agent}: library {name} {why}")]
    AgentLayout {
        /// The agent (host path).
        agent: PathBuf,
        /// The library name at fault.
        name: String,
        /// Why.
        why: &'static str,
    },
    /// The agent is for a machine whose library directory is not known.
    #[error(
        "agent {agent} is dynamic for ELF machine {machine}, whose library directory is not known"
    )]
    AgentArchitecture {
        /// The agent (host path).
        agent: PathBuf,
        /// e_machine.
        machine: u16,
    },
}

/// Symbol versions a dynamic agent needs that the image lacks.
#[derive(Debug, thiserror::Error)]
#[error(
    "agent {agent}: {needed_by} needs symbol versions {versions:?} from {name}, which the image's {library} ({package}) does not define; build the agent against this glibc or an older one"
)]
pub struct MissingSymbolVersions {
    /// The agent (host path).
    pub agent: PathBuf,
    /// The file that needs them (the agent, or a library of the image).
    pub needed_by: PathBuf,
    /// The versions (`GLIBC_2.38`).
    pub versions: Vec<String>,
    /// The library's DT_NEEDED name (`libc.so.6`).
    pub name: String,
    /// The image's file for it.
    pub library: PathBuf,
    /// The image package and version that ships it.
    pub package: String,
}

fn list(missing: &[MissingLibrary]) -> String {
    missing
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What runs as `/init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitProgram {
    /// The `ironrack` binary (host path): installed as `bin/ironrack`
    /// with `/init` linking to it. A dynamic one brings its libraries
    /// from the image (see [`agent`]).
    Agent(PathBuf),
    /// A shell script run by busybox `sh`: for labs and tests of the boot
    /// path before an agent exists, not for production images.
    Script(String),
}

/// When a requested driver is missing from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingDrivers {
    /// Fail (a spec that names its drivers means them).
    Error,
    /// Record it in the report (the default list covers hardware the
    /// image's kernel flavour may not support, e.g. the cloud kernel has
    /// no Intel or Broadcom NIC drivers).
    Report,
}

/// What to put in the initramfs.
#[derive(Debug, Clone)]
pub struct InitramfsSpec {
    /// The kernel release whose modules to carry.
    pub release: String,
    /// Driver (module) names.
    pub drivers: Vec<String>,
    /// Policy for drivers the kernel lacks.
    pub missing_drivers: MissingDrivers,
    /// `/init`.
    pub init: InitProgram,
    /// busybox applets to link.
    pub applets: Vec<String>,
    /// The agent's configuration (its `modules` and `kernel-release` are
    /// filled in from the closure).
    pub agent: Option<AgentConfig>,
    /// `trust.json` bytes, verified before they are baked in.
    pub trust: Option<Vec<u8>>,
    /// mtime of every entry (SOURCE_DATE_EPOCH).
    pub mtime: u32,
}

impl InitramfsSpec {
    /// The default drivers and applets for `release`, with `init`.
    pub fn new(release: &str, init: InitProgram, mtime: u32) -> Self {
        Self {
            release: release.to_owned(),
            drivers: DEFAULT_DRIVERS.iter().map(|d| (*d).to_owned()).collect(),
            missing_drivers: MissingDrivers::Report,
            init,
            applets: DEFAULT_APPLETS.iter().map(|a| (*a).to_owned()).collect(),
            agent: None,
            trust: None,
            mtime,
        }
    }
}

/// What went into the initramfs, for the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct InitramfsReport {
    /// The module closure (load order, built in, missing).
    pub modules: Closure,
    /// Firmware files carried (paths under /lib/firmware).
    pub firmware: Vec<String>,
    /// firmware= entries not found in the image: (module, file). The
    /// kernel asks for them only on hardware that needs them.
    pub missing_firmware: Vec<(String, String)>,
    /// The interpreter and libraries shipped for a dynamic agent (`None`
    /// for a static agent or a script).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_closure: Option<AgentClosure>,
}

/// An assembled initramfs.
#[derive(Debug, Clone)]
pub struct Initramfs {
    /// The archive.
    pub archive: Archive,
    /// What it holds.
    pub report: InitramfsReport,
    mtime: u32,
}

impl Initramfs {
    /// The compressed archive; the same inputs give the same bytes.
    pub fn to_bytes(&self, compression: Compression) -> Result<Vec<u8>, InitramfsError> {
        let mut raw = Vec::new();
        self.archive.write_newc(self.mtime, &mut raw)?;
        Ok(compress(&raw, compression)?)
    }
}

fn image_file(root: &ImageRoot, path: &Path) -> Result<PathBuf, InitramfsError> {
    root.resolve(path)
        .map(|(host, _)| host)
        .map_err(|source| InitramfsError::ImageFile {
            path: path.to_owned(),
            source,
        })
}

/// Assembles the initramfs from an image root (installed rootfs with the
/// kernel and busybox-static) and the spec.
pub fn assemble(root: &ImageRoot, spec: &InitramfsSpec) -> Result<Initramfs, InitramfsError> {
    let mut archive = Archive::new();
    for dir in ["dev", "proc", "sys", "run", "mnt", "newroot", "etc", "root"] {
        archive.dir(dir, 0o755)?;
    }
    archive.dir("tmp", 0o1777)?;
    archive.add(
        "dev/console",
        0o600,
        EntryKind::CharDevice { major: 5, minor: 1 },
    )?;
    archive.add(
        "dev/null",
        0o666,
        EntryKind::CharDevice { major: 1, minor: 3 },
    )?;
    add_busybox(root, spec, &mut archive)?;
    if spec.applets.iter().any(|a| a == "udhcpc") {
        archive.dir("etc/udhcpc", 0o755)?;
        archive.file(UDHCPC_SCRIPT_PATH, 0o755, UDHCPC_SCRIPT.as_bytes().to_vec())?;
    }
    let agent_closure = match &spec.init {
        InitProgram::Agent(path) => agent::add_agent(root, path, &mut archive)?,
        InitProgram::Script(text) => {
            archive.file("init", 0o755, text.as_bytes().to_vec())?;
            None
        }
    };
    let tree = ModuleTree::scan(root, &spec.release)?;
    let closure = tree.closure(&spec.drivers);
    if spec.missing_drivers == MissingDrivers::Error && !closure.missing.is_empty() {
        return Err(InitramfsError::MissingDrivers {
            release: spec.release.clone(),
            names: closure.missing.clone(),
        });
    }
    if !closure.missing.is_empty() {
        tracing::warn!(release = %spec.release, missing = ?closure.missing, "drivers not in this kernel: left out of the initramfs");
    }
    let (firmware, missing_firmware) = add_modules(root, &tree, &closure, &mut archive)?;
    add_agent_config(spec, &closure, &mut archive)?;
    Ok(Initramfs {
        archive,
        report: InitramfsReport {
            modules: closure,
            firmware,
            missing_firmware,
            agent_closure,
        },
        mtime: spec.mtime,
    })
}

fn add_busybox(
    root: &ImageRoot,
    spec: &InitramfsSpec,
    archive: &mut Archive,
) -> Result<(), InitramfsError> {
    let busybox = image_file(root, Path::new("/bin/busybox"))?;
    ElfInfo::read(&busybox)?.require_static(&busybox)?;
    archive.host_file("bin/busybox", 0o755, &busybox)?;
    let applets: BTreeSet<&str> = spec.applets.iter().map(String::as_str).collect();
    for applet in applets {
        archive.symlink(&format!("bin/{applet}"), "busybox")?;
    }
    // Scripts say #!/bin/sh; sbin tools (modprobe, switch_root) are found
    // through PATH, which the init sets.
    archive.symlink("sbin", "bin")?;
    Ok(())
}

type Firmware = (Vec<String>, Vec<(String, String)>);

fn add_modules(
    root: &ImageRoot,
    tree: &ModuleTree,
    closure: &Closure,
    archive: &mut Archive,
) -> Result<Firmware, InitramfsError> {
    let base = format!("lib/modules/{}", tree.release);
    let names: BTreeSet<String> = closure.load_order.iter().cloned().collect();
    for name in &names {
        let module = &tree.modules[name];
        archive.host_file(
            &format!("{base}/{}", module.relative),
            0o644,
            &module.module.path,
        )?;
    }
    for (index, text) in tree.index_files(&names) {
        archive.file(&format!("{base}/{index}"), 0o644, text.into_bytes())?;
    }
    let modinfo = tree.dir.join("modules.builtin.modinfo");
    if modinfo.is_file() {
        archive.host_file(&format!("{base}/modules.builtin.modinfo"), 0o644, &modinfo)?;
    }
    let mut carried = Vec::new();
    let mut missing = Vec::new();
    for name in &names {
        for file in &tree.modules[name].module.modinfo.firmware {
            match find_firmware(root, file) {
                Some((stored, host)) => {
                    if archive.get(&format!("lib/firmware/{stored}")).is_none() {
                        archive.host_file(&format!("lib/firmware/{stored}"), 0o644, &host)?;
                        carried.push(stored);
                    }
                }
                None => missing.push((name.clone(), file.clone())),
            }
        }
    }
    carried.sort();
    Ok((carried, missing))
}

/// A firmware file in the image, plain or xz-compressed (the cloud
/// kernel's loader reads both): (name under /lib/firmware, host path).
fn find_firmware(root: &ImageRoot, file: &str) -> Option<(String, PathBuf)> {
    if file.split('/').any(|part| part == ".." || part.is_empty()) {
        return None;
    }
    ["", ".xz"].iter().find_map(|suffix| {
        let name = format!("{file}{suffix}");
        let (host, _) = root.resolve(&Path::new("/lib/firmware").join(&name)).ok()?;
        host.is_file().then_some((name, host))
    })
}

fn add_agent_config(
    spec: &InitramfsSpec,
    closure: &Closure,
    archive: &mut Archive,
) -> Result<(), InitramfsError> {
    if let Some(trust) = &spec.trust {
        ironrack_keys::Trust::from_installed(trust, &[]).map_err(InitramfsError::Trust)?;
        archive.file(TRUST_PATH, 0o644, trust.clone())?;
    }
    if let Some(agent) = &spec.agent {
        let mut agent = agent.clone();
        agent.modules = closure.load_order.clone();
        agent.kernel_release = spec.release.clone();
        archive.file(AGENT_CONFIG_PATH, 0o644, agent.to_bytes())?;
    }
    Ok(())
}
