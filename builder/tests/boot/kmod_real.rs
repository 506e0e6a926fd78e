//! Kernel modules of the real Debian cloud kernel, checked against that
//! kernel's headers (clean) and another release's (vermagic and CRC
//! mismatches), and read field by field against kmod's own tools
//! (`modinfo`, `modprobe --dump-modversions`), binutils `nm`, and
//! Module.symvers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use ironrack_builder::boot::elf::ImageRoot;
use ironrack_builder::boot::kmod::depmod::ModuleTree;
use ironrack_builder::boot::kmod::{
    ExportSource, KernelAbi, KmodError, Module, ModuleProblem, check_modules,
};

use super::debs::{self, KERNEL_VERSION, OTHER_RELEASE, OTHER_VERSION, RELEASE, run};

fn tree() -> &'static ModuleTree {
    static TREE: OnceLock<ModuleTree> = OnceLock::new();
    TREE.get_or_init(|| {
        ModuleTree::scan(&ImageRoot::new(debs::kernel_root()), RELEASE).expect("scan")
    })
}

fn modules() -> Vec<Module> {
    tree().modules().cloned().collect()
}

/// Every 40th module plus the initramfs drivers: enough variety (net,
/// fs, crypto, namespaced exports) without running kmod 1,100 times.
fn sample() -> Vec<&'static Module> {
    let wanted = [
        "virtio_net",
        "squashfs",
        "overlay",
        "loop",
        "mlx5_core",
        "mana",
        "virtio_pci",
    ];
    tree()
        .modules()
        .enumerate()
        .filter(|(i, m)| i % 40 == 0 || wanted.contains(&m.name.as_str()))
        .map(|(_, m)| m)
        .collect()
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).unwrap()
}

#[test]
fn in_tree_modules_check_clean_against_their_kernel() {
    let kernel = KernelAbi::from_headers(&debs::headers(RELEASE, KERNEL_VERSION)).unwrap();
    assert_eq!(kernel.release(), RELEASE);
    let modules = modules();
    assert!(modules.len() > 1000, "{} modules", modules.len());
    let report = check_modules(&kernel, &modules);
    assert!(report.crcs_checked);
    assert_eq!(report.problems, [], "{RELEASE} in-tree modules");
    assert!(
        report.modules.iter().all(|m| m.signed),
        "Debian signs every module"
    );
    // The vermagic derived from .config is the one every module carries.
    for module in &modules {
        assert_eq!(
            module.modinfo.vermagic.as_deref().map(str::trim_end),
            Some(kernel.vermagic.to_string().as_str()),
            "{}",
            module.path.display()
        );
    }
}

#[test]
fn debian_system_map_is_a_placeholder_and_says_so() {
    // Without the headers package there is /boot/System.map, which Debian
    // ships as a one-line pointer to the -dbg package.
    match KernelAbi::from_image(&debs::kernel_root(), RELEASE) {
        Err(KmodError::NoExports { path }) => {
            assert!(path.ends_with(format!("boot/System.map-{RELEASE}")))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn another_releases_headers_report_vermagic_and_crc_mismatches() {
    let other = debs::headers(OTHER_RELEASE, OTHER_VERSION);
    let kernel = KernelAbi::from_headers(&other).unwrap();
    let wanted = ["squashfs", "overlay", "virtio_net", "mlx5_core", "loop"];
    let modules: Vec<Module> = tree()
        .modules()
        .filter(|m| wanted.contains(&m.name.as_str()))
        .cloned()
        .collect();
    assert_eq!(modules.len(), wanted.len());
    let report = check_modules(&kernel, &modules);
    assert!(!report.is_clean());
    for module in &modules {
        assert!(report.problems.contains(&ModuleProblem::VermagicMismatch {
            module: module.name.clone(),
            want: format!("{OTHER_RELEASE} SMP preempt mod_unload modversions"),
            got: format!("{RELEASE} SMP preempt mod_unload modversions"),
        }));
        // The CRC mismatches, computed independently: kmod's dump of the
        // module's __versions against the other Module.symvers's vmlinux
        // lines.
        let symvers = symvers_vmlinux_crcs(&other.join("Module.symvers"));
        let dump = stdout(
            Command::new("modprobe")
                .arg("--dump-modversions")
                .arg(&module.path),
        );
        let mut expected = BTreeSet::new();
        for line in dump.lines() {
            let (crc, name) = line.split_once('\t').unwrap();
            let crc = u32::from_str_radix(crc.trim_start_matches("0x"), 16).unwrap();
            if let Some(&found) = symvers.get(name)
                && found != crc
            {
                expected.insert((name.to_owned(), crc, found));
            }
        }
        let reported: BTreeSet<(String, u32, u32)> = report
            .problems
            .iter()
            .filter_map(|p| match p {
                ModuleProblem::CrcMismatch {
                    module: m,
                    symbol,
                    wanted,
                    found,
                    provider,
                } if *m == module.name && provider == "vmlinux" => {
                    Some((symbol.clone(), *wanted, *found))
                }
                _ => None,
            })
            .collect();
        assert_eq!(reported, expected, "{}", module.name);
    }
    let crc_mismatches = report
        .problems
        .iter()
        .filter(|p| matches!(p, ModuleProblem::CrcMismatch { .. }))
        .count();
    assert!(
        crc_mismatches > 0,
        "6.1.0-56 changed some CRCs these modules use"
    );
}

fn symvers_vmlinux_crcs(path: &Path) -> BTreeMap<String, u32> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.get(2) == Some(&"vmlinux")).then(|| {
                (
                    f[1].to_owned(),
                    u32::from_str_radix(&f[0][2..], 16).unwrap(),
                )
            })
        })
        .collect()
}

/// CRC, GPL-only, namespace.
type ExportFacts = (Option<u32>, Option<bool>, Option<String>);

#[test]
fn exports_agree_with_module_symvers() {
    let kernel = KernelAbi::from_headers(&debs::headers(RELEASE, KERNEL_VERSION)).unwrap();
    // Module.symvers lists every in-tree export under the module's path.
    let mut by_module: BTreeMap<String, BTreeMap<String, ExportFacts>> = BTreeMap::new();
    for (name, export) in &kernel.exports {
        if let ExportSource::InTreeModule(path) = &export.source {
            by_module.entry(path.clone()).or_default().insert(
                name.clone(),
                (export.crc, export.gpl_only, export.namespace.clone()),
            );
        }
    }
    let mut namespaced = 0;
    for entry in tree().modules.values() {
        let key = entry
            .relative
            .trim_start_matches("kernel/")
            .trim_end_matches(".ko");
        let ours: BTreeMap<String, ExportFacts> = entry
            .module
            .exports
            .iter()
            .map(|e| {
                (
                    e.name.clone(),
                    (e.crc, Some(e.gpl_only), e.namespace.clone()),
                )
            })
            .collect();
        namespaced += ours.values().filter(|v| v.2.is_some()).count();
        assert_eq!(
            ours,
            by_module.remove(key).unwrap_or_default(),
            "{}",
            entry.relative
        );
    }
    assert!(
        by_module.is_empty(),
        "exports of modules not found: {:?}",
        by_module.keys()
    );
    assert!(namespaced > 0, "some in-tree exports are namespaced");
}

#[test]
fn modinfo_agrees_with_kmod() {
    for module in sample() {
        let field = |name: &str| -> Vec<String> {
            let out = stdout(
                Command::new("modinfo")
                    .args(["-0", "-F", name])
                    .arg(&module.path),
            );
            out.split('\0')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let info = &module.modinfo;
        let one = |v: &Option<String>| v.iter().cloned().collect::<Vec<_>>();
        assert_eq!(one(&info.vermagic), field("vermagic"), "{}", module.name);
        assert_eq!(one(&info.license), field("license"), "{}", module.name);
        assert_eq!(
            one(&info.srcversion),
            field("srcversion"),
            "{}",
            module.name
        );
        assert_eq!(vec![module.name.clone()], field("name"), "{}", module.name);
        assert_eq!(info.firmware, field("firmware"), "{}", module.name);
        assert_eq!(info.alias, field("alias"), "{}", module.name);
        assert_eq!(info.softdep, field("softdep"), "{}", module.name);
        let depends: Vec<String> = field("depends")
            .iter()
            .flat_map(|d| d.split(','))
            .filter(|d| !d.is_empty())
            .map(|d| d.replace('-', "_"))
            .collect();
        assert_eq!(info.depends, depends, "{}", module.name);
        assert_eq!(info.intree, field("intree") == ["Y"], "{}", module.name);
        assert_eq!(
            info.retpoline,
            field("retpoline") == ["Y"],
            "{}",
            module.name
        );
        // kmod decodes the PKCS#7 signer; we only find the signature.
        assert_eq!(
            module.signature.is_some(),
            field("sig_id") == ["PKCS#7"],
            "{}",
            module.name
        );
    }
}

#[test]
fn versions_and_undefined_symbols_agree_with_kmod_and_nm() {
    for module in sample() {
        let dump = stdout(
            Command::new("modprobe")
                .arg("--dump-modversions")
                .arg(&module.path),
        );
        let theirs: Vec<(String, u32)> = dump
            .lines()
            .map(|l| {
                let (crc, name) = l.split_once('\t').unwrap();
                (name.to_owned(), u32::from_str_radix(&crc[2..], 16).unwrap())
            })
            .collect();
        let ours: Vec<(String, u32)> = module
            .versions
            .iter()
            .map(|v| (v.name.clone(), v.crc))
            .collect();
        assert_eq!(ours, theirs, "{}", module.name);

        let nm = stdout(
            Command::new("nm")
                .args(["-u", "--format=posix"])
                .arg(&module.path),
        );
        let theirs: BTreeSet<(String, bool)> = nm
            .lines()
            .map(|l| {
                let mut w = l.split_whitespace();
                let name = w.next().unwrap().to_owned();
                (name, w.next() == Some("w"))
            })
            .collect();
        let ours: BTreeSet<(String, bool)> = module
            .undefined
            .iter()
            .map(|u| (u.name.clone(), u.weak))
            .collect();
        assert_eq!(ours, theirs, "{}", module.name);
    }
}

#[test]
fn compressed_modules_read_like_plain_ones() {
    let plain = tree().modules["squashfs"].module.clone();
    let dir = tempfile::tempdir().unwrap();
    for (suffix, tool) in [
        (".xz", vec!["xz", "-kc"]),
        (".zst", vec!["zstd", "-qc"]),
        (".gz", vec!["gzip", "-nc"]),
    ] {
        let path = dir.path().join(format!("squashfs.ko{suffix}"));
        let out = run(Command::new(tool[0]).args(&tool[1..]).arg(&plain.path));
        std::fs::write(&path, out.stdout).unwrap();
        let read = Module::read(&path).unwrap();
        assert_eq!(read.name, "squashfs");
        assert_eq!(read.modinfo, plain.modinfo, "{suffix}");
        assert_eq!(read.versions, plain.versions, "{suffix}");
        assert_eq!(read.undefined, plain.undefined, "{suffix}");
        assert_eq!(read.exports, plain.exports, "{suffix}");
        assert_eq!(read.signature, plain.signature, "{suffix}");
        assert_ne!(
            read.file_sha256, plain.file_sha256,
            "the digest is of the stored file"
        );
    }
}
