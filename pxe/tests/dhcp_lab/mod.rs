//! Shared harness of the DHCP tests that need root: network namespaces made
//! and removed by the test, the DHCP server on a thread inside one of them,
//! and sockets created inside a namespace.

#![allow(dead_code)] // each test binary uses its own subset

use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dhcproto::v4::Message;
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use ironrack_pxe::net::dhcp::{DhcpEvent, DhcpServer};
use ironrack_pxe::site::Site;
use ironrack_pxe::store::Store;
use tokio::sync::{mpsc, oneshot, watch};

/// Generous bound for anything a client or the server must do: these tests
/// wait for events, they do not time them.
pub const PATIENCE: Duration = Duration::from_secs(60);

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// True (and a loud SKIP line) when this test cannot run here. The line is
/// written to stderr directly, not through `eprintln!`, so the test
/// harness's output capture does not swallow it.
pub fn skip(test: &str) -> bool {
    if is_root() {
        for tool in ["ip", "busybox"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output();
            assert!(
                found.is_ok_and(|o| o.status.success()),
                "{test}: `{tool}` is missing; run scripts/deps.sh"
            );
        }
        return false;
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIP {test}: needs root for network namespaces (CI runs as root) *** NOT TESTED ***"
    );
    true
}

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Network namespaces made for one test, deleted on drop.
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    pub dir: tempfile::TempDir,
}

impl Lab {
    pub fn new() -> Lab {
        let n = NEXT_LAB.fetch_add(1, Ordering::SeqCst);
        Lab {
            prefix: format!("irdhcp{}x{n}", std::process::id()),
            namespaces: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn ns(&mut self, role: &str) -> String {
        let name = format!("{}{role}", self.prefix);
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        self.namespaces.push(name.clone());
        name
    }

    /// Server and client namespaces joined by a veth pair: `srv0` on the
    /// server side with `server_addr`, `cli0` on the client side with `mac`.
    pub fn pair(&mut self, server_addr: &str, mac: &str) -> (String, String) {
        let srv = self.ns("s");
        let cli = self.ns("c");
        ip(&[
            "-n", &srv, "link", "add", "srv0", "type", "veth", "peer", "name", "cli0", "netns",
            &cli,
        ]);
        ip(&["-n", &srv, "addr", "add", server_addr, "dev", "srv0"]);
        ip(&["-n", &srv, "link", "set", "srv0", "up"]);
        ip(&["-n", &cli, "link", "set", "cli0", "address", mac]);
        ip(&["-n", &cli, "link", "set", "cli0", "up"]);
        (srv, cli)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Moves the calling thread into a network namespace (setns is per thread).
pub fn enter_ns(ns: &str) {
    let fd = File::open(format!("/run/netns/{ns}")).expect("namespace file");
    nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// The DHCP server running on its own thread inside a namespace.
pub struct Server {
    events: mpsc::UnboundedReceiver<DhcpEvent>,
    pub seen: Vec<DhcpEvent>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    site: watch::Sender<Arc<Site>>,
}

impl Server {
    pub fn start(ns: &str, site: Site, store: Arc<dyn Store>) -> Server {
        let (site_tx, site_rx) = watch::channel(Arc::new(site));
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let ns = ns.to_owned();
        let thread = std::thread::spawn(move || {
            enter_ns(&ns);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let bound = DhcpServer::new(site_rx, store, Arc::new(ev_tx))
                    .bind()
                    .await;
                let bound = match bound {
                    Ok(b) => b,
                    Err(e) => {
                        ready_tx.send(Err(e.to_string())).unwrap();
                        return;
                    }
                };
                ready_tx.send(Ok(())).unwrap();
                bound
                    .run(async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        ready_rx
            .recv_timeout(PATIENCE)
            .expect("server thread")
            .expect("server binds");
        Server {
            events: ev_rx,
            seen: Vec::new(),
            shutdown: Some(stop_tx),
            thread: Some(thread),
            site: site_tx,
        }
    }

    /// Waits for an event matching `pred`, keeping every event seen.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&DhcpEvent) -> bool) -> DhcpEvent {
        if let Some(e) = self.seen.iter().find(|e| pred(e)) {
            return e.clone();
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.events.try_recv() {
                Ok(e) => {
                    self.seen.push(e.clone());
                    if pred(&e) {
                        return e;
                    }
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(_) => panic!("no {what} event; seen: {:#?}", self.seen),
            }
        }
    }

    pub fn drain(&mut self) -> &[DhcpEvent] {
        while let Ok(e) = self.events.try_recv() {
            self.seen.push(e);
        }
        &self.seen
    }

    /// What a SIGHUP does: hand the running server a new site.
    pub fn reload(&self, site: Site) {
        self.site.send(Arc::new(site)).unwrap();
    }

    pub fn stop(mut self) {
        self.shutdown.take().unwrap().send(()).unwrap();
        self.thread.take().unwrap().join().unwrap();
    }
}

pub fn site(text: &str) -> Site {
    Site::from_toml(Path::new("site.toml"), text).expect("test site")
}

/// A UDP socket inside namespace `ns`, bound to `addr` on device `dev`.
/// Sockets keep the namespace they were created in, so a short-lived
/// thread enters the namespace, creates it and hands it back.
pub fn socket_in(ns: &str, dev: &str, addr: SocketAddrV4) -> UdpSocket {
    let (ns, dev) = (ns.to_owned(), dev.to_owned());
    std::thread::spawn(move || {
        enter_ns(&ns);
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .unwrap();
        s.set_reuse_address(true).unwrap();
        s.set_broadcast(true).unwrap();
        s.bind_device(Some(dev.as_bytes())).unwrap();
        s.bind(&SocketAddr::V4(addr).into()).unwrap();
        let s: UdpSocket = s.into();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        s
    })
    .join()
    .unwrap()
}

/// Every DHCP message received on `socket` until `done` says stop (or the
/// patience runs out: the caller's assertions then say what was missing).
pub fn collect_replies(
    socket: &UdpSocket,
    mut done: impl FnMut() -> bool,
) -> Vec<(SocketAddr, Message)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        if Instant::now() > deadline {
            break;
        }
        if let Ok((n, from)) = socket.recv_from(&mut buf)
            && let Ok(m) = Message::decode(&mut Decoder::new(&buf[..n]))
        {
            got.push((from, m));
        }
    }
    got
}

pub fn encode(m: &Message) -> Vec<u8> {
    let mut buf = Vec::new();
    m.encode(&mut Encoder::new(&mut buf)).unwrap();
    buf
}

pub fn fname(m: &Message) -> String {
    String::from_utf8_lossy(m.fname().unwrap_or_default())
        .trim_end_matches('\0')
        .to_owned()
}
