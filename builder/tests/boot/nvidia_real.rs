//! The real NVIDIA 535 open modules, built once per test run (~2-3 min on
//! 2 cores) from Debian's nvidia-open-kernel-source 535.261.03-1 against
//! linux-headers-6.1.0-50-cloud-amd64, with a patch.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ironrack_builder::boot::elf::ImageRoot;
use ironrack_builder::boot::kmod::{KernelAbi, Module, check_modules};
use ironrack_builder::boot::nvidia::{
    BuiltModules, Flavour, Isolation, ModuleBuild, build_modules,
};

use super::debs::{self, KERNEL_VERSION, RELEASE, Sources, run};

const DRIVER: &str = "535.261.03";

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
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    root: PathBuf,
    work: PathBuf,
    patch: PathBuf,
    built: BuiltModules,
}

/// One build shared by the tests of this file.
fn built() -> &'static Build {
    static BUILD: OnceLock<Build> = OnceLock::new();
    BUILD.get_or_init(|| {
        // A hard-linked scratch copy: the build rewrites the headers'
        // Makefile (by rename, never through the link).
        let root_dir = tempfile::tempdir().unwrap();
        run(Command::new("cp")
            .arg("-al")
            .arg(format!("{}/.", build_root().display()))
            .arg(root_dir.path()));
        let work_dir = tempfile::tempdir().unwrap();
        let patch = work_dir.path().join("ironrack-test.patch");
        std::fs::write(&patch, PATCH).unwrap();
        let build = ModuleBuild {
            root: root_dir.path().to_owned(),
            work: work_dir.path().join("build"),
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
        let built = build_modules(&build).unwrap_or_else(|e| panic!("{e}"));
        Build {
            root: build.root.clone(),
            work: build.work.clone(),
            patch,
            built,
            _dirs: (root_dir, work_dir),
        }
    })
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
