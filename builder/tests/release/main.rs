//! The signed release: manifest, SBOM and provenance written by
//! `release::write_release`, checked by `release::verify`, and by tools
//! that are not ours: minisign for the manifest, openssl for the DSSE
//! signature (over a PAE computed by a Python script from the DSSE spec),
//! the SPDX license list (Debian's node-spdx-license-ids) for the SBOM's
//! license ids, on real Debian packages' copyright files.

// Shared with the PE tests (which use more of it).
#[allow(dead_code)]
#[path = "../pe/debs.rs"]
mod debs;

use std::path::Path;
use std::process::Command;

use ironrack_builder::boot::measure::{SYSTEMD_STUB_252, predict_pcr11};
use ironrack_builder::boot::pe::PeImage;
use ironrack_builder::boot::pe_fixture::PeFixture;
use ironrack_builder::release::license::{self, Declared};
use ironrack_builder::release::provenance::{BuildInputs, Material};
use ironrack_builder::release::sbom::SbomPackage;
use ironrack_builder::release::{
    BuildRecord, ChainCheck, ImagePayload, Measurements, NvidiaRecord, Outcome, PatchRecord,
    ReleaseInput, verify, write_release,
};
use ironrack_keys::trust::{Delegation, Scope};
use ironrack_keys::{SecretKey, Timestamp, Trust, TrustFile};

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

struct World {
    signer: SecretKey,
    trust: Trust,
    dir: tempfile::TempDir,
}

fn world() -> World {
    let root = SecretKey::generate().unwrap();
    let signer = SecretKey::generate().unwrap();
    let mut file = TrustFile::new(vec![root.public_key()], 1, at("2031-01-01T00:00:00Z")).unwrap();
    file.signed
        .add_signer(Delegation {
            name: "ci".into(),
            id: signer.key_id(),
            public: signer.public_key(),
            expires: at("2030-12-31T00:00:00Z"),
            scope: ["image:gpu-node", "channel:stable"]
                .iter()
                .map(|s| s.parse::<Scope>().unwrap())
                .collect(),
        })
        .unwrap();
    file.sign(&root).unwrap();
    let trust = Trust::from_installed(&file.to_bytes().unwrap(), &[]).unwrap();
    World {
        signer,
        trust,
        dir: tempfile::tempdir().unwrap(),
    }
}

fn now() -> Timestamp {
    at("2030-06-01T00:00:00Z")
}

fn packages() -> Vec<SbomPackage> {
    ["base-files", "libstdc++6", "nvidia-smi"]
        .iter()
        .enumerate()
        .map(|(i, name)| SbomPackage {
            name: (*name).into(),
            version: format!("1.{i}"),
            architecture: "amd64".into(),
            sha256: format!("{i:02x}").repeat(32),
            license: if i == 2 {
                license::declared(
                    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n\
                     Files: *\nLicense: NVIDIA\n",
                )
            } else {
                Declared::NoAssertion
            },
        })
        .collect()
}

/// Writes a release of generated artifacts into `dir`: a rootfs image
/// stand-in and a UKI-like PE with the measurements the builder computes.
fn release(w: &World, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("rootfs.squashfs"), vec![7u8; 100_000]).unwrap();
    let uki = PeFixture::uki_like(b"kernel bytes", b"initrd bytes", "console=ttyS0").build();
    std::fs::write(dir.join("node.efi"), &uki).unwrap();
    let pe = PeImage::parse(&uki).unwrap();
    let measurements = Measurements {
        uki: "node.efi".into(),
        uki_authenticode: hex::encode(pe.authenticode_sha256()),
        pcr11: hex::encode(predict_pcr11(&pe, &SYSTEMD_STUB_252).unwrap().value),
        kernel_authenticode: None,
        agent_pcr: 15,
    };
    let packages = packages();
    let materials: Vec<Material> = packages
        .iter()
        .map(|p| Material {
            uri: format!("pkg:deb/debian/{}@{}?arch=amd64", p.name, p.version),
            name: format!("pool/main/{}.deb", p.name),
            sha256: p.sha256.clone(),
        })
        .collect();
    let payload = ImagePayload {
        build: BuildRecord {
            spec_sha256: "aa".repeat(32),
            lock_sha256: "bb".repeat(32),
            snapshot: "cc".repeat(32),
            source_date_epoch: 1_750_000_000,
            builder_version: "0.1.0".into(),
        },
        kernel: None,
        modules: Vec::new(),
        nvidia: Some(NvidiaRecord {
            version: "535.261.03".into(),
            flavour: "open".into(),
            modules_from: "built".into(),
            patches: vec![PatchRecord {
                name: "nv-pci-resize.patch".into(),
                sha256: "5a".repeat(32),
            }],
            checks: vec![ChainCheck {
                check: "firmware-nvidia-gsp version".into(),
                expected: "535.261.03".into(),
                found: "535.261.03".into(),
            }],
            independent: [(
                "nvidia-persistenced".to_owned(),
                "535.171.04-1~deb12u1".to_owned(),
            )]
            .into(),
        }),
        measurements: Some(measurements),
        agent: None,
        packages: packages.len() as u64,
    };
    let input = ReleaseInput {
        name: "gpu-node",
        channel: "stable",
        version: 3,
        expires: at("2030-09-01T00:00:00Z"),
        payload,
        suite: "bookworm",
        packages: &packages,
        provenance: BuildInputs {
            image: "gpu-node",
            version: 3,
            spec: ("images/gpu-node.toml", &"aa".repeat(32)),
            lock: ("images/gpu-node.lock", &"bb".repeat(32)),
            snapshot: &"cc".repeat(32),
            source_date_epoch: 1_750_000_000,
            builder_version: "0.1.0",
            materials: &materials,
        },
    };
    write_release(dir, &input, &w.signer).unwrap();
}

fn failed(report: &ironrack_builder::release::VerifyReport) -> Vec<String> {
    report
        .checks
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
        .map(|c| c.name.clone())
        .collect()
}

#[test]
fn a_release_verifies_and_is_reproducible() {
    let w = world();
    let a = w.dir.path().join("a");
    let b = w.dir.path().join("b");
    release(&w, &a);
    release(&w, &b);
    for name in [
        "manifest.json",
        "manifest.json.minisig",
        "sbom.spdx.json",
        "provenance.intoto.json",
    ] {
        assert_eq!(
            std::fs::read(a.join(name)).unwrap(),
            std::fs::read(b.join(name)).unwrap(),
            "{name} differs between two writes of the same release"
        );
    }
    let report = verify(&a, &w.trust, None, now()).unwrap();
    assert!(report.passed(), "{report}");
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    for want in [
        "artifact node.efi",
        "artifact rootfs.squashfs",
        "artifact sbom.spdx.json",
        "provenance",
        "sbom",
        "node.efi Authenticode",
        "node.efi PCR 11",
        "nvidia chain",
    ] {
        assert!(names.contains(&want), "no check {want}: {names:?}");
    }
    // The driver patch is in the signed manifest and in the SBOM.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["payload"]["nvidia"]["patches"][0]["sha256"],
        "5a".repeat(32)
    );
    let sbom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("sbom.spdx.json")).unwrap()).unwrap();
    assert_eq!(
        sbom["files"][0]["fileName"],
        "./patches/nv-pci-resize.patch"
    );
    assert_eq!(
        sbom["files"][0]["checksums"][0]["checksumValue"],
        "5a".repeat(32)
    );
    // Rollback: a verifier that has seen version 4 refuses version 3.
    let err = verify(&a, &w.trust, Some(4), now()).unwrap_err();
    assert!(err.is_verification_failure(), "{err:?}");
}

#[test]
fn tampering_with_any_artifact_is_caught() {
    let w = world();
    for (file, check) in [
        ("rootfs.squashfs", "artifact rootfs.squashfs"),
        ("node.efi", "artifact node.efi"),
        ("sbom.spdx.json", "artifact sbom.spdx.json"),
        ("provenance.intoto.json", "provenance"),
    ] {
        let dir = w.dir.path().join(file);
        release(&w, &dir);
        let path = dir.join(file);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
        let report = verify(&dir, &w.trust, None, now()).unwrap();
        assert!(!report.passed(), "{file}: {report}");
        assert!(
            failed(&report).contains(&check.to_owned()),
            "{file}: {report}"
        );
    }
    // An extra file in the release directory is reported.
    let dir = w.dir.path().join("extra");
    release(&w, &dir);
    std::fs::write(dir.join("evil.sh"), b"#!/bin/sh\n").unwrap();
    let report = verify(&dir, &w.trust, None, now()).unwrap();
    assert!(report.to_string().contains("evil.sh"), "{report}");
    assert!(!report.passed());
    // The manifest itself: its signature no longer verifies.
    let dir = w.dir.path().join("manifest");
    release(&w, &dir);
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"version\":3", "\"version\":9");
    std::fs::write(&path, text).unwrap();
    let err = verify(&dir, &w.trust, None, now()).unwrap_err();
    assert!(err.is_verification_failure(), "{err:?}");
}

#[test]
fn a_signer_outside_the_trust_is_refused() {
    let w = world();
    let other = world();
    let dir = w.dir.path().join("r");
    release(&w, &dir);
    let err = verify(&dir, &other.trust, None, now()).unwrap_err();
    assert!(err.is_verification_failure(), "{err:?}");
}

#[test]
fn minisign_and_openssl_verify_the_signatures() {
    let w = world();
    let dir = w.dir.path().join("r");
    release(&w, &dir);
    let public = w.dir.path().join("ci.pub");
    std::fs::write(&public, w.signer.public_key().to_file_text("ci").unwrap()).unwrap();
    let out = Command::new("minisign")
        .arg("-Vm")
        .arg(dir.join("manifest.json"))
        .arg("-p")
        .arg(&public)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // DSSE: the PAE per the DSSE spec, computed in Python; the Ed25519
    // signature checked by openssl with the raw public key in an SPKI.
    let raw = w.signer.public_key().verifying_key().to_bytes();
    let mut spki = hex::decode("302a300506032b6570032100").unwrap();
    spki.extend_from_slice(&raw);
    std::fs::write(w.dir.path().join("ci.der"), &spki).unwrap();
    let script = r#"
import base64, json, sys
env = json.load(open(sys.argv[1]))
body = base64.b64decode(env["payload"])
t = env["payloadType"].encode()
pae = b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)
open(sys.argv[2], "wb").write(pae)
open(sys.argv[3], "wb").write(base64.b64decode(env["signatures"][0]["sig"]))
st = json.loads(body)
assert st["_type"] == "https://in-toto.io/Statement/v1", st["_type"]
assert st["predicateType"] == "https://slsa.dev/provenance/v1"
names = sorted(s["name"] for s in st["subject"])
assert names == ["node.efi", "rootfs.squashfs", "sbom.spdx.json"], names
"#;
    let d = w.dir.path();
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(dir.join("provenance.intoto.json"))
        .arg(d.join("pae.bin"))
        .arg(d.join("sig.bin"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let openssl = |pae: &Path| {
        Command::new("openssl")
            .args([
                "pkeyutl", "-verify", "-rawin", "-keyform", "DER", "-pubin", "-inkey",
            ])
            .arg(d.join("ci.der"))
            .arg("-in")
            .arg(pae)
            .arg("-sigfile")
            .arg(d.join("sig.bin"))
            .output()
            .unwrap()
    };
    let out = openssl(&d.join("pae.bin"));
    assert!(
        out.status.success(),
        "openssl: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // And openssl is a real check: a changed PAE fails.
    let mut pae = std::fs::read(d.join("pae.bin")).unwrap();
    pae[0] ^= 1;
    std::fs::write(d.join("pae2.bin"), pae).unwrap();
    assert!(!openssl(&d.join("pae2.bin")).status.success());
}

/// Every SPDX id we derive from real Debian copyright files is on the SPDX
/// license list, and every machine-readable file yields an expression.
#[test]
fn licenses_of_real_packages_are_spdx() {
    let list = |path: &str| -> Vec<String> {
        serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| {
            panic!("{path}: {e} (scripts/deps.sh installs node-spdx-license-ids)")
        }))
        .unwrap()
    };
    let mut known = list("/usr/share/nodejs/spdx-license-ids/index.json");
    known.extend(list("/usr/share/nodejs/spdx-license-ids/deprecated.json"));
    known.extend(list("/usr/share/nodejs/spdx-exceptions/index.json"));
    let mut machine_readable = 0;
    for package in [
        "bash",
        "coreutils",
        "dpkg",
        "libc6",
        "openssh-client",
        "zlib1g",
        "systemd",
        "util-linux",
        "libssl3",
        "tzdata",
        "iproute2",
        "libzstd1",
    ] {
        let root = debs::unpacked(package, None);
        let path = root.join(format!("usr/share/doc/{package}/copyright"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        match license::declared(&text) {
            Declared::NoAssertion => assert!(
                !text.starts_with("Format:"),
                "{package}: a DEP-5 file without an expression"
            ),
            Declared::Expression { text: expr, refs } => {
                machine_readable += 1;
                for token in expr.split([' ', '(', ')']).filter(|t| !t.is_empty()) {
                    if ["AND", "OR", "WITH"].contains(&token) {
                        continue;
                    }
                    if token.starts_with("LicenseRef-") {
                        assert!(
                            refs.iter().any(|(r, _)| r == token),
                            "{package}: {token} is not defined"
                        );
                        continue;
                    }
                    assert!(
                        known.iter().any(|k| k == token),
                        "{package}: {token} (in {expr}) is not an SPDX id"
                    );
                }
            }
        }
    }
    assert!(machine_readable >= 6, "only {machine_readable} DEP-5 files");
}

proptest::proptest! {
    /// Copyright files come from packages: any text gives an answer, never
    /// a panic, and every LicenseRef it uses is defined.
    #[test]
    fn any_copyright_text_is_read(body in "(Files: \\*\n|License: [ -~]{0,40}\n|\n|[ -~]{0,30}\n){0,12}") {
        let text = format!(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n{body}"
        );
        if let Declared::Expression { text, refs } = license::declared(&text) {
            for token in text.split([' ', '(', ')']).filter(|t| t.starts_with("LicenseRef-")) {
                proptest::prop_assert!(refs.iter().any(|(r, _)| r == token), "{}", token);
            }
        }
    }
}

/// The seam between the crates: the attestation service reads the
/// builder's manifest through its own view (`ReleasedImage`); a field
/// renamed on either side must fail here, not on a booting node.
#[test]
fn the_attestation_service_reads_the_builders_manifest() {
    let w = world();
    let dir = w.dir.path().join("r");
    release(&w, &dir);
    let manifest = std::fs::read(dir.join("manifest.json")).unwrap();
    let signature = std::fs::read(dir.join("manifest.json.minisig")).unwrap();
    let image = ironrack_pxe::attest::image::ReleasedImage::verify(
        &w.trust,
        &manifest,
        &signature,
        None,
        now(),
    )
    .unwrap();
    let ours = verify(&dir, &w.trust, None, now()).unwrap();
    let m = ours.manifest.payload.measurements.unwrap();
    let theirs = image
        .measurements
        .expect("the service sees the measurements");
    assert_eq!(theirs.uki, m.uki);
    assert_eq!(theirs.uki_authenticode, m.uki_authenticode);
    assert_eq!(theirs.pcr11, m.pcr11);
    assert_eq!(theirs.agent_pcr, m.agent_pcr);
    assert_eq!(image.rootfs_name, "rootfs.squashfs");
    let rootfs = std::fs::read(dir.join("rootfs.squashfs")).unwrap();
    assert_eq!(image.rootfs_size, rootfs.len() as u64);
    assert_eq!(
        image.rootfs_sha256.to_vec(),
        <sha2::Sha256 as sha2::Digest>::digest(&rootfs).to_vec()
    );
    assert_eq!(
        image.manifest_sha256.to_vec(),
        <sha2::Sha256 as sha2::Digest>::digest(&manifest).to_vec()
    );
}
