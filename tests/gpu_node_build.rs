//! The GPU node image of the README's demo, built for real: a signed
//! mirror synced from the host's apt (+ contrib, non-free,
//! non-free-firmware) with exactly the closure of images/gpu-node.toml,
//! locked, then built twice in different directories with different job
//! counts and time zones. Each build installs the lock's build set into
//! a sandbox, compiles Debian's nvidia-open-kernel-source 535.261.03
//! against linux-headers-6.1.0-50-cloud-amd64 there, installs the
//! modules, runs the image's depmod, checks every module and the NVIDIA
//! version chain, and writes vmlinuz, initrd.img and node.efi. Then:
//!
//! - the two builds are identical, module by module and file by file;
//! - the manifest lists nvidia.ko, nvidia-uvm.ko and nvidia-modeset.ko
//!   with the kernel's vermagic, and every coupling of the chain held;
//! - `ironrack verify` and minisign accept the image, and a flipped byte
//!   in initrd.img is caught (exit 3);
//! - the image's own kernel, booted under qemu, loads the image's
//!   nvidia.ko, which links and stops at `NVRM: No NVIDIA GPU found`;
//! - node.efi boots under OVMF as an EFI application from a FAT disk, and
//!   vmlinuz + initrd.img under SeaBIOS, both to the agent's console lines
//!   and its power-off;
//! - the built modules packaged as a site's precompiled module package
//!   (`[nvidia] precompiled`), imported into the mirror: the image built
//!   from it installs them instead of compiling, and the chain holds;
//! - the same spec without the GSP firmware pin (apt's default firmware,
//!   535.309.01, beside the 535.261.03 module source) is refused before
//!   anything is built, naming both versions and the pin.
//!
//! ~10 minutes on 2 cores (two module builds). Needs root and the Debian
//! archive; skips loudly otherwise.

#![allow(clippy::print_stderr)]

mod keys_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ironrack_builder::boot::elf::ImageRoot;
use ironrack_builder::boot::initramfs::{InitProgram, InitramfsSpec, MissingDrivers, assemble};
use ironrack_pxe::testkit::qemu;
use keys_support::{debian_reachable, flip_byte, ironrack};
use serde_json::Value;

const RELEASE: &str = "6.1.0-50-cloud-amd64";
const DRIVER: &str = "535.261.03";
const PINS: [&str; 4] = ["--pin", "keys/root-a.pub", "--pin", "keys/root-b.pub"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// images/gpu-node.toml without its NVIDIA pins: apt's candidates
/// (535.309.01 from bookworm-security) for firmware and userspace, beside
/// the archive's only open module source, 535.261.03.
fn unpinned_spec() -> String {
    let spec = std::fs::read_to_string(repo().join("images/gpu-node.toml")).unwrap();
    let pin = format!("= \"{DRIVER}-1\"");
    let kept: Vec<&str> = spec.lines().filter(|l| !l.ends_with(&pin)).collect();
    assert!(
        spec.lines()
            .any(|l| l.starts_with("firmware-nvidia-gsp =") && l.ends_with(&pin)),
        "the spec pins the firmware"
    );
    kept.join("\n") + "\n"
}

/// The site: keys, trust.json, the mirror and the lock, kept between runs
/// under the target directory (the sync is what the demo does; it runs
/// again only when the spec needs what the snapshot lacks).
fn site() -> PathBuf {
    let site = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gpu-node-site");
    std::fs::create_dir_all(site.join("images")).unwrap();
    std::fs::copy(
        repo().join("images/gpu-node.toml"),
        site.join("images/gpu-node.toml"),
    )
    .unwrap();
    std::fs::create_dir_all(site.join("unpinned")).unwrap();
    std::fs::write(site.join("unpinned/gpu-node.toml"), unpinned_spec()).unwrap();
    if !site.join("trust.json").is_file() {
        for k in ["root-a", "root-b", "ci", "mirror"] {
            let _ = std::fs::remove_file(site.join(format!("keys/{k}.key")));
            let _ = std::fs::remove_file(site.join(format!("keys/{k}.pub")));
            ironrack(&site, &["keys", "generate", k, "--dir", "keys"]).ok();
        }
        let roots = ["--root", "keys/root-a.key", "--root", "keys/root-b.key"];
        let mut init = vec!["keys", "trust", "init", "--threshold", "2"];
        init.extend(roots);
        init.extend(["--expires", "365d", "-o", "trust.tmp"]);
        ironrack(&site, &init).ok();
        for (name, scopes) in [
            (
                "ci",
                vec!["--scope", "image:gpu-node", "--scope", "channel:stable"],
            ),
            ("mirror", vec!["--scope", "mirror:site"]),
        ] {
            let key = format!("keys/{name}.pub");
            let mut add = vec!["keys", "trust", "add-signer", "trust.tmp", "--pub", &key];
            add.extend(["--name", name, "--expires", "90d"]);
            add.extend(scopes);
            add.extend(roots);
            ironrack(&site, &add).ok();
        }
        std::fs::rename(site.join("trust.tmp"), site.join("trust.json")).unwrap();
    }
    if !site.join("mirror").is_dir() {
        ironrack(&site, &["mirror", "init", "mirror", "--name", "site"]).ok();
    }
    let mut lock = vec!["lock", "images/gpu-node.toml", "--trust", "trust.json"];
    lock.extend(PINS);
    let mut unpinned = vec!["lock", "unpinned/gpu-node.toml", "--trust", "trust.json"];
    unpinned.extend(PINS);
    if ironrack(&site, &lock).code != Some(0) || ironrack(&site, &unpinned).code != Some(0) {
        ironrack(
            &site,
            &[
                "mirror",
                "sync",
                "mirror",
                "--from-host-apt",
                "--add-components",
                "non-free,non-free-firmware,contrib",
                "--for",
                "images/gpu-node.toml",
                "--for",
                "unpinned/gpu-node.toml",
                "--ref",
                "bookworm-site",
                "--key",
                "keys/mirror.key",
            ],
        )
        .ok();
        ironrack(&site, &lock).ok();
        ironrack(&site, &unpinned).ok();
    }
    site
}

/// The ironrack under test as the agent, without its debug information
/// (the test build's 230 MB would make a 60 MB initramfs).
fn agent(site: &Path) -> PathBuf {
    let agent = site.join("agent-ironrack");
    let strip = Command::new("strip")
        .args(["--strip-debug", "-o"])
        .arg(&agent)
        .arg(env!("CARGO_BIN_EXE_ironrack"))
        .output()
        .unwrap();
    assert!(strip.status.success(), "{strip:?}");
    agent
}

/// A fresh build into `out` (its cache inside it, so nothing is shared).
fn build(site: &Path, out: &str, jobs: &str, tz: &str) -> Value {
    let _ = std::fs::remove_dir_all(site.join(out));
    let output = Command::new(env!("CARGO_BIN_EXE_ironrack"))
        .current_dir(site)
        .env("TZ", tz)
        .args(["build", "images/gpu-node.toml", "--trust", "trust.json"])
        .args(PINS)
        .args([
            "--key",
            "keys/ci.key",
            "--out",
            out,
            "--jobs",
            jobs,
            "--json",
        ])
        .arg("--agent")
        .arg(site.join("agent-ironrack"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ironrack build failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn artifacts(report: &Value) -> Vec<(String, String)> {
    report["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["file"].as_str().unwrap().to_owned(),
                a["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_gpu_node_image_builds_identically_verifies_and_its_nvidia_ko_links() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("\n*** SKIP gpu-node build: needs root (the build sandbox) ***\n");
        return;
    }
    if !debian_reachable() {
        return;
    }
    let site = site();
    agent(&site);
    unpinned_firmware_is_refused_before_the_build(&site);
    let first = build(&site, "out-a", "2", "UTC");
    let second = build(&site, "out-b", "3", "Asia/Tokyo");

    // Identical, file by file and module by module.
    let files = artifacts(&first);
    let names: Vec<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
    for want in ["rootfs.squashfs", "vmlinuz", "initrd.img", "node.efi"] {
        assert!(names.contains(&want), "{names:?}");
    }
    assert_eq!(files, artifacts(&second));
    assert_eq!(first["boot"]["modules"], second["boot"]["modules"]);

    // The manifest: the NVIDIA modules with the kernel's vermagic.
    let dir = site.join("out-a/gpu-node/1");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let payload = &manifest["payload"];
    let modules = payload["modules"].as_array().unwrap();
    let vermagic_of = |file: &str| {
        modules
            .iter()
            .find(|m| m["path"].as_str().unwrap().ends_with(file))
            .unwrap_or_else(|| panic!("{file} not in the manifest's modules"))["vermagic"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let kernel = vermagic_of("/kernel/fs/squashfs/squashfs.ko");
    assert!(kernel.starts_with(&format!("{RELEASE} SMP")), "{kernel}");
    for module in ["nvidia.ko", "nvidia-uvm.ko", "nvidia-modeset.ko"] {
        assert_eq!(vermagic_of(&format!("/updates/dkms/{module}")), kernel);
    }
    let nvidia = &payload["nvidia"];
    assert_eq!(nvidia["version"], DRIVER);
    assert_eq!(nvidia["modules-from"], "built");
    let checks = nvidia["checks"].as_array().unwrap();
    assert!(checks.len() > 10, "{checks:#?}");
    for check in checks {
        assert_eq!(check["expected"], check["found"], "{check}");
    }
    for coupled in [
        "firmware-nvidia-gsp version",
        "libcuda1 version",
        "nvidia-smi version",
    ] {
        assert!(checks.iter().any(|c| c["check"] == coupled), "{coupled}");
    }
    // Debian versions nvidia-persistenced on its own.
    assert!(nvidia["independent"]["nvidia-persistenced"].is_string());
    let measurements = &payload["measurements"];
    assert_eq!(measurements["uki"], "node.efi");
    assert_eq!(measurements["agent-pcr"], 15);

    // The auditor's view: ironrack verify and minisign; tampering caught.
    let mut verify = vec!["verify", "out-a/gpu-node/1", "--trust", "trust.json"];
    verify.extend(PINS);
    let report = ironrack(&site, &verify).ok();
    assert!(report.stdout.contains("nvidia chain"), "{}", report.stdout);
    let minisign = Command::new("minisign")
        .args(["-Vm"])
        .arg(dir.join("manifest.json"))
        .arg("-p")
        .arg(site.join("keys/ci.pub"))
        .output()
        .unwrap();
    assert!(minisign.status.success(), "{minisign:?}");
    // A rebuild needs the agent the image was built with: this test's
    // unstripped ironrack is not it, and is refused before any work.
    let mut rebuild = verify.clone();
    rebuild.extend(["--rebuild", "images/gpu-node.toml"]);
    let refused = ironrack(&site, &rebuild);
    assert_ne!(refused.code, Some(0));
    assert!(
        refused
            .stderr
            .contains("is not the one baked into the image"),
        "{}",
        refused.stderr
    );
    let tampered = site.join("tampered");
    let _ = std::fs::remove_dir_all(&tampered);
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&dir)
            .arg(&tampered)
            .status()
            .unwrap()
            .success()
    );
    flip_byte(&tampered.join("initrd.img"), 4096);
    let mut verify = vec!["verify", "tampered", "--trust", "trust.json"];
    verify.extend(PINS);
    let caught = ironrack(&site, &verify).code(3);
    assert!(caught.all().contains("initrd.img"), "{}", caught.all());
    modules_are_reused_when_only_the_agent_changes(&site, &first);
    // Done with the copies: a CI machine's disk is not ours to fill.
    for copy in ["tampered", "out-b", "out-c"] {
        let _ = std::fs::remove_dir_all(site.join(copy));
    }

    nvidia_ko_loads(&site, &dir);
    boots_to_the_agent(&site, &dir);
    precompiled_modules_are_installed_not_built(&site, &dir, &first);
}

/// A build with another agent, sharing the first build's cache: the image
/// is new (its initramfs carries the agent), the NVIDIA modules come from
/// the module cache without a compile, byte for byte the first build's.
fn modules_are_reused_when_only_the_agent_changes(site: &Path, first: &Value) {
    let agent = site.join("agent-ironrack-2");
    let mut bytes = std::fs::read(site.join("agent-ironrack")).unwrap();
    bytes.extend_from_slice(b"another agent build");
    std::fs::write(&agent, bytes).unwrap();
    std::fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let _ = std::fs::remove_dir_all(site.join("out-c"));
    let mut args = vec!["build", "images/gpu-node.toml", "--trust", "trust.json"];
    args.extend(PINS);
    args.extend([
        "--key",
        "keys/ci.key",
        "--out",
        "out-c",
        "--cache-dir",
        "out-a/.cache",
    ]);
    args.extend(["--agent", agent.to_str().unwrap(), "--json"]);
    let run = ironrack(site, &args).ok();
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["from-cache"], false, "the image itself is rebuilt");
    let stage = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "nvidia modules")
        .unwrap_or_else(|| panic!("no nvidia modules stage: {}", report["stages"]));
    assert_eq!(stage["cached"], true, "{stage}");
    assert_eq!(report["boot"]["modules"], first["boot"]["modules"]);
    let initrd = |r: &Value| {
        artifacts(r)
            .into_iter()
            .find(|(f, _)| f == "initrd.img")
            .unwrap()
            .1
    };
    assert_ne!(
        initrd(&report),
        initrd(first),
        "the new agent is in the initramfs"
    );
    let _ = std::fs::remove_file(&agent);
}

/// The built modules as a site package in a new snapshot (the site's
/// snapshot plus that package), and the spec naming it as precompiled.
fn precompiled_modules_are_installed_not_built(site: &Path, dir: &Path, built: &Value) {
    const PACKAGE: &str = "nvidia-open-kernel-modules-6.1.0-50-cloud-amd64";
    let ko_dir = site.join("precompiled-ko");
    let _ = std::fs::remove_dir_all(&ko_dir);
    let subtree = format!("usr/lib/modules/{RELEASE}/updates/dkms");
    let unsquash = Command::new("unsquashfs")
        .args(["-no-progress", "-quiet", "-d"])
        .arg(&ko_dir)
        .arg(dir.join("rootfs.squashfs"))
        .arg(&subtree)
        .output()
        .unwrap();
    assert!(unsquash.status.success(), "{unsquash:?}");
    let mut deb =
        ironrack_builder::fixtures::DebBuilder::new(PACKAGE, "535.261.03-1+site1", "amd64")
            .field("Priority", "optional")
            .field("Section", "non-free/kernel");
    let mut names = Vec::new();
    // In name order: the same modules make the same .deb, so a re-run
    // imports what an earlier run left in the site's pool.
    let mut paths: Vec<PathBuf> = std::fs::read_dir(ko_dir.join(&subtree))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for path in paths {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        deb = deb.file(
            &format!("usr/lib/modules/{RELEASE}/updates/nvidia/{name}"),
            &std::fs::read(&path).unwrap(),
            0o644,
        );
        names.push(name);
    }
    assert!(names.contains(&"nvidia.ko".to_owned()), "{names:?}");
    let deb = deb.write_to(site).unwrap();
    let refs = site.join("mirror/refs");
    std::fs::copy(
        refs.join("bookworm-site"),
        refs.join("bookworm-precompiled"),
    )
    .unwrap();
    ironrack(
        site,
        &[
            "mirror",
            "import",
            "mirror",
            deb.to_str().unwrap(),
            "--key",
            "keys/mirror.key",
            "--ref",
            "bookworm-precompiled",
        ],
    )
    .ok();
    let spec = std::fs::read_to_string(repo().join("images/gpu-node.toml"))
        .unwrap()
        .replace(
            "snapshot = \"bookworm-site\"",
            "snapshot = \"bookworm-precompiled\"",
        )
        .replace(
            "flavour = \"open\"",
            &format!("flavour = \"open\"\nprecompiled = \"{PACKAGE}\""),
        );
    std::fs::create_dir_all(site.join("precompiled")).unwrap();
    std::fs::write(site.join("precompiled/gpu-node.toml"), spec).unwrap();
    let mut lock = vec!["lock", "precompiled/gpu-node.toml", "--trust", "trust.json"];
    lock.extend(PINS);
    ironrack(site, &lock).ok();
    let _ = std::fs::remove_dir_all(site.join("out-pre"));
    let mut build = vec![
        "build",
        "precompiled/gpu-node.toml",
        "--trust",
        "trust.json",
    ];
    build.extend(PINS);
    let agent = site.join("agent-ironrack");
    build.extend([
        "--out",
        "out-pre",
        "--json",
        "--agent",
        agent.to_str().unwrap(),
    ]);
    let report: Value = serde_json::from_str(&ironrack(site, &build).ok().stdout).unwrap();
    let nvidia = &report["boot"]["nvidia"];
    assert_eq!(
        nvidia["modules-from"],
        format!("precompiled {PACKAGE} 535.261.03-1+site1")
    );
    let stages: Vec<&str> = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert!(!stages.contains(&"nvidia modules"), "{stages:?}");
    for check in nvidia["checks"].as_array().unwrap() {
        assert_eq!(check["expected"], check["found"], "{check}");
    }
    // The same bytes as the build that made them, now from the package.
    let digest = |report: &Value, dir: &str, name: &str| {
        report["boot"]["modules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| {
                m["path"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("/{dir}/{name}"))
            })
            .unwrap_or_else(|| panic!("{dir}/{name}"))["sha256"]
            .clone()
    };
    for name in &names {
        assert_eq!(
            digest(&report, "nvidia", name),
            digest(built, "dkms", name),
            "{name}"
        );
    }
    let _ = std::fs::remove_dir_all(site.join("out-pre"));
}

/// The lock of the unpinned spec has firmware-nvidia-gsp 535.309.01: the
/// build stops at once, naming both releases and the pin.
fn unpinned_firmware_is_refused_before_the_build(site: &Path) {
    let _ = std::fs::remove_dir_all(site.join("out-unpinned"));
    let started = std::time::Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_ironrack"))
        .current_dir(site)
        .args(["build", "unpinned/gpu-node.toml", "--trust", "trust.json"])
        .args(PINS)
        .args(["--out", "out-unpinned"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    for part in [
        DRIVER,
        "535.309.01",
        "firmware-nvidia-gsp",
        "[packages] pin",
    ] {
        assert!(stderr.contains(part), "{part:?} in {stderr}");
    }
    eprintln!(
        "unpinned firmware refused after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        !site.join("out-unpinned/gpu-node/1").exists(),
        "nothing published"
    );
}

/// The agent's console lines: started with the image's kernel, its
/// modules loaded, stage 2 refusing to go on without a server or image
/// on the command line (these boots pass none), powered off by itself.
fn assert_agent_ran(log: &str) {
    let starting = format!(
        "ironrack agent {}: starting (kernel {RELEASE})",
        env!("CARGO_PKG_VERSION")
    );
    assert!(log.contains(&starting), "{starting:?} in:\n{log}");
    assert!(log.contains("virtio_net"), "{log}");
    assert!(log.contains("ironrack agent: ERROR no "), "{log}");
    assert!(log.contains("; powering off"), "{log}");
    assert!(log.contains("reboot: Power down"), "{log}");
    for bad in ["Kernel panic", "Attempted to kill init", "FAILED"] {
        assert!(!log.contains(bad), "{bad:?} in:\n{log}");
    }
}

/// node.efi as \EFI\BOOT\BOOTX64.EFI on a FAT disk under OVMF (no
/// -kernel), and vmlinuz + initrd.img under SeaBIOS.
fn boots_to_the_agent(site: &Path, dir: &Path) {
    if !qemu::available() {
        eprintln!("\n*** SKIP agent boots: qemu or OVMF missing (scripts/deps.sh) ***\n");
        return;
    }
    let esp = site.join("esp");
    let _ = std::fs::remove_dir_all(&esp);
    std::fs::create_dir_all(esp.join("EFI/BOOT")).unwrap();
    std::fs::copy(dir.join("node.efi"), esp.join("EFI/BOOT/BOOTX64.EFI")).unwrap();
    let vars = site.join("OVMF_VARS_4M.fd");
    std::fs::copy(qemu::OVMF_VARS, &vars).unwrap();
    let args: Vec<String> = [
        "-machine".to_owned(),
        "q35".to_owned(),
        "-drive".to_owned(),
        format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={}",
            qemu::OVMF_CODE
        ),
        "-drive".to_owned(),
        format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
        "-drive".to_owned(),
        format!("format=raw,file=fat:rw:{}", esp.display()),
        "-nic".to_owned(),
        "none".to_owned(),
    ]
    .to_vec();
    let log =
        qemu::run_to_poweroff(&args, &site.join("uki-boot.log"), Duration::from_secs(300)).unwrap();
    assert_agent_ran(&log);

    let args: Vec<String> = [
        "-kernel".to_owned(),
        dir.join("vmlinuz").display().to_string(),
        "-initrd".to_owned(),
        dir.join("initrd.img").display().to_string(),
        "-append".to_owned(),
        "console=ttyS0".to_owned(),
        "-nic".to_owned(),
        "none".to_owned(),
    ]
    .to_vec();
    let log = qemu::run_to_poweroff(&args, &site.join("bios-boot.log"), Duration::from_secs(300))
        .unwrap();
    assert_agent_ran(&log);
}

/// The image's kernel and its nvidia.ko, under qemu: an initramfs made
/// from the published rootfs with nvidia's module closure and firmware,
/// whose init runs modprobe and prints the kernel log.
fn nvidia_ko_loads(site: &Path, dir: &Path) {
    if !qemu::available() {
        eprintln!("\n*** SKIP nvidia.ko load: qemu or OVMF missing (scripts/deps.sh) ***\n");
        return;
    }
    let root = site.join("rootfs");
    let _ = std::fs::remove_dir_all(&root);
    let unsquash = Command::new("unsquashfs")
        .args(["-no-progress", "-quiet", "-d"])
        .arg(&root)
        .arg(dir.join("rootfs.squashfs"))
        .output()
        .unwrap();
    assert!(unsquash.status.success(), "{unsquash:?}");
    let script = "#!/bin/sh\n\
        export PATH=/bin\n\
        mount -t proc proc /proc\n\
        mount -t sysfs sys /sys\n\
        mount -t devtmpfs dev /dev\n\
        modprobe nvidia\n\
        echo \"IRONRACK-MODPROBE $?\"\n\
        dmesg | grep -E 'NVRM|nvidia|Unknown symbol'\n\
        echo IRONRACK-DONE\n\
        poweroff -f\n";
    let mut spec = InitramfsSpec::new(RELEASE, InitProgram::Script(script.into()), 0);
    spec.drivers = vec!["nvidia".into()];
    spec.missing_drivers = MissingDrivers::Error;
    let initramfs = assemble(&ImageRoot::new(&root), &spec).unwrap();
    assert!(
        initramfs
            .report
            .firmware
            .iter()
            .any(|f| f.starts_with(&format!("nvidia/{DRIVER}/gsp_"))),
        "{:?}",
        initramfs.report.firmware
    );
    let initrd = site.join("nvidia-initrd.img");
    std::fs::write(
        &initrd,
        initramfs
            .to_bytes(ironrack_builder::boot::cpio::DEFAULT_COMPRESSION)
            .unwrap(),
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&root);
    let log = site.join("nvidia-boot.log");
    let args: Vec<String> = [
        "-kernel",
        &dir.join("vmlinuz").display().to_string(),
        "-initrd",
        &initrd.display().to_string(),
        "-append",
        "console=ttyS0 panic=-1",
        "-nic",
        "none",
    ]
    .map(str::to_owned)
    .to_vec();
    let text = qemu::run_to_poweroff(&args, &log, Duration::from_secs(300)).unwrap();
    assert!(text.contains("IRONRACK-DONE"), "{text}");
    assert!(text.contains("NVRM: No NVIDIA GPU found"), "{text}");
    assert!(!text.contains("Unknown symbol"), "{text}");
    assert!(!text.contains("disagrees about version"), "{text}");
}
