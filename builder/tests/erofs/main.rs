//! The EROFS writer against the real readers: erofs-utils' `fsck.erofs`
//! (`--extract` too) and `dump.erofs`, and the host kernel mounting the
//! image (as root).

// SKIP notices must be loud, on stderr.
#![allow(clippy::print_stderr)]

mod props;

// The tree generator and comparison helpers of the SquashFS tests.
#[path = "../squashfs/tree.rs"]
#[allow(dead_code)]
mod tree;
#[path = "../squashfs/util.rs"]
#[allow(dead_code)]
mod util;

use std::fs;
use std::path::Path;
use std::process::Command;

use ironrack_builder::rootfs::fsimage::erofs::{Options, write_dir};
use ironrack_builder::rootfs::fsimage::squashfs::{Mtime, Summary};

use tree::EPOCH;
use util::{Mount, assert_same, getcap, getfattr, have, is_root, manifest, run};

fn ready(test: &str) -> bool {
    if !is_root() {
        eprintln!("SKIP {test}: needs root (devices, owners, trusted.* attributes, mount)");
        return false;
    }
    [
        "fsck.erofs",
        "dump.erofs",
        "getfattr",
        "getcap",
        "setcap",
        "setfattr",
    ]
    .iter()
    .all(|t| have(t))
}

fn write(src: &Path, image: &Path) -> Summary {
    write_dir(src, image, &Options::new(EPOCH), &|_| {})
        .unwrap_or_else(|e| panic!("writing {}: {e}", image.display()))
}

#[test]
fn fsck_and_the_kernel_read_the_same_tree() {
    if !ready("fsck_and_the_kernel_read_the_same_tree") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree::full(&src, false);
    let image = dir.path().join("root.erofs");
    let summary = write(&src, &image);
    assert_eq!(summary.bytes_out, fs::metadata(&image).unwrap().len());
    run(Command::new("fsck.erofs").arg(&image));
    let dump = run(Command::new("dump.erofs").arg(&image));
    assert!(
        dump.contains(&format!(
            "Filesystem inode count:                       {}",
            summary.inodes
        )) || dump.contains(&summary.inodes.to_string()),
        "{dump}"
    );

    let mnt = dir.path().join("mnt");
    let mounted = Mount::of_type("erofs", &image, &mnt);
    let want = manifest(&src, Some(Mtime::Clamp(EPOCH)), true, true);
    let got = manifest(mounted.0, None, true, true);
    assert_same("the mounted erofs image", &want, &got);
    assert_eq!(getfattr(&src), getfattr(mounted.0), "extended attributes");
    assert_eq!(getcap(&src), getcap(mounted.0));
    for i in [0, 255, 256, 511, 699] {
        let entry = format!("entry-{i:04}-{}", "x".repeat(i % 40));
        let text = fs::read_to_string(mounted.0.join("big").join(&entry)).unwrap();
        assert_eq!(text, format!("{i}\n"), "big/{entry}");
    }
}

#[test]
fn same_tree_same_bytes_from_another_path_and_order() {
    if !is_root() {
        eprintln!("SKIP same_tree_same_bytes_from_another_path_and_order: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("first"), dir.path().join("second"));
    tree::full(&one, false);
    tree::full(&two, true);
    let a = write(&one, &dir.path().join("a.erofs"));
    let b = write(&two, &dir.path().join("b.erofs"));
    assert_eq!(a.sha256_hex(), b.sha256_hex());
    fs::write(one.join("small.txt"), b"hello squashfs!\n").unwrap();
    run(Command::new("touch")
        .arg("-d")
        .arg(format!("@{}", EPOCH - 5))
        .arg(one.join("small.txt")));
    let c = write(&one, &dir.path().join("c.erofs"));
    assert_ne!(a.sha256_hex(), c.sha256_hex());
}
