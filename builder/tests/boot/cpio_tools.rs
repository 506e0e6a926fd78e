//! Our newc writer against GNU cpio: byte for byte the archive `cpio -o -H
//! newc --reproducible` writes for the same tree, extracted by `cpio -id`
//! as written, listed by initramfs-tools' `lsinitramfs`, and decompressed
//! by the zstd and gzip tools.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _, symlink};
use std::path::Path;
use std::process::{Command, Stdio};

use ironrack_builder::boot::cpio::{
    Archive, Compression, EntryKind, compress, decompress, read_newc,
};

use super::debs::run;

const EPOCH: u32 = 1_700_000_000;

/// The same content as an [`Archive`] and as a directory on disk.
fn sample(with_devices: bool, with_links: bool) -> (Archive, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut a = Archive::new();
    let mkdir = |a: &mut Archive, p: &str, mode: u32| {
        std::fs::create_dir(root.join(p)).unwrap();
        std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(mode)).unwrap();
        a.dir(p, mode).unwrap();
    };
    let file = |a: &mut Archive, p: &str, mode: u32, data: &[u8]| {
        std::fs::write(root.join(p), data).unwrap();
        std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(mode)).unwrap();
        a.file(p, mode, data.to_vec()).unwrap();
    };
    mkdir(&mut a, "bin", 0o755);
    mkdir(&mut a, "etc", 0o755);
    mkdir(&mut a, "etc/ironrack", 0o700);
    mkdir(&mut a, "lib", 0o755);
    mkdir(&mut a, "lib/modules", 0o755);
    mkdir(&mut a, "tmp", 0o1777);
    file(
        &mut a,
        "bin/busybox",
        0o755,
        &[0x7f, b'E', b'L', b'F', 1, 2, 3],
    );
    for link in ["bin/sh", "bin/mount"].iter().filter(|_| with_links) {
        std::fs::hard_link(root.join("bin/busybox"), root.join(link)).unwrap();
        a.add(link, 0o755, EntryKind::HardLink("bin/busybox".into()))
            .unwrap();
    }
    file(&mut a, "init", 0o755, b"#!/bin/sh\necho hi\n");
    file(&mut a, "etc/ironrack/agent.json", 0o600, b"{}");
    file(&mut a, "bin/suid", 0o4755, b"s");
    file(&mut a, "lib/modules/empty", 0o644, b"");
    file(&mut a, "lib/modules/odd", 0o644, &[9u8; 4097]);
    symlink("bin", root.join("sbin")).unwrap();
    a.symlink("sbin", "bin").unwrap();
    symlink("/lib/modules/odd", root.join("lib/abs")).unwrap();
    a.symlink("lib/abs", "/lib/modules/odd").unwrap();
    if with_devices {
        mkdir(&mut a, "dev", 0o755);
        run(Command::new("mknod")
            .args(["-m", "600"])
            .arg(root.join("dev/console"))
            .args(["c", "5", "1"]));
        a.add(
            "dev/console",
            0o600,
            EntryKind::CharDevice { major: 5, minor: 1 },
        )
        .unwrap();
        run(Command::new("mknod")
            .args(["-m", "660"])
            .arg(root.join("dev/vda"))
            .args(["b", "253", "0"]));
        a.add(
            "dev/vda",
            0o660,
            EntryKind::BlockDevice {
                major: 253,
                minor: 0,
            },
        )
        .unwrap();
        run(Command::new("mkfifo")
            .args(["-m", "644"])
            .arg(root.join("dev/fifo")));
        a.add("dev/fifo", 0o644, EntryKind::Fifo).unwrap();
    }
    run(Command::new("find").arg(root).args([
        "-exec",
        "touch",
        "-h",
        "-d",
        &format!("@{EPOCH}"),
        "{}",
        "+",
    ]));
    (a, dir)
}

fn ours(a: &Archive) -> Vec<u8> {
    let mut out = Vec::new();
    a.write_newc(EPOCH, &mut out).unwrap();
    out
}

fn gnu_cpio(root: &Path) -> Vec<u8> {
    let script = "find . -mindepth 1 -printf '%P\\n' | LC_ALL=C sort | \
cpio --quiet -o -H newc --reproducible -R 0:0";
    run(Command::new("sh").args(["-c", script]).current_dir(root)).stdout
}

/// GNU's `--renumber-inodes` counts from 0; ours from 1 (so no entry
/// shares the trailer's inode 0). Shift GNU's to compare the rest exactly.
fn shift_gnu_inodes(mut bytes: Vec<u8>) -> Vec<u8> {
    let mut at = 0;
    loop {
        let field = |i: usize, b: &[u8]| {
            u32::from_str_radix(
                std::str::from_utf8(&b[at + 6 + 8 * i..at + 14 + 8 * i]).unwrap(),
                16,
            )
            .unwrap() as usize
        };
        let (ino, size, namesize) = (field(0, &bytes), field(6, &bytes), field(11, &bytes));
        let name = &bytes[at + 110..at + 110 + namesize - 1];
        if name == b"TRAILER!!!" {
            return bytes;
        }
        bytes[at + 6..at + 14].copy_from_slice(format!("{:08X}", ino + 1).as_bytes());
        at = (at + 110 + namesize).div_ceil(4) * 4;
        at = (at + size).div_ceil(4) * 4;
    }
}

#[test]
fn gnu_cpio_writes_the_same_bytes() {
    // Device nodes need mknod, so root; without it they are left out.
    let root_user =
        !super::debs::skip_unless_root("gnu_cpio_writes_the_same_bytes (device nodes)", "mknod");
    let (archive, dir) = sample(root_user, false);
    let ours = ours(&archive);
    let theirs = shift_gnu_inodes(gnu_cpio(dir.path()));
    // GNU cpio pads the archive to its 512-byte block; nothing else differs.
    assert!(theirs.len() >= ours.len());
    assert!(theirs[ours.len()..].iter().all(|&b| b == 0));
    if theirs[..ours.len()] != ours[..] {
        let a = read_newc(&ours).unwrap();
        let b = read_newc(&theirs).unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x, y);
        }
        panic!("archives differ");
    }
}

#[test]
fn gnu_cpio_agrees_on_hard_links() {
    let (archive, dir) = sample(false, true);
    let mut ours = read_newc(&ours(&archive)).unwrap();
    let mut theirs = read_newc(&shift_gnu_inodes(gnu_cpio(dir.path()))).unwrap();
    // GNU defers earlier links and writes them when the last one comes;
    // we keep path order. Same entries, data on the same (last) link.
    ours.sort_by(|a, b| a.name.cmp(&b.name));
    theirs.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(ours, theirs);
    let with_data: Vec<&str> = ours
        .iter()
        .filter(|e| e.nlink == 3 && !e.data.is_empty())
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(with_data, ["bin/sh"]);
}

#[test]
fn gnu_cpio_extracts_what_we_wrote() {
    let (archive, _) = sample(false, true);
    let bytes = ours(&archive);
    let out = tempfile::tempdir().unwrap();
    let mut child = Command::new("cpio")
        .args(["--quiet", "-i", "-d", "-m", "--no-absolute-filenames"])
        .current_dir(out.path())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &bytes).unwrap();
    assert!(child.wait().unwrap().success());
    let root = out.path();
    assert_eq!(
        std::fs::read(root.join("init")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(
        std::fs::read(root.join("lib/modules/odd")).unwrap(),
        vec![9u8; 4097]
    );
    assert_eq!(
        std::fs::read_link(root.join("sbin")).unwrap(),
        Path::new("bin")
    );
    let meta = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap();
    assert_eq!(
        meta("bin/busybox").ino(),
        meta("bin/sh").ino(),
        "hard link kept"
    );
    assert_eq!(meta("bin/sh").nlink(), 3);
    assert_eq!(
        std::fs::read(root.join("bin/mount")).unwrap(),
        [0x7f, b'E', b'L', b'F', 1, 2, 3]
    );
    assert_eq!(meta("bin/suid").mode() & 0o7777, 0o4755);
    assert_eq!(meta("etc/ironrack/agent.json").mode() & 0o777, 0o600);
    assert_eq!(meta("init").mtime(), i64::from(EPOCH));
}

#[test]
fn compressed_archives_are_deterministic_and_read_by_the_tools() {
    let (archive, _) = sample(false, true);
    let raw = ours(&archive);
    // Insertion order does not matter: directories first (so their modes
    // are not the 0755 of an implicit parent), everything else reversed.
    let mut reversed = Archive::new();
    let entries: Vec<(String, _)> = archive
        .entries()
        .map(|(p, e)| (p.to_owned(), e.clone()))
        .collect();
    for (path, entry) in entries.iter().rev() {
        if entry.kind == EntryKind::Directory {
            reversed.dir(path, entry.permissions).unwrap();
        }
    }
    for (path, entry) in entries.into_iter().rev() {
        if entry.kind != EntryKind::Directory {
            reversed.add(&path, entry.permissions, entry.kind).unwrap();
        }
    }
    assert_eq!(ours(&reversed), raw);
    for (level, tool) in [
        (Compression::Zstd(15), ["zstd", "-dc"]),
        (Compression::Gzip(9), ["gzip", "-dc"]),
    ] {
        let first = compress(&raw, level).unwrap();
        assert_eq!(first, compress(&raw, level).unwrap(), "{level:?}");
        let mut child = Command::new(tool[0])
            .arg(tool[1])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = first.clone();
        let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, raw, "{level:?}");
        assert_eq!(decompress(&first, 1 << 30).unwrap(), raw);
    }
}

#[test]
fn lsinitramfs_lists_a_zstd_initramfs() {
    let (archive, _) = sample(false, true);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("initrd.img");
    std::fs::write(
        &path,
        compress(&ours(&archive), Compression::Zstd(3)).unwrap(),
    )
    .unwrap();
    let out = run(Command::new("lsinitramfs").arg(&path));
    let listed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let expected: Vec<String> = archive.entries().map(|(p, _)| p.to_owned()).collect();
    assert_eq!(listed, expected);
}
