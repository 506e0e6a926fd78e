//! A small asynchronous HTTP/1.1 client for the simulated nodes: one
//! request per connection (`Connection: close`, as iPXE and the agent do),
//! sent from the node's own address, the body streamed through a SHA-256
//! so a gigabyte rootfs costs no memory.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// A finished response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// The body, when asked to keep it.
    pub body: Vec<u8>,
    /// SHA-256 of the body.
    pub sha256: [u8; 32],
    /// Body bytes received.
    pub length: u64,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpFailure {
    /// Connect, send or receive failed or took longer than the timeout.
    Transport(String),
    /// The response is not HTTP/1.x as this client reads it.
    Malformed(String),
}

impl std::fmt::Display for HttpFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpFailure::Transport(e) => write!(f, "{e}"),
            HttpFailure::Malformed(e) => write!(f, "malformed response: {e}"),
        }
    }
}

/// Largest response head read.
const HEAD_CAP: usize = 16 << 10;

/// `method path` to `server` from `local`; the whole exchange must finish
/// within `timeout`. `keep` keeps the body (scripts, JSON); otherwise it
/// is only hashed and counted.
pub async fn request(
    local: Ipv4Addr,
    server: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&[u8]>,
    keep: bool,
    timeout: Duration,
) -> Result<Response, HttpFailure> {
    let exchange = exchange(local, server, method, path, json, keep);
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(HttpFailure::Transport(format!(
            "{method} {path}: no complete answer in {} s",
            timeout.as_secs()
        ))),
    }
}

async fn exchange(
    local: Ipv4Addr,
    server: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&[u8]>,
    keep: bool,
) -> Result<Response, HttpFailure> {
    let io = |what: &str| {
        let what = format!("{method} {path}: {what}");
        move |e: std::io::Error| HttpFailure::Transport(format!("{what}: {e}"))
    };
    let socket = TcpSocket::new_v4().map_err(io("socket"))?;
    socket
        .bind(SocketAddr::from((local, 0)))
        .map_err(io("bind"))?;
    let mut stream = socket.connect(server).await.map_err(io("connect"))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {server}\r\nUser-Agent: ironrack-storm\r\nConnection: close\r\n"
    );
    if let Some(body) = json {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(io("send"))?;
    if let Some(body) = json {
        stream.write_all(body).await.map_err(io("send"))?;
    }
    let mut buf = vec![0u8; 64 << 10];
    let mut got = Vec::new();
    let head_end = loop {
        let n = stream.read(&mut buf).await.map_err(io("receive"))?;
        if n == 0 {
            return Err(HttpFailure::Transport(format!(
                "{method} {path}: connection closed before the response head"
            )));
        }
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = find(&got, b"\r\n\r\n") {
            break end + 4;
        }
        if got.len() > HEAD_CAP {
            return Err(HttpFailure::Malformed("head too long".into()));
        }
    };
    let parsed = parse_head(&got[..head_end])?;
    let mut body = Body::new(keep);
    body.push(&got[head_end..]);
    loop {
        if parsed.length.is_some_and(|l| body.length >= l) {
            break;
        }
        let n = stream.read(&mut buf).await.map_err(io("receive"))?;
        if n == 0 {
            break;
        }
        body.push(&buf[..n]);
    }
    if parsed.length.is_some_and(|l| body.length != l) {
        return Err(HttpFailure::Transport(format!(
            "{method} {path}: body of {} bytes, Content-Length {}",
            body.length,
            parsed.length.unwrap_or_default()
        )));
    }
    Ok(Response {
        status: parsed.status,
        body: body.kept,
        sha256: body.hasher.finalize().into(),
        length: body.length,
    })
}

struct Body {
    keep: bool,
    kept: Vec<u8>,
    hasher: Sha256,
    length: u64,
}

impl Body {
    fn new(keep: bool) -> Body {
        Body {
            keep,
            kept: Vec::new(),
            hasher: Sha256::new(),
            length: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.length += bytes.len() as u64;
        if self.keep {
            self.kept.extend_from_slice(bytes);
        }
    }
}

/// Status and Content-Length of a response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// Content-Length, when given.
    pub length: Option<u64>,
}

/// Parses a response head (status line and headers, CRLF-terminated).
/// Chunked bodies are refused: the server sends lengths.
pub fn parse_head(head: &[u8]) -> Result<Head, HttpFailure> {
    let text = std::str::from_utf8(head).map_err(|_| HttpFailure::Malformed("not UTF-8".into()))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(HttpFailure::Malformed(format!(
            "status line {status_line:?}"
        )));
    };
    let status = code
        .parse()
        .ok()
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| HttpFailure::Malformed(format!("status line {status_line:?}")))?;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse()
                    .map_err(|_| HttpFailure::Malformed(format!("Content-Length {value:?}")))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") && value != "identity" {
            return Err(HttpFailure::Malformed(format!(
                "Transfer-Encoding {value} (this client reads lengths only)"
            )));
        }
    }
    Ok(Head { status, length })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_give_status_and_length() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nETag: x\r\n\r\n").unwrap();
        assert_eq!(
            h,
            Head {
                status: 200,
                length: Some(12)
            }
        );
        let h = parse_head(b"HTTP/1.0 404 Not Found\r\n\r\n").unwrap();
        assert_eq!(h.status, 404);
        assert_eq!(h.length, None);
        assert!(parse_head(b"SSH-2.0-x\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
    }

    proptest::proptest! {
        #[test]
        fn heads_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse_head(&raw);
        }
    }
}
