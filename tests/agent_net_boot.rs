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
//! (`node-revoked`), it says so, reports the failure to the server and
//! powers off, and the image's init never runs. The node's timeline shows
//! pending, revoked, refused, agent-failed.
//!
//! Needs root (namespaces), qemu-system-x86, swtpm, squashfs-tools,
//! busybox-static, cpio, binutils (scripts/deps.sh). One boot.

#![allow(clippy::print_stderr)]

mod agent_image;
mod serve_support;

use std::path::Path;
use std::time::{Duration, Instant};

use ironrack_builder::boot::initramfs::TRUST_PATH;
use ironrack_pxe::agent::boot::SECRET_PATH;
use ironrack_pxe::testkit;
use sha2::{Digest as _, Sha256};

use agent_image::{MARKER, debs};
use debs::RELEASE;
use serve_support::*;

const NODE_MAC: &str = "52:54:00:12:00:41";
const IMAGE: &str = "test-node";
/// Bounds the wait for the boot under TCG; nothing is timed.
const BOOT_PATIENCE: Duration = Duration::from_secs(300);

fn have_tools(test: &str) -> bool {
    if skip(test) {
        return false;
    }
    require_tools(
        test,
        &["qemu-system-x86_64", "swtpm", "mksquashfs", "strip"],
    );
    true
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
    let bootif = format!("01-{}", NODE_MAC.replace(':', "-"));
    let append = format!(
        "console=ttyS0 panic=-1 ironrack.server={BASE_URL} ironrack.image={IMAGE}@1 BOOTIF={bootif}"
    );
    let mut args: Vec<String> = vec![
        "-kernel".into(),
        kernel.display().to_string(),
        "-initrd".into(),
        initrd.display().to_string(),
        "-append".into(),
        append,
        "-netdev".into(),
        "tap,id=n0,ifname=tap0,script=no,downscript=no".into(),
        "-device".into(),
        format!("virtio-net-pci,netdev=n0,mac={NODE_MAC}"),
    ];
    args.extend(testkit::swtpm::qemu_args(tpm_sock));
    let started = Instant::now();
    let result = testkit::qemu::run_watched(
        Some(&lab.ns),
        &args,
        &lab.path("console.log"),
        BOOT_PATIENCE,
        during,
    );
    let text = result.unwrap_or_else(|e| panic!("{e}"));
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu-agent-net.log");
    let _ = std::fs::write(keep, &text);
    eprintln!("boot took {:.1} s", started.elapsed().as_secs_f64());
    text
}

#[test]
fn the_agent_fetches_verifies_measures_enrolls_and_obeys_a_revocation() {
    let test = "the_agent_fetches_verifies_measures_enrolls_and_obeys_a_revocation";
    if !have_tools(test) {
        return;
    }
    let mut lab = Lab::new();
    let squashfs = agent_image::rootfs(lab.dir.path());
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
    let initrd = lab.path("initrd.img");
    let trust = lab.world.trust_path.clone();
    std::fs::write(
        &initrd,
        agent_image::initramfs(lab.dir.path(), &trust, IMAGE, &image_root),
    )
    .unwrap();
    let kernel = image_root.join(format!("boot/vmlinuz-{RELEASE}"));
    let sock = lab.path("swtpm.sock");
    let _swtpm =
        testkit::swtpm::for_qemu(&lab.path("tpm-state"), &sock, &lab.path("swtpm.log")).unwrap();

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
    assert!(
        has(&format!("ironrack agent: failure reported to {BASE_URL}")),
        "{log}"
    );
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
        at("pending") < at("revoked")
            && at("revoked") < at("refused")
            && at("refused") < at("agent-failed"),
        "{kinds:?}"
    );
    // The node's own account of why it stopped, as it reported it.
    let failed = &shown["events"][at("agent-failed")];
    assert!(
        failed.to_string().contains("attestation: ") && failed.to_string().contains("node-revoked"),
        "{failed}"
    );
}

const ATTESTED_MAC: &str = "52:54:00:12:00:51";
const TOKEN: &str = "join-token-5f0c2a9e";

/// The whole chain, attested: OVMF with a manufactured TPM (EK certificate
/// from the site's CA) PXE-boots from `ironrack serve`, iPXE chains the
/// image's UKI (built by the builder's `build_uki` around Debian's
/// systemd-stub, measured by `measure_uki` into the signed manifest), the
/// agent verifies and measures the image, enrolls (trusted at once: the
/// EK certificate chains to `[attest] ek-roots`), is attested against the
/// manifest and what the server served (PCR 4: the served iPXE, the UKI,
/// its kernel and nothing else; PCR 10: the kernel's IMA list; PCR 11 the
/// UKI's prediction; PCR 12 the command line the script passed; PCR 15 the
/// agent's log with the GPU inventory), receives its secret sealed to its TPM, writes it, and
/// switches to the image's init, which prints the secret it found.
#[test]
fn an_attested_node_gets_its_secret_and_runs_the_image() {
    use std::os::unix::fs::PermissionsExt as _;

    let test = "an_attested_node_gets_its_secret_and_runs_the_image";
    if !have_tools(test) {
        return;
    }
    assert!(
        testkit::qemu::available(),
        "{test}: qemu or OVMF missing; run scripts/deps.sh"
    );
    let mut lab = Lab::new();
    agent_image::build(
        &lab.world,
        &cache(),
        lab.dir.path(),
        &lab.path("out"),
        IMAGE,
        1,
    );

    // The TPM as its vendor ships it, and the vendor's CA in the site.
    let tpm = lab.path("tpm");
    testkit::swtpm::manufacture(&tpm).unwrap();
    let secrets = lab.path("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let secret_file = secrets.join(ATTESTED_MAC);
    std::fs::write(&secret_file, TOKEN).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let site = lab.write_site(&format!(
        "[[rack.node]]\nmac = \"{ATTESTED_MAC}\"\nhostname = \"att-n1\"\nip = \"198.18.0.51\"\nimage = \"{IMAGE}\"\n"
    ));
    let mut text = std::fs::read_to_string(&site).unwrap();
    text.push_str(&format!(
        "\n[attest]\nek-roots = [\"{}\"]\nek-intermediates = [\"{}\"]\nsecrets = \"secrets\"\n",
        testkit::swtpm::ca_root(&tpm).display(),
        testkit::swtpm::ca_intermediate(&tpm).display()
    ));
    std::fs::write(&site, text).unwrap();
    let site = site.to_str().unwrap().to_owned();
    lab.serve();

    let sock = lab.path("swtpm.sock");
    let _swtpm =
        testkit::swtpm::for_qemu(&testkit::swtpm::state(&tpm), &sock, &lab.path("swtpm.log"))
            .unwrap();
    let mut args = testkit::qemu::ovmf_args(lab.dir.path()).unwrap();
    args.extend([
        "-netdev".into(),
        "tap,id=n0,ifname=tap0,script=no,downscript=no".into(),
        "-device".into(),
        format!("virtio-net-pci,netdev=n0,mac={ATTESTED_MAC},romfile="),
    ]);
    args.extend(testkit::swtpm::qemu_args(&sock));
    let started = Instant::now();
    let log = testkit::qemu::run_watched(
        Some(&lab.ns),
        &args,
        &lab.path("console.log"),
        BOOT_PATIENCE,
        &mut |_| {},
    );
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu-attested.log");
    let log = log.unwrap_or_else(|e| {
        let _ = std::fs::write(&keep, &e);
        panic!("{e}\nserver log:\n{}", lab.log_text())
    });
    let _ = std::fs::write(&keep, &log);
    eprintln!(
        "attested boot took {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let lines: Vec<&str> = log.lines().map(|l| l.trim_end_matches('\r')).collect();
    let has = |want: &str| lines.iter().any(|l| l.contains(want));
    let fail = || format!("serial log:\n{log}\nserver log:\n{}", lab.log_text());
    for want in [
        "ironrack agent: firmware event log: ".to_owned(),
        "ironrack agent: GPU inventory: no NVIDIA PCI functions".to_owned(),
        format!("ironrack agent: enrollment: enrolled as {ATTESTED_MAC}"),
        format!("ironrack agent: attested: {ATTESTED_MAC} runs {IMAGE}@1"),
        format!(
            "ironrack agent: node secret: {} bytes released by the server, written to /{SECRET_PATH}",
            TOKEN.len()
        ),
        format!("ironrack agent: hand-over reported to {BASE_URL}"),
        format!("{MARKER} host att-n1 image {IMAGE}@1"),
        format!("secret: {TOKEN} mode 600"),
    ] {
        assert!(has(&want), "{want:?} missing; {}", fail());
    }
    for bad in ["Kernel panic", "Attempted to kill init", "FAILED"] {
        assert!(!has(bad), "{bad:?} in the log; {}", fail());
    }

    // The server's account: enrolled, then attested with the secret.
    let out = lab.ironrack(&["nodes", "show", ATTESTED_MAC, "--site", &site, "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let events = shown["events"].as_array().unwrap();
    let find = |kind: &str| {
        events
            .iter()
            .position(|e| e["kind"] == kind)
            .unwrap_or_else(|| panic!("{kind} in {events:#?}"))
    };
    assert!(
        find("enrolled") < find("attested") && find("attested") < find("running"),
        "{events:#?}"
    );
    let attested = &events[find("attested")];
    assert!(
        attested.to_string().contains("secret released"),
        "{attested}"
    );
}
