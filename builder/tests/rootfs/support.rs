//! Shared helpers: root checks, real bookworm .debs fetched with apt, and
//! running commands.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// Whether we run as root; prints a loud SKIP line when not.
pub fn root_or_skip(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("\n*** SKIP {test}: needs root (chown, mknod, namespaces, mounts) ***\n");
    }
    root
}

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// stdout of a successful command, as text.
pub fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

static FETCH: Mutex<()> = Mutex::new(());

/// A scratch directory under the test target directory, emptied first.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("rootfs")
        .join(name);
    if dir.exists() {
        // A previous run may have left a root full of read-only dirs.
        run(Command::new("rm").arg("-rf").arg(&dir));
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The base set of the real-image tests: bookworm's Priority: required
/// packages plus usr-is-merged (our merged /usr makes usrmerge unneeded).
pub const BASE: &[&str] = &["?priority(required)", "usr-is-merged"];

/// Real .debs of `request` and its dependency closure (no recommends),
/// as the host's apt (bookworm, -updates, -security) resolves it from an
/// empty system, downloaded once into the test target directory. Sorted by
/// package name, as a lock lists them.
pub fn real_debs(set: &str, request: &[&str]) -> Vec<PathBuf> {
    let _one_at_a_time = FETCH.lock().unwrap_or_else(|p| p.into_inner());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("rootfs-debs")
        .join(set);
    let manifest = dir.join(".complete");
    if let Ok(text) = std::fs::read_to_string(&manifest) {
        return text.lines().map(|l| dir.join(l)).collect();
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let empty_status = dir.join("empty-status");
    std::fs::write(&empty_status, "").unwrap();
    let plan = stdout(
        Command::new("apt-get")
            .arg(format!("-oDir::State::status={}", empty_status.display()))
            .args(["-s", "-q", "install", "--no-install-recommends"])
            .args(request),
    );
    let mut wanted: Vec<String> = plan
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("Inst ")?;
            let mut words = rest.split_whitespace();
            let name = words.next()?;
            let version = words.next()?.trim_start_matches('(');
            Some(format!("{name}={version}"))
        })
        .collect();
    wanted.sort();
    assert!(
        !wanted.is_empty(),
        "apt planned nothing for {request:?}:\n{plan}"
    );
    run(Command::new("apt-get")
        .args(["download", "-q"])
        .args(&wanted)
        .current_dir(&dir));
    std::fs::remove_file(&empty_status).unwrap();
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".deb"))
        .map(|n| (n.split('_').next().unwrap_or("").to_owned(), n))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        wanted.len(),
        "apt-get download fetched a different set"
    );
    let list: Vec<String> = files.into_iter().map(|(_, n)| n).collect();
    std::fs::write(&manifest, list.join("\n") + "\n").unwrap();
    list.iter().map(|n| dir.join(n)).collect()
}

/// The package name of a .deb file (`name_version_arch.deb`).
pub fn deb_name(path: &Path) -> String {
    path.file_name()
        .unwrap()
        .to_string_lossy()
        .split('_')
        .next()
        .unwrap()
        .to_owned()
}

/// The image set of the end-to-end test (tests/build_real.rs, which
/// includes this file): the base plus what a node runs (systemd, sshd, ping
/// with its file capability, kmod, busybox).
#[allow(dead_code)]
pub const IMAGE: &[&str] = &[
    "?priority(required)",
    "usr-is-merged",
    "systemd-sysv",
    "openssh-server",
    "iputils-ping",
    "kmod",
    "busybox-static",
];
