//! Random trees → image → unsquashfs → the same tree.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use ironrack_builder::rootfs::fsimage::squashfs::{Mtime, Options};
use proptest::prelude::*;

use super::tree::bytes;
use super::util::{assert_same, getfattr, have, manifest, options, run, unsquash, write};

#[derive(Debug, Clone)]
enum Entry {
    File {
        size: usize,
        seed: u64,
        mode: u32,
        xattr: Option<Vec<u8>>,
    },
    Link(Vec<u8>),
    Dir(Vec<(Vec<u8>, Entry)>),
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    // Any bytes but '/' and NUL (and not "." or ".."), up to 255.
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
            prop_oneof![Just(0o644u32), Just(0o755), Just(0o4711), Just(0o600)],
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        )
            .prop_map(|(size, seed, mode, xattr)| Entry::File { size, seed, mode, xattr }),
        1 => proptest::collection::vec(1u8..=255, 1..300).prop_map(Entry::Link),
    ];
    leaf.prop_recursive(3, 40, 12, |inner| {
        proptest::collection::btree_map(name(), inner, 0..12)
            .prop_map(|m| Entry::Dir(m.into_iter().collect()))
    })
}

fn build(path: &Path, entry: &Entry) {
    match entry {
        Entry::File {
            size,
            seed,
            mode,
            xattr,
        } => {
            // Every other seed gives zeros: sparse blocks and zero tails.
            let data = if seed % 2 == 0 {
                vec![0; *size]
            } else {
                bytes(*seed, *size)
            };
            fs::write(path, data).unwrap();
            if let Some(value) = xattr {
                rustix::fs::lsetxattr(path, "user.prop", value, rustix::fs::XattrFlags::empty())
                    .unwrap();
            }
            fs::set_permissions(path, fs::Permissions::from_mode(*mode)).unwrap();
        }
        Entry::Link(target) => {
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), path).unwrap();
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
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_round_trip_through_unsquashfs(
        children in proptest::collection::btree_map(name(), entry(), 0..10),
        block_log in 12u32..=17,
        threads in 1usize..4,
    ) {
        if !have("unsquashfs") || !have("getfattr") {
            return Ok(());
        }
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        build(&src, &Entry::Dir(children.into_iter().collect()));
        let epoch = 1_600_000_000;
        run(Command::new("find").arg(&src).args(["-exec", "touch", "-h", "-d", "@1500000000", "{}", "+"]));
        let image = dir.path().join("image.squashfs");
        let opts = Options { block_size: 1 << block_log, ..options(epoch, 3, threads) };
        write(&src, &image, &opts);
        let dest = dir.path().join("dest");
        unsquash(&image, &dest);
        let want = manifest(&src, Some(Mtime::Clamp(epoch)), true, false);
        let got = manifest(&dest, None, true, false);
        assert_same("random tree through unsquashfs", &want, &got);
        prop_assert_eq!(getfattr(&src), getfattr(&dest));
    }
}
