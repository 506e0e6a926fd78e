//! Bad input: a clear error naming the path, and nothing half-written.

use std::cell::Cell;
use std::fs;
use std::path::Path;

use ironrack_builder::rootfs::fsimage::squashfs::{Error, Options, write_dir};

use super::tree::{EPOCH, bytes};
use super::util::options;

fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[test]
fn a_root_that_is_not_a_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    fs::write(&file, b"x").unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(dir.path(), &link).unwrap();
    for root in [&file, &link, &dir.path().join("missing")] {
        let err = write_dir(
            root,
            &dir.path().join("out.squashfs"),
            &options(EPOCH, 3, 1),
            &|_| {},
        )
        .unwrap_err();
        assert!(matches!(err, Error::Read { .. }), "{err}");
        assert!(err.to_string().contains(&*root.to_string_lossy()), "{err}");
    }
    assert!(!dir.path().join("out.squashfs").exists());
}

#[test]
fn bad_options_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.squashfs");
    for opts in [
        Options {
            block_size: 1000,
            ..Options::new(EPOCH)
        },
        Options {
            block_size: 2 << 20,
            ..Options::new(EPOCH)
        },
        options(EPOCH, 0, 1),
        options(EPOCH, 23, 1),
    ] {
        let err = write_dir(dir.path(), &out, &opts, &|_| {}).unwrap_err();
        assert!(matches!(err, Error::Options { .. }), "{err}");
    }
    assert!(leftovers(dir.path()).is_empty() && !out.exists());
}

#[test]
fn an_output_directory_that_does_not_exist_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("no/such/dir/out.squashfs");
    let err = write_dir(dir.path(), &out, &options(EPOCH, 3, 1), &|_| {}).unwrap_err();
    assert!(matches!(err, Error::Write { .. }), "{err}");
    assert!(err.to_string().contains("out.squashfs"), "{err}");
}

/// A file that shrinks while the image is written: the error names it,
/// the previous image stays as it was, no temporary file is left.
#[test]
fn a_file_changed_mid_write_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    // 40 jobs of 1 MiB come before "z-last"; one thread reads ahead at
    // most four jobs, so "z-last" is read after the first callback.
    fs::write(src.join("a-big"), bytes(1, 40 << 20)).unwrap();
    fs::write(src.join("z-last"), bytes(2, 100_000)).unwrap();
    let out_dir = dir.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("root.squashfs");
    fs::write(&out, b"previous image").unwrap();
    let shrunk = Cell::new(false);
    let progress = |_: u64| {
        if !shrunk.replace(true) {
            fs::write(src.join("z-last"), b"shorter").unwrap();
        }
    };
    let err = write_dir(&src, &out, &options(EPOCH, 1, 1), &progress).unwrap_err();
    assert!(matches!(err, Error::Changed { .. }), "{err}");
    assert!(err.to_string().contains("z-last"), "{err}");
    assert_eq!(fs::read(&out).unwrap(), b"previous image");
    assert!(leftovers(&out_dir).is_empty(), "{:?}", leftovers(&out_dir));
}

/// A POSIX ACL (as systemd-tmpfiles leaves on /var/log/journal): SquashFS
/// has no place for it. Dropped and counted by default, as mksquashfs
/// does; refused, naming the file and attribute, with `strict_xattrs`.
#[test]
fn an_acl_is_dropped_and_counted_or_refused_when_strict() {
    if !super::util::have("setfattr") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let file = src.join("journal");
    fs::write(&file, b"x").unwrap();
    // user::rwx user:1000:r-- group::r-x mask::r-x other::r-x, binary form.
    let acl = "0x0200000001000700ffffffff02000400e803000004000500ffffffff10000500ffffffff20000500ffffffff";
    super::util::run(
        std::process::Command::new("setfattr")
            .args(["-n", "system.posix_acl_access", "-v", acl])
            .arg(&file),
    );
    let out = dir.path().join("out.squashfs");
    let summary = write_dir(&src, &out, &options(EPOCH, 3, 1), &|_| {}).unwrap();
    assert_eq!(summary.xattrs_dropped, 1);
    let strict = Options {
        strict_xattrs: true,
        ..options(EPOCH, 3, 1)
    };
    let err = write_dir(&src, &dir.path().join("strict.squashfs"), &strict, &|_| {}).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("journal") && text.contains("system.posix_acl_access"),
        "{text}"
    );
    assert!(!dir.path().join("strict.squashfs").exists());
}
