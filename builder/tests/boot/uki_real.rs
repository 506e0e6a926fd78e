//! node.efi from Debian's systemd-stub 252 and cloud kernel: layout read
//! back by binutils objdump, Authenticode by our EDK2 implementation, the
//! independent reference one and sbsigntool (sbsign + sbverify, the
//! digest inside its signature), the stub's own checksum, determinism.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use ironrack_builder::boot::measure::authenticode_of_file;
use ironrack_builder::boot::pe::PeImage;
use ironrack_builder::boot::pe_fixture::{FixtureSection, PeFixture};
use ironrack_builder::boot::uki::{UkiError, UkiInputs, build_uki, measure_uki, pe_checksum};

use super::artifacts::{self, CMDLINE, OSREL, read};
use super::debs::{self, RELEASE, run};

#[path = "../pe/reference.rs"]
mod reference;

fn write_uki(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("node.efi");
    std::fs::write(&path, &artifacts::uki().0).unwrap();
    path
}

/// objdump -h rows: name → (size, vma, file offset, alignment exponent).
fn objdump_sections(path: &Path) -> BTreeMap<String, (u64, u64, u64, u32)> {
    let out = String::from_utf8(run(Command::new("objdump").arg("-h").arg(path)).stdout).unwrap();
    out.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.len() != 7 || w[0].parse::<u32>().is_err() {
                return None;
            }
            let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
            let align = w[6].strip_prefix("2**")?.parse().ok()?;
            Some((w[1].to_owned(), (hex(w[2]), hex(w[3]), hex(w[5]), align)))
        })
        .collect()
}

#[test]
fn objdump_reads_the_added_sections() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_uki(dir.path());
    let sections = objdump_sections(&path);
    let linux = read(&debs::vmlinuz());
    let expected: [(&str, usize); 5] = [
        (".osrel", OSREL.len()),
        (".cmdline", CMDLINE.len()),
        (".uname", RELEASE.len()),
        (".initrd", artifacts::initrd().len()),
        (".linux", linux.len()),
    ];
    let stub_sections = objdump_sections(&debs::stub());
    let stub_end = stub_sections
        .values()
        .map(|(size, vma, _, _)| vma + size)
        .max()
        .unwrap();
    let mut previous_end = stub_end;
    for (name, len) in expected {
        let (size, vma, offset, _) = sections[name];
        assert_eq!(size, len as u64, "{name} size");
        assert_eq!(
            offset % 0x200,
            0,
            "{name} file offset aligned to FileAlignment"
        );
        assert_eq!(vma % 0x200, 0, "{name} VMA aligned to SectionAlignment");
        assert!(vma >= previous_end, "{name} overlaps the previous section");
        previous_end = vma + size;
    }
    // The stub's own sections are where they were.
    for (name, row) in &stub_sections {
        assert_eq!(sections[name], *row, "{name}");
    }
    let headers =
        String::from_utf8(run(Command::new("objdump").arg("-p").arg(&path)).stdout).unwrap();
    assert!(
        headers.contains("Time/Date\t\tThu Jan  1 00:00:00 1970"),
        "no timestamp"
    );
    let field = |name: &str| {
        let line = headers.lines().find(|l| l.starts_with(name)).unwrap();
        u64::from_str_radix(line.split_whitespace().last().unwrap(), 16).unwrap()
    };
    assert_eq!(field("SizeOfImage"), previous_end.div_ceil(0x200) * 0x200);
    let uki = &artifacts::uki().0;
    let pe = u32::from_le_bytes(uki[0x3c..0x40].try_into().unwrap()) as usize;
    assert_eq!(field("CheckSum"), u64::from(pe_checksum(uki, pe + 24 + 64)));
    assert_eq!(uki.len() % 8, 0);
}

#[test]
fn checksum_agrees_with_binutils_on_the_stub() {
    let stub = read(&debs::stub());
    let pe = u32::from_le_bytes(stub[0x3c..0x40].try_into().unwrap()) as usize;
    let stored = u32::from_le_bytes(stub[pe + 88..pe + 92].try_into().unwrap());
    assert_ne!(stored, 0);
    assert_eq!(pe_checksum(&stub, pe + 88), stored);
}

#[test]
fn authenticode_by_both_implementations_and_measurements() {
    let (uki, linux) = artifacts::uki();
    let ours = PeImage::parse(uki).unwrap();
    let reference = reference::authenticode(uki).unwrap();
    assert_eq!(ours.authenticode_ranges(), reference.ranges);
    assert_eq!(ours.authenticode_sha256(), reference.digest);
    let m = measure_uki(uki, linux).unwrap();
    assert_eq!(m.uki_authenticode, hex::encode(reference.digest));
    assert_eq!(m.stub_version, "252.39-1~deb12u2");
    assert_eq!(
        m.kernel_authenticode,
        hex::encode(reference::authenticode(linux).unwrap().digest)
    );
    assert_eq!(
        m.pcr11_events.len(),
        8,
        ".linux .osrel .cmdline .initrd, name and data each"
    );
}

#[test]
fn sbsigntool_signs_it_and_agrees_on_the_digest() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = write_uki(d);
    run(Command::new("openssl")
        .args([
            "req",
            "-new",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=ironrack test",
        ])
        .arg("-keyout")
        .arg(d.join("key.pem"))
        .arg("-out")
        .arg(d.join("cert.pem")));
    run(Command::new("sbsign")
        .arg("--key")
        .arg(d.join("key.pem"))
        .arg("--cert")
        .arg(d.join("cert.pem"))
        .arg("--output")
        .arg(d.join("signed.efi"))
        .arg(&path));
    let verify = run(Command::new("sbverify")
        .arg("--cert")
        .arg(d.join("cert.pem"))
        .arg(d.join("signed.efi")));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("Signature verification OK"));
    // The digest sbsign signed (SpcIndirectDataContent) is our Authenticode
    // of the unsigned image, and of the signed one (the certificate table
    // is excluded).
    run(Command::new("sbattach")
        .arg("--detach")
        .arg(d.join("sig.p7"))
        .arg(d.join("signed.efi")));
    let asn1 = run(Command::new("openssl")
        .args(["asn1parse", "-inform", "DER", "-in"])
        .arg(d.join("sig.p7")));
    let text = String::from_utf8(asn1.stdout).unwrap();
    let signed_digest = text
        .lines()
        .filter(|l| l.contains("OCTET STRING") && l.contains("[HEX DUMP]:"))
        .map(|l| l.rsplit(':').next().unwrap().to_ascii_lowercase())
        .find(|h| h.len() == 64)
        .expect("a SHA-256 digest in the signature");
    let ours = hex::encode(authenticode_of_file(&path).unwrap());
    assert_eq!(signed_digest, ours);
    assert_eq!(
        hex::encode(authenticode_of_file(&d.join("signed.efi")).unwrap()),
        ours
    );
}

#[test]
fn same_inputs_same_bytes() {
    let first = artifacts::initrd().to_vec();
    let root = ironrack_builder::boot::elf::ImageRoot::new(debs::kernel_root());
    let again = ironrack_builder::boot::initramfs::assemble(&root, &artifacts::spec())
        .unwrap()
        .to_bytes(ironrack_builder::boot::cpio::DEFAULT_COMPRESSION)
        .unwrap();
    assert_eq!(first, again, "initramfs");
    let stub = read(&debs::stub());
    let linux = read(&debs::vmlinuz());
    let inputs = UkiInputs {
        stub: &stub,
        linux: &linux,
        initrd: &again,
        cmdline: CMDLINE,
        osrel: OSREL,
        uname: Some(RELEASE),
        splash: None,
    };
    assert_eq!(build_uki(&inputs).unwrap(), artifacts::uki().0, "UKI");
    let other = UkiInputs {
        cmdline: "console=ttyS0",
        ..inputs
    };
    assert_ne!(build_uki(&other).unwrap(), artifacts::uki().0);
}

#[test]
fn stubs_it_cannot_extend_are_refused() {
    let linux = read(&debs::vmlinuz());
    let inputs = |stub: &[u8]| {
        build_uki(&UkiInputs {
            stub,
            linux: &linux,
            initrd: b"x",
            cmdline: "c",
            osrel: b"o",
            uname: None,
            splash: None,
        })
    };
    // The signed kernel is a PE with a certificate table.
    assert!(matches!(inputs(&linux), Err(UkiError::SignedStub)));
    // Headers with no slack for the new section headers.
    let tight = PeFixture {
        sections: vec![FixtureSection::new(".text", vec![0xC3; 16])],
        file_alignment: 0x10,
        ..PeFixture::default()
    }
    .build();
    assert!(matches!(
        inputs(&tight),
        Err(UkiError::NoRoomForSections { .. })
    ));
    // A stub that already carries a .linux.
    let uki = artifacts::uki().0.clone();
    assert!(matches!(
        inputs(&uki),
        Err(UkiError::SectionExists { name: ".osrel" })
    ));
}
