//! The new root built for real in a private mount namespace of the test
//! thread: a squashfs made by the real mksquashfs (busybox-static inside,
//! and an init script), loop-mounted by the real mount, the overlay
//! writable, the moves done, and the image's init run by chroot. Only the
//! final exec of busybox `switch_root` (PID 1 only) is left to the qemu
//! boot.

use std::io::Write as _;
use std::process::Command;

use nix::mount::{MntFlags, umount2};
use nix::sched::{CloneFlags, unshare};

use super::*;

const MARKER: &str = "IRONRACK-NEWROOT-INIT";

fn skip() -> bool {
    let missing = ["/usr/bin/mksquashfs", "/bin/busybox"]
        .iter()
        .any(|p| !Path::new(p).exists());
    if !nix::unistd::geteuid().is_root() || missing {
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIP switch_root tests: need root, mksquashfs and busybox-static (CI has them) *** NOT TESTED ***"
        );
        return true;
    }
    false
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A squashfs image with busybox as /bin/sh and an init printing MARKER.
fn image(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::create_dir_all(tree.join("sbin")).unwrap();
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", tree.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", tree.join("bin/sh")).unwrap();
    let init = tree.join("sbin/init");
    std::fs::write(&init, format!("#!/bin/sh\necho {MARKER}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = dir.join("rootfs.squashfs");
    run(Command::new("mksquashfs").arg(&tree).arg(&out).args([
        "-noappend",
        "-quiet",
        "-no-progress",
    ]));
    out
}

#[test]
fn the_image_becomes_a_writable_root_with_its_init() {
    if skip() {
        return;
    }
    // Mounts made from here on stay in this thread's namespace.
    unshare(CloneFlags::CLONE_NEWNS).unwrap();
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let image = image(dir.path());
    let layout = RootLayout::under(&dir.path().join("node"));

    prepare_root(&image, &layout, "/sbin/init").unwrap();
    let init = std::fs::read_to_string(layout.newroot.join("sbin/init")).unwrap();
    assert!(init.contains(MARKER));
    // Writes land in the tmpfs layer; the image itself stays read-only.
    std::fs::write(layout.newroot.join("etc/hostname"), "node07\n").unwrap();
    assert_eq!(
        std::fs::read_to_string(layout.overlay.join("upper/etc/hostname")).unwrap(),
        "node07\n"
    );
    let err = std::fs::write(layout.lower.join("etc/x"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EROFS), "{err}");

    // A mount moved under the new root keeps its content, and leaves.
    let api = dir.path().join("api");
    std::fs::create_dir(&api).unwrap();
    mount(
        Some("tmpfs"),
        &api,
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    std::fs::write(api.join("marker"), "moved").unwrap();
    move_mounts(&layout.newroot, &[api.as_path()]).unwrap();
    let moved = layout
        .newroot
        .join(api.strip_prefix("/").unwrap())
        .join("marker");
    assert_eq!(std::fs::read_to_string(moved).unwrap(), "moved");
    assert!(!api.join("marker").exists());

    // The image's init runs from the new root.
    let out = run(Command::new("chroot")
        .arg(&layout.newroot)
        .arg("/sbin/init"));
    assert_eq!(out.trim(), MARKER);

    // An image without the init asked for is refused, naming it.
    let other = RootLayout::under(&dir.path().join("node2"));
    let err = prepare_root(&image, &other, "/lib/systemd/systemd").unwrap_err();
    assert!(matches!(err, SwitchError::NoInit { .. }), "{err}");

    for target in [
        &other.newroot,
        &other.overlay,
        &other.lower,
        &layout.newroot,
        &layout.overlay,
        &layout.lower,
    ] {
        let _ = umount2(target, MntFlags::MNT_DETACH);
    }
}

#[test]
fn only_squashfs_and_erofs_by_name() {
    let layout = RootLayout::under(Path::new("/nonexistent"));
    let err = prepare_root(Path::new("/run/rootfs.tar"), &layout, "/sbin/init").unwrap_err();
    assert!(matches!(err, SwitchError::FsType { .. }), "{err}");
}

#[test]
fn the_root_is_named_from_the_lease_and_a_bad_name_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let layout = RootLayout::under(root);
    std::fs::create_dir_all(layout.newroot.join("etc")).unwrap();
    name_root(root, &layout, Some("gpu-r01-n07.lab"), "gpu-node@3").unwrap();
    let hostname = std::fs::read_to_string(layout.newroot.join("etc/hostname")).unwrap();
    assert_eq!(hostname, "gpu-r01-n07.lab\n");
    let image = std::fs::read_to_string(root.join(IMAGE_FILE)).unwrap();
    assert_eq!(image, "gpu-node@3\n");
    std::fs::remove_file(layout.newroot.join("etc/hostname")).unwrap();
    for bad in [
        "",
        "-a",
        "a-",
        "a..b",
        "x/../../etc",
        "a b",
        &"a".repeat(64),
    ] {
        name_root(root, &layout, Some(bad), "gpu-node@3").unwrap();
        assert!(
            !layout.newroot.join("etc/hostname").exists(),
            "{bad:?} written"
        );
    }
    assert!(valid_hostname("node-1"));
}
