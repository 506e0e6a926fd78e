//! Harness of the `ironrack serve` tests: a network namespace with a bridge
//! (198.18.0.1/24, addresses from 198.18.0.0/15 only), the real binary
//! running in it, signed test images, the real `ipxe` package, and
//! helpers to run clients inside the namespace. Everything is removed on
//! drop (processes by PID, then the namespaces).

#![allow(dead_code)] // each test binary uses its own subset

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ironrack_pxe::testkit::{self, SigningWorld};

pub const SERVER_IP: &str = "198.18.0.1";
pub const BASE_URL: &str = "http://198.18.0.1:8080";
pub const PATIENCE: Duration = Duration::from_secs(60);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// True (after a loud SKIP line) when not root: namespaces need root, and
/// CI runs as root.
pub fn skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIP {test}: needs root for network namespaces (CI runs as root) *** NOT TESTED ***"
    );
    true
}

/// Panics naming the first of `tools` that is not installed: a root test
/// that runs must not skip silently for want of a package.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn require_tools(test: &str, tools: &[&str]) {
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(found, "{test}: {tool} is missing; run scripts/deps.sh");
    }
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

/// Downloads and test artifacts shared by all tests of a run.
pub fn cache() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-cache");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The real `ipxe` .deb (apt-get download, cached).
pub fn ipxe_deb() -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    testkit::download(&cache(), testkit::IPXE_PACKAGE).unwrap()
}

pub struct Lab {
    pub ns: String,
    namespaces: Vec<String>,
    pub dir: tempfile::TempDir,
    pub world: SigningWorld,
    server: Option<Child>,
    pub log: PathBuf,
}

impl Lab {
    /// A namespace with bridge br0 (198.18.0.1/24) and tap0 on it.
    pub fn new() -> Lab {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let ns = format!("irsrv{}x{n}", std::process::id());
        ip(&["netns", "add", &ns]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["-n", &ns, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &ns, "addr", "add", "198.18.0.1/24", "dev", "br0"]);
        ip(&["-n", &ns, "link", "set", "br0", "up"]);
        ip(&["-n", &ns, "tuntap", "add", "tap0", "mode", "tap"]);
        ip(&["-n", &ns, "link", "set", "tap0", "master", "br0", "up"]);
        let dir = tempfile::tempdir().unwrap();
        let world = SigningWorld::new(dir.path()).unwrap();
        let log = dir.path().join("serve.log");
        Lab {
            namespaces: vec![ns.clone()],
            ns,
            dir,
            world,
            server: None,
            log,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A client namespace joined to the bridge by a veth; its end is `cli0`
    /// with `mac`.
    pub fn client(&mut self, mac: &str) -> String {
        let cli = format!("{}c{}", self.ns, self.namespaces.len());
        ip(&["netns", "add", &cli]);
        ip(&["-n", &cli, "link", "set", "lo", "up"]);
        ip(&[
            "-n", &self.ns, "link", "add", "vcli", "type", "veth", "peer", "name", "cli0", "netns",
            &cli,
        ]);
        ip(&["-n", &self.ns, "link", "set", "vcli", "master", "br0", "up"]);
        ip(&["-n", &cli, "link", "set", "cli0", "address", mac]);
        ip(&["-n", &cli, "link", "set", "cli0", "up"]);
        self.namespaces.push(cli.clone());
        cli
    }

    /// Writes site.toml: the bridge, authoritative DHCP, the iPXE package,
    /// images in `out/`, and `nodes` (TOML of `[[rack.node]]` entries).
    pub fn write_site(&self, nodes: &str) -> PathBuf {
        let site = format!(
            r#"[server]
http-base-url = "{BASE_URL}"
database = "state.db"
unknown-nodes = "enroll"

[images]
dirs = ["out"]
trust-root = "trust.json"

[dhcp]
mode = "authoritative"
lease-time = 600

[[interface]]
name = "br0"
address = "198.18.0.1/24"
router = "198.18.0.1"
pool = {{ start = "198.18.0.100", end = "198.18.0.120" }}

[boot]
ipxe-deb = "{deb}"

[tftp]
root = "tftp"

[[rack]]
name = "r1"
{nodes}"#,
            deb = ipxe_deb().display()
        );
        let path = self.path("site.toml");
        std::fs::write(&path, site).unwrap();
        path
    }

    /// Starts `ironrack serve` in the namespace and waits until HTTP answers.
    pub fn serve(&mut self) {
        // Appended: a restarted server keeps the first run's log.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(env!("CARGO_BIN_EXE_ironrack"))
            .args(["-v", "serve", "--site"])
            .arg(self.path("site.toml"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting ironrack serve");
        self.server = Some(child);
        let deadline = Instant::now() + PATIENCE;
        loop {
            let out = self.in_ns(&[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "--max-time",
                "1",
                &format!("{BASE_URL}/metrics"),
            ]);
            if out.status.success() {
                return;
            }
            if let Some(Ok(Some(status))) = self.server.as_mut().map(Child::try_wait) {
                panic!("ironrack serve exited ({status}):\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "ironrack serve never answered:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let child = self.server.as_ref().expect("server running");
        // `ip netns exec` execs the program: the PID is ironrack's.
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let mut child = self.server.take().unwrap();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "ironrack serve did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, as a crash or a pulled plug would end it, and reap it.
    pub fn kill(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let mut child = self.server.take().unwrap();
        let _ = child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the server's log contains `text`.
    pub fn wait_log(&self, text: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self.log_text().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no {text:?} in the server log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn in_ns(&self, args: &[&str]) -> Output {
        in_ns(&self.ns, args)
    }

    /// `ironrack ARGS` (outside the namespace: it only reads files).
    pub fn ironrack(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ironrack"))
            .args(args)
            .output()
            .unwrap()
    }

    pub fn http_json(&self, path: &str) -> serde_json::Value {
        let out = self.in_ns(&[
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "10",
            &format!("{BASE_URL}{path}"),
        ]);
        assert!(
            out.status.success(),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

pub fn in_ns(ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap()
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Whether `want` occurs in `seen` in this order (others may sit between).
pub fn in_order(seen: &[String], want: &[&str]) -> bool {
    let mut it = seen.iter();
    want.iter().all(|w| it.any(|s| s == w))
}

/// Retries `check` until it gives `Ok` (bounded by [`PATIENCE`]; nothing
/// is timed): for state the server commits asynchronously.
pub fn eventually<T>(mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) => assert!(
                Instant::now() < deadline,
                "never came true; last seen:\n{last}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
