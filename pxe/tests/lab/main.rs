//! The lab harness for real: a namespace with a bridge, a SeaBIOS node and
//! an OVMF node with a manufactured swtpm, both seen on the wire (their
//! firmware's DHCPDISCOVER reaches a listener on the bridge with their
//! MACs), then `down` stops every process by PID and removes the
//! namespace. Needs root (CI runs as root).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ironrack_pxe::lab::node::mac_text;
use ironrack_pxe::lab::{Firmware, LabNet, LabState, NodeConfig, NodeState};

fn skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIP {test}: needs root for network namespaces and qemu taps (CI runs as root) *** NOT TESTED ***"
    );
    true
}

/// Prints the client MAC of every DHCPDISCOVER arriving on port 67 in the
/// namespace (a plain socket: the lab's own server is not involved).
const LISTENER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.bind(("0.0.0.0", 67))
while True:
    data, _ = s.recvfrom(2048)
    if len(data) > 240 and data[0] == 1:
        print(":".join("%02x" % b for b in data[28:34]), flush=True)
"#;

fn wait_for_lines(log: &Path, want: &[String], patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if want.iter().all(|w| text.lines().any(|l| l == w)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    false
}

#[test]
fn nodes_boot_on_the_lab_bridge_and_down_removes_everything() {
    if skip("nodes_boot_on_the_lab_bridge_and_down_removes_everything") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ns = format!("irk-lab-{}", std::process::id() % 100_000);
    let net = LabNet::create(&ns, "198.18.77.1".parse().unwrap()).unwrap();
    assert!(LabNet::exists(&ns));

    let log = dir.path().join("discover.log");
    let mut listener = net.command("python3");
    listener.args(["-c", LISTENER]);
    // Detached like the lab's own processes; its output is the log.
    let listener = ironrack_pxe::lab::node::spawn(listener, &log, "listener").unwrap();

    let mut nodes = Vec::new();
    for (i, firmware) in [Firmware::Bios, Firmware::Uefi].into_iter().enumerate() {
        let name = format!("node-{i}");
        let node_dir = dir.path().join(&name);
        std::fs::create_dir_all(&node_dir).unwrap();
        let tap = format!("tap{i}");
        net.add_tap(&tap).unwrap();
        let config = NodeConfig {
            name: name.clone(),
            mac: [0x52, 0x54, 0x00, 0x77, 0x00, i as u8 + 1],
            firmware,
            memory_mib: 256,
            dir: node_dir,
            tap,
            ca: dir.path().join("tpm-ca"),
        };
        let started = config.start(&net).unwrap();
        // Every node, UEFI or BIOS, has its own manufactured TPM.
        assert!(started.swtpm.alive(), "{firmware} node's swtpm");
        assert!(
            config.dir.join("tpm/tpm2-00.permall").is_file(),
            "swtpm_setup manufactured the TPM"
        );
        assert!(
            ironrack_pxe::lab::node::ca_root(&config.ca).is_file(),
            "with the lab's own vendor CA"
        );
        nodes.push(NodeState {
            name,
            mac: mac_text(&config.mac),
            firmware,
            console: config.console(),
            qemu: started.qemu,
            swtpm: Some(started.swtpm),
        });
    }
    let state = LabState {
        ns: ns.clone(),
        server_addr: net.server,
        image: dir.path().join("image"),
        server: Some(listener),
        nodes,
    };
    state.save(dir.path()).unwrap();

    let macs: Vec<String> = state.nodes.iter().map(|n| n.mac.clone()).collect();
    let seen = wait_for_lines(&log, &macs, Duration::from_secs(240));
    let procs: Vec<_> = state.processes().into_iter().cloned().collect();
    let all_alive = procs.iter().all(|p| p.alive());

    // Down, from the state file as another process would read it.
    let loaded = LabState::load(dir.path()).unwrap().unwrap();
    loaded.down(dir.path()).unwrap();
    assert!(
        seen,
        "both firmwares' DHCPDISCOVER with {macs:?}; got: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(all_alive, "every process ran until down: {procs:?}");
    for p in &procs {
        assert!(!p.alive(), "{} (pid {}) survived down", p.what, p.pid);
    }
    assert!(!LabNet::exists(&ns), "namespace {ns} removed");
    assert!(LabState::load(dir.path()).unwrap().is_none());
    // Down twice is fine.
    loaded.down(dir.path()).unwrap();
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&ns));
}
