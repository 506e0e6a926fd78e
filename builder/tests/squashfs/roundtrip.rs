//! The full tree through the real readers: unsquashfs and the kernel.

use std::fs;
use std::process::Command;

use ironrack_builder::rootfs::fsimage::squashfs::{Compression, Mtime, Options};

use super::tree::{self, EPOCH};
use super::util::{
    Mount, assert_same, getcap, getfattr, have, is_root, manifest, options, run, unsquash, write,
};

fn ready(test: &str) -> bool {
    if !is_root() {
        eprintln!("SKIP {test}: needs root (devices, owners, trusted.* attributes, mount)");
        return false;
    }
    ["unsquashfs", "getfattr", "getcap", "setcap", "setfattr"]
        .iter()
        .all(|t| have(t))
}

#[test]
fn unsquashfs_extracts_the_same_tree() {
    if !ready("unsquashfs_extracts_the_same_tree") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree::full(&src, false);
    for (name, compression) in [
        ("zstd", Compression::Zstd { level: 3 }),
        ("xz", Compression::Xz { level: 6 }),
    ] {
        let image = dir.path().join(format!("{name}.squashfs"));
        let opts = Options {
            compression,
            threads: 2,
            ..Options::new(EPOCH)
        };
        let summary = write(&src, &image, &opts);
        assert_eq!(summary.bytes_out, fs::metadata(&image).unwrap().len());
        assert_eq!(summary.bytes_out % 4096, 0);
        assert_eq!(
            summary.deduplicated, 2,
            "dup-2 and small-dup are stored once"
        );

        let stat = run(Command::new("unsquashfs").arg("-stat").arg(&image));
        assert!(stat.contains(&format!("Compression {name}")), "{stat}");
        assert!(
            stat.contains(&format!("Number of inodes {}", summary.inodes)),
            "{stat}"
        );
        assert!(stat.contains("Block size 131072"), "{stat}");

        let dest = dir.path().join(format!("out-{name}"));
        unsquash(&image, &dest);
        let want = manifest(&src, Some(Mtime::Clamp(EPOCH)), true, false);
        let got = manifest(&dest, None, true, false);
        assert_same(&format!("unsquashfs -d of the {name} image"), &want, &got);
        assert_eq!(
            getfattr(&src),
            getfattr(&dest),
            "{name}: extended attributes"
        );
        let caps = getcap(&dest);
        assert_eq!(getcap(&src), caps);
        assert!(
            caps.iter()
                .any(|l| l.starts_with("./ping") && l.contains("cap_net_raw=ep")),
            "{caps:?}"
        );
    }
}

#[test]
fn the_kernel_mounts_the_same_tree() {
    if !ready("the_kernel_mounts_the_same_tree") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree::full(&src, false);
    let want = manifest(&src, Some(Mtime::Clamp(EPOCH)), true, true);
    // The kernel's xz decoder is stricter than unsquashfs's liblzma
    // (dictionary no larger than a block, CRC32 or no check): mount both.
    for (name, compression) in [
        ("zstd", Compression::Zstd { level: 15 }),
        ("xz", Compression::Xz { level: 6 }),
    ] {
        let image = dir.path().join(format!("{name}.squashfs"));
        let opts = Options {
            compression,
            threads: 2,
            ..Options::new(EPOCH)
        };
        write(&src, &image, &opts);
        let mnt = dir.path().join(format!("mnt-{name}"));
        let mounted = Mount::new(&image, &mnt);
        let got = manifest(mounted.0, None, true, true);
        assert_same(&format!("the mounted {name} image"), &want, &got);
        assert_eq!(
            getfattr(&src),
            getfattr(mounted.0),
            "{name}: extended attributes"
        );
        let caps = run(Command::new("getcap").arg(mounted.0.join("ping")));
        assert!(caps.contains("cap_net_raw=ep"), "{name}: {caps}");
        // Lookups by name in the big directory (which uses the index).
        for i in [0, 255, 256, 511, 699] {
            let entry = format!("entry-{i:04}-{}", "x".repeat(i % 40));
            let text = fs::read_to_string(mounted.0.join("big").join(&entry)).unwrap();
            assert_eq!(text, format!("{i}\n"), "{name}: big/{entry}");
        }
        assert!(!mounted.0.join("big/entry-0700").exists());
    }
}

/// With a fixed time for every entry, `unsquashfs -lln` lists our image
/// exactly as it lists mksquashfs's image of the same tree.
#[test]
fn listing_matches_mksquashfs() {
    if !ready("listing_matches_mksquashfs") || !have("mksquashfs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree::full(&src, false);
    let ours = dir.path().join("ours.squashfs");
    let opts = Options {
        mtime: Mtime::Fixed(EPOCH),
        ..options(EPOCH, 15, 2)
    };
    write(&src, &ours, &opts);
    let theirs = dir.path().join("theirs.squashfs");
    run(Command::new("mksquashfs")
        .arg(&src)
        .arg(&theirs)
        .args(["-noappend", "-no-progress", "-comp", "zstd", "-all-time"])
        .arg(EPOCH.to_string())
        .arg("-mkfs-time")
        .arg(EPOCH.to_string()));
    // A directory's listed size is its listing's, whose header layout is
    // the writer's choice: compare everything else.
    let list = |image: &std::path::Path| {
        run(Command::new("unsquashfs")
            .env("TZ", "UTC")
            .arg("-lln")
            .arg(image))
        .lines()
        .map(
            |line| match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                [mode, owner, _size, rest @ ..] if mode.starts_with('d') => {
                    format!("{mode} {owner} - {}", rest.join(" "))
                }
                fields => fields.join(" "),
            },
        )
        .collect::<Vec<_>>()
    };
    assert_same(
        "unsquashfs -lln, ours vs mksquashfs",
        &list(&theirs),
        &list(&ours),
    );
}
