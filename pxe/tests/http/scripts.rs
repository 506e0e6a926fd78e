//! iPXE scripts per node and policy, recorded in the timeline; per-node
//! rollback refused unless forced.

use ironrack_pxe::store::{Approval, InventoryStore, NodeEvent};

use crate::support::*;

fn two_versions() -> Lab {
    let (dir, world) = Lab::setup();
    let out = dir.path().join("out");
    let k = Lab::file(dir.path(), "vmlinuz", b"kernel");
    let i = Lab::file(dir.path(), "initrd.img", b"initrd");
    let u = Lab::file(dir.path(), "node.efi", b"uki");
    world
        .image(
            &out,
            "gpu-node",
            1,
            "console=ttyS0",
            &[("vmlinuz", &k), ("initrd.img", &i)],
        )
        .unwrap();
    world
        .image(
            &out,
            "gpu-node",
            2,
            "console=ttyS0 quiet",
            &[("vmlinuz", &k), ("initrd.img", &i), ("node.efi", &u)],
        )
        .unwrap();
    Lab::start(dir, world, "", 1 << 20)
}

fn script(lab: &Lab, mac: &str, attempt: u32) -> String {
    let url = lab.url(&format!(
        "/boot/{}.ipxe?attempt={attempt}",
        mac.replace(':', "-")
    ));
    let (code, body, err) = curl(&["--fail", &url]);
    assert_eq!(code, 0, "{err}");
    String::from_utf8(body).unwrap()
}

fn kinds(lab: &Lab, mac: &str) -> Vec<String> {
    lab.inventory.flush();
    lab.store
        .events(&mac.parse().unwrap(), 100)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

#[test]
fn known_node_gets_the_newest_image_with_both_boot_paths() {
    let lab = two_versions();
    let s = script(&lab, GOOD_MAC, 0);
    let cmdline =
        "console=ttyS0 quiet ironrack.server=http://127.0.0.1:8080 ironrack.image=gpu-node@2";
    assert!(s.contains(&format!(
        "chain --autofree http://127.0.0.1:8080/images/gpu-node/2/node.efi {cmdline} || goto failed"
    )), "{s}");
    assert!(s.contains(&format!(
        "kernel http://127.0.0.1:8080/images/gpu-node/2/vmlinuz initrd=initrd.img {cmdline} || goto failed"
    )), "{s}");
    assert!(
        s.contains("sleep 3\n"),
        "first retry waits retry-initial-seconds: {s}"
    );
    let later = script(&lab, GOOD_MAC, 2);
    assert!(
        later.contains("sleep 12\n") && later.contains("attempt=3"),
        "{later}"
    );
    // The UKI load options the attestation side predicts PCR 12 from:
    let api = json(&lab.url("/api/images"));
    let v2 = api["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["version"] == 2)
        .unwrap();
    assert_eq!(v2["uki-load-options"], format!("node.efi {cmdline}"));
    assert_eq!(kinds(&lab, GOOD_MAC), ["script", "script"]);
    let node = lab.store.node(&GOOD_MAC.parse().unwrap()).unwrap().unwrap();
    assert_eq!(
        (node.state.as_str(), node.image.as_deref()),
        ("ipxe", Some("gpu-node@2"))
    );
}

/// The node's event kinds once `want` is among them: the artifact event is
/// recorded when hyper drops the finished body, which can be a moment
/// after curl has read the last byte. Bounded; nothing is timed.
fn kinds_once(lab: &Lab, mac: &str, want: &str) -> Vec<String> {
    for _ in 0..200 {
        let seen = kinds(lab, mac);
        if seen.iter().any(|k| k == want) {
            return seen;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    kinds(lab, mac)
}

#[test]
fn artifacts_fetched_after_the_script_are_in_the_nodes_timeline() {
    let lab = two_versions();
    script(&lab, GOOD_MAC, 0);
    // A HEAD and a partial range are not a fetch of the kernel.
    assert_eq!(status(&["-I", &lab.url("/images/gpu-node/2/vmlinuz")]), 200);
    let (code, _, err) = curl(&[
        "--fail",
        "-r",
        "0-1",
        &lab.url("/images/gpu-node/2/vmlinuz"),
    ]);
    assert_eq!(code, 0, "{err}");
    for file in ["vmlinuz", "initrd.img"] {
        let (code, body, err) = curl(&["--fail", &lab.url(&format!("/images/gpu-node/2/{file}"))]);
        assert_eq!(code, 0, "{err}");
        assert!(!body.is_empty());
    }
    assert_eq!(
        kinds_once(&lab, GOOD_MAC, "initrd"),
        ["script", "kernel", "initrd"]
    );
}

#[test]
fn unknown_nodes_are_pending_under_enroll_and_bad_macs_are_refused() {
    let lab = two_versions();
    let s = script(&lab, "52:54:00:99:99:99", 0);
    assert!(s.contains("pending") && s.contains("goto failed"), "{s}");
    assert!(!s.contains("kernel http"), "{s}");
    assert_eq!(kinds(&lab, "52:54:00:99:99:99"), ["pending"]);
    assert_eq!(status(&[&lab.url("/boot/not-a-mac.ipxe")]), 400);
    assert_eq!(status(&[&lab.url("/boot/52-54-00-99-99-99")]), 400);
}

#[test]
fn an_approved_unknown_node_boots_the_image_it_was_approved_for() {
    let lab = two_versions();
    let mac: ironrack_pxe::site::MacAddr = "52:54:00:99:99:98".parse().unwrap();
    let approve = |image: Option<&str>| {
        // The operator approves after the node's last script request has
        // been recorded: the inventory writes events in the background.
        lab.inventory.flush();
        let approval = Approval {
            mac,
            image: image.map(str::to_owned),
            at_ms: 1,
        };
        let event = NodeEvent {
            at_ms: 1,
            mac,
            node: None,
            kind: "approved".into(),
            image: None,
            detail: None,
        };
        lab.store.approve(&approval, &event).unwrap();
    };
    approve(None);
    let s = script(&lab, "52:54:00:99:99:98", 0);
    assert!(
        s.contains("approved but has no image") && !s.contains("kernel http"),
        "{s}"
    );
    approve(Some("gpu-node"));
    let s = script(&lab, "52:54:00:99:99:98", 0);
    assert!(s.contains("images/gpu-node/2/vmlinuz"), "{s}");
    approve(Some("no-such-image"));
    let s = script(&lab, "52:54:00:99:99:98", 0);
    assert!(s.contains("no verified image no-such-image"), "{s}");
    assert_eq!(
        kinds(&lab, "52:54:00:99:99:98"),
        [
            "approved", "waiting", "approved", "script", "approved", "refused"
        ]
    );
    let node = lab.store.node(&mac).unwrap().unwrap();
    assert_eq!(node.state, "refused");
}

#[test]
fn rollback_is_refused_per_node_unless_forced() {
    let lab = two_versions();
    // The node boots version 2 ...
    assert!(script(&lab, GOOD_MAC, 0).contains("gpu-node@2"));
    // ... then the operator pins version 1: refused.
    let pin = "version = 1";
    lab.reload(pin, 1 << 20);
    let s = script(&lab, GOOD_MAC, 0);
    assert!(
        s.contains("rollback refused") && !s.contains("kernel http"),
        "{s}"
    );
    assert_eq!(
        kinds(&lab, GOOD_MAC).last().map(String::as_str),
        Some("refused")
    );
    // Forced on purpose: served.
    lab.reload("version = 1\nforce-version = true", 1 << 20);
    let s = script(&lab, GOOD_MAC, 0);
    assert!(s.contains("images/gpu-node/1/vmlinuz"), "{s}");
    // The highest version served stays 2: unpinned again, 2 is fine, and
    // pinning 1 without force is still refused.
    lab.reload(pin, 1 << 20);
    assert!(script(&lab, GOOD_MAC, 0).contains("rollback refused"));
    let events = json(&lab.url("/api/nodes/n1/events"));
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["script", "refused", "script", "refused"]);
}
