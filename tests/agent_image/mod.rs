//! The test image a real agent boots (shared by the qemu suites): the
//! Debian cloud kernel and libc from real packages, the initramfs the
//! builder assembles around the real (stripped) `ironrack` as /init with
//! the test's trust root, a UKI the builder makes around Debian's
//! systemd-stub (measured into the manifest), and a squashfs root whose
//! init prints [`MARKER`] with the host name and image the agent gave it,
//! and the secret it was released, then powers off. Signed by the test's
//! [`SigningWorld`]; `vmlinuz` and `initrd.img` are published too, for
//! the BIOS (kernel + initrd) path.

use std::path::{Path, PathBuf};
use std::process::Command;

use ironrack_builder::boot::cpio::DEFAULT_COMPRESSION;
use ironrack_builder::boot::elf::ImageRoot;
use ironrack_builder::boot::initramfs::{
    AgentConfig, InitProgram, InitramfsSpec, TRUST_PATH, UDHCPC_SCRIPT_PATH, assemble,
};
use ironrack_builder::boot::uki::{UkiInputs, build_uki, measure_uki};
use ironrack_pxe::agent::boot::SECRET_PATH;
use ironrack_pxe::agent::switch_root::IMAGE_FILE;
use ironrack_pxe::testkit::{self, SigningWorld};

#[allow(dead_code)]
#[path = "../../builder/tests/boot/debs.rs"]
pub mod debs;

/// What the image's init prints first: `MARKER host NAME image NAME@V`.
pub const MARKER: &str = "IRONRACK-IMAGE-INIT-RAN";

/// `ironrack` without its debug info (as a release build would be).
pub fn agent(dir: &Path) -> PathBuf {
    let out = dir.join("ironrack");
    debs::run(
        Command::new("strip")
            .args(["--strip-debug", "-o"])
            .arg(&out)
            .arg(env!("CARGO_BIN_EXE_ironrack")),
    );
    out
}

/// A squashfs whose /sbin/init names itself (host, image), shows the
/// secret it found, and powers off.
pub fn rootfs(dir: &Path) -> PathBuf {
    let tree = dir.join("image-tree");
    for sub in ["bin", "sbin", "etc", "proc", "sys", "dev", "run"] {
        std::fs::create_dir_all(tree.join(sub)).unwrap();
    }
    std::fs::copy("/bin/busybox", tree.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", tree.join("bin/sh")).unwrap();
    let init = tree.join("sbin/init");
    std::fs::write(
        &init,
        format!(
            "#!/bin/sh\nb=/bin/busybox\n\
             [ -f /etc/hostname ] && $b hostname -F /etc/hostname\n\
             echo \"{MARKER} host $($b hostname) image $($b cat /{IMAGE_FILE})\"\n\
             [ -f /{SECRET_PATH} ] && \
             echo \"secret: $($b cat /{SECRET_PATH}) mode $($b stat -c %a /{SECRET_PATH})\"\n\
             $b poweroff -f\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = dir.join("rootfs.squashfs");
    debs::run(Command::new("mksquashfs").arg(&tree).arg(&out).args([
        "-noappend",
        "-quiet",
        "-no-progress",
        "-all-root",
    ]));
    out
}

/// The initramfs the builder assembles around the image's kernel modules
/// and libc: the real (stripped) `ironrack` as /init, `trust` as its root.
pub fn initramfs(dir: &Path, trust: &Path, image: &str, image_root: &Path) -> Vec<u8> {
    let mut spec = InitramfsSpec::new(debs::RELEASE, InitProgram::Agent(agent(dir)), 1_700_000_000);
    spec.agent = Some(AgentConfig {
        version: 1,
        image: image.into(),
        channel: "stable".into(),
        trust: format!("/{TRUST_PATH}"),
        server: None,
        modules: Vec::new(),
        kernel_release: String::new(),
    });
    spec.trust = Some(std::fs::read(trust).unwrap());
    let initramfs = assemble(&ImageRoot::new(image_root), &spec).unwrap();
    assert!(
        initramfs.archive.get(UDHCPC_SCRIPT_PATH).is_some(),
        "the udhcpc script is in the initramfs"
    );
    initramfs.to_bytes(DEFAULT_COMPRESSION).unwrap()
}

/// Builds and signs `out/NAME/VERSION` (scratch files in `dir`, the
/// systemd-stub package cached in `cache`); returns the image directory.
pub fn build(
    world: &SigningWorld,
    cache: &Path,
    dir: &Path,
    out: &Path,
    name: &str,
    version: u64,
) -> PathBuf {
    let squashfs = rootfs(dir);
    let image_root = debs::kernel_libc_root();
    let initrd = initramfs(dir, &world.trust_path, name, &image_root);
    let linux_path = image_root.join(format!("boot/vmlinuz-{}", debs::RELEASE));
    let linux = std::fs::read(&linux_path).unwrap();
    let stub = std::fs::read(testkit::stub(cache).unwrap()).unwrap();
    let uki = build_uki(&UkiInputs {
        stub: &stub,
        linux: &linux,
        initrd: &initrd,
        cmdline: "console=ttyS0",
        osrel: b"ID=ironrack-test\n",
        uname: Some(debs::RELEASE),
        splash: None,
    })
    .unwrap();
    let measured = measure_uki(&uki, &linux).unwrap();
    let (uki_path, initrd_path) = (dir.join("node.efi"), dir.join("initrd.img"));
    std::fs::write(&uki_path, &uki).unwrap();
    std::fs::write(&initrd_path, &initrd).unwrap();
    let payload = serde_json::json!({
        "kernel": { "cmdline": "console=ttyS0 panic=-1" },
        "measurements": {
            "uki": "node.efi",
            "uki-authenticode": measured.uki_authenticode,
            "pcr11": measured.pcr11,
            "kernel-authenticode": measured.kernel_authenticode,
            "agent-pcr": 15,
        },
    });
    world
        .image_with_payload(
            out,
            name,
            version,
            payload,
            &[
                ("rootfs.squashfs", squashfs.as_path()),
                ("node.efi", uki_path.as_path()),
                ("vmlinuz", linux_path.as_path()),
                ("initrd.img", initrd_path.as_path()),
            ],
        )
        .unwrap()
}
