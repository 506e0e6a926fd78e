//! `ironrack lab` end to end, as root: `lab up` boots a UEFI node (OVMF +
//! swtpm) and a BIOS node (SeaBIOS + iPXE ROM) from a signed test image
//! through `ironrack serve` in its own namespace, follows them through the
//! server's timeline to `booting`, prints the table; `lab status`, `lab
//! logs` show them; `lab down` leaves no process and no namespace.
//!
//! The image is the serve tests' (the Debian cloud kernel, a busybox
//! initramfs whose init prints a marker, a UKI around Debian's
//! systemd-stub), signed by a throwaway trust root.

mod serve_support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ironrack_pxe::lab::LabState;
use ironrack_pxe::testkit::{self, SigningWorld};
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
    let kernel = testkit::kernel(&cache()).unwrap();
    let initrd = testkit::initramfs(d).unwrap();
    let stub = testkit::stub(&cache()).unwrap();
    let uki = testkit::uki(&stub, &kernel, &initrd, "console=ttyS0", d).unwrap();
    let image = world
        .image(
            &d.join("out"),
            "lab-node",
            1,
            "console=ttyS0 panic=-1",
            &[
                ("vmlinuz", &kernel),
                ("initrd.img", &initrd),
                ("node.efi", &uki),
            ],
        )
        .unwrap();
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
        "booting",
        "--timeout",
        "400",
        "--dir",
        &lab_s,
    ]);
    let state = LabState::load(&lab).unwrap();
    let report = text(&up);
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
    for (node, fw) in [("node-1", "uefi"), ("node-2", "bios")] {
        let line = report
            .lines()
            .find(|l| l.starts_with(node))
            .unwrap_or_else(|| panic!("no {node} row: {report}"));
        assert!(line.contains(fw), "{line}");
        assert!(line.contains("lab-node@1"), "{line}");
        assert!(line.contains("booting"), "{line}");
    }
    // Every process is listed; the server runs. (A test node's init ends
    // after its marker, its kernel panics, qemu -no-reboot exits: nodes
    // may show EXITED here.)
    let status = text(&ironrack(&["lab", "status", "--dir", lab_s]));
    for what in [
        "ironrack serve",
        "qemu node-1",
        "swtpm node-1",
        "qemu node-2",
    ] {
        assert!(status.contains(what), "{what} not listed: {status}");
    }
    assert!(
        status
            .lines()
            .any(|l| l.contains("ironrack serve") && l.contains("running")),
        "{status}"
    );
    // Both kernels reach the test init (the marker on their consoles).
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut consoles = Vec::new();
    for node in ["node-1", "node-2"] {
        loop {
            let logs = text(&ironrack(&["lab", "logs", node, "--dir", lab_s]));
            if logs.contains(testkit::INIT_MARKER) {
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
