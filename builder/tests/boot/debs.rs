//! Real Debian packages for the boot tests: fetched once with `apt-get
//! download` (non-free ones through a private apt configuration that adds
//! the non-free components, leaving the host's sources alone), unpacked
//! into an image-like root with merged /usr (`lib -> usr/lib`, as the
//! builder lays it out) by `dpkg-deb --fsys-tarfile | tar -x
//! --keep-directory-symlink`, and cached under the test target directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

static FETCH: Mutex<()> = Mutex::new(());

/// The kernel ABI the tests boot and check against (facts.md: the NVIDIA
/// 535 open modules build against it).
pub const RELEASE: &str = "6.1.0-50-cloud-amd64";
/// Its package version.
pub const KERNEL_VERSION: &str = "6.1.176-1";
/// A newer ABI, for the mismatch tests.
pub const OTHER_RELEASE: &str = "6.1.0-56-cloud-amd64";
/// Its package version.
pub const OTHER_VERSION: &str = "6.1.192-2";
/// The NVIDIA userspace release of the closure tests.
pub const NVIDIA_VERSION: &str = "535.261.03-1";

/// Which apt sources a package comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Sources {
    /// The host's configuration (main).
    Host,
    /// main, contrib, non-free, non-free-firmware (private configuration).
    NonFree,
}

/// True, with a loud SKIP line, when not root. Written to stderr directly
/// so the harness's capture does not swallow it.
pub fn skip_unless_root(test: &str, why: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIP {test}: {why} needs root (CI runs as root) *** NOT TESTED ***"
    );
    true
}

pub fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("boot-debs")
}

/// apt options for a private configuration with the non-free components;
/// its lists are fetched on first use.
fn nonfree_apt() -> Vec<String> {
    let dir = cache().join("apt");
    let opts = vec![
        "-o".to_owned(),
        "Dir::Etc::SourceList=/dev/null".to_owned(),
        "-o".to_owned(),
        format!("Dir::Etc::SourceParts={}", dir.join("sources.d").display()),
        "-o".to_owned(),
        format!("Dir::State::Lists={}", dir.join("lists").display()),
        "-o".to_owned(),
        format!("Dir::Cache={}", dir.join("cache").display()),
        "-o".to_owned(),
        "APT::Sandbox::User=root".to_owned(),
    ];
    if dir.join(".complete").is_file() {
        return opts;
    }
    for sub in ["sources.d", "lists/partial", "cache/archives/partial"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let sources = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n\
Components: main contrib non-free non-free-firmware\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\
Components: main contrib non-free non-free-firmware\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";
    std::fs::write(dir.join("sources.d/nonfree.sources"), sources).unwrap();
    run(Command::new("apt-get").args(&opts).args(["update", "-q"]));
    std::fs::write(dir.join(".complete"), b"").unwrap();
    opts
}

/// The packages (`name` or `name=version`) unpacked together into one
/// root with merged /usr; fetched on first use, cached under `key`.
pub fn root(key: &str, packages: &[&str], sources: Sources) -> PathBuf {
    unpacked_root(key, packages, sources, false)
}

/// Like [`root`], and the packages recorded in `var/lib/dpkg` (status
/// paragraph from `dpkg-deb -f`, file list from `dpkg-deb -c`), so that
/// dpkg-query and the builder can tell which package ships a file.
pub fn root_with_dpkg_db(key: &str, packages: &[&str], sources: Sources) -> PathBuf {
    unpacked_root(key, packages, sources, true)
}

fn unpacked_root(key: &str, packages: &[&str], sources: Sources, dpkg_db: bool) -> PathBuf {
    let _one_at_a_time = FETCH
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = cache().join(key);
    if dir.join(".complete").is_file() {
        return dir;
    }
    let work = cache().join(format!("{key}.partial"));
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(&dir);
    let download = work.join("debs");
    let root = work.join("root");
    std::fs::create_dir_all(&download).unwrap();
    for d in ["usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for link in ["bin", "sbin", "lib", "lib64"] {
        std::os::unix::fs::symlink(format!("usr/{link}"), root.join(link)).unwrap();
    }
    let opts = match sources {
        Sources::Host => Vec::new(),
        Sources::NonFree => nonfree_apt(),
    };
    run(Command::new("apt-get")
        .args(&opts)
        .args(["download", "-q"])
        .args(packages)
        .current_dir(&download));
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&download)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort();
    assert_eq!(debs.len(), packages.len(), "apt-get download {packages:?}");
    for deb in &debs {
        let script = format!(
            "dpkg-deb --fsys-tarfile '{}' | tar -x --keep-directory-symlink -C '{}'",
            deb.display(),
            root.display()
        );
        run(Command::new("sh").args(["-c", &script]));
    }
    if dpkg_db {
        record_in_dpkg_db(&root, &debs);
    }
    std::fs::rename(&root, &dir).unwrap();
    let names: Vec<String> = debs
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    std::fs::write(dir.join(".complete"), names.join("\n")).unwrap();
    let _ = std::fs::remove_dir_all(&work);
    dir
}

/// `var/lib/dpkg/status` and `info/PKG.list` for `debs`, as dpkg
/// records installed packages (`PKG` is `name:arch` for Multi-Arch: same).
fn record_in_dpkg_db(root: &Path, debs: &[PathBuf]) {
    let admin = root.join("var/lib/dpkg");
    std::fs::create_dir_all(admin.join("info")).unwrap();
    let mut status = String::new();
    for deb in debs {
        let control =
            String::from_utf8(run(Command::new("dpkg-deb").arg("-f").arg(deb)).stdout).unwrap();
        let field = |name: &str| {
            control
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .map(str::to_owned)
        };
        let package = field("Package").unwrap();
        let key = match field("Multi-Arch").as_deref() {
            Some("same") => format!("{package}:{}", field("Architecture").unwrap()),
            _ => package.clone(),
        };
        let (first, rest) = control.split_once('\n').unwrap();
        status.push_str(&format!(
            "{first}\nStatus: install ok installed\n{}\n\n",
            rest.trim_end()
        ));
        let listing = String::from_utf8(
            run(Command::new("sh").arg("-c").arg(format!(
                "dpkg-deb --fsys-tarfile '{}' | tar -t",
                deb.display()
            )))
            .stdout,
        )
        .unwrap();
        let list: String = listing
            .lines()
            .map(|l| match l.trim_start_matches('.').trim_end_matches('/') {
                "" => "/.\n".to_owned(),
                path => format!("{path}\n"),
            })
            .collect();
        std::fs::write(admin.join("info").join(format!("{key}.list")), list).unwrap();
    }
    std::fs::write(admin.join("status"), status).unwrap();
}

/// An image-like root: the cloud kernel package at [`KERNEL_VERSION`] and
/// busybox-static (what the initramfs takes from the image).
pub fn kernel_root() -> PathBuf {
    root(
        "kernel-50-busybox",
        &[
            &format!("linux-image-{RELEASE}={KERNEL_VERSION}"),
            "busybox-static",
        ],
        Sources::Host,
    )
}

/// [`kernel_root`] plus the C runtime a dynamic agent needs (libc6,
/// libgcc-s1), recorded in a dpkg database.
pub fn kernel_libc_root() -> PathBuf {
    root_with_dpkg_db(
        "kernel-50-busybox-libc",
        &[
            &format!("linux-image-{RELEASE}={KERNEL_VERSION}"),
            "busybox-static",
            "libc6",
            "libgcc-s1",
        ],
        Sources::Host,
    )
}

/// Debian 12's systemd-stub.
pub fn stub() -> PathBuf {
    root("systemd-boot-efi", &["systemd-boot-efi"], Sources::Host)
        .join("usr/lib/systemd/boot/efi/linuxx64.efi.stub")
}

/// The kernel image (signed EFI PE) of [`kernel_root`].
pub fn vmlinuz() -> PathBuf {
    kernel_root().join(format!("boot/vmlinuz-{RELEASE}"))
}

/// The headers flavour directory of a release.
pub fn headers(release: &str, version: &str) -> PathBuf {
    let root = root(
        &format!("headers-{release}"),
        &[&format!("linux-headers-{release}={version}")],
        Sources::Host,
    );
    root.join(format!("usr/src/linux-headers-{release}"))
}

/// The kernel's module directory.
pub fn modules_dir() -> PathBuf {
    kernel_root().join(format!("usr/lib/modules/{RELEASE}"))
}
