//! The demo spec, images/gpu-node.toml, locked against Debian bookworm's
//! real indexes read as a repository tree: a sane GPU node closure, and
//! the image set equal to apt's closure for the same requests and pins.

use std::collections::BTreeMap;
use std::path::Path;

use ironrack_builder::source::lock::{self, LockedFiles, RepoDir};
use ironrack_builder::source::resolve::resolve;
use ironrack_builder::spec::{ImageSpec, PackageSet};

use crate::bookworm::bookworm;

const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../images/gpu-node.toml");

#[test]
fn the_demo_spec_locks_to_a_sane_gpu_node() {
    let Some(b) = bookworm() else { return };
    let bytes = std::fs::read(SPEC).unwrap();
    let spec = ImageSpec::parse_bytes(&bytes, Path::new(SPEC)).unwrap();
    let repo = RepoDir::open(&b.root, &spec.suite).unwrap();
    let catalog = repo.catalog(&spec.architecture).unwrap();
    assert_eq!(catalog.packages().len(), b.catalog.packages().len());
    let lock = lock::lock_spec(&spec, &bytes, &catalog, repo.snapshot_id()).unwrap();
    let image: BTreeMap<&str, &str> = lock
        .packages(PackageSet::Image)
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    let kernels: Vec<&&str> = image
        .keys()
        .filter(|n| n.starts_with("linux-image-"))
        .collect();
    assert_eq!(
        kernels,
        [&"linux-image-6.1.0-50-cloud-amd64"],
        "exactly one kernel image"
    );
    for name in [
        "firmware-nvidia-gsp",
        "libcuda1",
        "nvidia-smi",
        "libnvidia-ml1",
        "nvidia-alternative",
        "libnvidia-cfg1",
    ] {
        assert_eq!(image.get(name), Some(&"535.261.03-1"), "{name}");
    }
    for name in [
        "systemd-sysv",
        "udev",
        "kmod",
        "openssh-server",
        "busybox-static",
        "nvidia-persistenced",
        "base-files",
        "dpkg",
    ] {
        assert!(image.contains_key(name), "{name} missing");
    }
    for name in [
        "usrmerge",
        "perl",
        "libnvidia-tesla-470-cfg1",
        "sysvinit-core",
        "apt-utils",
    ] {
        assert!(
            !image.contains_key(name),
            "{name} should not be in the image"
        );
    }
    assert!(lock::nvidia_mismatches(&spec, &catalog, &lock).is_empty());
    let build: BTreeMap<&str, &str> = lock
        .packages(PackageSet::Build)
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    assert_eq!(
        build.get("nvidia-open-kernel-source"),
        Some(&"535.261.03-1")
    );
    for name in [
        "linux-headers-6.1.0-50-cloud-amd64",
        "gcc-12",
        "make",
        "libc6-dev",
        "kmod",
    ] {
        assert!(build.contains_key(name), "build set lacks {name}");
    }
    assert!(
        !build.keys().any(|n| n.starts_with("linux-image-")),
        "no kernel image in the build set"
    );
    assert!(
        lock.packages
            .iter()
            .all(|p| p.sha256.len() == 64 && p.filename.starts_with("pool/"))
    );
    // Written and read back unchanged.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpu-node.lock");
    lock.write(&path).unwrap();
    assert_eq!(
        ironrack_builder::source::lock::Lock::load(&path).unwrap(),
        lock
    );
}

#[test]
fn the_demo_image_set_equals_apts_closure() {
    let Some(b) = bookworm() else { return };
    let spec = ImageSpec::load(Path::new(SPEC)).unwrap();
    let (_, request) = spec.requests().unwrap().remove(0);
    let r = resolve(&b.catalog, &request).unwrap();
    let name = |id| {
        b.catalog
            .names()
            .resolve(b.catalog.package(id).name)
            .to_owned()
    };
    let version = |id| b.catalog.package(id).version.to_string();
    let args: Vec<String> = r
        .requested
        .iter()
        .map(|&id| match spec.packages.pin.get(&name(id)) {
            Some(v) => format!("{}={v}", name(id)),
            None => name(id),
        })
        .collect();
    let prefer: Vec<(String, String)> = r
        .switched
        .iter()
        .map(|s| (name(s.package), version(s.package)))
        .collect();
    assert!(
        prefer.iter().any(|(n, _)| n == "libnvidia-ml1"),
        "{prefer:?}"
    );
    b.apt.set_preferences(&prefer);
    let sim = b.apt.simulate(&args, false);
    b.apt.set_preferences(&[]);
    assert!(
        sim.ok && sim.resolver_broken.iter().all(|&n| n == 0),
        "{}",
        sim.output
    );
    let ours: BTreeMap<String, String> = r
        .packages
        .iter()
        .map(|&id| (name(id), version(id)))
        .collect();
    assert_eq!(ours, sim.installs);
}
