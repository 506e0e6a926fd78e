//! The real NVIDIA 535 open modules, built once per test run (~2-3 min on
//! 2 cores) from Debian's nvidia-open-kernel-source 535.261.03-1 against
//! linux-headers-6.1.0-50-cloud-amd64, with a patch, then the version
//! chain checked over an image made of the real kernel, firmware and CUDA
//! userspace packages: intact with firmware-nvidia-gsp 535.261.03, broken
//! (naming both versions and the pin) with apt's default 535.309.01.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ironrack_builder::boot::elf::ImageRoot;
use ironrack_builder::boot::kmod::image::install_modules;
use ironrack_builder::boot::kmod::{KernelAbi, Module, check_modules};
use ironrack_builder::boot::nvidia::chain::{ChainInputs, ChainLink, ChainReport, check_chain};
use ironrack_builder::boot::nvidia::{
    BuiltModules, Flavour, Isolation, ModuleBuild, NvidiaError, build_modules,
};
use ironrack_builder::source::Catalog;

use super::debs::{self, KERNEL_VERSION, OTHER_RELEASE, OTHER_VERSION, RELEASE, Sources, run};

const DRIVER: &str = "535.261.03";
/// apt's default candidate of firmware-nvidia-gsp (bookworm-security).
const NEWER_FIRMWARE: &str = "535.309.01-0+deb12u1";

fn build_root() -> PathBuf {
    debs::root(
        "nvidia-build-50",
        &[
            &format!("linux-headers-{RELEASE}={KERNEL_VERSION}"),
            &format!("linux-headers-6.1.0-50-common={KERNEL_VERSION}"),
            &format!("linux-kbuild-6.1={KERNEL_VERSION}"),
            &format!("nvidia-open-kernel-source={DRIVER}-1"),
        ],
        Sources::NonFree,
    )
}

/// A patch that adds a modinfo field to nvidia.ko, so the test can see it
/// was applied.
const PATCH: &str = "--- a/nvidia/nv-frontend.c\n+++ b/nvidia/nv-frontend.c\n\
@@ -30,6 +30,7 @@\n \n MODULE_INFO(supported, \"external\");\n MODULE_VERSION(NV_VERSION_STRING);\n\
+MODULE_INFO(ironrack_patch, \"applied\");\n MODULE_ALIAS_CHARDEV_MAJOR(NV_MAJOR_DEVICE_NUMBER);\n \n";

struct Build {
    root: PathBuf,
    work: PathBuf,
    patch: PathBuf,
    built: BuiltModules,
}

/// A scratch directory under the target directory, emptied first: a
/// static's TempDir would never be dropped, and each build leaves ~800 MB
/// of objects. The next run removes what a run left.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("nvidia-scratch")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A hard-linked copy of a cached build root: the build rewrites the
/// headers' Makefile (by rename, never through the link).
fn copy_root(cached: &Path, name: &str) -> PathBuf {
    let root = scratch(name);
    run(Command::new("cp")
        .arg("-al")
        .arg(format!("{}/.", cached.display()))
        .arg(&root));
    root
}

/// One build shared by the tests of this file; a failure is kept, so the
/// other tests report it instead of building again.
fn built() -> &'static Build {
    static BUILD: OnceLock<Result<Build, String>> = OnceLock::new();
    let build = BUILD.get_or_init(|| {
        let root = copy_root(&build_root(), "root-50");
        let work = scratch("work-50");
        let patch = work.join("ironrack-test.patch");
        std::fs::write(&patch, PATCH).unwrap();
        let build = ModuleBuild {
            root: root.clone(),
            work: work.join("build"),
            release: RELEASE.into(),
            version: DRIVER.into(),
            flavour: Flavour::Open,
            patches: vec![patch.clone()],
            jobs: 2,
            source_date_epoch: 1_750_000_000,
            isolation: if nix::unistd::geteuid().is_root() {
                Isolation::NoNetwork
            } else {
                Isolation::None
            },
        };
        let built = build_modules(&build).map_err(|e| e.to_string())?;
        Ok(Build {
            root,
            work: build.work.clone(),
            patch,
            built,
        })
    });
    build.as_ref().unwrap_or_else(|e| panic!("{e}"))
}

fn headers() -> PathBuf {
    debs::headers(RELEASE, KERNEL_VERSION)
}

fn modinfo(field: &str, module: &Path) -> String {
    let out = run(Command::new("modinfo").args(["-F", field]).arg(module));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn modules_build_against_the_image_kernel_with_the_patch_and_no_build_paths() {
    let build = built();
    let names: Vec<&str> = build
        .built
        .modules
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    for required in ["nvidia", "nvidia_modeset", "nvidia_uvm"] {
        assert!(names.contains(&required), "{names:?}");
    }
    let kernel = KernelAbi::from_headers(&headers()).unwrap();
    let want = kernel.vermagic.to_string();
    assert_eq!(
        want,
        format!("{RELEASE} SMP preempt mod_unload modversions")
    );
    let mut modules = Vec::new();
    for module in &build.built.modules {
        // kmod's modinfo reads what our reader reported.
        assert_eq!(modinfo("vermagic", &module.path), want);
        assert_eq!(module.vermagic, want);
        assert_eq!(modinfo("version", &module.path), DRIVER);
        assert_eq!(module.version.as_deref(), Some(DRIVER));
        let bytes = std::fs::read(&module.path).unwrap();
        for path in [&build.root, &build.work] {
            let needle = path.to_string_lossy();
            assert!(
                memchr::memmem::find(&bytes, needle.as_bytes()).is_none(),
                "{} contains the build path {needle}",
                module.path.display()
            );
        }
        modules.push(Module::read(&module.path).unwrap());
    }
    let nvidia = build
        .built
        .modules
        .iter()
        .find(|m| m.name == "nvidia")
        .unwrap();
    assert_eq!(modinfo("ironrack_patch", &nvidia.path), "applied");
    assert_eq!(build.built.patches.len(), 1);
    let patch_digest = run(Command::new("sha256sum").arg(&build.patch)).stdout;
    assert!(
        String::from_utf8(patch_digest)
            .unwrap()
            .starts_with(&build.built.patches[0].sha256)
    );
    // Every undefined symbol resolves against Module.symvers with CRCs,
    // the in-tree modules they use included.
    let tree = ironrack_builder::boot::kmod::depmod::ModuleTree::scan(
        &ImageRoot::new(debs::kernel_root()),
        RELEASE,
    )
    .unwrap();
    modules.extend(tree.modules().cloned());
    let report = check_modules(&kernel, &modules);
    let errors: Vec<String> = report.errors().map(|p| p.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

/// name → version from the .debs a cached root was unpacked from.
fn package_versions(root: &Path, into: &mut BTreeMap<String, String>) {
    let list = std::fs::read_to_string(root.join(".complete")).unwrap();
    for deb in list.lines() {
        let mut parts = deb.trim_end_matches(".deb").split('_');
        let (name, version) = (parts.next().unwrap(), parts.next().unwrap());
        into.insert(name.to_owned(), version.replace("%3a", ":"));
    }
}

fn firmware_root(version: &str) -> PathBuf {
    debs::root(
        &format!("firmware-nvidia-gsp-{version}"),
        &[&format!("firmware-nvidia-gsp={version}")],
        Sources::NonFree,
    )
}

fn userspace_root() -> PathBuf {
    debs::root(
        "nvidia-userspace",
        // The same set as elf_real.rs (one cache entry).
        &[
            "libc6",
            &format!("libcuda1={DRIVER}-1"),
            &format!("nvidia-smi={DRIVER}-1"),
            &format!("libnvidia-ml1={DRIVER}-1"),
        ],
        Sources::NonFree,
    )
}

/// An image: the kernel, the built modules in updates/dkms, the firmware
/// of `firmware`, the CUDA userspace; and its package versions.
fn image(firmware: &str) -> (tempfile::TempDir, BTreeMap<String, String>) {
    let dir = tempfile::tempdir().unwrap();
    let mut packages = BTreeMap::new();
    for root in [
        debs::kernel_root(),
        firmware_root(firmware),
        userspace_root(),
    ] {
        run(Command::new("cp")
            .arg("-al")
            .arg(format!("{}/.", root.display()))
            .arg(dir.path()));
        package_versions(&root, &mut packages);
    }
    std::fs::remove_file(dir.path().join(".complete")).unwrap();
    install_modules(&ImageRoot::new(dir.path()), RELEASE, &module_paths()).unwrap();
    (dir, packages)
}

fn module_paths() -> Vec<PathBuf> {
    built()
        .built
        .modules
        .iter()
        .map(|m| m.path.clone())
        .collect()
}

fn userspace() -> Vec<String> {
    vec![
        "libcuda1".into(),
        "nvidia-smi".into(),
        "libnvidia-ml1".into(),
    ]
}

/// Where Debian's packages put them (the nvidia-alternative postinst
/// links them into the search path later).
fn elf_files() -> Vec<PathBuf> {
    vec![
        "/usr/lib/nvidia/current/nvidia-smi".into(),
        "/usr/lib/x86_64-linux-gnu/nvidia/current/libcuda.so.1".into(),
        "/usr/lib/x86_64-linux-gnu/nvidia/current/libnvidia-ml.so.1".into(),
    ]
}

/// The snapshot's view of firmware-nvidia-gsp: bookworm's and
/// bookworm-security's non-free-firmware indexes from the private apt
/// lists (lz4, as apt stores them).
fn catalog() -> Catalog {
    let lists = Path::new(env!("CARGO_TARGET_TMPDIR")).join("boot-debs/apt/lists");
    let mut catalog = Catalog::new();
    for entry in std::fs::read_dir(&lists).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.contains("non-free-firmware_binary-amd64_Packages") {
            let out = run(Command::new("lz4").arg("-dc").arg(&path));
            let text = String::from_utf8(out.stdout).unwrap();
            catalog.add_packages_text(&text, &name).unwrap();
        }
    }
    catalog
}

fn check(
    root: &Path,
    release: &str,
    headers: &Path,
    packages: &BTreeMap<String, String>,
    catalog: Option<&Catalog>,
) -> ChainReport {
    let image = ImageRoot::new(root);
    let userspace = userspace();
    let elf_files = elf_files();
    check_chain(&ChainInputs {
        root: &image,
        release,
        headers,
        driver: DRIVER,
        flavour: Flavour::Open,
        packages,
        // No sources known: every userspace package is coupled.
        sources: &BTreeMap::new(),
        userspace: &userspace,
        elf_files: &elf_files,
        catalog,
    })
    .unwrap()
}

#[test]
fn chain_holds_with_firmware_and_userspace_of_the_driver_release() {
    let (image, packages) = image(&format!("{DRIVER}-1"));
    let report = check(image.path(), RELEASE, &headers(), &packages, None);
    assert!(report.breaks.is_empty(), "{:#?}", report.breaks);
    assert_eq!(report.modules.len(), module_paths().len());
    for file in ["gsp_ga10x.bin", "gsp_tu10x.bin"] {
        assert!(
            report.firmware.contains(&format!("nvidia/{DRIVER}/{file}")),
            "{:?}",
            report.firmware
        );
    }
    assert_eq!(
        report.packages["firmware-nvidia-gsp"],
        format!("{DRIVER}-1")
    );
    assert!(report.libraries_resolved > 0);
    // Every coupling compared is recorded, and each one held.
    assert!(
        report.checks.iter().all(|c| c.expected == c.found),
        "{:#?}",
        report.checks
    );
    for check in [
        "nvidia.ko vermagic",
        "nvidia-uvm.ko version",
        "firmware-nvidia-gsp version",
        "libcuda1 version",
    ] {
        assert!(
            report.checks.iter().any(|c| c.check == check),
            "{check}: {:#?}",
            report.checks
        );
    }
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.check == format!("nvidia.ko firmware nvidia/{DRIVER}/gsp_ga10x.bin"))
    );
    assert!(report.require_intact().is_ok());

    // A library gone from the image (a package left out) breaks it too.
    std::fs::remove_file(image.path().join("usr/lib/x86_64-linux-gnu/libm.so.6")).unwrap();
    let report = check(image.path(), RELEASE, &headers(), &packages, None);
    assert!(!report.breaks.is_empty());
    assert!(
        report
            .breaks
            .iter()
            .all(|b| b.link == ChainLink::Library && b.want.ends_with("needs libm.so.6")),
        "{:#?}",
        report.breaks
    );
}

#[test]
fn apt_default_firmware_breaks_the_chain_naming_both_versions_and_the_pin() {
    let (image, packages) = image(NEWER_FIRMWARE);
    let catalog = catalog();
    let report = check(image.path(), RELEASE, &headers(), &packages, Some(&catalog));
    let firmware: Vec<_> = report
        .breaks
        .iter()
        .filter(|b| b.link == ChainLink::Firmware)
        .collect();
    assert_eq!(firmware.len(), 2, "{:#?}", report.breaks);
    let pin = format!("\"firmware-nvidia-gsp\" = \"{DRIVER}-1\"");
    for b in &firmware {
        assert!(b.want.contains(&format!("nvidia/{DRIVER}/gsp_")), "{b}");
        assert!(b.got.contains("535.309.01"), "{b}");
        assert!(b.fix.contains(&pin), "{b}");
    }
    let package: Vec<_> = report
        .breaks
        .iter()
        .filter(|b| b.link == ChainLink::Package)
        .collect();
    assert_eq!(package.len(), 1, "{:#?}", report.breaks);
    assert!(package[0].got.contains(NEWER_FIRMWARE) && package[0].fix.contains(&pin));
    assert_eq!(report.breaks.len(), 3, "{:#?}", report.breaks);
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.expected != c.found)
        .map(|c| c.check.as_str())
        .collect();
    assert_eq!(failed.len(), 3, "{:#?}", report.checks);
    assert!(
        failed.contains(&"firmware-nvidia-gsp version"),
        "{failed:?}"
    );
    match report.require_intact() {
        Err(e @ NvidiaError::ChainBroken(_)) => {
            let text = e.to_string();
            assert!(
                text.contains(DRIVER) && text.contains("535.309.01") && text.contains(&pin),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn modules_of_another_kernel_release_break_the_chain() {
    // The built modules placed in a 6.1.0-56 image tree and checked
    // against 6.1.0-56's headers: every module's vermagic is named with
    // both releases, and the CRCs that changed are reported.
    let (image, packages) = image(&format!("{DRIVER}-1"));
    let modules = module_paths();
    let root = ImageRoot::new(image.path());
    std::fs::create_dir_all(
        image
            .path()
            .join(format!("usr/lib/modules/{OTHER_RELEASE}")),
    )
    .unwrap();
    install_modules(&root, OTHER_RELEASE, &modules).unwrap();
    let other = debs::headers(OTHER_RELEASE, OTHER_VERSION);
    let report = check(image.path(), OTHER_RELEASE, &other, &packages, None);
    let vermagic: Vec<_> = report
        .breaks
        .iter()
        .filter(|b| b.link == ChainLink::ModuleVermagic)
        .collect();
    assert_eq!(vermagic.len(), modules.len(), "{:#?}", report.breaks);
    for b in vermagic {
        assert!(
            b.want.contains(OTHER_RELEASE) && b.got.contains(RELEASE),
            "{b}"
        );
    }
    assert!(
        report
            .breaks
            .iter()
            .any(|b| b.link == ChainLink::ModuleSymbols && b.got.contains("CRC")),
        "{:#?}",
        report.breaks
    );
    // Each vermagic is reported once, as its own link.
    assert!(
        !report
            .breaks
            .iter()
            .any(|b| b.link == ChainLink::ModuleSymbols && b.got.contains("vermagic")),
        "{:#?}",
        report.breaks
    );
}

#[test]
fn a_source_that_does_not_compile_names_driver_kernel_and_the_first_error() {
    // facts.md: Debian's 6.1.180+ backported a 4th argument to
    // pci_resize_resource; 535.261.03 does not build against 6.1.0-56.
    let cached = debs::root(
        "nvidia-build-56",
        &[
            &format!("linux-headers-{OTHER_RELEASE}={OTHER_VERSION}"),
            &format!("linux-headers-6.1.0-56-common={OTHER_VERSION}"),
            &format!("linux-kbuild-6.1={OTHER_VERSION}"),
            &format!("nvidia-open-kernel-source={DRIVER}-1"),
        ],
        Sources::NonFree,
    );
    let root = copy_root(&cached, "root-56");
    let work = scratch("work-56");
    let build = ModuleBuild {
        root: root.clone(),
        work: work.join("build"),
        release: OTHER_RELEASE.into(),
        version: DRIVER.into(),
        flavour: Flavour::Open,
        patches: Vec::new(),
        jobs: 2,
        source_date_epoch: 1_750_000_000,
        isolation: Isolation::None,
    };
    match build_modules(&build) {
        Err(e @ NvidiaError::Compile { .. }) => {
            let text = e.to_string();
            let NvidiaError::Compile {
                first_error, log, ..
            } = &e
            else {
                unreachable!()
            };
            assert!(
                first_error.contains("nv-pci.c")
                    && first_error.contains("error:")
                    && first_error.contains("pci_resize_resource"),
                "{first_error}"
            );
            // The log has the line with the scratch path.
            let log = std::fs::read_to_string(log).unwrap();
            let in_log = first_error.replace(&format!("/usr/src/nvidia-{DRIVER}/"), "");
            assert!(log.contains(&in_log), "{in_log}");
            for part in [DRIVER, OTHER_RELEASE, "pin the kernel", "patch"] {
                assert!(text.contains(part), "{text}");
            }
            // The error names the file as the source tree's fixed prefix
            // sees it, not the scratch path.
            assert!(
                first_error.starts_with(&format!("/usr/src/nvidia-{DRIVER}/")),
                "{first_error}"
            );
        }
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(&root);
}
