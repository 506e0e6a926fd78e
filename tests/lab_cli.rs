//! `ironrack lab` end to end, as root: `lab up` boots a UEFI node (OVMF +
//! swtpm: iPXE → the UKI) and a BIOS node (SeaBIOS + swtpm, the NIC's iPXE
//! → undionly path → kernel + initrd) from a signed agent image through
//! `ironrack serve` in its own namespace. Both agents fetch and verify the
//! image, enroll (their TPMs come from the lab's vendor CA), are attested
//! (the UEFI node on the whole UKI chain, the BIOS node on what SeaBIOS can
//! measure) and hand over to the image, whose init names its host (from
//! DHCP) and image. `lab up` follows them to `running` and prints the
//! table; `lab status`, `lab logs` show them; `lab down` leaves no process
//! and no namespace.
//!
//! The image: tests/agent_image (the Debian cloud kernel, the builder's
//! initramfs with this `ironrack` as the agent, a UKI around Debian's
//! systemd-stub), signed by a throwaway trust root.

#![allow(clippy::print_stderr)]

mod agent_image;
mod serve_support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ironrack_pxe::lab::LabState;
use ironrack_pxe::testkit::SigningWorld;
use serve_support::{cache, ipxe_deb, skip};

fn ironrack(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ironrack"))
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn lab_up_boots_mixed_firmware_and_down_cleans_up() {
    if skip("lab_up_boots_mixed_firmware_and_down_cleans_up") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let world = SigningWorld::new(d).unwrap();
    let image = agent_image::build(&world, &cache(), d, &d.join("out"), "lab-node", 1);
    let lab = d.join("lab");
    let lab_s = lab.display().to_string();
    let ipxe = ipxe_deb();
    let up = ironrack(&[
        "lab",
        "up",
        "--image",
        &image.display().to_string(),
        "--trust",
        &world.trust_path.display().to_string(),
        "--ipxe-deb",
        &ipxe.display().to_string(),
        "--nodes",
        "2",
        "--firmware",
        "mixed",
        "--memory",
        "512",
        "--until",
        "running",
        "--timeout",
        "600",
        "--dir",
        &lab_s,
    ]);
    let state = LabState::load(&lab).unwrap();
    let report = text(&up);
    eprintln!("lab up said:\n{report}");
    let result = std::panic::catch_unwind(|| check_up(&up, &report, &lab, &lab_s));
    // Down in every case, then judge.
    let down = ironrack(&["lab", "down", "--dir", &lab_s]);
    assert!(down.status.success(), "{}", text(&down));
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    let state = state.expect("lab up wrote lab.json");
    for p in state.processes() {
        assert!(!p.alive(), "{} (pid {}) survived lab down", p.what, p.pid);
    }
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&netns.stdout).contains(&state.ns),
        "namespace {} left behind",
        state.ns
    );
    assert!(LabState::load(&lab).unwrap().is_none());
    // A second lab up while none is up would work; status now says so.
    let status = ironrack(&["lab", "status", "--dir", &lab_s]);
    assert!(!status.status.success());
    assert!(text(&status).contains("no lab is up"), "{}", text(&status));
}

fn check_up(up: &Output, report: &str, lab: &Path, lab_s: &str) {
    assert!(up.status.success(), "lab up: {report}");
    for (node, fw, chain) in [
        ("node-1", "uefi", "attested (uki chain)"),
        ("node-2", "bios", "attested (bios chain)"),
    ] {
        let line = report
            .lines()
            .find(|l| l.starts_with(node))
            .unwrap_or_else(|| panic!("no {node} row: {report}"));
        assert!(line.contains(fw), "{line}");
        assert!(line.contains("lab-node@1"), "{line}");
        assert!(line.contains(" running "), "{line}");
        assert!(line.contains(chain), "{line}");
    }
    // Every process is listed; the server runs. (A test node's init powers
    // off after its marker, qemu -no-reboot exits: nodes may show EXITED.)
    let status = text(&ironrack(&["lab", "status", "--dir", lab_s]));
    for what in [
        "ironrack serve",
        "qemu node-1",
        "swtpm node-1",
        "qemu node-2",
        "swtpm node-2",
    ] {
        assert!(status.contains(what), "{what} not listed: {status}");
    }
    assert!(
        status
            .lines()
            .any(|l| l.contains("ironrack serve") && l.contains("running")),
        "{status}"
    );
    // Both images' inits ran, named by the agent: the host name the
    // server's DHCP gave, the image it verified.
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut consoles = Vec::new();
    for node in ["node-1", "node-2"] {
        let marker = format!("{} host {node} image lab-node@1", agent_image::MARKER);
        loop {
            let logs = text(&ironrack(&["lab", "logs", node, "--dir", lab_s]));
            if logs.contains(&marker) {
                break;
            }
            if Instant::now() > deadline {
                consoles.push(format!("{node}: {logs}"));
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    assert!(consoles.is_empty(), "init not reached: {consoles:?}");
    // The site file it generated uses lab addresses only.
    let site = std::fs::read_to_string(lab.join("site.toml")).unwrap();
    assert!(site.contains("198.18.0.1/24"));
}
