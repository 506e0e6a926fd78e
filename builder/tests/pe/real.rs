//! Real Debian binaries (fetched with apt, cached under target/): their
//! Authenticode digests equal what OVMF logged, by both implementations,
//! and a UKI assembled with objcopy from the real systemd-stub 252 and the
//! real kernel measures as the TPM saw.

use std::path::{Path, PathBuf};
use std::process::Command;

use ironrack_builder::boot::measure::{SYSTEMD_STUB_252, authenticode_of_file, predict_pcr11};
use ironrack_builder::boot::pe::PeImage;
use ironrack_pxe::attest::eventlog::AlgorithmId;
use sha2::{Digest as _, Sha256};

use super::debs::{self, IPXE_VERSION, KERNEL_PACKAGE, KERNEL_VERSION};
use super::reference;
use super::support::{expected_authenticode, fixture_log};

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Both implementations agree on the file; returns the hex digest.
fn authenticode_both(path: &Path) -> String {
    let bytes = read(path);
    let ours = authenticode_of_file(path).unwrap();
    let reference = reference::authenticode(&bytes).unwrap();
    assert_eq!(
        PeImage::parse(&bytes).unwrap().authenticode_ranges(),
        reference.ranges,
        "{}",
        path.display()
    );
    assert_eq!(ours, reference.digest, "{}", path.display());
    hex::encode(ours)
}

fn kernel() -> PathBuf {
    debs::unpacked(KERNEL_PACKAGE, Some(KERNEL_VERSION)).join("boot/vmlinuz-6.1.0-56-cloud-amd64")
}

#[test]
fn snponly_efi_digest_is_what_ovmf_logged() {
    let ipxe = debs::unpacked("ipxe", Some(IPXE_VERSION));
    let digest = authenticode_both(&ipxe.join("usr/lib/ipxe/snponly.efi"));
    assert_eq!(digest, expected_authenticode("snponly.efi"));
    // ipxe.efi has no logged digest; the two implementations still agree.
    authenticode_both(&ipxe.join("boot/ipxe.efi"));
}

#[test]
fn signed_kernel_digest_is_what_ovmf_logged() {
    let path = kernel();
    let bytes = read(&path);
    assert!(
        PeImage::parse(&bytes).unwrap().is_signed(),
        "Debian's signed kernel carries a certificate table"
    );
    assert_eq!(authenticode_both(&path), expected_authenticode("vmlinuz"));
    // It is the very file the fixture UKI carried: its SHA-256 is the
    // .linux data event systemd-stub logged in PCR 11.
    let linux_event = fixture_log()
        .events_in(11)
        .nth(1)
        .unwrap()
        .digest(AlgorithmId::SHA256)
        .unwrap()
        .to_hex();
    assert_eq!(hex::encode(Sha256::digest(&bytes)), linux_event);
}

fn objcopy_uki(stub: &Path, kernel: &Path, dir: &Path, initrd: &[u8]) -> PathBuf {
    let files = [
        (".osrel", &b"ID=ironrack\nVERSION_ID=1\n"[..]),
        (".cmdline", b"console=ttyS0 panic=-1"),
    ];
    let mut cmd = Command::new("objcopy");
    for (name, content) in files {
        let path = dir.join(&name[1..]);
        std::fs::write(&path, content).unwrap();
        cmd.arg("--add-section")
            .arg(format!("{name}={}", path.display()));
    }
    std::fs::write(dir.join("initrd"), initrd).unwrap();
    cmd.arg("--add-section")
        .arg(format!(".linux={}", kernel.display()));
    cmd.arg("--add-section")
        .arg(format!(".initrd={}", dir.join("initrd").display()));
    for (name, vma) in [
        (".osrel", "0x20000"),
        (".cmdline", "0x30000"),
        (".linux", "0x2000000"),
        (".initrd", "0x3000000"),
    ] {
        cmd.arg("--change-section-vma").arg(format!("{name}={vma}"));
    }
    let out = dir.join("node.efi");
    let status = cmd
        .arg(stub)
        .arg(&out)
        .status()
        .expect("objcopy (binutils) runs");
    assert!(status.success(), "{cmd:?}");
    out
}

#[test]
fn uki_built_with_objcopy_from_the_real_stub_predicts_pcr11() {
    let stub =
        debs::unpacked("systemd-boot-efi", None).join("usr/lib/systemd/boot/efi/linuxx64.efi.stub");
    let stub_bytes = read(&stub);
    assert!(
        stub_bytes.windows(17).any(|w| w == b"systemd-stub 252."),
        "the mirror's stub must be systemd 252 for SYSTEMD_STUB_252"
    );
    let kernel = kernel();
    let dir = tempfile::tempdir().unwrap();
    let initrd: Vec<u8> = (0..0x1001u32).map(|i| (i * 7) as u8).collect();
    let uki_path = objcopy_uki(&stub, &kernel, dir.path(), &initrd);
    let uki = read(&uki_path);
    let image = PeImage::parse(&uki).unwrap();

    let sections = image.sections();
    let linux = sections.iter().find(|s| s.name == ".linux").unwrap();
    assert_eq!(linux.virtual_size as usize, read(&kernel).len());

    let prediction = predict_pcr11(&image, &SYSTEMD_STUB_252).unwrap();
    let names: Vec<&str> = prediction.sections.iter().map(|s| s.section).collect();
    assert_eq!(names, [".linux", ".osrel", ".cmdline", ".initrd"]);
    // .linux measures exactly as in the real boot (same stub, same kernel).
    let logged: Vec<String> = fixture_log()
        .events_in(11)
        .take(2)
        .map(|e| e.digest(AlgorithmId::SHA256).unwrap().to_hex())
        .collect();
    let predicted = [
        &prediction.sections[0].name_digest,
        &prediction.sections[0].data_digest,
    ]
    .map(hex::encode);
    assert_eq!(predicted.to_vec(), logged);
    // The other sections hash exactly the bytes put in (VirtualSize, not
    // the 0x200-aligned SizeOfRawData objcopy writes).
    let expected = [
        &b"ID=ironrack\nVERSION_ID=1\n"[..],
        b"console=ttyS0 panic=-1",
        &initrd,
    ];
    for (measured, content) in prediction.sections[1..].iter().zip(expected) {
        assert_eq!(
            measured.data_digest,
            <[u8; 32]>::from(Sha256::digest(content)),
            "{}",
            measured.section
        );
    }

    // The UKI's Authenticode, by both implementations. objcopy leaves it
    // unaligned, like the fixture's node.efi, where goblin's padding
    // would give the wrong digest.
    authenticode_both(&uki_path);
    assert_ne!(uki.len() % 8, 0);
    // The stub itself (no added sections) also agrees.
    authenticode_both(&stub);
}
