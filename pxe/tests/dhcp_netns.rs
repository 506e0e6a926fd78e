//! The DHCP server against real clients (busybox udhcpc, ISC dhclient) in
//! network namespaces this test creates: the server runs in one namespace,
//! each client in another, joined by a veth pair or a bridge. Addresses are
//! from 198.18.0.0/15 and exist only inside those namespaces.
//!
//! Needs root and `ip netns` (CI runs as root); without root every test
//! prints a loud SKIP line and returns. Clients come from Debian packages
//! that scripts/deps.sh installs (busybox-static, isc-dhcp-client).

use std::collections::HashMap;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod dhcp_lab;
use dhcp_lab::*;

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use ironrack_pxe::net::dhcp::DhcpEventKind;
use ironrack_pxe::site::Site;
use ironrack_pxe::store::{LeaseState, SqliteStore, Store};

const AUTH_SITE: &str = r#"
[server]
http-base-url = "http://198.18.0.1:8080"
unknown-nodes = "UNKNOWN"
[images]
dirs = []
trust-root = "/trust.json"
[dhcp]
mode = "authoritative"
lease-time = 120
dns = ["198.18.0.1"]
domain = "rack.test"
[[interface]]
name = "srv0"
address = "198.18.0.1/24"
router = "198.18.0.254"
pool = { start = "198.18.0.100", end = "198.18.0.109" }
[[rack]]
name = "r1"
[[rack.node]]
mac = "52:54:00:12:00:01"
hostname = "gpu-r1-n1"
ip = "198.18.0.11"
"#;

fn auth_site(unknown: &str) -> Site {
    site(&AUTH_SITE.replace("UNKNOWN", unknown))
}

/// The hook udhcpc calls: records its environment per event, and
/// configures the address like a real client script would (renewal is a
/// unicast from that address).
fn udhcpc_script(lab: &Lab) -> PathBuf {
    let path = lab.path("udhcpc.sh");
    let out = lab.dir.path().display().to_string();
    let script = format!(
        "#!/bin/sh\n\
         env | sort > {out}/udhcpc.$1.tmp && mv {out}/udhcpc.$1.tmp {out}/udhcpc.$1\n\
         case \"$1\" in\n\
         bound|renew) ip addr flush dev \"$interface\"; ip addr add \"$ip/$mask\" dev \"$interface\";;\n\
         deconfig) ip addr flush dev \"$interface\";;\n\
         esac\n"
    );
    std::fs::write(&path, script).unwrap();
    Command::new("chmod")
        .args(["755"])
        .arg(&path)
        .status()
        .unwrap();
    path
}

/// Waits for the client script to have been called with `event` and
/// returns the environment it saw.
fn client_env(lab: &Lab, event: &str) -> HashMap<String, String> {
    let path = lab.path(&format!("udhcpc.{event}"));
    let deadline = Instant::now() + PATIENCE;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "udhcpc never reported {event}:\n{}",
            std::fs::read_to_string(lab.path("udhcpc.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Runs udhcpc in `ns`; `extra` are more udhcpc arguments.
fn udhcpc(lab: &Lab, ns: &str, extra: &[&str]) -> Child {
    let script = udhcpc_script(lab);
    let log = File::create(lab.path("udhcpc.log")).unwrap();
    Command::new("ip")
        .args([
            "netns", "exec", ns, "busybox", "udhcpc", "-f", "-i", "cli0", "-t", "20", "-T", "1",
            "-A", "1", "-s",
        ])
        .arg(&script)
        .args(extra)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting udhcpc")
}

fn wait_exit(child: &mut Child, lab: &Lab) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let log = std::fs::read_to_string(lab.path("udhcpc.log")).unwrap_or_default();
            assert!(status.success(), "udhcpc failed: {status}\n{log}");
            return;
        }
        assert!(Instant::now() < deadline, "udhcpc did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn udhcpc_gets_its_reservation_renews_and_the_lease_survives_a_restart() {
    if skip("udhcpc_gets_its_reservation_renews_and_the_lease_survives_a_restart") {
        return;
    }
    let mut lab = Lab::new();
    let (srv, cli) = lab.pair("198.18.0.1/24", "52:54:00:12:00:01");
    let db = lab.path("state.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).unwrap());
    let mut server = Server::start(&srv, auth_site("ignore"), store);

    let mut client = udhcpc(&lab, &cli, &[]);
    let bound = client_env(&lab, "bound");
    assert_eq!(bound["ip"], "198.18.0.11", "{bound:?}");
    assert_eq!(bound["serverid"], "198.18.0.1");
    assert_eq!(bound["router"], "198.18.0.254");
    assert_eq!(bound["dns"].trim(), "198.18.0.1");
    assert_eq!(bound["domain"], "rack.test");
    assert_eq!(bound["lease"], "120");
    assert_eq!(bound["mask"], "24");
    assert_eq!(bound["hostname"], "gpu-r1-n1");
    let ack = server.wait_for("ack", |e| e.kind == DhcpEventKind::Ack);
    assert_eq!(ack.node.as_deref(), Some("gpu-r1-n1"));
    assert_eq!(ack.ip, Some(Ipv4Addr::new(198, 18, 0, 11)));
    server.wait_for("offer", |e| e.kind == DhcpEventKind::Offer);

    // The ACK was sent only after the lease was committed.
    let reader = SqliteStore::open(&db).unwrap();
    let lease = reader
        .lease(Ipv4Addr::new(198, 18, 0, 11))
        .unwrap()
        .expect("lease stored");
    assert_eq!(
        (lease.state, lease.mac.to_string()),
        (LeaseState::Bound, "52:54:00:12:00:01".into())
    );
    let first_expiry = lease.expires_at;

    // Renewal: SIGUSR1 makes udhcpc send a unicast REQUEST from its address.
    let acks_before = server
        .drain()
        .iter()
        .filter(|e| e.kind == DhcpEventKind::Ack)
        .count();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(client.id() as i32),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    let renew = client_env(&lab, "renew");
    assert_eq!(renew["ip"], "198.18.0.11");
    let renew_ack = server.wait_for("renewal ack", |e| e.kind == DhcpEventKind::Ack);
    let _ = renew_ack;
    let acks_after = server
        .drain()
        .iter()
        .filter(|e| e.kind == DhcpEventKind::Ack)
        .count();
    // At least one: since a renewal within the stored lease needs no
    // write, its ACK comes back at once, and busybox 1.35's udhcpc was seen
    // to miss that first ACK and ask again a second later.
    assert!(
        acks_after > acks_before,
        "an ACK for the renewal: {:#?}",
        server
            .seen
            .iter()
            .map(|e| (e.kind, e.ip))
            .collect::<Vec<_>>()
    );
    let request = server
        .seen
        .iter()
        .rev()
        .find(|e| e.kind == DhcpEventKind::Request)
        .expect("renewal request")
        .clone();
    assert_eq!(
        request.ip,
        Some(Ipv4Addr::new(198, 18, 0, 11)),
        "RENEWING carries ciaddr"
    );
    let renewed = reader
        .lease(Ipv4Addr::new(198, 18, 0, 11))
        .unwrap()
        .unwrap();
    assert!(renewed.expires_at >= first_expiry);
    kill(&mut client);

    // Restart the server on the same database: the lease is still there and
    // the client's next renewal is acknowledged.
    server.stop();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).unwrap());
    assert_eq!(store.leases().all_leases().unwrap().len(), 1);
    let mut server = Server::start(&srv, auth_site("ignore"), store);
    let mut client = udhcpc(&lab, &cli, &["-r", "198.18.0.11"]);
    let bound = client_env(&lab, "bound");
    assert_eq!(bound["ip"], "198.18.0.11");
    server.wait_for("ack after restart", |e| e.kind == DhcpEventKind::Ack);
    kill(&mut client);
    server.stop();
}

#[test]
fn unknown_mac_gets_a_pool_address_under_discover_and_nothing_under_ignore() {
    if skip("unknown_mac_gets_a_pool_address_under_discover_and_nothing_under_ignore") {
        return;
    }
    let mut lab = Lab::new();
    let (srv, cli) = lab.pair("198.18.0.1/24", "52:54:00:99:00:07");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let mut server = Server::start(&srv, auth_site("ignore"), store.clone());
    // -n: give up after the tries; a nonzero exit is the expected outcome.
    let status = Command::new("ip")
        .args([
            "netns",
            "exec",
            &cli,
            "busybox",
            "udhcpc",
            "-f",
            "-q",
            "-n",
            "-i",
            "cli0",
            "-t",
            "2",
            "-T",
            "1",
            "-s",
            "/bin/true",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(
        !status.success(),
        "an unknown MAC must get no lease under the ignore policy"
    );
    let silent = server.wait_for("silence", |e| e.kind == DhcpEventKind::Silent);
    assert!(
        silent
            .reason
            .as_deref()
            .unwrap()
            .contains("unknown-node policy is ignore"),
        "{silent:?}"
    );
    assert!(
        !server
            .drain()
            .iter()
            .any(|e| e.kind == DhcpEventKind::Offer)
    );
    server.stop();

    let mut server = Server::start(&srv, auth_site("discover"), store.clone());
    let mut client = udhcpc(&lab, &cli, &["-q"]);
    let bound = client_env(&lab, "bound");
    wait_exit(&mut client, &lab);
    let ip: Ipv4Addr = bound["ip"].parse().unwrap();
    assert!(
        (100..=109).contains(&ip.octets()[3]) && ip.octets()[..3] == [198, 18, 0],
        "pool address, got {ip}"
    );
    assert!(
        !bound.contains_key("hostname"),
        "an unknown node has no name to hand out"
    );
    let ack = server.wait_for("ack", |e| e.kind == DhcpEventKind::Ack);
    assert_eq!((ack.node, ack.ip), (None, Some(ip)));
    assert_eq!(store.leases().all_leases().unwrap()[0].ip, ip);
    server.stop();
}

#[test]
fn pxe_and_ipxe_clients_get_the_arch_map_answer_on_the_wire() {
    if skip("pxe_and_ipxe_clients_get_the_arch_map_answer_on_the_wire") {
        return;
    }
    let mut lab = Lab::new();
    let (srv, cli) = lab.pair("198.18.0.1/24", "52:54:00:12:00:01");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let mut server = Server::start(&srv, auth_site("ignore"), store);
    let cases: [(&[&str], &str); 3] = [
        // UEFI x64 PXE: vendor class and option 93 = 7, as firmware sends them.
        (
            &["-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007"],
            "snponly.efi",
        ),
        (
            &["-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000"],
            "undionly.kpxe",
        ),
        // iPXE: user class "iPXE" (hex), whatever the architecture.
        (
            &[
                "-V",
                "PXEClient:Arch:00007:UNDI:003016",
                "-x",
                "0x5d:0007",
                "-x",
                "0x4d:69505845",
            ],
            "http://198.18.0.1:8080/boot/52-54-00-12-00-01.ipxe",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["-q"];
        all.extend_from_slice(args);
        let mut client = udhcpc(&lab, &cli, &all);
        let bound = client_env(&lab, "bound");
        wait_exit(&mut client, &lab);
        assert_eq!(bound["ip"], "198.18.0.11");
        assert_eq!(
            bound.get("boot_file").map(String::as_str),
            Some(want),
            "{args:?}: {bound:?}"
        );
        if !want.starts_with("http") {
            assert_eq!(bound["siaddr"], "198.18.0.1", "next-server for TFTP");
        }
    }
    let arches: Vec<Option<u16>> = server
        .drain()
        .iter()
        .filter(|e| e.kind == DhcpEventKind::Ack)
        .map(|e| e.arch)
        .collect();
    assert_eq!(arches, vec![Some(7), Some(0), Some(7)]);
    server.stop();
}

#[test]
fn dhclient_gets_its_reservation() {
    if skip("dhclient_gets_its_reservation") {
        return;
    }
    let dhclient = Command::new("sh")
        .args(["-c", "command -v dhclient"])
        .output()
        .unwrap();
    assert!(
        dhclient.status.success(),
        "dhclient is missing; run scripts/deps.sh"
    );
    let mut lab = Lab::new();
    let (srv, cli) = lab.pair("198.18.0.1/24", "52:54:00:12:00:01");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let mut server = Server::start(&srv, auth_site("ignore"), store);
    // Our own hook script: dhclient-script would rewrite the host's
    // /etc/resolv.conf, which a test must never touch.
    let hook = lab.path("dhclient.sh");
    let out = lab.path("dhclient.env");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\n[ \"$reason\" = BOUND ] && env | sort > {0}.tmp && mv {0}.tmp {0}\nexit 0\n", out.display()),
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&hook)
        .status()
        .unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &cli, "dhclient", "-d", "-1", "-sf"])
        .arg(&hook)
        .arg("-lf")
        .arg(lab.path("dhclient.leases"))
        .arg("-pf")
        .arg(lab.path("dhclient.pid"))
        .arg("cli0")
        .stdout(Stdio::null())
        .stderr(File::create(lab.path("dhclient.log")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while !out.exists() {
        assert!(
            Instant::now() < deadline,
            "dhclient never bound: {}",
            std::fs::read_to_string(lab.path("dhclient.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    kill(&mut child);
    let env: HashMap<String, String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(env["new_ip_address"], "198.18.0.11");
    assert_eq!(env["new_subnet_mask"], "255.255.255.0");
    assert_eq!(env["new_routers"], "198.18.0.254");
    assert_eq!(env["new_dhcp_server_identifier"], "198.18.0.1");
    assert_eq!(env["new_dhcp_lease_time"], "120");
    server.wait_for("ack", |e| e.kind == DhcpEventKind::Ack);
    server.stop();
}

const PROXY_SITE: &str = r#"
[server]
http-base-url = "http://198.18.0.1:8080"
unknown-nodes = "discover"
[images]
dirs = []
trust-root = "/trust.json"
[dhcp]
mode = "proxy"
[[interface]]
name = "srv0"
address = "198.18.0.1/24"
"#;

#[test]
fn proxy_beside_a_real_dhcp_server_gives_boot_options_and_no_address() {
    if skip("proxy_beside_a_real_dhcp_server_gives_boot_options_and_no_address") {
        return;
    }
    let mut lab = Lab::new();
    // One segment (a bridge) with three hosts: ironrack in proxy mode,
    // busybox udhcpd as the site's existing DHCP server, and the client.
    let lan = lab.ns("l");
    ip(&["-n", &lan, "link", "add", "br0", "type", "bridge"]);
    ip(&["-n", &lan, "link", "set", "br0", "up"]);
    let mut hosts = Vec::new();
    for (role, dev, addr, mac) in [
        ("s", "srv0", Some("198.18.0.1/24"), "52:54:00:aa:00:01"),
        ("d", "dhd0", Some("198.18.0.2/24"), "52:54:00:aa:00:02"),
        ("c", "cli0", None, "52:54:00:12:00:07"),
    ] {
        let ns = lab.ns(role);
        let port = format!("lan-{role}");
        ip(&[
            "-n", &lan, "link", "add", &port, "type", "veth", "peer", "name", dev, "netns", &ns,
        ]);
        ip(&["-n", &lan, "link", "set", &port, "master", "br0", "up"]);
        ip(&["-n", &ns, "link", "set", dev, "address", mac]);
        if let Some(addr) = addr {
            ip(&["-n", &ns, "addr", "add", addr, "dev", dev]);
        }
        ip(&["-n", &ns, "link", "set", dev, "up"]);
        hosts.push(ns);
    }
    let (srv, dhcpd_ns, cli) = (hosts[0].clone(), hosts[1].clone(), hosts[2].clone());

    let conf = lab.path("udhcpd.conf");
    let leases = lab.path("udhcpd.leases");
    std::fs::write(&leases, b"").unwrap();
    std::fs::write(
        &conf,
        format!(
            "start 198.18.0.50\nend 198.18.0.60\ninterface dhd0\nlease_file {}\noption subnet 255.255.255.0\noption lease 600\n",
            leases.display()
        ),
    )
    .unwrap();
    let mut udhcpd = Command::new("ip")
        .args(["netns", "exec", &dhcpd_ns, "busybox", "udhcpd", "-f"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(File::create(lab.path("udhcpd.log")).unwrap())
        .spawn()
        .unwrap();

    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let mut server = Server::start(&srv, site(PROXY_SITE), store.clone());
    let listen = socket_in(&cli, "cli0", SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68));

    // A UEFI x64 PXE client's DISCOVER (vendor class and option 93 as
    // firmware sends them). udhcpc is no PXE client: it takes the proxy's
    // address-less offer for an address offer and asks for 0.0.0.0, which
    // the proxy ignores; so it is run with a few tries only, to make the
    // DISCOVERs and capture what ironrack answers on the wire.
    let mut pxe_client = Command::new("ip")
        .args([
            "netns",
            "exec",
            &cli,
            "busybox",
            "udhcpc",
            "-f",
            "-q",
            "-n",
            "-i",
            "cli0",
            "-t",
            "2",
            "-T",
            "1",
            "-s",
            "/bin/true",
        ])
        .args(["-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let seen = collect_replies(&listen, || pxe_client.try_wait().unwrap().is_some());
    let proxy_offers: Vec<&Message> = seen
        .iter()
        .filter(|(from, m)| {
            *from == SocketAddr::from(([198, 18, 0, 1], 67))
                && m.opts().msg_type() == Some(MessageType::Offer)
        })
        .map(|(_, m)| m)
        .collect();
    assert!(
        !proxy_offers.is_empty(),
        "no proxy offer seen; got {} messages",
        seen.len()
    );
    for offer in &proxy_offers {
        assert_eq!(
            offer.yiaddr(),
            Ipv4Addr::UNSPECIFIED,
            "a proxy offers no address"
        );
        assert_eq!(offer.siaddr(), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(fname(offer), "snponly.efi");
        assert_eq!(
            offer.opts().get(OptionCode::ClassIdentifier),
            Some(&DhcpOption::ClassIdentifier(b"PXEClient".to_vec()))
        );
        assert_eq!(
            offer.opts().get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(Ipv4Addr::new(198, 18, 0, 1)))
        );
        assert!(offer.opts().get(OptionCode::AddressLeaseTime).is_none());
        assert!(offer.flags().broadcast());
    }
    server.wait_for("proxy offer", |e| {
        e.kind == DhcpEventKind::ProxyOffer && e.arch == Some(7)
    });
    server.wait_for("request on 67 ignored", |e| {
        e.kind == DhcpEventKind::Silent
            && e.reason
                .as_deref()
                .is_some_and(|r| r.contains("does not answer Request"))
    });
    drop(listen);

    // An ordinary DHCP client on the same segment: the site's server gives
    // the address, and the proxy stays out of the way.
    let mut client = udhcpc(&lab, &cli, &["-q"]);
    let bound = client_env(&lab, "bound");
    wait_exit(&mut client, &lab);
    assert_eq!(bound["serverid"], "198.18.0.2", "{bound:?}");
    let ip_addr: Ipv4Addr = bound["ip"].parse().unwrap();
    assert!((50..=60).contains(&ip_addr.octets()[3]), "{ip_addr}");
    assert!(!bound.contains_key("boot_file"), "{bound:?}");
    server.wait_for("plain client left alone", |e| {
        e.kind == DhcpEventKind::Silent
            && e.reason.as_deref().is_some_and(|r| r.contains("not a PXE"))
    });
    assert!(
        !server
            .drain()
            .iter()
            .any(|e| matches!(e.kind, DhcpEventKind::Offer | DhcpEventKind::Ack))
    );

    // The PXE client's next step: a REQUEST to the proxy's port 4011, from
    // the address it now has; the ACK comes back to that source.
    let pxe = socket_in(&cli, "cli0", SocketAddrV4::new(ip_addr, 0));
    let mut req = Message::new_with_id(
        42,
        ip_addr,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &[0x52, 0x54, 0, 0x12, 0, 7],
    );
    req.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Request));
    req.opts_mut()
        .insert(DhcpOption::ClientSystemArchitecture(7.into()));
    req.opts_mut().insert(DhcpOption::ClassIdentifier(
        b"PXEClient:Arch:00007:UNDI:003016".to_vec(),
    ));
    pxe.send_to(&encode(&req), "198.18.0.1:4011").unwrap();
    let got = collect_replies(&pxe, {
        let mut tries = 0;
        move || {
            tries += 1;
            tries > 10
        }
    });
    let (from, ack) = got
        .iter()
        .find(|(_, m)| m.xid() == 42)
        .expect("ACK from port 4011");
    assert_eq!(*from, SocketAddr::from(([198, 18, 0, 1], 4011)));
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(fname(ack), "snponly.efi");
    assert_eq!(ack.siaddr(), Ipv4Addr::new(198, 18, 0, 1));
    server.wait_for("proxy ack", |e| e.kind == DhcpEventKind::ProxyAck);
    assert!(
        store.leases().all_leases().unwrap().is_empty(),
        "a proxy stores no leases"
    );

    kill(&mut udhcpd);
    server.stop();
}

/// A DISCOVER from `mac` with the given raw options after option 53.
fn raw_discover(mac: [u8; 6], extra: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 1;
    p[1] = 1;
    p[2] = 6;
    p[4..8].copy_from_slice(&[1, 2, 3, 4]);
    p[28..34].copy_from_slice(&mac);
    p.extend_from_slice(&[99, 130, 83, 99, 53, 1, 1]);
    p.extend_from_slice(extra);
    p.push(255);
    p
}

#[test]
fn hostile_datagrams_are_refused_with_reasons_and_the_server_keeps_serving() {
    if skip("hostile_datagrams_are_refused_with_reasons_and_the_server_keeps_serving") {
        return;
    }
    let mut lab = Lab::new();
    let (srv, cli) = lab.pair("198.18.0.1/24", "52:54:00:12:00:01");
    ip(&["-n", &cli, "addr", "add", "198.18.0.200/24", "dev", "cli0"]);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let mut server = Server::start(&srv, auth_site("discover"), store);
    let mac = [0x52, 0x54, 0, 0x12, 0, 1];

    let mut hlen = raw_discover(mac, &[]);
    hlen[2] = 200;
    let mut no_magic = raw_discover(mac, &[]);
    no_magic[236..240].copy_from_slice(b"JUNK");
    let mut reply_op = raw_discover(mac, &[]);
    reply_op[0] = 2;
    let mut offer = raw_discover(mac, &[]);
    offer[242] = 2;
    let mut overrun = raw_discover(mac, &[]);
    overrun.pop();
    overrun.extend_from_slice(&[60, 250, b'P', b'X', b'E']);
    let mut no_type = raw_discover(mac, &[]);
    no_type.truncate(240);
    no_type.extend_from_slice(&[61, 7, 1, 0x52, 0x54, 0, 0x12, 0, 1, 255]);
    let noise: Vec<u8> = (0..1400u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "too short"),
        (vec![1; 100], "too short"),
        (hlen, "not Ethernet"),
        (no_magic, "no DHCP magic cookie"),
        (reply_op, "not BOOTREQUEST"),
        (offer, "not a client message"),
        (overrun, "runs past the end"),
        (raw_discover(mac, &[94, 0]), "option 94 has length 0"),
        (raw_discover(mac, &[80, 2, 0, 0]), "option 80 has length 2"),
        (raw_discover(mac, &[81, 1, 0]), "option 81 has length 1"),
        (no_type, "no DHCP message type"),
        (noise, ""),
    ];
    let sender = socket_in(
        &cli,
        "cli0",
        SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 200), 0),
    );
    for (i, (bytes, _)) in cases.iter().enumerate() {
        // Alternate unicast and broadcast: both paths reach the handler.
        let to = if i % 2 == 0 {
            "198.18.0.1:67"
        } else {
            "255.255.255.255:67"
        };
        sender.send_to(bytes, to).unwrap();
    }
    for (_, why) in &cases {
        let e = server.wait_for(why, |e| {
            e.kind == DhcpEventKind::Refused && e.reason.as_deref().unwrap().contains(why)
        });
        assert!(
            e.reason.unwrap().contains("from 198.18.0.200:"),
            "the refusal names the sender"
        );
    }
    let refused = server
        .drain()
        .iter()
        .filter(|e| e.kind == DhcpEventKind::Refused)
        .count();
    assert_eq!(
        refused,
        cases.len(),
        "each hostile datagram refused exactly once"
    );
    assert!(!server.seen.iter().any(|e| e.kind == DhcpEventKind::Offer));

    // Still serving: a real client gets its reservation.
    let mut client = udhcpc(&lab, &cli, &["-q"]);
    let bound = client_env(&lab, "bound");
    wait_exit(&mut client, &lab);
    assert_eq!(bound["ip"], "198.18.0.11");
    server.stop();
}

#[test]
fn relayed_requests_are_answered_to_the_relay_port() {
    if skip("relayed_requests_are_answered_to_the_relay_port") {
        return;
    }
    let mut lab = Lab::new();
    let (srv, relay_ns) = lab.pair("198.18.0.1/24", "52:54:00:aa:00:04");
    // The relay agent's address on the routed rack subnet, and the route
    // the server uses to reach it.
    ip(&[
        "-n",
        &relay_ns,
        "addr",
        "add",
        "198.18.4.1/24",
        "dev",
        "cli0",
    ]);
    ip(&[
        "-n",
        &relay_ns,
        "addr",
        "add",
        "198.18.0.4/24",
        "dev",
        "cli0",
    ]);
    ip(&[
        "-n",
        &srv,
        "route",
        "add",
        "198.18.4.0/24",
        "via",
        "198.18.0.4",
        "dev",
        "srv0",
    ]);
    let text = AUTH_SITE.replace("UNKNOWN", "ignore")
        + "[[relay]]\nsubnet = \"198.18.4.0/24\"\nrouter = \"198.18.4.1\"\n\
           [[rack]]\nname = \"r4\"\n[[rack.node]]\nmac = \"52:54:00:44:00:01\"\nhostname = \"gpu-r4-n1\"\nip = \"198.18.4.21\"\n";
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let mut server = Server::start(&srv, site(&text), store.clone());
    let relay = socket_in(
        &relay_ns,
        "cli0",
        SocketAddrV4::new(Ipv4Addr::new(198, 18, 4, 1), 67),
    );
    let chaddr = [0x52, 0x54, 0, 0x44, 0, 1];
    let relayed = |kind: MessageType, xid: u32| {
        let mut m = Message::new_with_id(
            xid,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::new(198, 18, 4, 1),
            &chaddr,
        );
        m.set_hops(1);
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        m
    };
    relay
        .send_to(&encode(&relayed(MessageType::Discover, 7)), "198.18.0.1:67")
        .unwrap();
    let got = collect_replies(&relay, {
        let mut n = 0;
        move || {
            n += 1;
            n > 10
        }
    });
    let (from, offer) = got
        .iter()
        .find(|(_, m)| m.xid() == 7)
        .expect("offer relayed back");
    assert_eq!(*from, SocketAddr::from(([198, 18, 0, 1], 67)));
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(198, 18, 4, 21));
    assert_eq!(offer.giaddr(), Ipv4Addr::new(198, 18, 4, 1));
    assert_eq!(
        offer.opts().get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![Ipv4Addr::new(198, 18, 4, 1)]))
    );

    let mut req = relayed(MessageType::Request, 8);
    req.opts_mut()
        .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(198, 18, 0, 1)));
    req.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(
            198, 18, 4, 21,
        )));
    relay.send_to(&encode(&req), "198.18.0.1:67").unwrap();
    let got = collect_replies(&relay, {
        let mut n = 0;
        move || {
            n += 1;
            n > 10
        }
    });
    let (_, ack) = got
        .iter()
        .find(|(_, m)| m.xid() == 8)
        .expect("ack relayed back");
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr(), Ipv4Addr::new(198, 18, 4, 21));
    let e = server.wait_for("ack", |e| e.kind == DhcpEventKind::Ack);
    assert_eq!(e.node.as_deref(), Some("gpu-r4-n1"));
    assert_eq!(
        store.leases().all_leases().unwrap()[0].ip,
        Ipv4Addr::new(198, 18, 4, 21)
    );
    server.stop();
}

#[test]
fn a_reloaded_site_applies_to_the_next_request() {
    if skip("a_reloaded_site_applies_to_the_next_request") {
        return;
    }
    let mut lab = Lab::new();
    let (srv, cli) = lab.pair("198.18.0.1/24", "52:54:00:12:00:09");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let mut server = Server::start(&srv, auth_site("ignore"), store);
    let status = Command::new("ip")
        .args([
            "netns",
            "exec",
            &cli,
            "busybox",
            "udhcpc",
            "-f",
            "-q",
            "-n",
            "-i",
            "cli0",
            "-t",
            "1",
            "-T",
            "1",
            "-s",
            "/bin/true",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "not in the site yet: no lease");
    server.wait_for("ignored", |e| e.kind == DhcpEventKind::Silent);

    // The operator adds the node and reloads; the server keeps running.
    let text = AUTH_SITE.replace("UNKNOWN", "ignore")
        + "[[rack.node]]\nmac = \"52:54:00:12:00:09\"\nhostname = \"gpu-r1-n9\"\nip = \"198.18.0.19\"\n";
    server.reload(site(&text));
    let mut client = udhcpc(&lab, &cli, &["-q"]);
    let bound = client_env(&lab, "bound");
    wait_exit(&mut client, &lab);
    assert_eq!(
        (bound["ip"].as_str(), bound["hostname"].as_str()),
        ("198.18.0.19", "gpu-r1-n9")
    );
    server.stop();
}
