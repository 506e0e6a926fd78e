//! An image's module tree as a whole, on the real cloud kernel with the
//! real kmod package: an out-of-tree module installed in updates/dkms,
//! the image's own depmod (run through the image's loader) against the
//! host's, modprobe resolving through the indexes it wrote, and the
//! image-wide symbol check against Module.symvers cross-checked with
//! `depmod -e -E`.

use std::path::{Path, PathBuf};
use std::process::Command;

use ironrack_builder::boot::elf::ImageRoot;
use ironrack_builder::boot::kmod::fixture::ModuleFixture;
use ironrack_builder::boot::kmod::image::{
    Depmod, OUT_OF_TREE_DIR, check_image_modules, install_modules, run_depmod, verify_modules_dep,
};
use ironrack_builder::boot::kmod::{KernelAbi, KmodError, ModuleProblem};

use super::debs::{self, KERNEL_VERSION, OTHER_RELEASE, OTHER_VERSION, RELEASE, Sources, run};

/// The kernel with kmod and the libraries it links (libc6, libkmod2,
/// liblzma5, libzstd1, libssl3): enough for the image's depmod to run.
fn kmod_root() -> PathBuf {
    debs::root(
        "kernel-50-kmod",
        &[
            &format!("linux-image-{RELEASE}={KERNEL_VERSION}"),
            "kmod",
            "libkmod2",
            "libc6",
            "liblzma5",
            "libzstd1",
            "libssl3",
        ],
        Sources::Host,
    )
}

/// A hard-linked copy the test may add files to (depmod replaces its
/// index files by rename, so the cached tree is never written through).
fn scratch_image() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run(Command::new("cp")
        .arg("-al")
        .arg(format!("{}/.", kmod_root().display()))
        .arg(dir.path()));
    dir
}

fn headers() -> PathBuf {
    debs::headers(RELEASE, KERNEL_VERSION)
}

/// An out-of-tree module using the virtio core, with the CRCs the real
/// Module.symvers gives (`extra` adds an undefined symbol as is).
fn probe_module(dir: &Path, name: &str, extra: Option<(&str, u32)>) -> PathBuf {
    let kernel = KernelAbi::from_headers(&headers()).unwrap();
    let crc = |s: &str| kernel.exports[s].crc.unwrap();
    let mut fixture = ModuleFixture::new(name, &kernel.vermagic.to_string())
        .with_info("depends", "virtio")
        .needs("module_layout", crc("module_layout"))
        .needs("register_virtio_driver", crc("register_virtio_driver"));
    if let Some((symbol, crc)) = extra {
        fixture = fixture.needs(symbol, crc);
    }
    let path = dir.join(format!("{name}.ko"));
    std::fs::write(&path, fixture.build()).unwrap();
    path
}

fn index_files(release_dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(release_dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("modules."))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn out_of_tree_module_indexed_by_the_images_depmod_like_the_hosts() {
    let image = scratch_image();
    let root = ImageRoot::new(image.path());
    let built = tempfile::tempdir().unwrap();
    let probe = probe_module(built.path(), "ironrack_probe", None);
    let installed = install_modules(&root, RELEASE, &[probe]).unwrap();
    assert_eq!(installed, [format!("{OUT_OF_TREE_DIR}/ironrack_probe.ko")]);

    run_depmod(&root, RELEASE, &Depmod::Image).unwrap();
    let tree = verify_modules_dep(&root, RELEASE).unwrap();
    let release_dir = tree.dir.clone();
    let dep = std::fs::read_to_string(release_dir.join("modules.dep")).unwrap();
    let virtio = &tree.modules["virtio"].relative;
    assert!(
        dep.lines()
            .any(|l| l == format!("{OUT_OF_TREE_DIR}/ironrack_probe.ko: {virtio}")),
        "{dep:.400}"
    );
    // modprobe finds it through the binary index depmod wrote.
    let shown = run(Command::new("modprobe").arg("-d").arg(image.path()).args([
        "-S",
        RELEASE,
        "--show-depends",
        "ironrack_probe",
    ]));
    let shown = String::from_utf8(shown.stdout).unwrap();
    let lines: Vec<&str> = shown.lines().collect();
    assert!(lines.len() == 2, "{shown}");
    assert!(lines[0].ends_with(&format!("{virtio} ")), "{shown}");
    assert!(lines[1].ends_with("ironrack_probe.ko "), "{shown}");

    // The host's depmod (the same kmod 30 on bookworm) writes the same
    // bytes, so the image's ran with the image's own configuration.
    let from_image = index_files(&release_dir);
    assert!(from_image.len() >= 10, "{from_image:?}");
    for (name, _) in &from_image {
        std::fs::remove_file(release_dir.join(name)).unwrap();
    }
    for kept in [
        "modules.builtin",
        "modules.builtin.modinfo",
        "modules.order",
    ] {
        run(Command::new("cp")
            .arg(kmod_root().join(format!("usr/lib/modules/{RELEASE}/{kept}")))
            .arg(&release_dir));
    }
    run_depmod(&root, RELEASE, &Depmod::Host("/sbin/depmod".into())).unwrap();
    assert_eq!(index_files(&release_dir), from_image);

    // Every module of the tree, ours included, against Module.symvers.
    let (tree, report) = check_image_modules(&root, RELEASE, &headers()).unwrap();
    assert!(report.crcs_checked);
    assert!(report.is_clean(), "{:?}", report.errors().next());
    assert_eq!(report.modules.len(), tree.modules.len());
    assert!(report.modules.iter().any(|m| m.name == "ironrack_probe"));
}

#[test]
fn an_updates_module_replaces_the_in_tree_one_as_depmod_says() {
    let image = scratch_image();
    let root = ImageRoot::new(image.path());
    let squashfs = kmod_root().join(format!(
        "usr/lib/modules/{RELEASE}/kernel/fs/squashfs/squashfs.ko"
    ));
    install_modules(&root, RELEASE, &[squashfs]).unwrap();
    run_depmod(&root, RELEASE, &Depmod::Host("/sbin/depmod".into())).unwrap();
    let tree = verify_modules_dep(&root, RELEASE).unwrap();
    assert_eq!(
        tree.modules["squashfs"].relative,
        format!("{OUT_OF_TREE_DIR}/squashfs.ko")
    );
}

fn depmod_symbol_warnings(image: &Path) -> String {
    let out = run(Command::new("depmod")
        .arg("-b")
        .arg(image)
        .args(["-C", "/nonexistent", "-n", "-e", "-E"])
        .arg(headers().join("Module.symvers"))
        .arg(RELEASE));
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn unresolved_symbols_and_crc_mismatches_agree_with_depmod() {
    let image = scratch_image();
    let root = ImageRoot::new(image.path());
    let built = tempfile::tempdir().unwrap();
    let unknown = probe_module(
        built.path(),
        "ironrack_unknown",
        Some(("ironrack_no_such_symbol", 0x1234)),
    );
    let stale = probe_module(
        built.path(),
        "ironrack_stale",
        Some(("virtio_check_driver_offered_feature", 0xdead_beef)),
    );
    install_modules(&root, RELEASE, &[unknown, stale]).unwrap();
    let (_, report) = check_image_modules(&root, RELEASE, &headers()).unwrap();
    let errors: Vec<&ModuleProblem> = report.errors().collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.contains(&&ModuleProblem::UnresolvedSymbol {
        module: "ironrack_unknown".into(),
        symbol: "ironrack_no_such_symbol".into(),
    }));
    let real =
        KernelAbi::from_headers(&headers()).unwrap().exports["virtio_check_driver_offered_feature"]
            .crc
            .unwrap();
    assert!(errors.contains(&&ModuleProblem::CrcMismatch {
        module: "ironrack_stale".into(),
        symbol: "virtio_check_driver_offered_feature".into(),
        wanted: 0xdead_beef,
        found: real,
        provider: "virtio".into(),
    }));
    // kmod's depmod sees the same two problems and no others.
    let warnings = depmod_symbol_warnings(image.path());
    let relevant: Vec<&str> = warnings.lines().filter(|l| l.contains("symbol")).collect();
    assert_eq!(relevant.len(), 2, "{warnings}");
    assert!(
        relevant
            .iter()
            .any(|l| l.contains("ironrack_unknown.ko needs unknown symbol ironrack_no_such_symbol")),
        "{warnings}"
    );
    assert!(
        relevant.iter().any(|l| l.contains("ironrack_stale.ko")
            && l.contains("disagrees about version of symbol virtio_check_driver_offered_feature")),
        "{warnings}"
    );
}

#[test]
fn headers_of_another_release_and_an_image_without_kmod_are_named() {
    let other = debs::headers(OTHER_RELEASE, OTHER_VERSION);
    match check_image_modules(&ImageRoot::new(kmod_root()), RELEASE, &other) {
        Err(KmodError::HeadersRelease {
            headers_release,
            release,
            ..
        }) => assert_eq!(
            (headers_release.as_str(), release.as_str()),
            (OTHER_RELEASE, RELEASE)
        ),
        other => panic!("{other:?}"),
    }
    // The busybox image has no kmod: the image's depmod cannot run.
    let busybox = ImageRoot::new(debs::kernel_root());
    match run_depmod(&busybox, RELEASE, &Depmod::Image) {
        Err(KmodError::DepmodProgram { program, .. }) => {
            assert_eq!(program, Path::new("/sbin/depmod"))
        }
        other => panic!("{other:?}"),
    }
}
