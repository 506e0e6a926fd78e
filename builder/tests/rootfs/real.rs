//! A real image from real bookworm packages: installed, configured by its
//! own dpkg, audited, and usable.

use std::path::Path;
use std::process::Command;

use indicatif::ProgressBar;
use ironrack_builder::rootfs::{InstallOptions, Target, install};

use super::support::{BASE, deb_name, real_debs, root_or_skip, scratch, stdout};

#[test]
fn required_set_installs_configures_and_audits_clean() {
    if !root_or_skip("required_set_installs_configures_and_audits_clean") {
        return;
    }
    let debs = real_debs("required", BASE);
    let work = scratch("required");
    let root = work.join("root");
    std::fs::create_dir(&root).unwrap();
    let target = Target::open(&root).unwrap();
    let options = InstallOptions {
        jobs: 2,
        architecture: "amd64".into(),
        epoch: 1_700_000_000,
        log_dir: work.clone(),
    };
    let started = std::time::Instant::now();
    let report = install(&target, &debs, &options, &ProgressBar::hidden())
        .unwrap_or_else(|e| panic!("install failed: {e}"));
    eprintln!(
        "installed {} packages in {:?} (unpack {:?}, configure {:?})",
        report.packages.len(),
        started.elapsed(),
        report.unpack_time,
        report.configure_time
    );
    assert!(report.redirected.is_empty(), "{:?}", report.redirected);

    // The image's own tools agree, run by chroot(8) rather than our sandbox.
    let audit = stdout(Command::new("chroot").arg(&root).args(["dpkg", "--audit"]));
    assert_eq!(audit, "", "dpkg --audit inside the image");
    let listed = stdout(Command::new("chroot").arg(&root).args([
        "dpkg-query",
        "-W",
        "-f=${db:Status-Abbrev} ${Package}\n",
    ]));
    let mut installed: Vec<String> = listed
        .lines()
        .map(|l| {
            assert!(l.starts_with("ii "), "not installed: {l}");
            l[3..].trim().to_owned()
        })
        .collect();
    installed.sort();
    let mut wanted: Vec<String> = debs.iter().map(|d| deb_name(d)).collect();
    wanted.sort();
    assert_eq!(
        installed, wanted,
        "dpkg -l lists exactly the requested packages"
    );
    let dpkg_l = stdout(Command::new("chroot").arg(&root).args(["dpkg", "-l"]));
    assert_eq!(
        dpkg_l.lines().filter(|l| l.starts_with("ii ")).count(),
        wanted.len()
    );
    stdout(
        Command::new("chroot")
            .arg(&root)
            .args(["/bin/sh", "-c", "true"]),
    );
    // Merged /usr as debootstrap makes it.
    for dir in ["bin", "sbin", "lib", "lib64"] {
        let link = std::fs::read_link(root.join(dir)).unwrap();
        assert_eq!(link, Path::new("usr").join(dir));
    }
    // base-passwd's preinst ran (it writes /etc/passwd before anything).
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
    // No policy-rc.d left behind, nothing mounted inside.
    assert!(!root.join("usr/sbin/policy-rc.d").exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(root.to_str().unwrap()),
        "mounts left on the host:\n{mounts}"
    );
}
