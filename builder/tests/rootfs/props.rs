//! Property tests of the rootfs parsers and writers: entry names, trigger
//! files and dpkg's output never panic; every name the extractor accepts
//! stays below the root; the tar writer round-trips arbitrary names, link
//! targets, owners, modes and xattrs through the `tar` crate, and odd
//! trees through GNU tar.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};
use std::process::Command;

use indicatif::ProgressBar;
use ironrack_builder::rootfs::dpkg_db::parse_triggers;
use ironrack_builder::rootfs::extract::{entry_path, listed_path};
use ironrack_builder::rootfs::fsimage::tar;
use ironrack_builder::rootfs::tree::Manifest;
use ironrack_builder::rootfs::{EntryProblem, Target};
use proptest::prelude::*;

use super::support::{root_or_skip, run, scratch};

proptest! {
    #[test]
    fn accepted_entry_names_stay_below_the_root(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
        let raw: Vec<u8> = raw.into_iter().filter(|&b| b != 0).collect();
        match entry_path(Path::new(OsStr::from_bytes(&raw))) {
            Ok(rel) => {
                prop_assert!(rel.components().all(|c| matches!(c, Component::Normal(_))));
                prop_assert!(!listed_path(&rel).is_empty());
            }
            Err(problem) => prop_assert!(matches!(
                problem,
                EntryProblem::ParentComponent | EntryProblem::AbsolutePath
            )),
        }
    }

    #[test]
    fn trigger_files_of_any_bytes_parse(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        for (directive, trigger) in parse_triggers(&data) {
            prop_assert!(!directive.is_empty() && !trigger.is_empty());
            prop_assert!(!directive.contains('#') && !trigger.contains('#'));
        }
    }
}

/// Writes a tar of `root` and reads it back with the `tar` crate:
/// path → (kind, mode, uid, gid, size or link, xattrs).
fn read_back(root: &Path) -> BTreeMap<Vec<u8>, String> {
    let target = Target::open(root).unwrap();
    let mut bytes = Vec::new();
    tar::write(
        &target,
        &mut bytes,
        Path::new("mem.tar"),
        &ProgressBar::hidden(),
    )
    .unwrap();
    let mut archive = ::tar::Archive::new(bytes.as_slice());
    let mut out = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut xattrs = Vec::new();
        if let Some(ext) = entry.pax_extensions().unwrap() {
            for e in ext {
                let e = e.unwrap();
                if let Some(name) = e.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.push(format!("{name}={}", hex::encode(e.value_bytes())));
                }
            }
        }
        let h = entry.header().clone();
        let link = entry
            .link_name_bytes()
            .map(|l| l.into_owned())
            .unwrap_or_default();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        let path = entry.path_bytes().into_owned();
        out.insert(
            path,
            format!(
                "{:?} {:o} {}:{} {} {} {}",
                h.entry_type(),
                h.mode().unwrap(),
                entry.header().uid().unwrap(),
                entry.header().gid().unwrap(),
                hex::encode(&data),
                hex::encode(&link),
                xattrs.join(",")
            ),
        );
    }
    out
}

/// Name and link bytes: anything but NUL and newline (the `tar` crate's
/// PAX reader splits records at newlines; GNU tar, below, does not need
/// this).
fn name_byte() -> impl Strategy<Value = u8> {
    (1u8..=255).prop_filter("no newline", |&b| b != b'\n')
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn tar_round_trips_names_links_owners_modes_and_xattrs(
        names in proptest::collection::vec(proptest::collection::vec(name_byte(), 1..120), 1..6),
        link in proptest::collection::vec(name_byte(), 1..300),
        uid in 0u32..5_000_000,
        mode in 0u32..0o7777,
    ) {
        if !nix::unistd::geteuid().is_root() {
            return Ok(()); // chown needs root; the SKIP line comes from the GNU tar test
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut expected = BTreeMap::new();
        for (i, name) in names.iter().enumerate() {
            // One directory level per file, so names are long but valid.
            let mut component: Vec<u8> = name.iter().map(|&b| if b == b'/' { b'_' } else { b }).take(100).collect();
            if component == b"." || component == b".." {
                component.push(b'x');
            }
            let sub = format!("d{i}-{}", "x".repeat(i * 40));
            std::fs::create_dir_all(root.join(&sub)).unwrap();
            let path = root.join(&sub).join(OsStr::from_bytes(&component));
            std::fs::write(&path, name).unwrap();
            nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(uid / 2))).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
            let mut full = format!("./{sub}/").into_bytes();
            full.extend_from_slice(&component);
            expected.insert(full, (name.clone(), mode));
        }
        std::os::unix::fs::symlink(OsStr::from_bytes(&link), root.join("link")).unwrap();
        let xattr_file = root.join("capable");
        std::fs::write(&xattr_file, b"").unwrap();
        run(Command::new("setfattr").args(["-n", "user.ironrack", "-v", "0x00ff10"]).arg(&xattr_file));

        let back = read_back(root);
        for (path, (data, mode)) in &expected {
            let line = back.get(path).unwrap_or_else(|| panic!("{} missing", String::from_utf8_lossy(path)));
            prop_assert!(line.starts_with(&format!("Regular {mode:o} {uid}:{} {}", uid / 2, hex::encode(data))), "{line}");
        }
        let link_line = &back[b"./link".as_slice()];
        prop_assert!(link_line.contains(&hex::encode(&link)), "{link_line}");
        prop_assert!(back[b"./capable".as_slice()].ends_with("user.ironrack=00ff10"));
    }
}

#[test]
fn gnu_tar_extracts_odd_trees_exactly() {
    if !root_or_skip("gnu_tar_extracts_odd_trees_exactly") {
        return;
    }
    let work = scratch("tar-odd");
    let root = work.join("tree");
    std::fs::create_dir(&root).unwrap();
    let deep = root.join(format!("{}/{}", "a".repeat(90), "b".repeat(90)));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(
        deep.join("c".repeat(120)),
        "long name without a usable split\n",
    )
    .unwrap();
    std::fs::write(deep.join("short"), "split into prefix and name\n").unwrap();
    std::os::unix::fs::symlink("t".repeat(250), root.join("long-link")).unwrap();
    std::fs::write(root.join("hard"), "linked\n").unwrap();
    std::fs::hard_link(root.join("hard"), root.join("hard2")).unwrap();
    nix::unistd::mkfifo(
        &root.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    nix::sys::stat::mknod(
        &root.join("null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    std::fs::write(root.join(OsStr::from_bytes(b"latin1-\xe9")), "bytes\n").unwrap();
    std::fs::write(root.join("big-ids"), "").unwrap();
    nix::unistd::chown(
        &root.join("big-ids"),
        Some(nix::unistd::Uid::from_raw(3_000_000)),
        Some(nix::unistd::Gid::from_raw(4_000_000)),
    )
    .unwrap();
    std::fs::write(root.join("ping"), "").unwrap();
    run(Command::new("setcap")
        .arg("cap_net_raw=ep")
        .arg(root.join("ping")));
    std::fs::set_permissions(
        root.join("hard"),
        std::os::unix::fs::PermissionsExt::from_mode(0o4755),
    )
    .unwrap();

    let tar_path = work.join("odd.tar");
    let mut file = std::fs::File::create(&tar_path).unwrap();
    tar::write(
        &Target::open(&root).unwrap(),
        &mut file,
        &tar_path,
        &ProgressBar::hidden(),
    )
    .unwrap();
    drop(file);
    let out = work.join("out");
    std::fs::create_dir(&out).unwrap();
    run(Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(&tar_path)
        .arg("-C")
        .arg(&out));
    let (a, b) = (
        Manifest::of(&Target::open(&root).unwrap()).unwrap(),
        Manifest::of(&Target::open(&out).unwrap()).unwrap(),
    );
    assert_eq!(a.diff(&b), vec![], "GNU tar's extraction differs");
    let getcap =
        String::from_utf8(run(Command::new("getcap").arg(out.join("ping"))).stdout).unwrap();
    assert!(getcap.contains("cap_net_raw=ep"), "{getcap}");
}
