//! A generated tree with every kind of entry SquashFS stores, made with
//! the real tools where they exist (mknod, mkfifo, setfattr, setcap, touch).

use std::fs;
use std::os::unix::fs::{PermissionsExt, lchown};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;

use super::util::run;

/// The source date epoch the tests use; a few entries are newer.
pub const EPOCH: u32 = 1_700_000_000;

/// Deterministic bytes that compress somewhat (like binaries do).
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 7 < 4 {
                b"squashfs"[i % 8]
            } else {
                x as u8
            }
        })
        .collect()
}

fn touch(path: &Path, time: i64) {
    run(Command::new("touch")
        .arg("-h")
        .arg("-d")
        .arg(format!("@{time}"))
        .arg(path));
}

fn setfattr(path: &Path, name: &str, value: &str) {
    run(Command::new("setfattr")
        .arg("-h")
        .args(["-n", name, "-v", value])
        .arg(path));
}

/// One part of the tree, made under the root it is given.
type Step = Box<dyn Fn(&Path)>;

/// Build the full tree under `root` (which must not exist). `reverse`
/// creates entries in the opposite order, so directories list differently
/// on disk while holding the same tree. Needs root (devices, owners,
/// trusted.* and security.* attributes).
pub fn full(root: &Path, reverse: bool) {
    fs::create_dir(root).unwrap();
    fs::create_dir_all(root.join("a/b/c/d")).unwrap();
    let mut steps: Vec<Step> = vec![
        Box::new(|r| fs::create_dir_all(r.join("empty-dir")).unwrap()),
        Box::new(|r| {
            // > 256 entries and > 8 KiB of listing: several headers, an index.
            let big = r.join("big");
            fs::create_dir_all(&big).unwrap();
            for i in 0..700 {
                let name = format!("entry-{i:04}-{}", "x".repeat(i % 40));
                fs::write(big.join(name), format!("{i}\n")).unwrap();
            }
        }),
        Box::new(|r| fs::write(r.join("empty"), b"").unwrap()),
        Box::new(|r| fs::write(r.join("small.txt"), b"hello squashfs\n").unwrap()),
        Box::new(|r| fs::write(r.join("one-block"), bytes(1, 128 * 1024)).unwrap()),
        Box::new(|r| fs::write(r.join("block-and-a-byte"), bytes(2, 128 * 1024 + 1)).unwrap()),
        Box::new(|r| fs::write(r.join("a/b/big-file"), bytes(3, 5 * 128 * 1024 + 12345)).unwrap()),
        Box::new(|r| fs::write(r.join("zeros"), vec![0u8; 3 * 128 * 1024 + 77]).unwrap()),
        Box::new(|r| {
            // A sparse file: a hole, data, a hole.
            let f = fs::File::create(r.join("sparse")).unwrap();
            f.set_len(1 << 20).unwrap();
            std::os::unix::fs::FileExt::write_all_at(&f, &bytes(4, 1000), 400_000).unwrap();
        }),
        Box::new(|r| fs::write(r.join("dup-1"), bytes(5, 300_000)).unwrap()),
        Box::new(|r| fs::write(r.join("a/dup-2"), bytes(5, 300_000)).unwrap()),
        Box::new(|r| fs::write(r.join("a/small-dup"), b"hello squashfs\n").unwrap()),
        Box::new(|r| fs::write(r.join("n".repeat(255)), b"long name\n").unwrap()),
        Box::new(|r| std::os::unix::fs::symlink("small.txt", r.join("rel-link")).unwrap()),
        Box::new(|r| std::os::unix::fs::symlink("/etc/passwd", r.join("abs-link")).unwrap()),
        Box::new(|r| std::os::unix::fs::symlink("does/not/exist", r.join("dangling")).unwrap()),
        Box::new(|r| std::os::unix::fs::symlink("t/".repeat(600), r.join("long-target")).unwrap()),
        Box::new(|r| {
            run(Command::new("mknod")
                .arg(r.join("blockdev"))
                .args(["b", "8", "1"]));
            run(Command::new("mknod")
                .arg(r.join("chardev"))
                .args(["c", "4095", "1048575"]));
            run(Command::new("mknod")
                .arg(r.join("null"))
                .args(["c", "1", "3"]));
        }),
        Box::new(|r| {
            run(Command::new("mkfifo").arg(r.join("fifo")));
        }),
        Box::new(|r| drop(UnixListener::bind(r.join("socket")).unwrap())),
        Box::new(|r| fs::write(r.join("ping"), bytes(6, 5000)).unwrap()),
        Box::new(|r| fs::write(r.join("a/tagged"), b"tagged\n").unwrap()),
    ];
    if reverse {
        steps.reverse();
    }
    for step in &steps {
        step(root);
    }
    // Hard links: a file with three names in two directories, a fifo and a symlink with two.
    let mut links = vec![
        ("small.txt", "a/b/hard-1"),
        ("small.txt", "a/hard-2"),
        ("fifo", "fifo-link"),
        ("rel-link", "rel-link-hard"),
    ];
    if reverse {
        links.reverse();
    }
    for (from, to) in links {
        fs::hard_link(root.join(from), root.join(to)).unwrap();
    }
    // Modes: setuid, setgid, sticky, none at all.
    for (path, mode) in [
        ("ping", 0o4755),
        ("a/b", 0o2775),
        ("empty-dir", 0o1777),
        ("empty", 0o000),
        ("zeros", 0o640),
    ] {
        fs::set_permissions(root.join(path), fs::Permissions::from_mode(mode)).unwrap();
    }
    // Owners past 16 bits, and on a symlink.
    lchown(root.join("a/b/big-file"), Some(70000), Some(80000)).unwrap();
    lchown(root.join("abs-link"), Some(1000), Some(1000)).unwrap();
    lchown(root.join("chardev"), Some(0), Some(5)).unwrap();
    // Extended attributes in all three namespaces, on a file, a directory,
    // a symlink and a device; a value shared by two files (out of line).
    run(Command::new("setcap")
        .arg("cap_net_raw+ep")
        .arg(root.join("ping")));
    setfattr(
        &root.join("a/tagged"),
        "user.note",
        "a value long enough to be shared",
    );
    setfattr(
        &root.join("small.txt"),
        "user.note",
        "a value long enough to be shared",
    );
    setfattr(&root.join("a/tagged"), "trusted.origin", "tests");
    setfattr(&root.join("a"), "user.dir", "yes");
    setfattr(&root.join("rel-link"), "trusted.on-link", "1");
    setfattr(&root.join("null"), "trusted.dev", "0x00ff");
    setfattr(&root.join("big"), "security.label", "big-dir");
    // mtimes: varied, some after the epoch (clamped), the root last.
    let mut paths = vec![root.to_path_buf()];
    let mut i = 0;
    while i < paths.len() {
        if fs::symlink_metadata(&paths[i]).unwrap().is_dir() {
            let mut children: Vec<_> = fs::read_dir(&paths[i])
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            children.sort();
            paths.extend(children);
        }
        i += 1;
    }
    for (n, path) in paths.iter().enumerate().rev() {
        let offset = (n as i64 * 7919) % 200_000;
        let time = if n % 11 == 3 {
            i64::from(EPOCH) + offset
        } else {
            i64::from(EPOCH) - offset
        };
        touch(path, time);
    }
}
