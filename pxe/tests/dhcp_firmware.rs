//! The DHCP server against real boot firmware: qemu (TCG) with SeaBIOS and
//! the NIC's iPXE ROM, and with OVMF's own UEFI PXE, on a bridge in a
//! network namespace this test creates (198.18.0.0/15 inside it only).
//!
//! Proof that the firmware accepted the DHCP answer is what it does next:
//! iPXE fetches the per-node script over HTTP and UEFI PXE asks for the boot
//! file over TFTP. The test listens on those ports and reads the first
//! request (no file is served: TFTP and HTTP belong to other parts).
//!
//! Needs root, qemu-system-x86, ovmf and ipxe-qemu (scripts/deps.sh);
//! without root: a loud SKIP.

use std::fs::File;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironrack_pxe::net::dhcp::DhcpEventKind;
use ironrack_pxe::store::{SqliteStore, Store};

mod dhcp_lab;
use dhcp_lab::*;

/// Firmware under TCG is slow to reach its network stack; this bounds the
/// wait, it does not time anything.
const FIRMWARE_PATIENCE: Duration = Duration::from_secs(240);

const NODE_MAC: &str = "52:54:00:12:00:01";

fn site_text(mode: &str) -> String {
    let (addressing, node_ip) = if mode == "authoritative" {
        ("router = \"198.18.0.1\"\n", "ip = \"198.18.0.11\"\n")
    } else {
        ("", "")
    };
    format!(
        "[server]\nhttp-base-url = \"http://198.18.0.1:8080\"\n\
         [images]\ndirs = []\ntrust-root = \"/trust.json\"\n\
         [dhcp]\nmode = \"{mode}\"\nlease-time = 600\n\
         [[interface]]\nname = \"br0\"\naddress = \"198.18.0.1/24\"\n{addressing}\
         [[rack]]\nname = \"r1\"\n[[rack.node]]\nmac = \"{NODE_MAC}\"\nhostname = \"gpu-r1-n1\"\n{node_ip}"
    )
}

/// A namespace with bridge `br0` (198.18.0.1/24) and a tap for qemu; in
/// proxy mode also busybox udhcpd on a second host of the bridge, as the
/// site's own DHCP server.
struct Segment {
    ns: String,
    udhcpd: Option<Child>,
}

fn segment(lab: &mut Lab, proxy: bool) -> Segment {
    let ns = lab.ns("f");
    ip(&["-n", &ns, "link", "add", "br0", "type", "bridge"]);
    ip(&["-n", &ns, "addr", "add", "198.18.0.1/24", "dev", "br0"]);
    ip(&["-n", &ns, "link", "set", "br0", "up"]);
    ip(&["-n", &ns, "tuntap", "add", "tap0", "mode", "tap"]);
    ip(&["-n", &ns, "link", "set", "tap0", "master", "br0", "up"]);
    let mut udhcpd = None;
    if proxy {
        let dns = lab.ns("d");
        ip(&[
            "-n", &ns, "link", "add", "lan-d", "type", "veth", "peer", "name", "dhd0", "netns",
            &dns,
        ]);
        ip(&["-n", &ns, "link", "set", "lan-d", "master", "br0", "up"]);
        ip(&["-n", &dns, "addr", "add", "198.18.0.2/24", "dev", "dhd0"]);
        ip(&["-n", &dns, "link", "set", "dhd0", "up"]);
        let conf = lab.path("udhcpd.conf");
        let leases = lab.path("udhcpd.leases");
        std::fs::write(&leases, b"").unwrap();
        std::fs::write(
            &conf,
            format!(
                "start 198.18.0.50\nend 198.18.0.60\ninterface dhd0\nlease_file {}\noption subnet 255.255.255.0\n",
                leases.display()
            ),
        )
        .unwrap();
        udhcpd = Some(
            Command::new("ip")
                .args(["netns", "exec", &dns, "busybox", "udhcpd", "-f"])
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    Segment { ns, udhcpd }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if let Some(mut c) = self.udhcpd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

enum Firmware {
    /// SeaBIOS; the virtio NIC's ROM is iPXE (ipxe-qemu).
    BiosIpxe,
    /// OVMF with its own virtio driver and PXE (no option ROM).
    UefiPxe,
}

fn qemu(lab: &Lab, ns: &str, firmware: &Firmware) -> Child {
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        ns,
        "qemu-system-x86_64",
        "-accel",
        "tcg",
        "-m",
        "256",
        "-display",
        "none",
        "-no-reboot",
    ])
    .arg("-serial")
    .arg(format!("file:{}", lab.path("console.log").display()))
    .args(["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"]);
    match firmware {
        Firmware::BiosIpxe => {
            cmd.args([
                "-boot",
                "n",
                "-device",
                &format!("virtio-net-pci,netdev=n0,mac={NODE_MAC}"),
            ]);
        }
        Firmware::UefiPxe => {
            let vars = lab.path("OVMF_VARS.fd");
            std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars).unwrap();
            cmd.args([
                "-drive",
                "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
            ])
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=1,file={}",
                vars.display()
            ))
            .args([
                "-device",
                &format!("virtio-net-pci,netdev=n0,mac={NODE_MAC},romfile="),
            ]);
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(lab.path("qemu.log")).unwrap())
        .spawn()
        .expect("starting qemu")
}

/// Waits for the first HTTP request line on 198.18.0.1:8080 in `ns`.
fn first_http_request(ns: &str) -> String {
    let ns = ns.to_owned();
    let listener = std::thread::spawn(move || {
        enter_ns(&ns);
        TcpListener::bind("198.18.0.1:8080").unwrap()
    })
    .join()
    .unwrap();
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + FIRMWARE_PATIENCE;
    loop {
        match listener.accept() {
            Ok((mut conn, _)) => {
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut buf = [0u8; 1024];
                let n = conn.read(&mut buf).unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                return text.lines().next().unwrap_or_default().to_owned();
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("no HTTP request from the firmware: {e}"),
        }
    }
}

/// Waits for the first TFTP read request on 198.18.0.1:69 in `ns`; returns
/// the file name.
fn first_tftp_request(ns: &str) -> String {
    let ns = ns.to_owned();
    let socket = std::thread::spawn(move || {
        enter_ns(&ns);
        UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 69)).unwrap()
    })
    .join()
    .unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let deadline = Instant::now() + FIRMWARE_PATIENCE;
    let mut buf = [0u8; 1024];
    loop {
        if let Ok((n, _)) = socket.recv_from(&mut buf)
            && n > 2
            && buf[..2] == [0, 1]
        {
            let name = buf[2..n].split(|b| *b == 0).next().unwrap_or_default();
            return String::from_utf8_lossy(name).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no TFTP request from the firmware"
        );
    }
}

fn run_case(test: &str, proxy: bool, firmware: Firmware) -> (Server, String, Lab) {
    let mut lab = Lab::new();
    let seg = segment(&mut lab, proxy);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let mode = if proxy { "proxy" } else { "authoritative" };
    let mut server = Server::start(&seg.ns, site(&site_text(mode)), store);
    let ns = seg.ns.clone();
    let observe = std::thread::spawn({
        let ns = ns.clone();
        let http = matches!(firmware, Firmware::BiosIpxe);
        move || {
            if http {
                first_http_request(&ns)
            } else {
                first_tftp_request(&ns)
            }
        }
    });
    // Give the observer a moment to bind before the firmware can ask.
    std::thread::sleep(Duration::from_millis(200));
    let mut vm = qemu(&lab, &ns, &firmware);
    let seen = observe.join();
    let _ = vm.kill();
    let _ = vm.wait();
    drop(seg);
    let seen = seen.unwrap_or_else(|_| {
        let events: Vec<String> = server
            .drain()
            .iter()
            .map(|e| {
                format!(
                    "{} {:?} ip={:?} arch={:?} boot={:?} reason={:?}",
                    e.kind.as_str(),
                    e.mac,
                    e.ip,
                    e.arch,
                    e.boot,
                    e.reason
                )
            })
            .collect();
        panic!(
            "{test}: firmware never fetched its boot file; DHCP events:\n{}\nconsole:\n{}",
            events.join("\n"),
            std::fs::read_to_string(lab.path("console.log")).unwrap_or_default()
        )
    });
    (server, seen, lab)
}

/// Whether `want` occurs in `seen` in this order (other events between).
fn in_order(seen: &[&str], want: &[&str]) -> bool {
    let mut it = seen.iter();
    want.iter().all(|w| it.any(|s| s == w))
}

fn have_qemu(test: &str) -> bool {
    if skip(test) {
        return false;
    }
    for path in [
        "/usr/bin/qemu-system-x86_64",
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/lib/ipxe/qemu/efi-virtio.rom",
    ] {
        assert!(
            std::path::Path::new(path).exists(),
            "{test}: {path} is missing; run scripts/deps.sh"
        );
    }
    true
}

#[test]
fn bios_ipxe_rom_takes_the_script_url_authoritative() {
    if !have_qemu("bios_ipxe_rom_takes_the_script_url_authoritative") {
        return;
    }
    let (mut server, request, _lab) = run_case("bios authoritative", false, Firmware::BiosIpxe);
    assert_eq!(request, "GET /boot/52-54-00-12-00-01.ipxe HTTP/1.1");
    let ack = server.wait_for("ack", |e| e.kind == DhcpEventKind::Ack);
    assert_eq!(ack.ip, Some(Ipv4Addr::new(198, 18, 0, 11)));
    assert_eq!(ack.node.as_deref(), Some("gpu-r1-n1"));
    server.stop();
}

#[test]
fn uefi_pxe_takes_snponly_over_tftp_authoritative() {
    if !have_qemu("uefi_pxe_takes_snponly_over_tftp_authoritative") {
        return;
    }
    let (mut server, file, _lab) = run_case("uefi authoritative", false, Firmware::UefiPxe);
    assert_eq!(file, "snponly.efi");
    let ack = server.wait_for("ack", |e| e.kind == DhcpEventKind::Ack);
    assert_eq!(ack.arch, Some(7), "OVMF x64 reports EFI BC");
    // EDK2 takes an offer saying PXEClient without a boot menu for a
    // "BINL" offer and asks port 4011 for the boot file before loading it.
    let kinds: Vec<&str> = server.drain().iter().map(|e| e.kind.as_str()).collect();
    assert!(
        in_order(&kinds, &["dhcp-offer", "dhcp-ack", "dhcp-proxy-ack"]),
        "{kinds:?}"
    );
    server.stop();
}

#[test]
fn bios_ipxe_rom_uses_the_proxy_beside_udhcpd() {
    if !have_qemu("bios_ipxe_rom_uses_the_proxy_beside_udhcpd") {
        return;
    }
    let (mut server, request, _lab) = run_case("bios proxy", true, Firmware::BiosIpxe);
    assert_eq!(request, "GET /boot/52-54-00-12-00-01.ipxe HTTP/1.1");
    server.wait_for("proxy offer", |e| e.kind == DhcpEventKind::ProxyOffer);
    assert!(
        !server
            .drain()
            .iter()
            .any(|e| matches!(e.kind, DhcpEventKind::Offer | DhcpEventKind::Ack))
    );
    server.stop();
}

#[test]
fn uefi_pxe_uses_the_proxy_and_port_4011_beside_udhcpd() {
    if !have_qemu("uefi_pxe_uses_the_proxy_and_port_4011_beside_udhcpd") {
        return;
    }
    let (mut server, file, _lab) = run_case("uefi proxy", true, Firmware::UefiPxe);
    assert_eq!(file, "snponly.efi");
    server.wait_for("proxy offer", |e| e.kind == DhcpEventKind::ProxyOffer);
    let kinds: Vec<&str> = server.drain().iter().map(|e| e.kind.as_str()).collect();
    assert!(
        !kinds.contains(&"dhcp-offer") && !kinds.contains(&"dhcp-ack"),
        "{kinds:?}"
    );
    assert!(
        in_order(&kinds, &["dhcp-proxy-offer", "dhcp-proxy-ack"]),
        "{kinds:?}"
    );
    server.stop();
}
