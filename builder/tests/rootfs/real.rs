//! A real image from real bookworm packages (the required set, systemd,
//! sshd, ping, kmod, busybox): installed, configured by its own dpkg,
//! customised, normalised and archived; checked with the image's own
//! tools (run by chroot(8), not by our sandbox) and with GNU tar, getcap
//! and getfattr.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use indicatif::ProgressBar;
use ironrack_builder::rootfs::customize::customize;
use ironrack_builder::rootfs::fsimage::tar;
use ironrack_builder::rootfs::normalize::normalize;
use ironrack_builder::rootfs::{InstallOptions, PackageFile, Target, install};

use super::support::{
    IMAGE, deb_name, demo_customization, real_debs, root_or_skip, scratch, stdout,
};

const EPOCH: u64 = 1_717_200_000;

#[test]
fn real_image_installs_configures_audits_and_keeps_capabilities() {
    if !root_or_skip("real_image_installs_configures_audits_and_keeps_capabilities") {
        return;
    }
    let debs = real_debs("image", IMAGE);
    let work = scratch("image");
    let root = work.join("root");
    std::fs::create_dir(&root).unwrap();
    let target = Target::open(&root).unwrap();
    let options = InstallOptions {
        jobs: 2,
        architecture: "amd64".into(),
        epoch: EPOCH,
        log_dir: work.clone(),
    };
    let started = std::time::Instant::now();
    let report = install(
        &target,
        &PackageFile::open_all(&debs).unwrap(),
        &options,
        &ProgressBar::hidden(),
    )
    .unwrap_or_else(|e| panic!("install failed: {e}"));
    eprintln!(
        "installed {} packages in {:?} (unpack {:?}, configure {:?})",
        report.packages.len(),
        started.elapsed(),
        report.unpack_time,
        report.configure_time
    );
    assert!(report.redirected.is_empty(), "{:?}", report.redirected);
    customize(&target, &demo_customization(&work), EPOCH, &work)
        .unwrap_or_else(|e| panic!("customize: {e}"));
    normalize(&target, EPOCH).unwrap();

    // The image's own dpkg agrees: audit clean, exactly the packages asked.
    let audit = stdout(Command::new("chroot").arg(&root).args(["dpkg", "--audit"]));
    assert_eq!(audit, "", "dpkg --audit inside the image");
    let listed = stdout(Command::new("chroot").arg(&root).args(["dpkg", "-l"]));
    let body: Vec<&str> = listed
        .lines()
        .skip_while(|l| !l.starts_with("+++"))
        .skip(1)
        .collect();
    assert!(
        body.iter().all(|l| l.starts_with("ii ")),
        "not all installed:\n{listed}"
    );
    let mut installed: Vec<String> = body
        .iter()
        .map(|l| {
            l.split_whitespace()
                .nth(1)
                .unwrap()
                .split(':')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    installed.sort();
    let mut wanted: Vec<String> = debs.iter().map(|d| deb_name(d)).collect();
    wanted.sort();
    assert_eq!(
        installed, wanted,
        "dpkg -l lists exactly the requested packages"
    );
    stdout(
        Command::new("chroot")
            .arg(&root)
            .args(["/bin/sh", "-c", "true"]),
    );

    // Merged /usr, as debootstrap makes it.
    for dir in ["bin", "sbin", "lib", "lib64"] {
        assert_eq!(
            std::fs::read_link(root.join(dir)).unwrap(),
            Path::new("usr").join(dir)
        );
    }
    // iputils-ping's postinst sets cap_net_raw with setcap: it is there.
    let getcap = stdout(Command::new("getcap").arg(root.join("usr/bin/ping")));
    assert!(getcap.contains("cap_net_raw=ep"), "getcap: {getcap}");

    // Customisation: hostname, overlay, user with key, unit enabled.
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "node\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/motd")).unwrap(),
        "ironrack test node\n"
    );
    assert_eq!(
        std::fs::read_link(root.join("etc/ironrack/current")).unwrap(),
        Path::new("node.conf")
    );
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let ops: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("ops:"))
        .expect("user ops")
        .split(':')
        .collect();
    let keys = root.join("home/ops/.ssh/authorized_keys");
    let meta = std::fs::metadata(&keys).unwrap();
    assert_eq!(meta.uid().to_string(), ops[2]);
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert!(
        std::fs::read_to_string(&keys)
            .unwrap()
            .starts_with("ssh-ed25519 ")
    );
    assert!(
        root.join("etc/systemd/system/multi-user.target.wants/systemd-networkd.service")
            .exists()
    );

    // Normalised: no host keys, empty machine-id, no policy-rc.d, no logs.
    assert!(!std::fs::read_dir(root.join("etc/ssh")).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("ssh_host_")
    }));
    assert_eq!(std::fs::read(root.join("etc/machine-id")).unwrap(), b"");
    assert!(!root.join("usr/sbin/policy-rc.d").exists());
    assert!(!root.join("var/log/dpkg.log").exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(root.to_str().unwrap()),
        "mounts left on the host:\n{mounts}"
    );

    // The tar keeps the capability: GNU tar restores it.
    let tar_path = work.join("rootfs.tar");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tar_path).unwrap());
    let summary = tar::write(&target, &mut out, &tar_path, &ProgressBar::hidden()).unwrap();
    drop(out);
    assert_eq!(summary.bytes, std::fs::metadata(&tar_path).unwrap().len());
    let unpacked = work.join("from-tar");
    std::fs::create_dir(&unpacked).unwrap();
    stdout(
        Command::new("tar")
            .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
            .arg(&tar_path)
            .arg("-C")
            .arg(&unpacked),
    );
    let getcap = stdout(Command::new("getcap").arg(unpacked.join("usr/bin/ping")));
    assert!(getcap.contains("cap_net_raw=ep"), "after tar: {getcap}");
    let original = ironrack_builder::rootfs::tree::Manifest::of(&target).unwrap();
    let again =
        ironrack_builder::rootfs::tree::Manifest::of(&Target::open(&unpacked).unwrap()).unwrap();
    let differences = original.diff(&again);
    assert!(
        differences.is_empty(),
        "GNU tar's extraction differs from the tree:\n{differences:?}"
    );
}
