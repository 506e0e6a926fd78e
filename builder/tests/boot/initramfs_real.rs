//! The initramfs from the real kernel package and busybox-static: its
//! module closure and regenerated indexes against kmod's depmod run on
//! the extracted archive, firmware, the agent (real gcc binaries: static
//! alone, dynamic with its closure from the image's real libc6, run in a
//! chroot of the unpacked archive; refused when the image lacks a library
//! or a symbol version), the driver policy, and the agent configuration
//! with a real signed trust root.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ironrack_builder::boot::cpio::{Compression, EntryKind, FileData, read_newc};
use ironrack_builder::boot::elf::ImageRoot;
use ironrack_builder::boot::elf::fixture::ElfFixture;
use ironrack_builder::boot::initramfs::{
    AGENT_CONFIG_PATH, AgentConfig, InitProgram, InitramfsError, InitramfsSpec, MissingDrivers,
    MissingSymbolVersions, TRUST_PATH, assemble,
};
use ironrack_builder::boot::kmod::depmod::parse_modules_dep;
use sha2::{Digest, Sha256};

use super::artifacts::{self, EPOCH};
use super::debs::{self, RELEASE, run};

fn root() -> ImageRoot {
    ImageRoot::new(debs::kernel_root())
}

fn sets(map: BTreeMap<String, Vec<String>>) -> BTreeMap<String, BTreeSet<String>> {
    map.into_iter()
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect()
}

#[test]
fn closure_files_and_indexes_agree_with_depmod_on_the_extracted_archive() {
    let initramfs = assemble(&root(), &artifacts::spec()).unwrap();
    let raw = initramfs.to_bytes(Compression::None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let mut cpio = Command::new("cpio")
        .args([
            "--quiet",
            "-i",
            "-d",
            "--no-absolute-filenames",
            "lib/*",
            "bin/*",
            "init",
        ])
        .current_dir(out)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(cpio.stdin.as_mut().unwrap(), &raw).unwrap();
    assert!(cpio.wait().unwrap().success());

    let modules = out.join("lib/modules").join(RELEASE);
    let ours = parse_modules_dep(
        &std::fs::read_to_string(modules.join("modules.dep")).unwrap(),
        Path::new("ours"),
    )
    .unwrap();
    let report = &initramfs.report.modules;
    assert_eq!(ours.len(), report.load_order.len());
    // Every module file is the image's, byte for byte.
    let image_modules = debs::modules_dir();
    for path in ours.keys() {
        assert_eq!(
            std::fs::read(modules.join(path)).unwrap(),
            std::fs::read(image_modules.join(path)).unwrap(),
            "{path}"
        );
    }
    // kmod's depmod over the extracted tree writes the same dependencies.
    let scratch = tempfile::tempdir().unwrap();
    run(Command::new("cp")
        .arg("-a")
        .arg(out.join("lib"))
        .arg(scratch.path()));
    std::fs::remove_file(
        scratch
            .path()
            .join("lib/modules")
            .join(RELEASE)
            .join("modules.dep"),
    )
    .unwrap();
    run(Command::new("depmod")
        .arg("-b")
        .arg(scratch.path())
        .arg(RELEASE));
    let theirs = parse_modules_dep(
        &std::fs::read_to_string(
            scratch
                .path()
                .join("lib/modules")
                .join(RELEASE)
                .join("modules.dep"),
        )
        .unwrap(),
        Path::new("depmod"),
    )
    .unwrap();
    assert_eq!(sets(ours), sets(theirs));
    // Built-in and absent drivers of the default list are reported.
    assert!(report.builtin.iter().any(|m| m == "nvme"));
    assert!(report.missing.iter().any(|m| m == "ice"));
    // busybox and its applets.
    assert_eq!(
        std::fs::read(out.join("bin/busybox")).unwrap(),
        std::fs::read(debs::kernel_root().join("usr/bin/busybox")).unwrap()
    );
    assert_eq!(
        std::fs::read_link(out.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        std::fs::read_to_string(out.join("init")).unwrap(),
        artifacts::INIT_SCRIPT
    );
    // The console device the kernel opens before /init mounts devtmpfs.
    let entries = read_newc(&raw).unwrap();
    let console = entries.iter().find(|e| e.name == "dev/console").unwrap();
    assert_eq!((console.rdev, console.mode & 0o170000), ((5, 1), 0o020000));
    assert!(
        entries
            .iter()
            .all(|e| e.mtime == EPOCH && e.uid == 0 && e.gid == 0)
    );
}

fn gcc(dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
    let source = dir.join("agent.c");
    std::fs::write(&source, "int main(void) { return 0; }\n").unwrap();
    let out = dir.join(name);
    run(Command::new("gcc")
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(&source));
    out
}

/// The image's libc6 version, as the real dpkg-query reads the image's
/// database.
fn image_libc6_version(root: &Path) -> String {
    let out = run(Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f=${Version}", "libc6"]));
    String::from_utf8(out.stdout).unwrap()
}

fn small_spec(agent: &Path) -> InitramfsSpec {
    let mut spec = InitramfsSpec::new(RELEASE, InitProgram::Agent(agent.to_owned()), EPOCH);
    spec.drivers = vec!["squashfs".into()];
    spec
}

#[test]
fn a_dynamic_agent_brings_its_closure_from_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("agent.c");
    std::fs::write(
        &source,
        "#include <stdio.h>\n#include <math.h>\nint main(int c, char **v) { printf(\"agent ran %.0f\\n\", sqrt(c * 16.0)); return 0; }\n",
    )
    .unwrap();
    let agent = dir.path().join("agent");
    run(Command::new("gcc")
        .arg("-o")
        .arg(&agent)
        .arg(&source)
        .arg("-lm"));
    let image = debs::kernel_libc_root();
    let initramfs = assemble(&ImageRoot::new(&image), &small_spec(&agent)).unwrap();
    let closure = initramfs.report.agent_closure.clone().unwrap();
    assert_eq!(closure.interpreter, "/lib64/ld-linux-x86-64.so.2");
    let shipped: Vec<&str> = closure.libraries.iter().map(|l| l.path.as_str()).collect();
    assert_eq!(
        shipped,
        [
            "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            "lib/x86_64-linux-gnu/libc.so.6",
            "lib/x86_64-linux-gnu/libm.so.6",
        ]
    );
    let libc6 = format!("libc6 {}", image_libc6_version(&image));
    for library in &closure.libraries {
        let package = library.package.as_ref().unwrap().to_string();
        assert_eq!(package, libc6, "{}", library.path);
        let bytes = std::fs::read(image.join(library.source.strip_prefix("/").unwrap())).unwrap();
        assert_eq!(library.sha256, hex::encode(Sha256::digest(&bytes)));
    }
    assert_eq!(
        initramfs
            .archive
            .get("lib64/ld-linux-x86-64.so.2")
            .unwrap()
            .kind,
        EntryKind::Symlink("../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2".into())
    );
    // Same inputs, same bytes.
    let again = assemble(&ImageRoot::new(&image), &small_spec(&agent)).unwrap();
    let raw = initramfs.to_bytes(Compression::None).unwrap();
    assert_eq!(raw, again.to_bytes(Compression::None).unwrap());

    // GNU cpio unpacks it, and the agent runs there on the image's glibc
    // alone (chroot: nothing of the host's libraries is visible).
    if debs::skip_unless_root(
        "a_dynamic_agent_brings_its_closure_from_the_image (chroot run)",
        "chroot",
    ) {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let mut cpio = Command::new("cpio")
        .args(["--quiet", "-i", "-d", "--no-absolute-filenames"])
        .current_dir(out.path())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(cpio.stdin.as_mut().unwrap(), &raw).unwrap();
    assert!(cpio.wait().unwrap().success());
    let ran = run(Command::new("chroot").arg(out.path()).args(["/init", "x"]));
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "agent ran 6\n");
}

#[test]
fn a_dynamic_agent_is_refused_when_the_image_lacks_its_libraries() {
    let dir = tempfile::tempdir().unwrap();
    let dynamic = gcc(dir.path(), "dynamic", &[]);
    match assemble(&root(), &small_spec(&dynamic)) {
        Err(err @ InitramfsError::AgentLibrariesMissing { .. }) => {
            let message = err.to_string();
            assert!(
                message.contains(&format!(
                    "{} needs libc.so.6, not found in the image",
                    dynamic.display()
                )),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_agent_built_against_a_newer_glibc_is_refused_naming_version_and_package() {
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("agent");
    let fixture = ElfFixture::program(&["libc.so.6"])
        .needing_versions("libc.so.6", &["GLIBC_2.2.5", "GLIBC_2.34", "GLIBC_2.99"]);
    std::fs::write(&agent, fixture.build()).unwrap();
    let image = debs::kernel_libc_root();
    let err = assemble(&ImageRoot::new(&image), &small_spec(&agent)).unwrap_err();
    let InitramfsError::AgentSymbolVersions(missing) = &err else {
        panic!("{err:?}");
    };
    let MissingSymbolVersions {
        agent: named,
        versions,
        name,
        package,
        ..
    } = missing.as_ref();
    assert_eq!(named, &agent);
    assert_eq!(versions, &["GLIBC_2.99"]);
    assert_eq!(name, "libc.so.6");
    assert_eq!(package, &format!("libc6 {}", image_libc6_version(&image)));
    let message = err.to_string();
    assert!(
        message.contains("GLIBC_2.99") && message.contains(&agent.display().to_string()),
        "{message}"
    );
}

#[test]
fn a_static_agent_goes_in_alone() {
    let dir = tempfile::tempdir().unwrap();
    let agent = gcc(dir.path(), "static-pie", &["-static-pie"]);
    let initramfs = assemble(&root(), &small_spec(&agent)).unwrap();
    assert_eq!(
        initramfs.archive.get("init").unwrap().kind,
        EntryKind::Symlink("bin/ironrack".into())
    );
    assert_eq!(
        initramfs.archive.get("bin/ironrack").unwrap().kind,
        EntryKind::File(FileData::Host(agent))
    );
    assert_eq!(initramfs.report.agent_closure, None);
    assert!(initramfs.archive.get("lib64").is_none());
}

#[test]
fn drivers_the_kernel_lacks() {
    let mut spec = InitramfsSpec::new(RELEASE, InitProgram::Script("#!/bin/sh\n".into()), EPOCH);
    spec.drivers = vec!["virtio_net".into(), "e1000e".into(), "tpm_tis".into()];
    let report = assemble(&root(), &spec).unwrap().report;
    assert_eq!(report.modules.missing, ["e1000e"]);
    assert_eq!(report.modules.builtin, ["tpm_tis"]);
    spec.missing_drivers = MissingDrivers::Error;
    match assemble(&root(), &spec) {
        Err(InitramfsError::MissingDrivers { release, names }) => {
            assert_eq!(
                (release.as_str(), names),
                (RELEASE, vec!["e1000e".to_owned()])
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn firmware_of_the_closure_comes_from_the_image() {
    // Few cloud-kernel modules ask for firmware; jr3_pci asks for a file
    // in a subdirectory, which a scratch copy of the image provides.
    let copy = tempfile::tempdir().unwrap();
    run(Command::new("cp")
        .arg("-a")
        .arg("-l")
        .arg(format!("{}/.", debs::kernel_root().display()))
        .arg(copy.path()));
    let mut spec = InitramfsSpec::new(RELEASE, InitProgram::Script("#!/bin/sh\n".into()), EPOCH);
    spec.drivers = vec!["jr3_pci".into()];
    let image = ImageRoot::new(copy.path());
    let report = assemble(&image, &spec).unwrap().report;
    assert_eq!(
        report.missing_firmware,
        [("jr3_pci".to_owned(), "comedi/jr3pci.idm".to_owned())]
    );
    // Through merged /usr: /lib/firmware is usr/lib/firmware.
    let fw = copy.path().join("usr/lib/firmware/comedi");
    std::fs::create_dir_all(&fw).unwrap();
    std::fs::write(fw.join("jr3pci.idm"), b"firmware").unwrap();
    let initramfs = assemble(&image, &spec).unwrap();
    assert_eq!(initramfs.report.firmware, ["comedi/jr3pci.idm"]);
    assert!(initramfs.report.missing_firmware.is_empty());
    assert!(
        initramfs
            .archive
            .get("lib/firmware/comedi/jr3pci.idm")
            .is_some()
    );
}

fn trust_json() -> Vec<u8> {
    use ironrack_keys::{SecretKey, TrustFile};
    let root = SecretKey::generate().unwrap();
    let mut file = TrustFile::new(
        vec![root.public_key()],
        1,
        "2031-01-01T00:00:00Z".parse().unwrap(),
    )
    .unwrap();
    file.sign(&root).unwrap();
    file.to_bytes().unwrap()
}

#[test]
fn agent_configuration_and_trust_root() {
    let mut spec = InitramfsSpec::new(RELEASE, InitProgram::Script("#!/bin/sh\n".into()), EPOCH);
    spec.drivers = vec!["virtio_net".into()];
    spec.agent = Some(AgentConfig {
        version: 1,
        image: "gpu-node".into(),
        channel: "stable".into(),
        trust: format!("/{TRUST_PATH}"),
        server: Some("http://198.18.0.1:8080".into()),
        modules: Vec::new(),
        kernel_release: String::new(),
    });
    let trust = trust_json();
    spec.trust = Some(trust.clone());
    let initramfs = assemble(&root(), &spec).unwrap();
    let entries = read_newc(&initramfs.to_bytes(Compression::None).unwrap()).unwrap();
    let file = |name: &str| {
        entries
            .iter()
            .find(|e| e.name == name)
            .unwrap()
            .data
            .clone()
    };
    assert_eq!(file(TRUST_PATH), trust);
    let config = AgentConfig::parse(&file(AGENT_CONFIG_PATH)).unwrap();
    assert_eq!(config.kernel_release, RELEASE);
    assert_eq!(config.modules, initramfs.report.modules.load_order);
    assert_eq!(
        config.modules.last().map(String::as_str),
        Some("virtio_net")
    );

    // A trust root whose signature does not verify is refused.
    let mut bad = trust.clone();
    let text = String::from_utf8(bad.clone()).unwrap();
    let at = text.find("\"sig\"").unwrap() + 10;
    bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
    spec.trust = Some(bad);
    assert!(matches!(
        assemble(&root(), &spec),
        Err(InitramfsError::Trust(_))
    ));
}
