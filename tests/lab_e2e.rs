//! The end-to-end cases of the virtual rack, as root: real qemu nodes
//! (SeaBIOS with the NIC's iPXE ROM, or OVMF), each with its own swtpm
//! manufactured by a vendor CA the site trusts, network-booting a signed
//! agent image (tests/agent_image) from a real `ironrack serve` in a
//! namespace this test makes (198.18.0.0/15 only):
//!
//! - a tampered rootfs in the image store: the server refuses the image and
//!   says why; the node is never given a kernel;
//! - a rollback: a node that ran version 2, assigned version 1, is refused;
//! - an unknown MAC: enrolled as pending, never booted into an image until
//!   an operator approves it, then attested and running;
//! - the server killed (SIGKILL) while a node boots, then restarted: the
//!   node retries and runs, and the timeline lost no event;
//! - proxyDHCP beside the site's own DHCP server (busybox udhcpd on the
//!   same segment hands out the addresses): the node boots and runs, its
//!   address from udhcpd, its boot from ironrack (docs/site.proxy.toml).
//!
//! BIOS nodes boot faster under TCG (no OVMF), so the cases that are not
//! about UEFI use them, under the site's `boot-chain = "bios"` profile.
//! Needs root, qemu-system-x86, swtpm, swtpm-tools, squashfs-tools,
//! busybox-static, binutils (scripts/deps.sh).

#![allow(clippy::print_stderr)]

mod agent_image;
mod serve_support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ironrack_pxe::testkit;
use serve_support::*;

const IMAGE: &str = "test-node";
/// Bounds each boot under TCG; nothing is timed.
const PATIENCE: Duration = Duration::from_secs(400);

/// A lab whose site trusts the vendor CA of one manufactured TPM.
struct Rack {
    lab: Lab,
    tpm: PathBuf,
    site: String,
}

impl Rack {
    /// Images `versions` of IMAGE built and signed into `out/`, a TPM, and
    /// the site with `nodes`, `[attest]` and the `bios` profile. The server
    /// is not started yet.
    fn new(test: &str, versions: &[u64], nodes: &str) -> Option<Rack> {
        if skip(test) {
            return None;
        }
        require_tools(
            test,
            &[
                "qemu-system-x86_64",
                "swtpm",
                "swtpm_setup",
                "mksquashfs",
                "strip",
            ],
        );
        let lab = Lab::new();
        for &v in versions {
            let scratch = lab.path(&format!("build-{v}"));
            std::fs::create_dir_all(&scratch).unwrap();
            agent_image::build(&lab.world, &cache(), &scratch, &lab.path("out"), IMAGE, v);
        }
        let tpm = lab.path("tpm");
        testkit::swtpm::manufacture(&tpm).unwrap();
        let site = lab.write_site(nodes);
        let mut text = std::fs::read_to_string(&site).unwrap();
        text.push_str(&format!(
            "\n[attest]\nek-roots = [\"{}\"]\nek-intermediates = [\"{}\"]\n\
             \n[profile.bios]\nboot-chain = \"bios\"\n",
            testkit::swtpm::ca_root(&tpm).display(),
            testkit::swtpm::ca_intermediate(&tpm).display()
        ));
        std::fs::write(&site, text).unwrap();
        Some(Rack {
            site: site.to_str().unwrap().to_owned(),
            lab,
            tpm,
        })
    }

    /// Boots the node `mac` (`uefi` or not) until it powers off or `done`
    /// says enough; returns its serial log.
    fn boot(
        &mut self,
        mac: &str,
        uefi: bool,
        done: &mut dyn FnMut(&mut Lab, &str) -> bool,
    ) -> String {
        let sock = self.lab.path("swtpm.sock");
        let _swtpm = testkit::swtpm::for_qemu(
            &testkit::swtpm::state(&self.tpm),
            &sock,
            &self.lab.path("swtpm.log"),
        )
        .unwrap();
        let mut args = if uefi {
            testkit::qemu::ovmf_args(self.lab.dir.path()).unwrap()
        } else {
            vec!["-boot".into(), "n".into()]
        };
        args.extend([
            "-netdev".into(),
            "tap,id=n0,ifname=tap0,script=no,downscript=no".into(),
            "-device".into(),
            if uefi {
                format!("virtio-net-pci,netdev=n0,mac={mac},romfile=")
            } else {
                format!("virtio-net-pci,netdev=n0,mac={mac}")
            },
        ]);
        args.extend(testkit::swtpm::qemu_args(&sock));
        let log = self.lab.path("console.log");
        let started = Instant::now();
        let lab = &mut self.lab;
        let result =
            testkit::qemu::run_until(Some(&lab.ns.clone()), &args, &log, PATIENCE, &mut |text| {
                done(lab, text)
            });
        eprintln!(
            "boot of {mac} took {:.1} s",
            started.elapsed().as_secs_f64()
        );
        result.unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", self.lab.log_text()))
    }

    fn events(&self, mac: &str) -> Vec<serde_json::Value> {
        events_of(&self.lab, &self.site, mac)
    }

    fn has_event(&self, mac: &str, kind: &str, detail: &str) -> bool {
        has_event(&self.lab, &self.site, mac, kind, detail)
    }
}

/// The node's timeline as `ironrack nodes show --json` prints it (empty
/// before the server has seen it).
fn events_of(lab: &Lab, site: &str, mac: &str) -> Vec<serde_json::Value> {
    let out = lab.ironrack(&["nodes", "show", mac, "--site", site, "--json"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|shown| shown["events"].as_array().cloned())
        .unwrap_or_default()
}

/// Whether the timeline has a `kind` event whose detail contains `detail`.
fn has_event(lab: &Lab, site: &str, mac: &str, kind: &str, detail: &str) -> bool {
    events_of(lab, site, mac)
        .iter()
        .any(|e| e["kind"] == kind && e["detail"].as_str().is_some_and(|d| d.contains(detail)))
}

fn kinds(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn node_toml(mac: &str, host: &str, ip: &str, extra: &str) -> String {
    format!(
        "[[rack.node]]\nmac = \"{mac}\"\nhostname = \"{host}\"\nip = \"{ip}\"\nimage = \"{IMAGE}\"\nprofile = \"bios\"\n{extra}"
    )
}

/// The image's init ran and named itself.
fn ran(console: &str, host: &str, version: u64) -> bool {
    console.contains(&format!(
        "{} host {host} image {IMAGE}@{version}",
        agent_image::MARKER
    ))
}

/// No kernel was ever handed to the node: the agent never spoke.
fn never_booted(console: &str) -> bool {
    !console.contains("ironrack agent") && !console.contains(agent_image::MARKER)
}

#[test]
fn a_tampered_rootfs_is_refused_and_the_node_never_boots_it() {
    let mac = "52:54:00:e2:00:01";
    let Some(mut rack) = Rack::new(
        "a_tampered_rootfs_is_refused_and_the_node_never_boots_it",
        &[1],
        &node_toml(mac, "e2e-tamper", "198.18.0.61", ""),
    ) else {
        return;
    };
    // One byte of the published rootfs changed, size and name kept.
    let rootfs = rack.lab.path(&format!("out/{IMAGE}/1/rootfs.squashfs"));
    let mut bytes = std::fs::read(&rootfs).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&rootfs, &bytes).unwrap();
    rack.lab.serve();

    // The operator's view: the image is refused, with the file named.
    let list = rack.lab.ironrack(&["nodes", "list", "--site", &rack.site]);
    let listed = String::from_utf8_lossy(&list.stdout).into_owned();
    let refused = listed
        .split_once("refused images (not served):")
        .map(|(_, r)| r)
        .unwrap_or_else(|| panic!("nodes list shows no refused image: {listed}"));
    assert!(
        refused.contains(&format!("{IMAGE}/1")) && refused.contains("rootfs.squashfs: sha256"),
        "nodes list does not say why: {listed}"
    );
    let site = rack.site.clone();
    let console = rack.boot(mac, false, &mut |lab, _| {
        has_event(lab, &site, mac, "refused", "rootfs.squashfs")
    });
    assert!(never_booted(&console), "the node got further:\n{console}");
    assert!(
        rack.has_event(mac, "refused", "rootfs.squashfs"),
        "{:#?}",
        rack.events(mac)
    );
}

#[test]
fn a_node_assigned_an_older_version_is_refused_as_a_rollback() {
    let mac = "52:54:00:e2:00:02";
    let host = "e2e-rollback";
    let Some(mut rack) = Rack::new(
        "a_node_assigned_an_older_version_is_refused_as_a_rollback",
        &[1, 2],
        &node_toml(mac, host, "198.18.0.62", ""),
    ) else {
        return;
    };
    rack.lab.serve();
    let console = rack.boot(mac, false, &mut |_, _| false);
    assert!(ran(&console, host, 2), "version 2 did not run:\n{console}");

    // The operator assigns version 1 without force-version and reloads.
    let text = std::fs::read_to_string(&rack.site).unwrap();
    std::fs::write(
        &rack.site,
        text.replace("profile = \"bios\"\n", "profile = \"bios\"\nversion = 1\n"),
    )
    .unwrap();
    rack.lab.signal(nix::sys::signal::Signal::SIGHUP);
    rack.lab.wait_log("reload complete");
    let site = rack.site.clone();
    let console = rack.boot(mac, false, &mut |lab, _| {
        has_event(lab, &site, mac, "refused", "rollback refused")
    });
    assert!(never_booted(&console), "version 1 was booted:\n{console}");
    assert!(
        rack.has_event(mac, "refused", "older than version 2"),
        "{:#?}",
        rack.events(mac)
    );
}

#[test]
fn an_unknown_node_waits_pending_until_approved_then_runs_attested() {
    let mac = "52:54:00:e2:00:03";
    let Some(mut rack) = Rack::new(
        "an_unknown_node_waits_pending_until_approved_then_runs_attested",
        &[1],
        "",
    ) else {
        return;
    };
    rack.lab.serve();
    let site = rack.site.clone();
    let mut approved = false;
    let mut pending_console = String::new();
    let console = rack.boot(mac, true, &mut |lab, console| {
        if !approved {
            let events = events_of(lab, &site, mac);
            if events.iter().filter(|e| e["kind"] == "pending").count() >= 2 {
                // Seen pending twice (it retried and was still held):
                // nothing of the image reached it. The operator approves.
                pending_console = console.to_owned();
                let out =
                    lab.ironrack(&["nodes", "approve", mac, "--image", IMAGE, "--site", &site]);
                assert!(
                    out.status.success(),
                    "nodes approve: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                approved = true;
            }
        }
        false
    });
    assert!(approved, "the node was never pending:\n{console}");
    assert!(
        never_booted(&pending_console),
        "booted before approval:\n{pending_console}"
    );
    assert!(
        console.contains(&format!("ironrack agent: attested: {mac} runs {IMAGE}@1")),
        "{console}"
    );
    assert!(console.contains(agent_image::MARKER), "{console}");
    let kinds = kinds(&rack.events(mac));
    assert!(
        in_order(&kinds, &["pending", "approved", "attested", "running"]),
        "{kinds:?}"
    );
}

#[test]
fn a_server_killed_mid_boot_comes_back_and_the_node_runs_with_its_timeline_whole() {
    let mac = "52:54:00:e2:00:04";
    let host = "e2e-restart";
    let Some(mut rack) = Rack::new(
        "a_server_killed_mid_boot_comes_back_and_the_node_runs_with_its_timeline_whole",
        &[1],
        &node_toml(mac, host, "198.18.0.64", ""),
    ) else {
        return;
    };
    rack.lab.serve();
    let site = rack.site.clone();
    let mut before: Option<Vec<serde_json::Value>> = None;
    let console = rack.boot(mac, false, &mut |lab, console| {
        // The kernel is up and the agent starting: the server dies.
        if before.is_none() && console.contains("ironrack agent") {
            lab.kill();
            before = Some(events_of(lab, &site, mac));
            std::thread::sleep(Duration::from_secs(3));
            lab.serve();
        }
        false
    });
    let before = before.unwrap_or_else(|| panic!("the agent never started:\n{console}"));
    assert!(ran(&console, host, 1), "the node did not run:\n{console}");
    let after = rack.events(mac);
    // Everything committed before the kill is still there, in order, and
    // the boot's end came after it.
    assert!(
        before.iter().any(|e| e["kind"] == "initrd"),
        "the kill came before the initrd was served: {before:#?}"
    );
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "events lost or changed"
    );
    let tail: Vec<&str> = after[before.len()..]
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or(""))
        .collect();
    assert!(
        tail.contains(&"attested") && tail.contains(&"running"),
        "{tail:?}"
    );
}

#[test]
fn a_node_boots_through_proxy_dhcp_beside_the_sites_own_dhcp_server() {
    let mac = "52:54:00:e2:00:05";
    let Some(mut rack) = Rack::new(
        "a_node_boots_through_proxy_dhcp_beside_the_sites_own_dhcp_server",
        &[1],
        &format!(
            "[[rack.node]]\nmac = \"{mac}\"\nhostname = \"e2e-proxy\"\nimage = \"{IMAGE}\"\nprofile = \"bios\"\n"
        ),
    ) else {
        return;
    };
    // The site's DHCP server: busybox udhcpd on the same segment (its own
    // namespace on the bridge), addresses 198.18.0.150-160, no boot options.
    let dhcpd_ns = rack.lab.client("52:54:00:aa:00:02");
    ip(&[
        "-n",
        &dhcpd_ns,
        "addr",
        "add",
        "198.18.0.2/24",
        "dev",
        "cli0",
    ]);
    let conf = rack.lab.path("udhcpd.conf");
    let leases = rack.lab.path("udhcpd.leases");
    std::fs::write(&leases, b"").unwrap();
    std::fs::write(
        &conf,
        format!(
            "start 198.18.0.150\nend 198.18.0.160\ninterface cli0\nlease_file {}\n\
             option subnet 255.255.255.0\noption lease 600\n",
            leases.display()
        ),
    )
    .unwrap();
    let udhcpd = Command::new("ip")
        .args(["netns", "exec", &dhcpd_ns, "busybox", "udhcpd", "-f"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(rack.lab.path("udhcpd.log")).unwrap())
        .spawn()
        .unwrap();
    let _udhcpd = testkit::qemu::Reaped(udhcpd);
    // ironrack as proxyDHCP: no addresses, no pool, no router.
    let text = std::fs::read_to_string(&rack.site).unwrap();
    let text = text
        .replace(
            "mode = \"authoritative\"\nlease-time = 600\n",
            "mode = \"proxy\"\n",
        )
        .replace("router = \"198.18.0.1\"\n", "")
        .replace(
            "pool = { start = \"198.18.0.100\", end = \"198.18.0.120\" }\n",
            "",
        );
    assert!(
        text.contains("mode = \"proxy\"") && !text.contains("pool"),
        "{text}"
    );
    std::fs::write(&rack.site, text).unwrap();
    rack.lab.serve();

    let console = rack.boot(mac, false, &mut |_, _| false);
    // The agent's own DHCP (udhcpc, no PXE vendor class) is udhcpd's too.
    assert!(
        console.contains("ironrack agent: DHCP: lease 198.18.0.15")
            || console.contains("ironrack agent: DHCP: lease 198.18.0.160"),
        "the node's address is not udhcpd's:\n{console}"
    );
    assert!(console.contains("from DHCP server 198.18.0.2"), "{console}");
    assert!(
        console.contains(&format!("{} host ", agent_image::MARKER))
            && console.contains(&format!("image {IMAGE}@1")),
        "the image did not run:\n{console}"
    );
    let kinds = kinds(&rack.events(mac));
    assert!(
        kinds
            .iter()
            .any(|k| k == "dhcp-proxy-offer" || k == "dhcp-proxy-ack"),
        "{kinds:?}"
    );
    assert!(
        in_order(&kinds, &["script", "attested", "running"]),
        "{kinds:?}"
    );
}
