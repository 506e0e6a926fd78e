//! modules.dep, modules.alias and closures against kmod's `depmod` run
//! on the same real module tree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use ironrack_builder::boot::elf::ImageRoot;
use ironrack_builder::boot::kmod::depmod::{ModuleTree, parse_modules_dep};

use super::debs::{self, RELEASE, run};

/// depmod's output for the tree (kmod 30 has no `-o`: a hard-linked copy
/// of the release directory gets the index files).
fn real_depmod(
    release_dir: &Path,
    names: Option<&BTreeSet<String>>,
    tree: &ModuleTree,
) -> tempfile::TempDir {
    let base = tempfile::tempdir().unwrap();
    let target = base.path().join("lib/modules").join(RELEASE);
    std::fs::create_dir_all(&target).unwrap();
    match names {
        None => {
            run(Command::new("cp")
                .arg("-al")
                .arg(release_dir)
                .arg(base.path().join("lib/modules")));
        }
        Some(names) => {
            for name in names {
                let relative = &tree.modules[name].relative;
                let dest = target.join(relative);
                std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                std::fs::hard_link(release_dir.join(relative), dest).unwrap();
            }
            std::fs::copy(
                release_dir.join("modules.builtin"),
                target.join("modules.builtin"),
            )
            .unwrap();
        }
    }
    run(Command::new("depmod")
        .arg("-b")
        .arg(base.path())
        .arg(RELEASE));
    base
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// modprobe loads a modules.dep list from its end, so in each list every
/// module must come before the modules it uses.
fn assert_users_first(deps: &BTreeMap<String, Vec<String>>) {
    for (module, list) in deps {
        for (i, d) in list.iter().enumerate() {
            for later in &list[i + 1..] {
                assert!(
                    !deps[later].contains(d),
                    "{module}: {d} is listed before {later}, which uses it"
                );
            }
        }
    }
}

fn as_sets(deps: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, BTreeSet<String>> {
    deps.iter()
        .map(|(k, v)| (k.clone(), v.iter().cloned().collect()))
        .collect()
}

#[test]
fn whole_tree_modules_dep_matches_depmod() {
    let root = debs::kernel_root();
    let tree = ModuleTree::scan(&ImageRoot::new(&root), RELEASE).unwrap();
    let all: BTreeSet<String> = tree.modules.keys().cloned().collect();
    let ours = parse_modules_dep(&tree.modules_dep(&all), Path::new("ours")).unwrap();
    let base = real_depmod(&debs::modules_dir(), None, &tree);
    let dir = base.path().join("lib/modules").join(RELEASE);
    let theirs = parse_modules_dep(&read(&dir.join("modules.dep")), &dir).unwrap();
    assert_eq!(as_sets(&ours), as_sets(&theirs));
    assert_users_first(&ours);
    assert_users_first(&theirs);

    let lines = |text: &str| -> BTreeSet<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        lines(&tree_alias(&tree, &all)),
        lines(&read(&dir.join("modules.alias")))
    );
}

fn tree_alias(tree: &ModuleTree, names: &BTreeSet<String>) -> String {
    let out = tempfile::tempdir().unwrap();
    tree.write_indexes(names, out.path()).unwrap();
    read(&out.path().join("modules.alias"))
}

#[test]
fn closure_of_the_initramfs_drivers_matches_depmod_on_the_subset() {
    let tree = ModuleTree::scan(&ImageRoot::new(debs::kernel_root()), RELEASE).unwrap();
    let requested = [
        "virtio_net",
        "e1000e",
        "igb",
        "ixgbe",
        "i40e",
        "ice",
        "mlx5_core",
        "bnxt_en",
        "tpm_tis",
        "tpm_crb",
        "nvme",
        "ahci",
        "squashfs",
        "overlay",
        "loop",
    ];
    let closure = tree.closure(&requested);
    // The cloud flavour builds TPM and NVMe in, and has no Intel/Broadcom
    // NICs or AHCI at all: each name lands in exactly one list.
    for name in requested {
        let listed = [&closure.load_order, &closure.builtin, &closure.missing]
            .iter()
            .filter(|l| l.iter().any(|n| n == name))
            .count();
        assert_eq!(listed, 1, "{name}: {closure:?}");
    }
    assert!(closure.builtin.contains(&"tpm_tis".to_owned()));
    assert!(closure.missing.contains(&"e1000e".to_owned()));
    // Dependencies come first in load order.
    let position = |n: &str| closure.load_order.iter().position(|m| m == n).unwrap();
    for name in &closure.load_order {
        for dep in &tree.modules[name].module.modinfo.depends {
            assert!(position(dep) < position(name), "{dep} before {name}");
        }
    }
    assert!(position("net_failover") < position("virtio_net"));

    // depmod over exactly those files agrees with our regenerated index.
    let names: BTreeSet<String> = closure.load_order.iter().cloned().collect();
    let base = real_depmod(&debs::modules_dir(), Some(&names), &tree);
    let dir = base.path().join("lib/modules").join(RELEASE);
    let theirs = parse_modules_dep(&read(&dir.join("modules.dep")), &dir).unwrap();
    let ours = parse_modules_dep(&tree.modules_dep(&names), Path::new("ours")).unwrap();
    assert_eq!(as_sets(&ours), as_sets(&theirs));
    assert_eq!(ours.len(), names.len());
}
