//! Our unpack against dpkg's own: the same real packages unpacked by
//! `dpkg --root R --unpack` and by ours must give the same tree (paths,
//! types, modes, owners, file mtimes, contents, links) and the same dpkg
//! database (status, info files, trigger interests), byte for byte.
//!
//! Packages with a preinst are left out: dpkg would run it on the host
//! with `--root` (configuring is the sandbox's job, tested elsewhere).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use indicatif::ProgressBar;
use ironrack_builder::fixtures::{DebBuilder, TarKind};
use ironrack_builder::rootfs::install::{PackageFile, prepare, unpack};
use ironrack_builder::rootfs::tree::Manifest;
use ironrack_builder::rootfs::{Target, dpkg_db};
use ironrack_builder::source::DebFile;

use super::support::{BASE, real_debs, root_or_skip, run, scratch};

/// Every file under `dir` (relative name → (mode, contents)).
fn files_under(dir: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_file() {
            out.insert(
                entry.file_name().to_string_lossy().into_owned(),
                (
                    meta.permissions().mode() & 0o7777,
                    std::fs::read(entry.path()).unwrap(),
                ),
            );
        }
    }
    out
}

/// The manifest without what legitimately differs: directory mtimes
/// (dpkg sets them, then creating entries inside changes them anyway) and
/// dpkg's own database directory (compared separately).
fn comparable(root: &Path) -> Vec<String> {
    let manifest = Manifest::of(&Target::open(root).unwrap()).unwrap();
    manifest
        .lines
        .into_iter()
        .filter(|l| {
            !l.starts_with("/var/lib/dpkg/")
                && l != "/var/lib/dpkg"
                && !l.starts_with("/var/lib/dpkg\t")
        })
        .map(|l| {
            let mut fields: Vec<&str> = l.split('\t').collect();
            if fields[1] == "d" {
                fields[4] = "-";
            }
            fields.join("\t")
        })
        .collect()
}

/// What real packages rarely have: no md5sums (dpkg generates them),
/// setuid files, non-root owners, hard links, fifos, device nodes,
/// Multi-Arch: same (info files named `pkg:arch`), file triggers.
fn fixture_debs(dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let odd = DebBuilder::new("fixture-odd", "1.0-1", "amd64")
        .without_md5sums()
        .file("usr/bin/tool", b"#!/bin/sh\necho tool\n", 0o4755)
        .hardlink("usr/bin/tool-alias", "usr/bin/tool")
        .symlink("usr/bin/tool-link", "tool")
        .conffile("etc/fixture-odd.conf", b"setting=1\n")
        .file("var/lib/fixture-odd/state", b"", 0o640)
        .owned(1, 42, "daemon", "shadow")
        .dir("var/spool/fixture-odd", 0o2775)
        .owned(0, 8, "root", "mail")
        .node("usr/share/fixture-odd/fifo", TarKind::Fifo, 0o600)
        .node(
            "usr/share/fixture-odd/null",
            TarKind::CharDevice { major: 1, minor: 3 },
            0o666,
        )
        .control_file(
            "triggers",
            b"interest-noawait /usr/share/fixture-odd/hooks\n",
        );
    let same = DebBuilder::new("libfixture-same1", "2", "amd64")
        .field("Multi-Arch", "same")
        .file(
            "usr/lib/x86_64-linux-gnu/libfixture.so.1",
            b"\x7fELF not really",
            0o644,
        )
        .script("postinst", "#!/bin/sh\nexit 0\n");
    [odd, same]
        .iter()
        .map(|d| d.write_to(dir).unwrap())
        .collect()
}

#[test]
fn unpack_and_database_match_dpkg_unpack() {
    if !root_or_skip("unpack_and_database_match_dpkg_unpack") {
        return;
    }
    let mut debs: Vec<PathBuf> = real_debs("required", BASE)
        .into_iter()
        .filter(|d| {
            DebFile::open(d)
                .unwrap()
                .control_member("preinst")
                .is_none()
        })
        .collect();
    assert!(
        debs.len() > 50,
        "only {} packages without preinst",
        debs.len()
    );
    let work = scratch("dpkg-compat");
    debs.extend(fixture_debs(&work.join("fixtures")));
    let (by_dpkg, by_us) = (work.join("dpkg"), work.join("ours"));
    for root in [&by_dpkg, &by_us] {
        std::fs::create_dir(root).unwrap();
        prepare(&Target::open(root).unwrap(), "amd64").unwrap();
    }
    std::fs::create_dir_all(by_dpkg.join("var/lib/dpkg/info")).unwrap();
    std::fs::write(by_dpkg.join("var/lib/dpkg/status"), "").unwrap();
    run(Command::new("dpkg")
        .arg(format!("--root={}", by_dpkg.display()))
        .args(["--force-depends", "--force-unsafe-io", "--unpack"])
        .args(&debs));

    let target = Target::open(&by_us).unwrap();
    let unpacked = unpack(
        &target,
        &PackageFile::open_all(&debs).unwrap(),
        2,
        &ProgressBar::hidden(),
    )
    .unwrap();
    dpkg_db::write(&target, &unpacked.records).unwrap();

    let admin = |root: &Path| root.join("var/lib/dpkg");
    assert_eq!(
        std::fs::read_to_string(admin(&by_us).join("status")).unwrap(),
        std::fs::read_to_string(admin(&by_dpkg).join("status")).unwrap(),
        "status"
    );
    let (ours, theirs) = (
        files_under(&admin(&by_us).join("info")),
        files_under(&admin(&by_dpkg).join("info")),
    );
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "info file names"
    );
    for (name, (mode, data)) in &theirs {
        assert_eq!(ours[name].0, *mode, "mode of info/{name}");
        assert!(ours[name].1 == *data, "contents of info/{name}");
    }
    let (ours, theirs) = (
        files_under(&admin(&by_us).join("triggers")),
        files_under(&admin(&by_dpkg).join("triggers")),
    );
    for (name, (_, data)) in theirs.iter().filter(|(n, _)| n.as_str() != "Lock") {
        assert_eq!(
            ours.get(name)
                .map(|o| String::from_utf8_lossy(&o.1).into_owned()),
            Some(String::from_utf8_lossy(data).into_owned()),
            "triggers/{name}"
        );
    }

    // Ours also puts each conffile in place (where debootstrap's first
    // extraction leaves it), identical to the .dpkg-new copy dpkg left.
    let (ours, theirs) = (comparable(&by_us), comparable(&by_dpkg));
    let is_conffile_copy = |line: &String| {
        let (path, rest) = line.split_once('\t').unwrap();
        theirs.contains(&format!("{path}.dpkg-new\t{rest}"))
    };
    let diff: Vec<String> = theirs
        .iter()
        .filter(|l| !ours.contains(l))
        .map(|l| format!("dpkg: {l}"))
        .chain(
            ours.iter()
                .filter(|l| !theirs.contains(l) && !is_conffile_copy(l))
                .map(|l| format!("ours: {l}")),
        )
        .collect();
    assert!(diff.is_empty(), "trees differ:\n{}", diff.join("\n"));
}
