//! A running HTTP server over signed test images.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use ironrack_keys::{Timestamp, Trust};
use ironrack_pxe::images::{ImageStore, IpxeBinaries, LoadOptions};
use ironrack_pxe::inventory::Inventory;
use ironrack_pxe::net::http::{HttpHandle, HttpServer, HttpState};
use ironrack_pxe::site::Site;
use ironrack_pxe::store::{SqliteStore, Store};
use ironrack_pxe::testkit::SigningWorld;
use tokio::sync::oneshot;

pub const GOOD_MAC: &str = "52:54:00:00:00:01";

pub fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

pub fn site_text(dir: &Path, extra_node: &str) -> String {
    format!(
        r#"
[server]
http-base-url = "http://127.0.0.1:8080"
unknown-nodes = "enroll"
database = "state.db"
[images]
dirs = ["{out}"]
trust-root = "{trust}"
[dhcp]
mode = "proxy"
[[interface]]
name = "lo"
address = "127.0.0.1/8"
[http]
retry-initial-seconds = 3
[[rack]]
name = "r1"
[[rack.node]]
mac = "{GOOD_MAC}"
hostname = "n1"
image = "gpu-node"
{extra_node}
"#,
        out = dir.join("out").display(),
        trust = dir.join("trust.json").display()
    )
}

pub struct Lab {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub store: Arc<SqliteStore>,
    pub inventory: Arc<Inventory>,
    pub handle: HttpHandle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub fn load_images(dir: &Path, memory_budget: u64, previous: Option<&ImageStore>) -> ImageStore {
    let trust = Trust::load(&dir.join("trust.json"), &[]).unwrap();
    ImageStore::load(
        &[dir.join("out")],
        &LoadOptions {
            trust: Ok(&trust),
            now: Timestamp::now(),
            memory_budget,
            previous,
        },
    )
}

impl Lab {
    /// Signing keys and an empty image tree; call `start` after adding images.
    pub fn setup() -> (tempfile::TempDir, SigningWorld) {
        let dir = tempfile::tempdir().unwrap();
        let world = SigningWorld::new(dir.path()).unwrap();
        (dir, world)
    }

    pub fn file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join("src").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    pub fn start(
        dir: tempfile::TempDir,
        world: SigningWorld,
        extra_node: &str,
        memory_budget: u64,
    ) -> Lab {
        let site = Arc::new(
            Site::from_toml(
                &dir.path().join("site.toml"),
                &site_text(dir.path(), extra_node),
            )
            .unwrap(),
        );
        let images = Arc::new(load_images(dir.path(), memory_budget, None));
        let store = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
        let inventory = Inventory::start(store.clone() as Arc<dyn Store>, site.clone());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (st, inv) = (store.clone() as Arc<dyn Store>, inventory.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let state = HttpState {
                    site,
                    images,
                    ipxe: Arc::new(IpxeBinaries::default()),
                };
                let server = HttpServer::bind(&["127.0.0.1:0".parse().unwrap()], state, st, inv)
                    .await
                    .unwrap();
                ready_tx
                    .send((server.local_addrs()[0], server.handle()))
                    .unwrap();
                server
                    .run(async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let (addr, handle) = ready_rx.recv().unwrap();
        drop(world);
        Lab {
            dir,
            addr,
            store,
            inventory,
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Swaps in a new site text and re-verified images, as a reload does.
    pub fn reload(&self, extra_node: &str, memory_budget: u64) {
        let site = Arc::new(
            Site::from_toml(
                &self.dir.path().join("site.toml"),
                &site_text(self.dir.path(), extra_node),
            )
            .unwrap(),
        );
        self.handle.replace_state(HttpState {
            site,
            images: Arc::new(load_images(self.dir.path(), memory_budget, None)),
            ipxe: Arc::new(IpxeBinaries::default()),
        });
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs curl; returns (exit code, stdout bytes, stderr text).
pub fn curl(args: &[&str]) -> (i32, Vec<u8>, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl (scripts/deps.sh installs it)");
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `curl -w '%{http_code}'` with the body discarded; returns the status.
pub fn status(args: &[&str]) -> u16 {
    let mut all = vec!["-o", "/dev/null", "-w", "%{http_code}"];
    all.extend_from_slice(args);
    let (_, out, _) = curl(&all);
    String::from_utf8_lossy(&out).parse().unwrap_or(0)
}

/// Response headers of a request (`-D -`), lowercased names.
pub fn headers(args: &[&str]) -> String {
    let mut all = vec!["-o", "/dev/null", "-D", "-"];
    all.extend_from_slice(args);
    let (_, out, _) = curl(&all);
    String::from_utf8_lossy(&out).to_lowercase()
}

pub fn json(url: &str) -> serde_json::Value {
    let (code, out, err) = curl(&["--fail", url]);
    assert_eq!(code, 0, "{url}: {err}");
    serde_json::from_slice(&out).unwrap()
}
