//! A small blocking HTTP/1.1 client for the agent: `http://` only, one
//! request per connection (`Connection: close`), read and write timeouts,
//! bodies framed by Content-Length, chunked encoding or the end of the
//! connection, every body capped, redirects not followed (a 3xx is an
//! answer like any other status).
//!
//! The initramfs has no TLS stack and needs none: every byte the agent
//! boots is checked against the signed manifest, and attestation messages
//! carry their own proofs (TPM signatures over server nonces).
//!
//! [`HttpClient`] implements [`AttestClient`] on the routes of
//! [`crate::attest::protocol`]. A 404 there (or a 405: a server that
//! serves only GET) means the server has no attestation service: the client answers that as a refusal
//! ([`NOT_ATTESTING`]), so the agent stops instead of booting unattested.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::attest::protocol::{self, AttestClient, Request, Response, Verdict};

/// Longest status line plus headers the client reads.
pub const MAX_HEAD: usize = 16 << 10;
/// Longest chunk-size line (with extensions) or trailer line.
const MAX_LINE: usize = 1024;
/// How long a connect, a read or a write may stall.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// The refusal code the client gives when the server has no `/attest/*`.
pub const NOT_ATTESTING: &str = "server-does-not-attest";

/// A response that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The head is longer than [`MAX_HEAD`].
    #[error("response head longer than {MAX_HEAD} bytes")]
    HeadTooLong,
    /// The connection ended inside the head.
    #[error("connection closed inside the response head")]
    HeadTruncated,
    /// The status line is not `HTTP/1.x NNN reason`.
    #[error("bad status line {0:?}")]
    StatusLine(String),
    /// A header line is not `name: value`.
    #[error("bad header line {0:?}")]
    Header(String),
    /// Content-Length is not a number, or given twice with two values.
    #[error("bad Content-Length {0:?}")]
    ContentLength(String),
    /// A transfer coding other than chunked.
    #[error("unsupported Transfer-Encoding {0:?}")]
    TransferEncoding(String),
    /// A chunk-size line is not hex, or too long.
    #[error("bad chunk size line {0:?}")]
    ChunkSize(String),
    /// A chunk's data is not followed by CRLF.
    #[error("chunk data not followed by CRLF")]
    ChunkEnd,
    /// The connection ended before the body did.
    #[error("connection closed after {got} body bytes, {expected} announced")]
    BodyTruncated {
        /// Bytes received.
        got: u64,
        /// Bytes announced (Content-Length), or 0 inside a chunk.
        expected: u64,
    },
    /// The body is longer than the caller allows.
    #[error("body longer than the {cap} bytes allowed")]
    BodyTooLong {
        /// The cap.
        cap: u64,
    },
}

/// What went wrong with a request, naming the URL.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The server URL is not one this client speaks.
    #[error("server URL {url:?}: {problem}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The host name did not resolve.
    #[error("resolving {host}")]
    Resolve {
        /// host:port.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// No address of the host accepted a connection.
    #[error("connecting to {host}")]
    Connect {
        /// host:port.
        host: String,
        /// The last connect error.
        #[source]
        source: io::Error,
    },
    /// Sending the request failed.
    #[error("{method} {url}: sending the request")]
    Send {
        /// Method.
        method: &'static str,
        /// URL.
        url: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Reading the answer failed (timeout, reset, or a malformed answer).
    #[error("{method} {url}: reading the answer")]
    Receive {
        /// Method.
        method: &'static str,
        /// URL.
        url: String,
        /// The I/O error (a [`ParseError`] inside for malformed answers).
        #[source]
        source: io::Error,
    },
    /// The server answered with another status than the caller needs.
    #[error("{method} {url}: HTTP {status}: {body}")]
    Status {
        /// Method.
        method: &'static str,
        /// URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the body, as text.
        body: String,
    },
}

impl HttpError {
    /// The HTTP status, for errors that carry one.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// `http://host[:port][/prefix]`: where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port (80 when not given).
    pub port: u16,
    /// Path prefix without a trailing slash (`""` or `/pxe`).
    pub prefix: String,
}

impl ServerUrl {
    /// Parses a server URL. Only `http://`, no user info, no query.
    pub fn parse(url: &str) -> Result<ServerUrl, HttpError> {
        let bad = |problem| HttpError::Url {
            url: url.chars().take(200).collect(),
            problem,
        };
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            bad("only http:// is supported (the content is signed, not the link)")
        })?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.contains('@') {
            return Err(bad("user info is not supported"));
        }
        if path.contains(['?', '#']) || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("the path must be plain (no query, fragment or blanks)"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("no host"));
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("port is not 1-65535"))?,
        };
        Ok(ServerUrl {
            host: host.to_owned(),
            port,
            prefix: path.trim_end_matches('/').to_owned(),
        })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The full URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}{path}", self.authority(), self.prefix)
    }
}

/// A status line and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    /// Headers in order, names lowercased.
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    Close,
}

fn read_line<R: BufRead>(
    reader: &mut R,
    limit: usize,
    too_long: ParseError,
) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let n = reader
        .by_ref()
        .take(limit as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if n > limit {
        return Err(invalid(too_long));
    }
    Ok(line)
}

fn invalid(e: ParseError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().take(100).collect()
}

/// Interim (1xx) answers skipped before the final one.
const MAX_INTERIM: usize = 8;

/// Reads the status line and headers (a few 1xx interim answers skipped).
fn read_head<R: BufRead>(reader: &mut R) -> io::Result<ResponseHead> {
    for _ in 0..MAX_INTERIM {
        let head = read_one_head(reader)?;
        if !(100..200).contains(&head.status) {
            return Ok(head);
        }
    }
    Err(invalid(ParseError::StatusLine(format!(
        "more than {MAX_INTERIM} interim 1xx answers"
    ))))
}

fn read_one_head<R: BufRead>(reader: &mut R) -> io::Result<ResponseHead> {
    let mut budget = MAX_HEAD;
    let mut next = |reader: &mut R| -> io::Result<Vec<u8>> {
        let line = read_line(reader, budget, ParseError::HeadTooLong)?;
        if line.last() != Some(&b'\n') {
            return Err(invalid(ParseError::HeadTruncated));
        }
        budget -= line.len();
        Ok(trim_eol(&line).to_vec())
    };
    let status_line = next(reader)?;
    let status = parse_status_line(&status_line)?;
    let mut headers = Vec::new();
    loop {
        let line = next(reader)?;
        if line.is_empty() {
            return Ok(ResponseHead { status, headers });
        }
        let text = std::str::from_utf8(&line)
            .ok()
            .and_then(|t| t.split_once(':'))
            .filter(|(name, _)| {
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
            });
        let Some((name, value)) = text else {
            return Err(invalid(ParseError::Header(shown(&line))));
        };
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
}

fn parse_status_line(line: &[u8]) -> io::Result<u16> {
    let bad = || invalid(ParseError::StatusLine(shown(line)));
    let text = std::str::from_utf8(line).map_err(|_| bad())?;
    let mut parts = text.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0")
        || code.len() != 3
        || !code.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    code.parse::<u16>()
        .ok()
        .filter(|c| *c >= 100)
        .ok_or_else(bad)
}

fn framing(head: &ResponseHead) -> io::Result<Framing> {
    if head.status == 204 || head.status == 304 {
        return Ok(Framing::Length(0));
    }
    let codings: Vec<&str> = head
        .headers
        .iter()
        .filter(|(n, _)| n == "transfer-encoding")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    if let Some(last) = codings.last() {
        // Only "chunked" alone is understood; anything else would hand
        // encoded bytes to a hash check that then fails obscurely.
        if codings.len() == 1 && last.eq_ignore_ascii_case("chunked") {
            return Ok(Framing::Chunked);
        }
        return Err(invalid(ParseError::TransferEncoding(codings.join(", "))));
    }
    let mut length = None;
    for (_, value) in head.headers.iter().filter(|(n, _)| n == "content-length") {
        for part in value.split(',').map(str::trim) {
            let parsed = Some(part)
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<u64>().ok())
                .ok_or_else(|| invalid(ParseError::ContentLength(value.clone())))?;
            if length.is_some_and(|l| l != parsed) {
                return Err(invalid(ParseError::ContentLength(value.clone())));
            }
            length = Some(parsed);
        }
    }
    Ok(length.map_or(Framing::Close, Framing::Length))
}

/// A response body as a reader: framing removed, capped.
#[derive(Debug)]
pub struct Body<R> {
    reader: R,
    framing: Framing,
    cap: u64,
    got: u64,
    /// Bytes left in the current chunk (chunked), or in the body (length).
    left: u64,
    done: bool,
}

impl<R: BufRead> Body<R> {
    fn new(reader: R, framing: Framing, cap: u64) -> io::Result<Self> {
        let left = match framing {
            Framing::Length(n) if n > cap => return Err(invalid(ParseError::BodyTooLong { cap })),
            Framing::Length(n) => n,
            _ => 0,
        };
        Ok(Body {
            reader,
            framing,
            cap,
            got: 0,
            left,
            done: framing == Framing::Length(0),
        })
    }

    /// Reads the whole (remaining) body.
    pub fn into_bytes(mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_to_end(&mut out)?;
        Ok(out)
    }

    /// Starts the next chunk; false at the last (zero) chunk, after its
    /// trailers.
    fn next_chunk(&mut self) -> io::Result<bool> {
        let line = read_line(
            &mut self.reader,
            MAX_LINE,
            ParseError::ChunkSize(String::new()),
        )?;
        if line.last() != Some(&b'\n') {
            return Err(invalid(ParseError::BodyTruncated {
                got: self.got,
                expected: 0,
            }));
        }
        let text = trim_eol(&line);
        let size = text.split(|b| *b == b';').next().unwrap_or_default();
        let size = std::str::from_utf8(size)
            .ok()
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 16)
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or_else(|| invalid(ParseError::ChunkSize(shown(text))))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let line = read_line(&mut self.reader, MAX_LINE, ParseError::HeadTooLong)?;
                if line.is_empty() || trim_eol(&line).is_empty() {
                    return Ok(false);
                }
            }
        }
        self.left = size;
        Ok(true)
    }

    fn chunk_end(&mut self) -> io::Result<()> {
        let mut crlf = [0u8; 2];
        self.reader
            .read_exact(&mut crlf)
            .map_err(|_| invalid(ParseError::ChunkEnd))?;
        if &crlf != b"\r\n" {
            return Err(invalid(ParseError::ChunkEnd));
        }
        Ok(())
    }

    fn count(&mut self, n: usize) -> io::Result<usize> {
        self.got += n as u64;
        if self.got > self.cap {
            return Err(invalid(ParseError::BodyTooLong { cap: self.cap }));
        }
        Ok(n)
    }
}

impl<R: BufRead> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        match self.framing {
            Framing::Close => {
                let n = self.reader.read(buf)?;
                if n == 0 {
                    self.done = true;
                }
                self.count(n)
            }
            Framing::Length(total) => {
                let want = buf
                    .len()
                    .min(usize::try_from(self.left).unwrap_or(usize::MAX));
                let n = self.reader.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(invalid(ParseError::BodyTruncated {
                        got: self.got,
                        expected: total,
                    }));
                }
                self.left -= n as u64;
                self.done = self.left == 0;
                self.count(n)
            }
            Framing::Chunked => {
                if self.left == 0 && !self.next_chunk()? {
                    self.done = true;
                    return Ok(0);
                }
                let want = buf
                    .len()
                    .min(usize::try_from(self.left).unwrap_or(usize::MAX));
                let n = self.reader.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(invalid(ParseError::BodyTruncated {
                        got: self.got,
                        expected: 0,
                    }));
                }
                self.left -= n as u64;
                if self.left == 0 {
                    self.chunk_end()?;
                }
                self.count(n)
            }
        }
    }
}

/// A parsed answer: head, and the body still to read.
#[derive(Debug)]
pub struct HttpResponse<R> {
    /// Status and headers.
    pub head: ResponseHead,
    /// The body.
    pub body: Body<R>,
}

/// Reads a response from `reader`, the body capped at `cap` bytes.
pub fn read_response<R: BufRead>(mut reader: R, cap: u64) -> io::Result<HttpResponse<R>> {
    let head = read_head(&mut reader)?;
    let framing = framing(&head)?;
    let body = Body::new(reader, framing, cap)?;
    Ok(HttpResponse { head, body })
}

/// The blocking client the agent uses for the server.
#[derive(Debug, Clone)]
pub struct HttpClient {
    server: ServerUrl,
    timeout: Duration,
    user_agent: String,
}

/// Largest attestation answer read.
const ATTEST_CAP: u64 = protocol::MAX_BODY as u64;
/// How much of an error body goes into an error message.
const ERROR_BODY_SHOWN: u64 = 512;

impl HttpClient {
    /// A client for the server at `url` (see [`ServerUrl::parse`]).
    pub fn new(url: &str, timeout: Duration) -> Result<HttpClient, HttpError> {
        Ok(HttpClient {
            server: ServerUrl::parse(url)?,
            timeout,
            user_agent: format!("ironrack-agent/{}", env!("CARGO_PKG_VERSION")),
        })
    }

    /// The server.
    pub fn server(&self) -> &ServerUrl {
        &self.server
    }

    fn connect(&self) -> Result<TcpStream, HttpError> {
        let host = self.server.authority();
        let addrs: Vec<SocketAddr> = (self.server.host.as_str(), self.server.port)
            .to_socket_addrs()
            .map_err(|source| HttpError::Resolve {
                host: host.clone(),
                source,
            })?
            .collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(stream) => {
                    let timeouts = stream
                        .set_read_timeout(Some(self.timeout))
                        .and_then(|()| stream.set_write_timeout(Some(self.timeout)));
                    if let Err(source) = timeouts {
                        return Err(HttpError::Connect { host, source });
                    }
                    return Ok(stream);
                }
                Err(e) => last = e,
            }
        }
        Err(HttpError::Connect { host, source: last })
    }

    /// Sends `method path` with `body` (JSON when given) and reads the
    /// head; the body is capped at `cap`.
    pub fn request(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&[u8]>,
        cap: u64,
    ) -> Result<HttpResponse<BufReader<TcpStream>>, HttpError> {
        let url = self.server.url(path);
        let mut stream = self.connect()?;
        let mut head = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\nAccept: */*\r\nConnection: close\r\n",
            self.server.prefix,
            self.server.authority(),
            self.user_agent
        );
        if let Some(body) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        let sent = stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body.unwrap_or_default()))
            .and_then(|()| stream.flush());
        if let Err(source) = sent {
            return Err(HttpError::Send {
                method,
                url,
                source,
            });
        }
        read_response(BufReader::with_capacity(1 << 16, stream), cap).map_err(|source| {
            HttpError::Receive {
                method,
                url,
                source,
            }
        })
    }

    /// GET `path`, requiring 200; the body as a reader capped at `cap`.
    pub fn get(&self, path: &str, cap: u64) -> Result<Body<BufReader<TcpStream>>, HttpError> {
        let response = self.request("GET", path, None, cap)?;
        self.require_ok("GET", path, response)
    }

    /// GET `path`, requiring 200; the whole body (at most `cap` bytes).
    pub fn get_bytes(&self, path: &str, cap: u64) -> Result<Vec<u8>, HttpError> {
        let body = self.get(path, cap)?;
        body.into_bytes().map_err(|source| HttpError::Receive {
            method: "GET",
            url: self.server.url(path),
            source,
        })
    }

    /// POST `body` as JSON to `path`; any status, with the whole answer.
    pub fn post_json(
        &self,
        path: &str,
        body: &[u8],
        cap: u64,
    ) -> Result<(u16, Vec<u8>), HttpError> {
        let response = self.request("POST", path, Some(body), cap)?;
        let status = response.head.status;
        let bytes = response
            .body
            .into_bytes()
            .map_err(|source| HttpError::Receive {
                method: "POST",
                url: self.server.url(path),
                source,
            })?;
        Ok((status, bytes))
    }

    fn require_ok<R: BufRead>(
        &self,
        method: &'static str,
        path: &str,
        response: HttpResponse<R>,
    ) -> Result<Body<R>, HttpError> {
        if response.head.status == 200 {
            return Ok(response.body);
        }
        let mut shown = Vec::new();
        let _ = response.body.take(ERROR_BODY_SHOWN).read_to_end(&mut shown);
        Err(HttpError::Status {
            method,
            url: self.server.url(path),
            status: response.head.status,
            body: String::from_utf8_lossy(&shown).trim().to_owned(),
        })
    }

    /// One attestation exchange: the status and body of the answer.
    fn exchange(&self, request: &Request) -> Result<(u16, Vec<u8>), HttpError> {
        let (method, route) = request.route();
        match request {
            Request::Nonce(n) => {
                let path = format!("{route}?{}", n.to_query());
                let response = self.request(method, &path, None, ATTEST_CAP)?;
                let status = response.head.status;
                let body = response
                    .body
                    .into_bytes()
                    .map_err(|source| HttpError::Receive {
                        method,
                        url: self.server.url(&path),
                        source,
                    })?;
                Ok((status, body))
            }
            _ => self.post_json(route, &request.body(), ATTEST_CAP),
        }
    }
}

/// The answer an attestation exchange gets from `status` and `body`.
pub fn attest_answer(
    route: (&'static str, &'static str),
    url: &str,
    status: u16,
    body: &[u8],
) -> Result<Response, HttpError> {
    let (method, _) = route;
    let decoded = protocol::decode::<Response>("response", body);
    match (status, decoded) {
        (200, Ok(r)) if !r.is_refusal() => Ok(r),
        (400 | 403 | 413, Ok(r)) if r.is_refusal() => Ok(r),
        // A server without the attestation routes (404, or 405 from a
        // server that serves only GET): refuse to boot, never skip
        // attestation silently.
        (404 | 405, decoded) => {
            Ok(decoded
                .ok()
                .filter(Response::is_refusal)
                .unwrap_or_else(|| {
                    Response::Verdict(Verdict::Refused {
                        code: NOT_ATTESTING.into(),
                        reason: format!(
                            "server does not attest: {method} {url} answered {status}; \
                     this node boots only after attestation"
                        ),
                    })
                }))
        }
        (status, _) => Err(HttpError::Status {
            method,
            url: url.to_owned(),
            status,
            body: String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_SHOWN as usize)])
                .trim()
                .to_owned(),
        }),
    }
}

impl AttestClient for HttpClient {
    fn call(
        &mut self,
        request: &Request,
    ) -> Result<Response, Box<dyn std::error::Error + Send + Sync>> {
        let route = request.route();
        let (status, body) = self.exchange(request)?;
        Ok(attest_answer(
            route,
            &self.server.url(route.1),
            status,
            &body,
        )?)
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
