//! Same tree → same bytes (thread count, source path, directory order);
//! a changed byte or mtime → different bytes.

use std::fs;
use std::process::Command;

use super::tree::{self, EPOCH, bytes};
use super::util::{is_root, options, run, write};

#[test]
fn same_tree_same_bytes_whatever_the_threads_path_or_order() {
    if !is_root() {
        eprintln!("SKIP same_tree_same_bytes_whatever_the_threads_path_or_order: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (
        dir.path().join("first"),
        dir.path().join("elsewhere/second"),
    );
    tree::full(&one, false);
    fs::create_dir(dir.path().join("elsewhere")).unwrap();
    tree::full(&two, true);
    let mut digests = Vec::new();
    for (src, threads) in [(&one, 1), (&one, 2), (&two, 4), (&two, 1)] {
        let image = dir.path().join(format!("image-{threads}.squashfs"));
        let summary = write(src, &image, &options(EPOCH, 3, threads));
        let sha = run(Command::new("sha256sum").arg(&image));
        assert!(
            sha.starts_with(&summary.sha256_hex()),
            "summary digest is the file's: {sha}"
        );
        digests.push(summary.sha256_hex());
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
}

/// Needs no root: regular files and directories only.
#[test]
fn one_byte_or_one_mtime_changes_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/big"), bytes(9, 400_000)).unwrap();
    fs::write(src.join("small"), b"small\n").unwrap();
    let image = dir.path().join("image.squashfs");
    let opts = options(EPOCH, 3, 2);
    let time = |path: &std::path::Path, t: u32| {
        run(Command::new("touch")
            .arg("-d")
            .arg(format!("@{t}"))
            .arg(path));
    };
    for p in [
        src.join("d/big"),
        src.join("small"),
        src.join("d"),
        src.clone(),
    ] {
        time(&p, EPOCH - 100);
    }
    let first = write(&src, &image, &opts).sha256;
    assert_eq!(
        write(&src, &image, &opts).sha256,
        first,
        "rewriting gives the same bytes"
    );

    let mut data = fs::read(src.join("d/big")).unwrap();
    data[300_000] ^= 1;
    fs::write(src.join("d/big"), &data).unwrap();
    time(&src.join("d/big"), EPOCH - 100);
    let flipped = write(&src, &image, &opts).sha256;
    assert_ne!(flipped, first, "one changed byte");

    time(&src.join("small"), EPOCH - 99);
    let touched = write(&src, &image, &opts).sha256;
    assert_ne!(touched, flipped, "one changed mtime");

    // Past the epoch the mtime is clamped: no change.
    time(&src.join("small"), EPOCH + 5);
    let clamped = write(&src, &image, &opts).sha256;
    time(&src.join("small"), EPOCH + 500);
    assert_eq!(
        write(&src, &image, &opts).sha256,
        clamped,
        "mtimes after the epoch are clamped"
    );
}
