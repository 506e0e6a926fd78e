//! A small HTTP/1.1 file server for tests, on 127.0.0.1 and an ephemeral
//! port: GET with `Range: bytes=N-`, 404s, one request per connection, a
//! log of every request, and faults to inject (truncated or stalled
//! bodies). It stops when dropped, and by itself after ten minutes.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One request as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// The request path.
    pub path: String,
    /// The start of a `Range: bytes=N-` request.
    pub range: Option<u64>,
    /// The status answered.
    pub status: u16,
}

/// A fault applied to paths ending with a suffix.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Announce the full length, send `after` bytes, close.
    Truncate { suffix: String, after: u64 },
    /// Send `after` bytes, then wait (until the fault is cleared or the
    /// server stops) without closing.
    Stall { suffix: String, after: u64 },
}

struct Shared {
    root: PathBuf,
    log: Mutex<Vec<Logged>>,
    faults: Mutex<Vec<Fault>>,
    stop: AtomicBool,
}

/// The running server.
pub struct Server {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

const LIFETIME: Duration = Duration::from_secs(600);

impl Server {
    /// Serves `root`.
    pub fn start(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            root: root.to_owned(),
            log: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            while !s.stop.load(Ordering::Relaxed) && started.elapsed() < LIFETIME {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let s = s.clone();
                        std::thread::spawn(move || {
                            let _ = serve(&s, stream);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    /// The base URL of the served root.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a fault.
    pub fn fault(&self, fault: Fault) {
        self.shared.faults.lock().unwrap().push(fault);
    }

    /// Removes every fault (stalled responses then end, closing early).
    pub fn clear_faults(&self) {
        self.shared.faults.lock().unwrap().clear();
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Logged> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Requests for paths ending with `suffix`.
    pub fn requests_for(&self, suffix: &str) -> Vec<Logged> {
        self.log()
            .into_iter()
            .filter(|l| l.path.ends_with(suffix))
            .collect()
    }

    /// Forgets the log.
    pub fn clear_log(&self) {
        self.shared.log.lock().unwrap().clear();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(shared: &Shared, stream: TcpStream) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("range")
        {
            range = value
                .trim()
                .strip_prefix("bytes=")
                .and_then(|v| v.strip_suffix('-'))
                .and_then(|v| v.parse::<u64>().ok());
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_owned();
    let mut out = stream;
    let file = safe_join(&shared.root, &path).and_then(|p| std::fs::read(p).ok());
    let Some(data) = file else {
        log(shared, &path, range, 404);
        return out.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    };
    let start = range.filter(|&r| r < data.len() as u64).unwrap_or(0);
    let body = &data[start as usize..];
    let status = if start > 0 { 206 } else { 200 };
    log(shared, &path, range, status);
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n",
        if status == 206 {
            "Partial Content"
        } else {
            "OK"
        },
        body.len()
    );
    if status == 206 {
        head.push_str(&format!(
            "Content-Range: bytes {start}-{}/{}\r\n",
            data.len() - 1,
            data.len()
        ));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    let fault = shared
        .faults
        .lock()
        .unwrap()
        .iter()
        .find(|f| match f {
            Fault::Truncate { suffix, .. } | Fault::Stall { suffix, .. } => {
                path.ends_with(suffix.as_str())
            }
        })
        .cloned();
    match fault {
        None => out.write_all(body),
        Some(Fault::Truncate { after, .. }) => {
            out.write_all(&body[..(after as usize).min(body.len())])?;
            out.flush()
        }
        Some(Fault::Stall { after, suffix }) => {
            out.write_all(&body[..(after as usize).min(body.len())])?;
            out.flush()?;
            let started = Instant::now();
            while !shared.stop.load(Ordering::Relaxed) && started.elapsed() < LIFETIME {
                let still = shared
                    .faults
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|f| matches!(f, Fault::Stall { suffix: s, .. } if *s == suffix));
                if !still {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        }
    }
}

fn log(shared: &Shared, path: &str, range: Option<u64>, status: u16) {
    shared.log.lock().unwrap().push(Logged {
        path: path.to_owned(),
        range,
        status,
    });
}

/// The file under `root` for a request path, refusing `..`.
fn safe_join(root: &Path, path: &str) -> Option<PathBuf> {
    let rel = path.split('?').next()?.trim_start_matches('/');
    if rel.split('/').any(|c| c == ".." || c.is_empty()) {
        return None;
    }
    let p = root.join(rel);
    p.is_file().then_some(p)
}
