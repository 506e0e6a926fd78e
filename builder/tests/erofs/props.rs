//! Random trees → EROFS image → `fsck.erofs --extract` → the same tree.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use ironrack_builder::rootfs::fsimage::erofs::{Options, write_dir};
use ironrack_builder::rootfs::fsimage::squashfs::Mtime;
use proptest::prelude::*;

use super::tree::bytes;
use super::util::{assert_same, have, manifest, run};

#[derive(Debug, Clone)]
enum Entry {
    File { size: usize, seed: u64, mode: u32 },
    Link(Vec<u8>),
    Dir(Vec<(Vec<u8>, Entry)>),
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(
            any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0),
            1..12
        ),
        (1usize..255).prop_map(|n| vec![b'n'; n]),
    ]
    .prop_filter("not . or ..", |n| n != b"." && n != b"..")
}

fn entry() -> impl Strategy<Value = Entry> {
    let leaf = prop_oneof![
        4 => (
            prop_oneof![0usize..100, 0usize..20_000, 4000usize..9000],
            any::<u64>(),
            // No setuid here: fsck.erofs 1.5 extracts with chmod before
            // chown, which clears it (the kernel mount test covers setuid).
            prop_oneof![Just(0o644u32), Just(0o755), Just(0o711), Just(0o600)],
        )
            .prop_map(|(size, seed, mode)| Entry::File { size, seed, mode }),
        1 => proptest::collection::vec(1u8..=255, 1..300).prop_map(Entry::Link),
    ];
    // Wide directories too: listings over one 4 KiB block.
    leaf.prop_recursive(3, 200, 120, |inner| {
        proptest::collection::btree_map(name(), inner, 0..120)
            .prop_map(|m| Entry::Dir(m.into_iter().collect()))
    })
}

fn build(path: &Path, entry: &Entry) {
    match entry {
        Entry::File { size, seed, mode } => {
            fs::write(path, bytes(*seed, *size)).unwrap();
            fs::set_permissions(path, fs::Permissions::from_mode(*mode)).unwrap();
        }
        Entry::Link(target) => {
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), path).unwrap()
        }
        Entry::Dir(children) => {
            fs::create_dir(path).unwrap();
            for (name, child) in children {
                build(&path.join(std::ffi::OsStr::from_bytes(name)), child);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_round_trip_through_fsck_erofs(
        children in proptest::collection::btree_map(name(), entry(), 0..10),
    ) {
        if !have("fsck.erofs") {
            return Ok(());
        }
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        build(&src, &Entry::Dir(children.into_iter().collect()));
        let epoch = 1_600_000_000;
        run(Command::new("find").arg(&src).args(["-exec", "touch", "-h", "-d", "@1500000000", "{}", "+"]));
        let image = dir.path().join("image.erofs");
        write_dir(&src, &image, &Options::new(epoch), &|_| {}).unwrap();
        let dest = dir.path().join("dest");
        run(Command::new("fsck.erofs").arg(format!("--extract={}", dest.display())).arg(&image));
        // fsck.erofs restores modes, owners and file mtimes, not symlink mtimes.
        let want = manifest(&src, Some(Mtime::Clamp(epoch)), true, false);
        let got = manifest(&dest, None, true, false);
        assert_same("random tree through fsck.erofs --extract", &want, &got);
    }
}
