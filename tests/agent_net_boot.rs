//! Stage 2 of the real agent under qemu (TCG), against a real
//! `ironrack serve` in a network namespace this test makes (bridge
//! 198.18.0.1/24, tap0; addresses from 198.18.0.0/15 only):
//!
//! cloud kernel + the initramfs the builder assembles (the real
//! `ironrack` as /init, busybox udhcpc with the builder's script, the
//! test's trust root) with a virtio NIC on tap0 and a swtpm TPM →
//! the agent loads its modules, picks the NIC `BOOTIF=` names, gets a
//! lease from ironrack serve's DHCP, fetches and verifies the signed
//! manifest of a real image (a squashfs made by mksquashfs whose init
//! prints a marker), streams and hashes the rootfs, extends PCR 15, and
//! enrolls. Its TPM (a fresh swtpm) has no EK certificate, so the server
//! keeps it pending for an operator; the test, as the operator, runs
//! `ironrack nodes revoke` instead: the agent's next attempt is refused
//! (`node-revoked`), it says so and powers off, and the image's init
//! never runs. The node's timeline shows pending, revoked, refused.
//!
//! Needs root (namespaces), qemu-system-x86, swtpm, squashfs-tools,
//! busybox-static, cpio, binutils (scripts/deps.sh). One boot.

#![allow(clippy::print_stderr)]

#[allow(dead_code)]
#[path = "../builder/tests/boot/debs.rs"]
mod debs;
mod serve_support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ironrack_builder::boot::cpio::DEFAULT_COMPRESSION;
use ironrack_builder::boot::elf::ImageRoot;
use ironrack_builder::boot::initramfs::{
    AgentConfig, InitProgram, InitramfsSpec, TRUST_PATH, UDHCPC_SCRIPT_PATH, assemble,
};
use ironrack_pxe::testkit::qemu::Reaped;
use sha2::{Digest as _, Sha256};

use debs::{RELEASE, run};
use serve_support::*;

const NODE_MAC: &str = "52:54:00:12:00:41";
const IMAGE: &str = "test-node";
const MARKER: &str = "IRONRACK-IMAGE-INIT-RAN";
/// Bounds the wait for the boot under TCG; nothing is timed.
const BOOT_PATIENCE: Duration = Duration::from_secs(300);

fn have_tools(test: &str) -> bool {
    if skip(test) {
        return false;
    }
    for tool in ["qemu-system-x86_64", "swtpm", "mksquashfs", "strip"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(found, "{test}: {tool} is missing; run scripts/deps.sh");
    }
    true
}

/// `ironrack` without its debug info (as a release build would be).
fn agent(dir: &Path) -> PathBuf {
    let out = dir.join("ironrack");
    run(Command::new("strip")
        .args(["--strip-debug", "-o"])
        .arg(&out)
        .arg(env!("CARGO_BIN_EXE_ironrack")));
    out
}

/// A squashfs whose /sbin/init prints MARKER and powers off.
fn rootfs(dir: &Path) -> PathBuf {
    let tree = dir.join("image-tree");
    for sub in ["bin", "sbin", "etc", "proc", "sys", "dev", "run"] {
        std::fs::create_dir_all(tree.join(sub)).unwrap();
    }
    std::fs::copy("/bin/busybox", tree.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", tree.join("bin/sh")).unwrap();
    let init = tree.join("sbin/init");
    std::fs::write(
        &init,
        format!("#!/bin/sh\necho {MARKER}\n/bin/busybox poweroff -f\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = dir.join("rootfs.squashfs");
    run(Command::new("mksquashfs").arg(&tree).arg(&out).args([
        "-noappend",
        "-quiet",
        "-no-progress",
        "-all-root",
    ]));
    out
}

/// A swtpm for the guest, on a fresh state directory.
fn swtpm(dir: &Path) -> (Reaped, PathBuf) {
    let state = dir.join("tpm-state");
    std::fs::create_dir_all(&state).unwrap();
    let sock = dir.join("swtpm.sock");
    let child = Command::new("swtpm")
        .args(["socket", "--tpm2", "--tpmstate"])
        .arg(format!("dir={}", state.display()))
        .arg("--ctrl")
        .arg(format!("type=unixio,path={}", sock.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.join("swtpm.log")).unwrap())
        .spawn()
        .expect("starting swtpm");
    let deadline = Instant::now() + PATIENCE;
    while !sock.exists() {
        assert!(Instant::now() < deadline, "swtpm made no socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Reaped(child), sock)
}

/// Boots the node and waits for it to power off; `during` sees the
/// console so far while it runs (the operator's side of the test).
fn boot(
    lab: &Lab,
    kernel: &Path,
    initrd: &Path,
    tpm_sock: &Path,
    during: &mut dyn FnMut(&str),
) -> String {
    let log = lab.path("console.log");
    let bootif = format!("01-{}", NODE_MAC.replace(':', "-"));
    let append = format!(
        "console=ttyS0 panic=-1 ironrack.server={BASE_URL} ironrack.image={IMAGE}@1 BOOTIF={bootif}"
    );
    let mut qemu = Reaped(
        Command::new("ip")
            .args(["netns", "exec", &lab.ns, "qemu-system-x86_64"])
            .args(["-accel", "tcg", "-m", "1024", "-display", "none"])
            .args(["-monitor", "none", "-no-reboot", "-serial"])
            .arg(format!("file:{}", log.display()))
            .arg("-kernel")
            .arg(kernel)
            .arg("-initrd")
            .arg(initrd)
            .args(["-append", &append])
            .args(["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"])
            .args([
                "-device",
                &format!("virtio-net-pci,netdev=n0,mac={NODE_MAC}"),
            ])
            .arg("-chardev")
            .arg(format!("socket,id=chrtpm,path={}", tpm_sock.display()))
            .args(["-tpmdev", "emulator,id=tpm0,chardev=chrtpm"])
            .args(["-device", "tpm-tis,tpmdev=tpm0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(lab.path("qemu.log")).unwrap())
            .spawn()
            .expect("starting qemu"),
    );
    let started = Instant::now();
    loop {
        if let Some(status) = qemu.0.try_wait().unwrap() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu-agent-net.log");
            let _ = std::fs::write(keep, &text);
            assert!(status.success(), "qemu exited with {status}:\n{text}");
            eprintln!("boot took {:.1} s", started.elapsed().as_secs_f64());
            return text;
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            started.elapsed() < BOOT_PATIENCE,
            "qemu still running after {BOOT_PATIENCE:?}:\n{text}"
        );
        during(&text);
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_agent_fetches_verifies_measures_enrolls_and_obeys_a_revocation() {
    let test = "the_agent_fetches_verifies_measures_enrolls_and_obeys_a_revocation";
    if !have_tools(test) {
        return;
    }
    let mut lab = Lab::new();
    let squashfs = rootfs(lab.dir.path());
    let image_dir = lab
        .world
        .image(
            &lab.path("out"),
            IMAGE,
            1,
            "console=ttyS0",
            &[("rootfs.squashfs", squashfs.as_path())],
        )
        .unwrap();
    let site = lab.write_site("");
    let site = site.to_str().unwrap().to_owned();
    lab.serve();

    let image_root = debs::kernel_libc_root();
    let mut spec = InitramfsSpec::new(
        RELEASE,
        InitProgram::Agent(agent(lab.dir.path())),
        1_700_000_000,
    );
    spec.agent = Some(AgentConfig {
        version: 1,
        image: IMAGE.into(),
        channel: "stable".into(),
        trust: format!("/{TRUST_PATH}"),
        server: None,
        modules: Vec::new(),
        kernel_release: String::new(),
    });
    spec.trust = Some(std::fs::read(&lab.world.trust_path).unwrap());
    let initramfs = assemble(&ImageRoot::new(&image_root), &spec).unwrap();
    assert!(
        initramfs.archive.get(UDHCPC_SCRIPT_PATH).is_some(),
        "the udhcpc script is in the initramfs"
    );
    let initrd = lab.path("initrd.img");
    std::fs::write(&initrd, initramfs.to_bytes(DEFAULT_COMPRESSION).unwrap()).unwrap();
    let kernel = image_root.join(format!("boot/vmlinuz-{RELEASE}"));
    let (_swtpm, sock) = swtpm(lab.dir.path());

    let mut revoked = false;
    let log = boot(&lab, &kernel, &initrd, &sock, &mut |console| {
        if !revoked
            && console.contains("ironrack agent: attestation failed (attempt 1/")
            && console.contains("holds the node pending")
        {
            let out = lab.ironrack(&["nodes", "revoke", NODE_MAC, "--site", &site]);
            assert!(
                out.status.success(),
                "nodes revoke: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            revoked = true;
        }
    });
    assert!(revoked, "the node never showed as pending:\n{log}");
    let lines: Vec<&str> = log.lines().map(|l| l.trim_end_matches('\r')).collect();
    let find = |prefix: &str| lines.iter().find(|l| l.starts_with(prefix)).copied();
    let has = |line: &str| lines.contains(&line);

    let dhcp = find("ironrack agent: DHCP on ").unwrap_or_else(|| panic!("{log}"));
    assert!(dhcp.ends_with(&format!("({NODE_MAC}, BOOTIF)")), "{dhcp}");
    let lease = find("ironrack agent: DHCP: lease 198.18.0.").unwrap_or_else(|| panic!("{log}"));
    assert!(
        lease.contains("/24 on ")
            && lease.ends_with("router 198.18.0.1, from DHCP server 198.18.0.1"),
        "{lease}"
    );
    let manifest = std::fs::read(image_dir.join("manifest.json")).unwrap();
    let manifest_sha = hex::encode(Sha256::digest(&manifest));
    let rootfs = std::fs::read(&squashfs).unwrap();
    let rootfs_sha = hex::encode(Sha256::digest(&rootfs));
    for want in [
        format!(
            "ironrack agent: manifest {IMAGE}@1 verified: channel stable, signed through /{TRUST_PATH}, sha256 {manifest_sha}"
        ),
        format!(
            "ironrack agent: rootfs rootfs.squashfs fetched to /run/ironrack/rootfs.squashfs: {} bytes, sha256 {rootfs_sha} matches the manifest",
            rootfs.len()
        ),
        format!("ironrack agent: TPM /dev/tpmrm0: attesting as node {NODE_MAC}"),
        format!(
            "ironrack agent: measured into PCR 15: manifest {manifest_sha}, rootfs {rootfs_sha}"
        ),
    ] {
        assert!(has(&want), "{want:?} in the serial log:\n{log}");
    }
    let refusal = find("ironrack agent: attestation FAILED: ").unwrap_or_else(|| panic!("{log}"));
    assert!(refusal.contains("(node-revoked)"), "{refusal}");
    let last = find("ironrack agent: ERROR attestation").unwrap_or_else(|| panic!("{log}"));
    assert!(last.ends_with("; powering off"), "{last}");
    assert!(!log.contains(MARKER), "the unattested image ran:\n{log}");
    assert!(!log.contains("switching root"), "{log}");
    for bad in ["Kernel panic", "Attempted to kill init"] {
        assert!(!log.contains(bad), "{bad:?} in the serial log:\n{log}");
    }
    assert!(log.contains("reboot: Power down"), "powered off:\n{log}");
    // The server's own count: the manifest, its signature and the rootfs
    // served once each (no retry was needed); the node's timeline.
    let out = lab.in_ns(&[
        "curl",
        "-sS",
        "--max-time",
        "10",
        &format!("{BASE_URL}/metrics"),
    ]);
    let metrics = String::from_utf8_lossy(&out.stdout);
    let want = "ironrack_http_requests_total{route=\"artifact\",status=\"200\"} 3";
    assert!(metrics.lines().any(|l| l == want), "{want} in:\n{metrics}");
    assert!(
        metrics.lines().any(|l| l
            .starts_with("ironrack_http_requests_total{route=\"attest-enroll\",status=\"200\"}")),
        "{metrics}"
    );
    let out = lab.ironrack(&["nodes", "show", NODE_MAC, "--site", &site, "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    let at = |kind: &str| {
        kinds
            .iter()
            .position(|k| *k == kind)
            .unwrap_or_else(|| panic!("{kind} in {kinds:?}"))
    };
    assert!(
        at("pending") < at("revoked") && at("revoked") < at("refused"),
        "{kinds:?}"
    );
}
