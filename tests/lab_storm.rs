//! `ironrack lab storm` end to end, as root: 20 simulated nodes with 1 %
//! packet loss against a real `ironrack serve` in its own namespace, half
//! BIOS, half UEFI (`--firmware mixed`). Every node gets its address by
//! DHCP broadcast, iPXE over TFTP (undionly.kpxe or snponly.efi), the
//! script, kernel and initrd (BIOS) or the UKI (UEFI), manifest, signature
//! and rootfs over HTTP, is enrolled and attested by the server (real
//! quotes from a software TPM each; UEFI nodes under the full `uki`
//! chain, BIOS nodes under `bios`), and reports running. The JSON report names every stage; the plot is SVG;
//! no namespace or server process is left behind.

#![allow(clippy::print_stderr)]

mod serve_support;

use std::collections::BTreeSet;
use std::process::Command;

use serve_support::{ipxe_deb, skip};

fn namespaces() -> BTreeSet<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("irstorm-"))
        .map(str::to_owned)
        .collect()
}

/// Processes whose command line names `needle`.
fn processes_naming(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

#[test]
fn twenty_nodes_with_loss_all_reach_running_and_nothing_is_left() {
    if skip("twenty_nodes_with_loss_all_reach_running_and_nothing_is_left") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let before = namespaces();
    let json = d.join("storm.json");
    let svg = d.join("storm.svg");
    let work = d.join("work");
    let out = Command::new(env!("CARGO_BIN_EXE_ironrack"))
        .args([
            "lab",
            "storm",
            "--nodes",
            "20",
            "--loss",
            "1",
            "--timeout",
            "50",
            "--firmware",
            "mixed",
        ])
        .arg("--ipxe-deb")
        .arg(ipxe_deb())
        .arg("--dir")
        .arg(&work)
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(&svg)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "{text}");
    assert!(text.contains("running 20/20"), "{text}");

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["nodes"], 20);
    assert_eq!(report["running"], 20);
    assert_eq!(report["failures"].as_array().unwrap().len(), 0);
    let by_firmware: Vec<(String, u64, u64)> = report["firmware"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["firmware"].as_str().unwrap().to_owned(),
                c["nodes"].as_u64().unwrap(),
                c["running"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_firmware,
        [("bios".to_owned(), 10, 10), ("uefi".to_owned(), 10, 10)]
    );
    let firmware_of = |mac: &str| {
        report["node_firmware"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["mac"] == mac)
            .map(|n| n["firmware"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let stages: Vec<&str> = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["nodes"], 20, "{s}");
            assert!(s["p50"].as_f64().unwrap() <= s["max"].as_f64().unwrap());
            s["stage"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        stages,
        [
            "dhcp",
            "tftp",
            "ipxe-dhcp",
            "script",
            "kernel",
            "image",
            "attest"
        ]
    );
    assert!(report["time_to_all_running"].as_f64().unwrap() > 0.0);
    assert!(report["server"]["peak_rss_bytes"].as_u64().unwrap() > 0);
    // 20 × (1 MiB kernel + 1 MiB initrd + 4 MiB rootfs) at least.
    assert!(report["bytes"]["http"].as_u64().unwrap() >= 20 * (6 << 20));
    assert!(report["bytes"]["tftp"].as_u64().unwrap() > 0);
    // The last sample: every node running.
    let last = report["timeline"].as_array().unwrap().last().unwrap();
    assert_eq!(last["counts"][7], 20, "{last}");
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));

    // The server attested each node (its own timeline says so), the UEFI
    // node (storm-20) under its site's `uki` chain, the BIOS one
    // (storm-19) under `bios`.
    let store =
        ironrack_pxe::attest::service::SqliteAttestStore::open_read_only(&work.join("state.db"))
            .unwrap()
            .unwrap();
    let site_path = work.join("site.toml");
    let site = ironrack_pxe::site::Site::from_toml(
        &site_path,
        &std::fs::read_to_string(&site_path).unwrap(),
    )
    .unwrap();
    use ironrack_pxe::attest::service::{AttestStore, BootChain};
    for (mac, host, firmware, chain) in [
        ("52:54:00:5e:00:14", "storm-20", "uefi", BootChain::Uki),
        ("52:54:00:5e:00:13", "storm-19", "bios", BootChain::Bios),
    ] {
        assert_eq!(firmware_of(mac), firmware);
        assert_eq!(site.profile_of(host).unwrap().boot_chain, chain, "{host}");
        let node = ironrack_pxe::attest::protocol::NodeId::new(mac).unwrap();
        let timeline = store.timeline(&node).unwrap();
        assert!(
            timeline.iter().any(|e| e.status == "attested"),
            "{mac}: {timeline:?}"
        );
        assert!(
            !timeline.iter().any(|e| e.status == "refused"),
            "{mac}: {timeline:?}"
        );
    }

    assert_eq!(namespaces(), before, "the storm's namespaces are gone");
    let site = work.join("site.toml").display().to_string();
    assert!(processes_naming(&site).is_empty(), "ironrack serve is gone");
}
