//! Generated modules: each rule of the check broken on purpose, reported
//! with the module and symbol at fault; the fixture itself read by kmod's
//! `modinfo` so it is a module object kmod recognises.

use std::path::Path;
use std::process::Command;

use ironrack_builder::boot::kmod::abi::Vermagic;
use ironrack_builder::boot::kmod::fixture::{FixtureExport, ModuleFixture};
use ironrack_builder::boot::kmod::{
    KernelAbi, Module, ModuleProblem, SignatureKind, check_modules,
};

use super::debs::run;

const VERMAGIC: &str = "6.1.0-50-cloud-amd64 SMP preempt mod_unload modversions ";

/// A tiny kernel: three vmlinux exports, one GPL-only, one namespaced.
fn kernel() -> KernelAbi {
    let symvers = "0x11111111\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n\
0x22222222\tgpl_thing\tvmlinux\tEXPORT_SYMBOL_GPL\t\n\
0x33333333\tns_thing\tvmlinux\tEXPORT_SYMBOL\tSECRET_NS\n\
0x44444444\tmodule_layout\tvmlinux\tEXPORT_SYMBOL\t\n\
0x55555555\tfat_thing\tfs/fat/fat\tEXPORT_SYMBOL\t\n";
    KernelAbi::from_symvers(
        Vermagic::parse(VERMAGIC).unwrap(),
        symvers,
        Path::new("Module.symvers"),
    )
    .unwrap()
}

fn module(fixture: &ModuleFixture) -> Module {
    let name = fixture
        .modinfo
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.clone())
        .unwrap();
    Module::parse(&fixture.build(), Path::new(&format!("{name}.ko"))).unwrap()
}

fn base(name: &str) -> ModuleFixture {
    ModuleFixture::new(name, VERMAGIC)
        .needs("printk", 0x11111111)
        .needs("module_layout", 0x44444444)
}

#[test]
fn a_clean_module_is_clean() {
    let report = check_modules(&kernel(), &[module(&base("good"))]);
    assert_eq!(report.problems, []);
    assert!(report.is_clean());
}

#[test]
fn unresolved_symbol_is_named() {
    let fixture = base("broken").needs("nvidia_p2p_get_pages", 0xdeadbeef);
    let report = check_modules(&kernel(), &[module(&fixture)]);
    assert_eq!(
        report.problems,
        [ModuleProblem::UnresolvedSymbol {
            module: "broken".into(),
            symbol: "nvidia_p2p_get_pages".into(),
        }]
    );
    assert_eq!(
        report.problems[0].to_string(),
        "broken: unresolved symbol nvidia_p2p_get_pages"
    );
}

#[test]
fn weak_undefined_symbols_may_stay_unresolved() {
    let mut fixture = base("weak");
    fixture.weak_undefined.push("optional_hook".into());
    let m = module(&fixture);
    assert!(
        m.undefined
            .iter()
            .any(|u| u.name == "optional_hook" && u.weak)
    );
    assert_eq!(check_modules(&kernel(), &[m]).problems, []);
}

#[test]
fn crc_and_vermagic_mismatches_name_both_sides() {
    let mut fixture = ModuleFixture::new(
        "old",
        "6.1.0-56-cloud-amd64 SMP preempt mod_unload modversions ",
    )
    .needs("printk", 0x99999999)
    .needs("module_layout", 0x44444444);
    fixture.versions.push(("gpl_thing".into(), 0x22222222));
    let report = check_modules(&kernel(), &[module(&fixture)]);
    assert_eq!(
        report.problems,
        [
            ModuleProblem::VermagicMismatch {
                module: "old".into(),
                want: VERMAGIC.trim_end().into(),
                got: "6.1.0-56-cloud-amd64 SMP preempt mod_unload modversions".into(),
            },
            ModuleProblem::CrcMismatch {
                module: "old".into(),
                symbol: "printk".into(),
                wanted: 0x99999999,
                found: 0x11111111,
                provider: "vmlinux".into(),
            },
        ]
    );
}

#[test]
fn module_layout_is_checked_even_though_not_undefined() {
    let fixture = ModuleFixture::new("layout", VERMAGIC)
        .needs("printk", 0x11111111)
        .needs("module_layout", 0x12345678);
    let m = module(&fixture);
    // In a real module module_layout is only in __versions.
    let mut m2 = m.clone();
    m2.undefined.retain(|u| u.name != "module_layout");
    let report = check_modules(&kernel(), &[m2]);
    assert!(matches!(
        report.problems.as_slice(),
        [ModuleProblem::CrcMismatch { symbol, .. }] if symbol == "module_layout"
    ));
}

#[test]
fn symbols_between_modules_of_the_set() {
    let provider = base("nvidia").exports("nvidia_get_rm_ops", 0xabc, false);
    let consumer = base("nvidia_uvm")
        .needs("nvidia_get_rm_ops", 0xabc)
        .with_info("depends", "nvidia");
    let good = check_modules(&kernel(), &[module(&provider), module(&consumer)]);
    assert_eq!(good.problems, []);

    // Consumer built against another build of the provider.
    let stale = base("nvidia_uvm")
        .needs("nvidia_get_rm_ops", 0xdef)
        .with_info("depends", "nvidia");
    let report = check_modules(&kernel(), &[module(&provider), module(&stale)]);
    assert_eq!(
        report.problems,
        [ModuleProblem::CrcMismatch {
            module: "nvidia_uvm".into(),
            symbol: "nvidia_get_rm_ops".into(),
            wanted: 0xdef,
            found: 0xabc,
            provider: "nvidia".into(),
        }]
    );

    // Provider left out of the set.
    let report = check_modules(&kernel(), &[module(&consumer)]);
    assert_eq!(
        report.problems,
        [
            ModuleProblem::MissingDependency {
                module: "nvidia_uvm".into(),
                dependency: "nvidia".into(),
            },
            ModuleProblem::UnresolvedSymbol {
                module: "nvidia_uvm".into(),
                symbol: "nvidia_get_rm_ops".into(),
            },
        ]
    );
}

#[test]
fn in_tree_provider_missing_from_the_set() {
    let fixture = base("uses_fat").needs("fat_thing", 0x55555555);
    let report = check_modules(&kernel(), &[module(&fixture)]);
    assert_eq!(
        report.problems,
        [ModuleProblem::ProviderNotInSet {
            module: "uses_fat".into(),
            symbol: "fat_thing".into(),
            provider: "fs/fat/fat".into(),
        }]
    );
}

#[test]
fn gpl_only_and_namespace_rules() {
    let fixture = base("proprietary")
        .with_info("license", "NVIDIA")
        .needs("gpl_thing", 0x22222222)
        .needs("ns_thing", 0x33333333);
    let report = check_modules(&kernel(), &[module(&fixture)]);
    assert_eq!(
        report.problems,
        [
            ModuleProblem::GplOnlySymbol {
                module: "proprietary".into(),
                symbol: "gpl_thing".into(),
                license: Some("NVIDIA".into()),
            },
            ModuleProblem::NamespaceNotImported {
                module: "proprietary".into(),
                symbol: "ns_thing".into(),
                namespace: "SECRET_NS".into(),
            },
        ]
    );
    let fixed = base("fixed")
        .with_info("license", "Dual MIT/GPL")
        .with_info("import_ns", "SECRET_NS")
        .needs("gpl_thing", 0x22222222)
        .needs("ns_thing", 0x33333333);
    assert_eq!(check_modules(&kernel(), &[module(&fixed)]).problems, []);
}

#[test]
fn duplicate_exports_and_modules() {
    let a = base("a")
        .exports("shared", 1, false)
        .exports("printk", 0x11111111, false);
    let b = base("b").exports("shared", 1, false);
    let report = check_modules(&kernel(), &[module(&a), module(&b), module(&b)]);
    assert!(report.problems.contains(&ModuleProblem::DuplicateExport {
        symbol: "printk".into(),
        providers: vec!["vmlinux".into(), "a".into()],
    }));
    assert!(report.problems.contains(&ModuleProblem::DuplicateExport {
        symbol: "shared".into(),
        providers: vec!["a".into(), "b".into()],
    }));
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, ModuleProblem::DuplicateModule { module, .. } if module == "b"))
    );
}

#[test]
fn missing_versions_are_warnings() {
    let mut fixture = base("unversioned");
    fixture.versions.clear();
    let report = check_modules(&kernel(), &[module(&fixture)]);
    assert_eq!(
        report.problems,
        [ModuleProblem::NoVersions {
            module: "unversioned".into()
        }]
    );
    assert!(report.is_clean(), "forced load: a warning, not a refusal");
}

#[test]
fn exports_round_trip_with_namespace_and_crc() {
    let mut fixture = base("exp")
        .exports("plain_fn", 7, false)
        .exports("gpl_fn", 8, true);
    fixture.exports.push(FixtureExport {
        name: "ns_fn".into(),
        gpl_only: true,
        crc: None,
        namespace: Some("MY_NS".into()),
    });
    let m = module(&fixture);
    let got: Vec<(String, bool, Option<u32>, Option<String>)> = m
        .exports
        .iter()
        .map(|e| (e.name.clone(), e.gpl_only, e.crc, e.namespace.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("gpl_fn".into(), true, Some(8), None),
            ("ns_fn".into(), true, None, Some("MY_NS".into())),
            ("plain_fn".into(), false, Some(7), None),
        ]
    );
}

#[test]
fn kmod_reads_the_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let mut fixture = base("fixture_mod").with_info("firmware", "nvidia/535.261.03/gsp_ga10x.bin");
    fixture.signature = Some(b"not really pkcs7".to_vec());
    let path = dir.path().join("fixture_mod.ko");
    std::fs::write(&path, fixture.build()).unwrap();
    let field = |f: &str| {
        String::from_utf8(run(Command::new("modinfo").args(["-F", f]).arg(&path)).stdout).unwrap()
    };
    assert_eq!(field("vermagic").trim_end(), VERMAGIC.trim_end());
    assert_eq!(field("firmware").trim(), "nvidia/535.261.03/gsp_ga10x.bin");
    let dump = run(Command::new("modprobe")
        .arg("--dump-modversions")
        .arg(&path));
    assert_eq!(
        String::from_utf8(dump.stdout).unwrap(),
        "0x11111111\tprintk\n0x44444444\tmodule_layout\n"
    );
    let m = Module::read(&path).unwrap();
    assert_eq!(m.signature.unwrap().kind, SignatureKind::Pkcs7);
    assert_eq!(m.modinfo.firmware, ["nvidia/535.261.03/gsp_ga10x.bin"]);
}
