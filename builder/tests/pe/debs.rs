//! Real Debian binaries for the tests: downloaded once with `apt-get
//! download`, unpacked with `dpkg-deb -x`, and cached under the test target
//! directory so reruns do not fetch again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

static FETCH: Mutex<()> = Mutex::new(());

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The directory `package` (at `version`, or apt's candidate) is unpacked
/// in; fetched on first use.
pub fn unpacked(package: &str, version: Option<&str>) -> PathBuf {
    let _one_at_a_time = FETCH
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debs");
    let key = match version {
        Some(v) => format!("{package}_{v}"),
        None => package.to_owned(),
    };
    let dir = cache.join(&key);
    if dir.join(".complete").is_file() {
        return dir;
    }
    let download = cache.join(format!("{key}.download"));
    let _ = std::fs::remove_dir_all(&download);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&download).unwrap();
    let spec = match version {
        Some(v) => format!("{package}={v}"),
        None => package.to_owned(),
    };
    run(Command::new("apt-get")
        .args(["download", "-q", &spec])
        .current_dir(&download));
    let deb = std::fs::read_dir(&download)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .unwrap_or_else(|| panic!("apt-get download {spec} produced no .deb"));
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(download.join("root")));
    std::fs::rename(download.join("root"), &dir).unwrap();
    std::fs::write(
        dir.join(".complete"),
        deb.file_name().unwrap().as_encoded_bytes(),
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&download);
    dir
}

/// Debian 12's iPXE, the build whose snponly.efi the fixture boot used.
pub const IPXE_VERSION: &str = "1.0.0+git-20190125.36a4c85-5.1";
/// The signed cloud kernel the fixture's UKI carried.
pub const KERNEL_PACKAGE: &str = "linux-image-6.1.0-56-cloud-amd64";
/// Its version in bookworm-security.
pub const KERNEL_VERSION: &str = "6.1.192-2";
