//! The real `ironrack` binary as the initramfs's `/init`: it is glibc
//! dynamic, so the builder ships its library closure taken from a real
//! bookworm image root (the cloud kernel, busybox-static, libc6,
//! libgcc-s1, recorded in a dpkg database). The archive is listed back by
//! GNU cpio, then booted under qemu (TCG) with the Debian cloud kernel:
//! the console must show the agent starting, its module lines, stage 2's
//! refusal of an image named without a version, and qemu must exit by
//! itself (power off) with no kernel panic. One boot.
//!
//! The dev build carries ~200 MB of debug info; a copy stripped of it
//! (binutils `strip --strip-debug`) goes into the initramfs, as a release
//! build (no debug info) would.

#![allow(clippy::print_stderr)]

#[allow(dead_code)]
#[path = "../builder/tests/boot/debs.rs"]
mod debs;
#[allow(dead_code)]
#[path = "../builder/tests/boot/qemu_support.rs"]
mod qemu_support;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use ironrack_builder::boot::cpio::{Compression, DEFAULT_COMPRESSION};
use ironrack_builder::boot::elf::{ElfInfo, ImageRoot};
use ironrack_builder::boot::initramfs::{
    AgentConfig, InitProgram, Initramfs, InitramfsSpec, TRUST_PATH, assemble,
};
use ironrack_pxe::testkit::SigningWorld;

use debs::{RELEASE, run};

const EPOCH: u32 = 1_700_000_000;
const SERVER: &str = "http://198.18.0.1:8080";

/// The image root the initramfs is taken from.
fn image() -> PathBuf {
    debs::kernel_libc_root()
}

/// The test's scratch directory (kept for whoever debugs a failure).
fn work() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("agent-boot");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `ironrack` without its debug info.
fn agent() -> &'static Path {
    static AGENT: OnceLock<PathBuf> = OnceLock::new();
    AGENT.get_or_init(|| {
        let out = work().join("ironrack");
        run(Command::new("strip")
            .args(["--strip-debug", "-o"])
            .arg(&out)
            .arg(env!("CARGO_BIN_EXE_ironrack")));
        out
    })
}

/// The spec (one trust root per test process: the same inputs each call).
fn spec() -> InitramfsSpec {
    static SPEC: OnceLock<InitramfsSpec> = OnceLock::new();
    SPEC.get_or_init(make_spec).clone()
}

fn make_spec() -> InitramfsSpec {
    let mut spec = InitramfsSpec::new(RELEASE, InitProgram::Agent(agent().to_owned()), EPOCH);
    spec.agent = Some(AgentConfig {
        version: 1,
        image: "gpu-node".into(),
        channel: "stable".into(),
        trust: format!("/{TRUST_PATH}"),
        server: None,
        modules: Vec::new(),
        kernel_release: String::new(),
    });
    let world = SigningWorld::new(&work().join("keys")).unwrap();
    spec.trust = Some(std::fs::read(&world.trust_path).unwrap());
    spec
}

/// The initramfs (assembled once per test process).
fn initramfs() -> &'static Initramfs {
    static INITRAMFS: OnceLock<Initramfs> = OnceLock::new();
    INITRAMFS.get_or_init(|| assemble(&ImageRoot::new(image()), &spec()).unwrap())
}

/// DT_NEEDED names of `file` and of its libraries in the image, transitively.
fn needed_closure(file: &Path, lib_dir: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut queue = ElfInfo::read(file).unwrap().needed;
    while let Some(name) = queue.pop() {
        if names.insert(name.clone()) {
            queue.extend(ElfInfo::read(&lib_dir.join(&name)).unwrap().needed);
        }
    }
    names
}

#[test]
fn the_real_binary_goes_in_with_its_closure_from_the_image() {
    let initramfs = initramfs();
    let raw = initramfs.to_bytes(Compression::None).unwrap();
    let path = work().join("initramfs.cpio");
    std::fs::write(&path, &raw).unwrap();
    let listing = run(Command::new("cpio")
        .args(["--quiet", "-t", "-F"])
        .arg(&path));
    let listed: BTreeSet<String> = String::from_utf8(listing.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let lib_dir = image().join("usr/lib/x86_64-linux-gnu");
    let needed = needed_closure(agent(), &lib_dir);
    for name in [
        "libc.so.6",
        "libm.so.6",
        "libgcc_s.so.1",
        "ld-linux-x86-64.so.2",
    ] {
        assert!(needed.contains(name), "ironrack needs {name}: {needed:?}");
    }
    for name in &needed {
        assert!(
            listed.contains(&format!("lib/x86_64-linux-gnu/{name}")),
            "{name} in the archive"
        );
    }
    for entry in [
        "init",
        "bin/ironrack",
        "lib64/ld-linux-x86-64.so.2",
        "etc/ironrack/agent.json",
        "etc/ironrack/trust.json",
    ] {
        assert!(listed.contains(entry), "{entry} in {listed:?}");
    }
    // Each library is the image's file, and the report says so.
    let closure = initramfs.report.agent_closure.as_ref().unwrap();
    let reported: BTreeSet<String> = closure
        .libraries
        .iter()
        .map(|l| {
            l.path
                .trim_start_matches("lib/x86_64-linux-gnu/")
                .to_owned()
        })
        .collect();
    assert_eq!(reported, needed);
    let entries = ironrack_builder::boot::cpio::read_newc(&raw).unwrap();
    for library in &closure.libraries {
        let entry = entries.iter().find(|e| e.name == library.path).unwrap();
        let source = image().join(library.source.strip_prefix("/").unwrap());
        assert!(
            entry.data == std::fs::read(&source).unwrap(),
            "{} is not the image's {}",
            library.path,
            source.display()
        );
        let package = library.package.as_ref().unwrap();
        assert!(
            ["libc6", "libgcc-s1"].contains(&package.package.as_str()),
            "{package}"
        );
    }
    // The same inputs give the same bytes.
    let again = assemble(&ImageRoot::new(image()), &spec()).unwrap();
    assert!(
        again.to_bytes(Compression::None).unwrap() == raw,
        "two assemblies of the same inputs differ"
    );
}

fn qemu_present() -> bool {
    let ok = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIP the_agent_boots_as_pid1_and_powers_off: qemu-system-x86 missing (scripts/deps.sh) *** NOT TESTED ***"
        );
    }
    ok
}

#[test]
fn the_agent_boots_as_pid1_and_powers_off() {
    if !qemu_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("initrd.img");
    std::fs::write(&initrd, initramfs().to_bytes(DEFAULT_COMPRESSION).unwrap()).unwrap();
    let kernel = image().join(format!("boot/vmlinuz-{RELEASE}"));
    let args: Vec<String> = vec![
        "-kernel".into(),
        kernel.display().to_string(),
        "-initrd".into(),
        initrd.display().to_string(),
        "-append".into(),
        format!("console=ttyS0 panic=-1 ironrack.server={SERVER} ironrack.image=gpu-node"),
    ];
    let log = qemu_support::run_qemu("agent", &args, &dir.path().join("serial.log"));
    let lines: Vec<&str> = log.lines().map(|l| l.trim_end_matches('\r')).collect();
    let has = |wanted: &str| lines.contains(&wanted);
    let starting = format!(
        "ironrack agent {}: starting (kernel {RELEASE})",
        env!("CARGO_PKG_VERSION")
    );
    assert!(has(&starting), "{starting:?} in the serial log:\n{log}");
    assert!(
        has(
            "ironrack agent: mounted /proc, /sys, /sys/kernel/security, /dev (devtmpfs), /run (tmpfs)"
        ),
        "{log}"
    );
    assert!(
        has(&format!(
            "ironrack agent: kernel command line: server {SERVER} (ironrack.server=), image gpu-node"
        )),
        "{log}"
    );
    // Every module of the closure the builder recorded, in its order.
    let load_order = &initramfs().report.modules.load_order;
    for module in [
        "virtio_pci",
        "virtio_net",
        "net_failover",
        "failover",
        "squashfs",
        "overlay",
    ] {
        assert!(
            load_order.iter().any(|m| m == module),
            "{module} in {load_order:?}"
        );
    }
    let loaded: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("ironrack agent: module "))
        .filter_map(|l| l.strip_suffix(": loaded"))
        .collect();
    assert_eq!(loaded, *load_order, "module lines in:\n{log}");
    assert!(
        has(&format!(
            "ironrack agent: modules: {} loaded, 0 already loaded, 0 built in, 0 failed",
            load_order.len()
        )),
        "{log}"
    );
    let failed: Vec<&&str> = lines.iter().filter(|l| l.contains("FAILED")).collect();
    assert!(failed.is_empty(), "module failures: {failed:?}");
    // Stage 2 refuses an image named without its version before it
    // touches the network (tests/agent_net_boot.rs boots the full path).
    assert!(
        has(
            "ironrack agent: ERROR image: ironrack.image=\"gpu-node\" is not NAME@VERSION; powering off"
        ),
        "{log}"
    );
    for bad in ["Kernel panic", "Attempted to kill init"] {
        assert!(!log.contains(bad), "{bad:?} in the serial log:\n{log}");
    }
    assert!(log.contains("reboot: Power down"), "powered off:\n{log}");
}
