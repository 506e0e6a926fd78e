//! The boot artifacts the UKI and qemu tests share: an initramfs whose
//! /init is a test-harness script (no agent exists yet), and node.efi
//! built from Debian's systemd-stub and cloud kernel.

use std::path::Path;
use std::sync::OnceLock;

use ironrack_builder::boot::cpio::{Compression, DEFAULT_COMPRESSION};
use ironrack_builder::boot::elf::ImageRoot;
use ironrack_builder::boot::initramfs::{self, InitProgram, InitramfsSpec};
use ironrack_builder::boot::uki::{UkiInputs, build_uki};

use super::debs::{self, RELEASE};

/// SOURCE_DATE_EPOCH of the test builds.
pub const EPOCH: u32 = 1_700_000_000;
/// The command line baked into the UKI and passed with `-append`.
pub const CMDLINE: &str = "console=ttyS0 panic=-1";
/// os-release of the test image.
pub const OSREL: &[u8] = b"ID=ironrack-test\nNAME=\"ironrack boot test\"\nVERSION_ID=1\n";

/// The test /init: mounts what it needs, loads modules through busybox
/// modprobe (so the regenerated modules.dep is exercised), prints marker
/// lines with the PCRs and the firmware event log, powers off. A harness
/// for the boot path, not the product's init.
pub const INIT_SCRIPT: &str = r#"#!/bin/sh
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "IRONRACK-MARKER kernel=$(uname -r)"
if modprobe virtio_net && modprobe squashfs && modprobe overlay; then
  echo "IRONRACK-MODULES $(cut -d' ' -f1 /proc/modules | sort | tr '\n' ' ')"
else
  echo "IRONRACK-MODULES-FAILED"
fi
for pcr in 4 9 11 12; do
  f=/sys/class/tpm/tpm0/pcr-sha256/$pcr
  [ -r $f ] && echo "IRONRACK-PCR $pcr $(cat $f)"
done
if mount -t securityfs securityfs /sys/kernel/security 2>/dev/null &&
   [ -r /sys/kernel/security/tpm0/binary_bios_measurements ]; then
  echo "IRONRACK-EVENTLOG-BEGIN"
  base64 /sys/kernel/security/tpm0/binary_bios_measurements
  echo "IRONRACK-EVENTLOG-END"
fi
echo "IRONRACK-DONE"
poweroff -f
"#;

/// The test initramfs spec: default drivers, the harness script, `base64`
/// and `cut`/`sort`/`tr` applets for it.
pub fn spec() -> InitramfsSpec {
    let mut spec = InitramfsSpec::new(RELEASE, InitProgram::Script(INIT_SCRIPT.into()), EPOCH);
    spec.applets
        .extend(["base64", "cut", "sort", "tr", "uname"].map(String::from));
    spec
}

/// The compressed test initramfs (built once per test process).
pub fn initrd() -> &'static [u8] {
    static INITRD: OnceLock<Vec<u8>> = OnceLock::new();
    INITRD.get_or_init(|| {
        let root = ImageRoot::new(debs::kernel_root());
        let initramfs = initramfs::assemble(&root, &spec()).unwrap();
        // The plain archive is kept for scripts/bench-initramfs.sh.
        let raw = initramfs.to_bytes(Compression::None).unwrap();
        let _ = std::fs::write(
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("boot-initramfs.cpio"),
            raw,
        );
        initramfs.to_bytes(DEFAULT_COMPRESSION).unwrap()
    })
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The test UKI and the kernel in it.
pub fn uki() -> &'static (Vec<u8>, Vec<u8>) {
    static UKI: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    UKI.get_or_init(|| {
        let stub = read(&debs::stub());
        let linux = read(&debs::vmlinuz());
        let uki = build_uki(&UkiInputs {
            stub: &stub,
            linux: &linux,
            initrd: initrd(),
            cmdline: CMDLINE,
            osrel: OSREL,
            uname: Some(RELEASE),
            splash: None,
        })
        .unwrap();
        (uki, linux)
    })
}
