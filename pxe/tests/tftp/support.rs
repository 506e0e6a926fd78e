//! A served tree and a running server on a loopback port, per test.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ironrack_pxe::net::tftp::{DirSource, TftpConfig, TftpHandle, TftpServer, TransferEvent};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// A server serving a temporary directory on 127.0.0.1.
pub struct Harness {
    pub addr: SocketAddr,
    pub root: PathBuf,
    pub handle: TftpHandle,
    pub events: mpsc::Receiver<TransferEvent>,
    /// Parent of `root`: holds files outside the served tree.
    pub outside: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut TftpConfig)) -> Self {
        capture_logs();
        let outside = tempfile::tempdir().unwrap();
        let root = outside.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let mut config = TftpConfig {
            root: root.clone(),
            listen: "127.0.0.1:0".parse().unwrap(),
            retransmit_timeout_ms: 200,
            max_retransmit_timeout_ms: 1000,
            ..TftpConfig::default()
        };
        tweak(&mut config);
        // A test that stretches the first timeout stretches the ceiling.
        config.max_retransmit_timeout_ms = config
            .max_retransmit_timeout_ms
            .max(config.retransmit_timeout_ms);
        let files = DirSource::open(&root).unwrap();
        let (tx, events) = mpsc::channel(1024);
        let server = TftpServer::bind(config, Arc::new(files), Arc::new(tx))
            .await
            .unwrap();
        let addr = server.local_addr();
        let handle = server.handle();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            root,
            handle,
            events,
            outside,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Writes a world-readable file into the served tree.
    pub fn put(&self, name: &str, content: &[u8]) -> PathBuf {
        let path = self.root.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, content).unwrap();
        path
    }

    /// The next event, waiting at most 30 s (a hung server fails the test
    /// instead of hanging it).
    pub async fn next_event(&mut self) -> TransferEvent {
        tokio::time::timeout(Duration::from_secs(30), self.events.recv())
            .await
            .expect("no TFTP event within 30 s")
            .expect("event channel closed")
    }

    /// Waits for the next event that ends a request (completed, failed or
    /// refused), skipping `Started`.
    pub async fn next_outcome(&mut self) -> TransferEvent {
        loop {
            match self.next_event().await {
                TransferEvent::Started { .. } => continue,
                other => return other,
            }
        }
    }

    /// Stops the server and waits for it to finish its transfers.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

/// Deterministic test content (not compressible to nothing, not all equal).
pub fn content(len: usize, seed: u8) -> Vec<u8> {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect()
}

/// Fails loudly when a Debian package the tests need is missing.
pub fn require_tool(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is missing: run scripts/deps.sh (it installs curl, atftp and tftp-hpa)"
    );
}

/// Every log line the server wrote during this test binary's run.
pub fn logs() -> String {
    let buffer = LOGS.get().expect("capture_logs not called");
    String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned()
}

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = LogWriter(Arc::clone(&buffer));
        tracing_subscriber::fmt()
            .with_env_filter("ironrack_pxe=debug")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        buffer
    });
}

/// Reads a file from disk.
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
