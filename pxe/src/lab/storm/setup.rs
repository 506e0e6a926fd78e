//! What a storm stands on: its own signed image, a site file listing
//! every simulated node, their TPMs pre-approved in the state database,
//! and two namespaces joined by a veth pair (server on a bridge in one,
//! the load generator in the other, netem on both ends of the link).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use ironrack_keys::trust::{Delegation, Scope};
use ironrack_keys::{Artifact, SecretKey, SignedManifest, Timestamp, TrustFile};

use super::StormError;
use crate::attest::protocol::NodeId;
use crate::attest::service::{AttestStore, NodeRecord, NodeState, SqliteAttestStore};
use crate::attest::tpm::model::SimulatedTpm;
use crate::lab::net::{run, which};

/// The server's address (on the bridge, /16 so thousands of nodes fit).
pub const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The server's HTTP port.
pub const HTTP_PORT: u16 = 8080;
/// The load generator's end of the link.
pub const GEN_IF: &str = "vg0";
/// The server's end of the link (a port of the bridge).
pub const SERVER_IF: &str = "vs0";
/// The storm image's name.
pub const IMAGE: &str = "storm";
/// Kernel and initrd sizes: small, so the storm measures the server and
/// not this machine's copy speed (the rootfs size is a parameter).
pub const BOOT_FILE_BYTES: usize = 1 << 20;

/// The MAC of storm node `i`: 52:54:00:5e:HH:LL with HHLL = i + 1.
pub fn node_mac(i: usize) -> [u8; 6] {
    let n = (i + 1) as u32;
    [0x52, 0x54, 0x00, 0x5e, (n >> 8) as u8, n as u8]
}

/// The address of storm node `i`: 198.18.1.1 + i (inside 198.18.0.0/16).
pub fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 1, 1)) + i as u32)
}

/// Most nodes a storm takes: the MAC scheme's 16 bits, the /16's room.
pub const MAX_NODES: usize = 60_000;

/// Deterministic filler bytes (xorshift), so artifacts do not compress.
fn filler(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The systemd-stub a storm image is built around when the operator
/// gives none: a minimal PE32+ made in code whose `.sdmagic` names
/// systemd-stub 252, so `build_uki` lays the UKI out and `measure_uki`
/// predicts PCR 11 exactly as for Debian 12's stub. The server never reads
/// the stub: it holds a node to the manifest's digests, which are the
/// same kind of digests of the same kind of file either way.
pub fn generated_stub() -> Vec<u8> {
    ironrack_builder::boot::pe_fixture::PeFixture::stub_like(filler(0x3000, 4)).build()
}

/// The storm's kernel: a PE32+ (as an x86-64 bzImage is, with its EFI
/// stub) of `BOOT_FILE_BYTES`, so the UKI's `.linux` has an Authenticode
/// digest for PCR 4.
fn kernel_image() -> Vec<u8> {
    use ironrack_builder::boot::pe_fixture::{FixtureSection, PeFixture};
    PeFixture {
        sections: vec![FixtureSection::new(".text", filler(BOOT_FILE_BYTES, 1))],
        ..PeFixture::default()
    }
    .build()
}

/// The kernel command line of the storm image.
const CMDLINE: &str = "console=ttyS0";

/// Makes `dir/trust.json` and a signed image `dir/out/storm/1` (kernel,
/// initrd, a UKI `node.efi` built around `stub` with its measurements in
/// the manifest, a rootfs of `rootfs_size` bytes). The signing keys live
/// only in memory: nothing else will ever be signed with them.
pub fn make_image(
    dir: &Path,
    rootfs_size: u64,
    stub: &[u8],
) -> Result<(PathBuf, PathBuf), StormError> {
    let image_dir = dir.join("out").join(IMAGE).join("1");
    let bad = |reason: String| StormError::Image {
        dir: image_dir.clone(),
        reason,
    };
    let key = |e: ironrack_keys::Error| bad(e.to_string());
    let root = SecretKey::generate().map_err(key)?;
    let signer = SecretKey::generate().map_err(key)?;
    let expires = Timestamp::now().plus_days(30);
    let mut trust = TrustFile::new(vec![root.public_key()], 1, expires).map_err(key)?;
    let scope = ["image:storm", "channel:*"]
        .iter()
        .map(|s| s.parse::<Scope>().map_err(|_| bad(format!("scope {s}"))))
        .collect::<Result<Vec<_>, _>>()?;
    trust
        .signed
        .add_signer(Delegation {
            name: "storm".into(),
            id: signer.key_id(),
            public: signer.public_key(),
            expires,
            scope,
        })
        .map_err(key)?;
    trust.sign(&root).map_err(key)?;
    let _ = std::fs::remove_dir_all(dir.join("out"));
    std::fs::create_dir_all(&image_dir).map_err(|e| bad(e.to_string()))?;
    let trust_path = dir.join("trust.json");
    write(&trust_path, &trust.to_bytes().map_err(key)?)?;
    let rootfs_len = usize::try_from(rootfs_size).map_err(|_| bad("rootfs too large".into()))?;
    let kernel = kernel_image();
    let initrd = filler(BOOT_FILE_BYTES, 2);
    let uki = ironrack_builder::boot::uki::build_uki(&ironrack_builder::boot::uki::UkiInputs {
        stub,
        linux: &kernel,
        initrd: &initrd,
        cmdline: CMDLINE,
        osrel: b"ID=ironrack\nVERSION_ID=storm\n",
        uname: None,
        splash: None,
    })
    .map_err(|e| bad(format!("building node.efi: {}", error_chain(&e))))?;
    let m = ironrack_builder::boot::uki::measure_uki(&uki, &kernel)
        .map_err(|e| bad(format!("measuring node.efi: {}", error_chain(&e))))?;
    let files = [
        ("vmlinuz", kernel),
        ("initrd.img", initrd),
        (crate::net::http::script::UKI, uki),
        ("rootfs.squashfs", filler(rootfs_len, 3)),
    ];
    let mut artifacts = Vec::new();
    for (name, bytes) in files {
        write(&image_dir.join(name), &bytes)?;
        artifacts.push(Artifact::from_file(&image_dir, name).map_err(key)?);
    }
    let manifest = SignedManifest::new(
        IMAGE,
        "stable",
        1,
        Timestamp::now().plus_days(7),
        artifacts,
        serde_json::json!({
            "kernel": { "cmdline": CMDLINE },
            "measurements": {
                "uki": crate::net::http::script::UKI,
                "uki-authenticode": m.uki_authenticode,
                "kernel-authenticode": m.kernel_authenticode,
                "pcr11": m.pcr11,
                "agent-pcr": crate::attest::eventlog::agent::AGENT_PCR,
            },
        }),
    );
    ironrack_keys::write_signed_manifest(&image_dir, &signer, &manifest).map_err(key)?;
    Ok((image_dir, trust_path))
}

/// An error and its sources, for a one-line reason.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), StormError> {
    std::fs::write(path, bytes).map_err(|source| StormError::Write {
        path: path.to_owned(),
        source,
    })
}

/// The site file: every node listed with its address; BIOS nodes on the
/// `storm` profile (`boot-chain = "bios"`), UEFI nodes on `storm-uefi`
/// (the default `uki` chain: PCR 4, 11 and 12 all checked).
pub fn site_text(
    dir: &Path,
    trust: &Path,
    ipxe_deb: &Path,
    nodes: usize,
    mix: super::FirmwareMix,
) -> String {
    let mut text = format!(
        "# Generated by `ironrack lab storm`.\n\
         [server]\nhttp-base-url = \"http://{SERVER}:{HTTP_PORT}\"\n\
         database = \"state.db\"\nunknown-nodes = \"ignore\"\n\n\
         [images]\ndirs = [{out:?}]\ntrust-root = {trust:?}\n\n\
         [dhcp]\nmode = \"authoritative\"\n\n\
         [[interface]]\nname = \"br0\"\naddress = \"{SERVER}/16\"\n\n\
         [boot]\nipxe-deb = {ipxe:?}\n\n\
         [profile.storm]\nboot-chain = \"bios\"\n\n\
         [profile.storm-uefi]\nboot-chain = \"uki\"\n\n\
         [[rack]]\nname = \"storm\"\n",
        out = dir.join("out").display().to_string(),
        trust = trust.display().to_string(),
        ipxe = ipxe_deb.display().to_string(),
    );
    for i in 0..nodes {
        text.push_str(&format!(
            "\n[[rack.node]]\nmac = \"{}\"\nhostname = \"storm-{}\"\nip = \"{}\"\nimage = \"{IMAGE}\"\nprofile = \"{}\"\n",
            crate::lab::node::mac_text(&node_mac(i)),
            i + 1,
            node_ip(i),
            match mix.of(i) {
                super::node::Firmware::Bios => "storm",
                super::node::Firmware::Uefi => "storm-uefi",
            },
        ));
    }
    text
}

/// One TPM per node, each recorded as approved in the state database
/// (as `ironrack nodes approve` would leave it), so enrollment without an
/// EK certificate goes straight to enrolled.
pub fn tpms_approved(db: &Path, nodes: usize) -> Result<Vec<SimulatedTpm>, StormError> {
    use crate::attest::tpm::AkTemplate;
    let _ = std::fs::remove_file(db);
    let approve = |node: &str, reason: String| StormError::Approve {
        db: db.to_owned(),
        node: node.to_owned(),
        reason,
    };
    // The inventory first, as the server opens them.
    crate::store::SqliteStore::open(db).map_err(|e| approve("-", e.to_string()))?;
    let store = SqliteAttestStore::open(db).map_err(|e| approve("-", e.to_string()))?;
    let mut tpms = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let mac = crate::lab::node::mac_text(&node_mac(i));
        let tpm = SimulatedTpm::new(AkTemplate::EccP256).map_err(|e| StormError::Tpm {
            node: mac.clone(),
            reason: e.to_string(),
        })?;
        let node = NodeId::new(&mac).map_err(|e| approve(&mac, e.to_string()))?;
        store
            .put_node(&NodeRecord {
                node,
                ek_public: tpm.ek_public().to_bytes(),
                ak_public: Vec::new(),
                state: NodeState::Enrolled,
                last_clock: None,
            })
            .map_err(|e| approve(&mac, e.to_string()))?;
        tpms.push(tpm);
    }
    Ok(tpms)
}

/// What an attest-only node presents: the digests of the storm image's
/// manifest and rootfs, and for UEFI nodes what their firmware would have
/// measured of the served snponly.efi, node.efi and script (the image
/// loaded and verified as the server loads it, for the same load options).
pub fn known_image(
    image_dir: &Path,
    trust: &Path,
    ipxe_deb: &Path,
) -> Result<super::node::KnownImage, StormError> {
    use sha2::{Digest, Sha256};
    let bad = |reason: String| StormError::Image {
        dir: image_dir.to_owned(),
        reason,
    };
    let read = |name: &str| {
        std::fs::read(image_dir.join(name)).map_err(|e| bad(format!("reading {name}: {e}")))
    };
    let digest =
        |name: &str| -> Result<[u8; 32], StormError> { Ok(Sha256::digest(read(name)?).into()) };
    let trust = ironrack_keys::Trust::load(trust, &[])
        .map_err(|e| bad(format!("trust {}: {e}", trust.display())))?;
    let out = image_dir
        .ancestors()
        .nth(2)
        .ok_or_else(|| bad("no image root".into()))?
        .to_owned();
    let store = crate::images::ImageStore::load(
        &[out],
        &crate::images::LoadOptions {
            trust: Ok(&trust),
            now: Timestamp::now(),
            memory_budget: 0,
            previous: None,
        },
    );
    let image = store
        .get(IMAGE, 1)
        .ok_or_else(|| bad(format!("not loadable: {:?}", store.refused())))?;
    let ipxe = crate::images::IpxeBinaries::from_deb(ipxe_deb)
        .map_err(|e| bad(format!("{}: {e}", ipxe_deb.display())))?;
    let snponly = ipxe
        .get("snponly.efi")
        .ok_or_else(|| bad(format!("{} has no snponly.efi", ipxe_deb.display())))?;
    let base = format!("http://{SERVER}:{HTTP_PORT}");
    let options = crate::net::http::script::uki_load_options(image, &base);
    let uefi = super::attest::BootEvidence::uefi(
        &snponly.bytes,
        &read(crate::net::http::script::UKI)?,
        &options,
    )
    .map_err(bad)?;
    Ok(super::node::KnownImage {
        manifest_sha256: digest("manifest.json")?,
        rootfs_sha256: digest("rootfs.squashfs")?,
        image: crate::attest::protocol::ImageRef {
            name: IMAGE.into(),
            version: 1,
        },
        uefi: Some(uefi),
    })
}

/// dnsmasq as the TFTP server (no DHCP, no DNS) in the server namespace,
/// serving `undionly.kpxe` from the same ipxe package, with as many
/// concurrent transfers as nodes (its default is 50).
pub fn start_dnsmasq(
    net: &crate::lab::LabNet,
    plan: &super::StormPlan,
) -> Result<(crate::lab::Proc, PathBuf), StormError> {
    which("dnsmasq", "dnsmasq")?;
    which("dpkg-deb", "dpkg")?;
    let unpacked = plan.dir.join("ipxe-deb");
    let _ = std::fs::remove_dir_all(&unpacked);
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&plan.ipxe_deb)
        .arg(&unpacked))?;
    let root = plan.dir.join("tftp");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).map_err(|source| StormError::Write {
        path: root.clone(),
        source,
    })?;
    let from = unpacked.join("usr/lib/ipxe/undionly.kpxe");
    std::fs::copy(&from, root.join("undionly.kpxe")).map_err(|source| StormError::Write {
        path: from.clone(),
        source,
    })?;
    let log = plan.dir.join("dnsmasq.log");
    let mut cmd = net.command("dnsmasq");
    cmd.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--port=0",
        "--enable-tftp",
        "--bind-interfaces",
        "--user=root",
        "--log-facility=-",
    ])
    .arg(format!("--listen-address={SERVER}"))
    .arg(format!("--tftp-root={}", root.display()))
    .arg(format!("--tftp-max={}", plan.nodes.max(50)));
    Ok((crate::lab::node::spawn(cmd, &log, "dnsmasq")?, log))
}

/// Waits until dnsmasq has bound its TFTP port (it logs the root).
pub fn wait_for_tftp(server: &crate::lab::Proc, log: &Path) -> Result<(), StormError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if !server.alive() {
            return Err(crate::lab::LabError::Exited {
                what: server.what.clone(),
                pid: server.pid,
                log: log.to_owned(),
            }
            .into());
        }
        if std::fs::read_to_string(log).is_ok_and(|t| t.contains("TFTP root")) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(crate::lab::LabError::Exited {
                what: format!("{} (not ready after 20 s)", server.what),
                pid: server.pid,
                log: log.to_owned(),
            }
            .into());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The two namespaces; dropping it removes them (and the link).
#[derive(Debug)]
pub struct StormNet {
    /// The server's namespace.
    pub server_ns: String,
    /// The load generator's namespace.
    pub gen_ns: String,
    /// Neighbour-table limits to put back (file, old value).
    restore_neigh: Vec<(&'static str, String)>,
}

impl StormNet {
    /// Creates both namespaces, the bridge, the veth pair, `nodes`
    /// addresses on the generator's end, and netem on both ends.
    pub fn create(
        tag: &str,
        nodes: usize,
        loss_percent: f64,
        delay_ms: u32,
        work: &Path,
    ) -> Result<StormNet, StormError> {
        which("ip", "iproute2")?;
        which("tc", "iproute2")?;
        let mut net = StormNet {
            server_ns: format!("irstorm-{tag}-s"),
            gen_ns: format!("irstorm-{tag}-g"),
            restore_neigh: Vec::new(),
        };
        run(Command::new("ip").args(["netns", "add", &net.server_ns]))?;
        run(Command::new("ip").args(["netns", "add", &net.gen_ns]))?;
        let (s, g) = (net.server_ns.as_str(), net.gen_ns.as_str());
        let ip = |ns: &str, args: &[&str]| run(Command::new("ip").args(["-n", ns]).args(args));
        ip(s, &["link", "set", "lo", "up"])?;
        ip(
            s,
            &["link", "add", "br0", "type", "bridge", "forward_delay", "0"],
        )?;
        ip(s, &["addr", "add", &format!("{SERVER}/16"), "dev", "br0"])?;
        ip(s, &["link", "set", "br0", "up"])?;
        ip(
            s,
            &[
                "link", "add", SERVER_IF, "type", "veth", "peer", "name", GEN_IF, "netns", g,
            ],
        )?;
        ip(s, &["link", "set", SERVER_IF, "master", "br0"])?;
        ip(s, &["link", "set", SERVER_IF, "up"])?;
        ip(g, &["link", "set", "lo", "up"])?;
        ip(g, &["link", "set", GEN_IF, "up"])?;
        // Every node's leased address lives on the generator's end, so
        // each simulated node speaks from its own address.
        let batch = work.join("addresses.ip");
        let lines: String = (0..nodes)
            .map(|i| format!("address add {}/16 dev {GEN_IF}\n", node_ip(i)))
            .collect();
        std::fs::write(&batch, lines).map_err(|source| StormError::Write {
            path: batch.clone(),
            source,
        })?;
        ip(g, &["-batch", &batch.display().to_string()])?;
        // A small storm stays inside the kernel's defaults (soft limit 512
        // entries): the host's settings are left alone.
        if nodes >= 256 {
            net.restore_neigh = raise_neighbour_table(nodes * 2 + 1024);
        }
        for (ns, dev) in [(s, SERVER_IF), (g, GEN_IF)] {
            impair(ns, dev, loss_percent, delay_ms, work)?;
        }
        Ok(net)
    }
}

/// Loss and delay on `dev` in `ns`: netem on what leaves it when the
/// kernel has netem; otherwise loss alone, by an nftables rule dropping
/// what arrives at random (some kernels, this project's CI VMs among them, are built
/// without netem), and a delay is refused.
fn impair(ns: &str, dev: &str, loss: f64, delay_ms: u32, work: &Path) -> Result<(), StormError> {
    if loss <= 0.0 && delay_ms == 0 {
        return Ok(());
    }
    let netem = run(Command::new("ip").args([
        "netns",
        "exec",
        ns,
        "tc",
        "qdisc",
        "add",
        "dev",
        dev,
        "root",
        "netem",
        "limit",
        "100000",
        "loss",
        &format!("{loss}%"),
        "delay",
        &format!("{delay_ms}ms"),
    ]));
    let err = match netem {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    if delay_ms > 0 {
        return Err(StormError::Param {
            what: "--delay",
            why: format!("needs the kernel's netem qdisc: {err}"),
        });
    }
    which("nft", "nftables")?;
    // Dropped on arrival, as a lossy wire would (a drop on output would
    // tell the sender with EPERM). The bridge port carries no IP: on the
    // server's side packets arrive on br0.
    let in_dev = if dev == SERVER_IF { "br0" } else { dev };
    let per_10k = (loss * 100.0).round() as u32;
    let rules = format!(
        "table inet storm {{\n  chain loss {{\n    type filter hook input priority 0; policy accept;\n    iifname \"{in_dev}\" numgen random mod 10000 < {per_10k} drop\n  }}\n}}\n"
    );
    let file = work.join(format!("loss-{ns}.nft"));
    std::fs::write(&file, rules).map_err(|source| StormError::Write {
        path: file.clone(),
        source,
    })?;
    tracing::info!(ns, %err, "no netem: loss by nftables instead");
    run(Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f"])
        .arg(&file))?;
    Ok(())
}

/// The kernel's neighbour (ARP) table limits: one table for every
/// namespace, 1024 entries by default, past which the server's replies to
/// new nodes are dropped ("neighbour table overflow"). Raised to `want`
/// for the storm; returns what to restore.
fn raise_neighbour_table(want: usize) -> Vec<(&'static str, String)> {
    let mut old = Vec::new();
    for file in [
        "/proc/sys/net/ipv4/neigh/default/gc_thresh2",
        "/proc/sys/net/ipv4/neigh/default/gc_thresh3",
    ] {
        let Ok(current) = std::fs::read_to_string(file) else {
            continue;
        };
        if current.trim().parse::<usize>().is_ok_and(|c| c >= want) {
            continue;
        }
        match std::fs::write(file, want.to_string()) {
            Ok(()) => {
                tracing::info!(file, want, "neighbour table raised for the storm");
                old.push((file, current.trim().to_owned()));
            }
            Err(e) => tracing::warn!(error = %e, file, "could not raise the neighbour table"),
        }
    }
    old
}

impl Drop for StormNet {
    fn drop(&mut self) {
        for (file, value) in &self.restore_neigh {
            let _ = std::fs::write(file, value);
        }
        for ns in [&self.server_ns, &self.gen_ns] {
            if let Err(e) = crate::lab::LabNet::destroy(ns) {
                tracing::warn!(error = %e, ns = %ns, "removing the storm namespace");
            }
        }
    }
}

/// User + system CPU seconds of process `pid` so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) start at ") ".
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100);
    Some(ticks as f64 / hz as f64)
}

/// Peak resident set (VmHWM) of process `pid`, bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_macs_stay_distinct_and_in_range() {
        assert_eq!(node_ip(0), Ipv4Addr::new(198, 18, 1, 1));
        assert_eq!(node_ip(5000), Ipv4Addr::new(198, 18, 20, 137));
        assert!(crate::lab::net::in_lab_range(node_ip(MAX_NODES - 1)));
        assert_ne!(node_mac(255), node_mac(511));
        assert_eq!(node_mac(0), [0x52, 0x54, 0, 0x5e, 0, 1]);
    }

    #[test]
    fn the_site_puts_bios_nodes_on_the_bios_chain_and_uefi_nodes_on_the_uki_chain() {
        use crate::attest::service::BootChain;
        let site = |mix| {
            let text = site_text(
                Path::new("/storm"),
                Path::new("/storm/trust.json"),
                Path::new("/ipxe.deb"),
                300,
                mix,
            );
            crate::site::Site::from_toml(Path::new("/storm/site.toml"), &text).unwrap()
        };
        let chain =
            |site: &crate::site::Site, host: &str| site.profile_of(host).unwrap().boot_chain;
        let bios = site(super::super::FirmwareMix::Bios);
        assert_eq!(chain(&bios, "storm-300"), BootChain::Bios);
        assert!(bios.node_by_id("52:54:00:5e:01:2c").is_some());
        assert_eq!(
            chain(&site(super::super::FirmwareMix::Uefi), "storm-300"),
            BootChain::Uki
        );
        let mixed = site(super::super::FirmwareMix::Mixed);
        // Node i is storm-(i+1): even i BIOS, odd i UEFI.
        assert_eq!(chain(&mixed, "storm-1"), BootChain::Bios);
        assert_eq!(chain(&mixed, "storm-2"), BootChain::Uki);
    }

    #[test]
    fn the_storm_image_carries_a_measured_uki() {
        let dir = tempfile::tempdir().unwrap();
        let (image, _) = make_image(dir.path(), 4096, &generated_stub()).unwrap();
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(image.join("manifest.json")).unwrap()).unwrap();
        let m = &manifest["payload"]["measurements"];
        let uki = std::fs::read(image.join("node.efi")).unwrap();
        let auth = ironrack_builder::boot::pe::authenticode_sha256(&uki).unwrap();
        assert_eq!(m["uki-authenticode"], hex::encode(auth), "{manifest}");
        let kernel = std::fs::read(image.join("vmlinuz")).unwrap();
        let kauth = ironrack_builder::boot::pe::authenticode_sha256(&kernel).unwrap();
        assert_eq!(m["kernel-authenticode"], hex::encode(kauth));
        assert_eq!(m["pcr11"].as_str().unwrap().len(), 64);
    }

    #[test]
    fn cpu_and_memory_of_this_process() {
        let me = std::process::id();
        assert!(cpu_seconds(me).is_some());
        assert!(peak_rss(me).unwrap() > 0);
    }
}
