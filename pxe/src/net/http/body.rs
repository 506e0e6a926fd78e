//! Response bodies: small in-memory ones, and artifact bodies that stream
//! a verified artifact (memory slices, or chunks read from the verified
//! descriptor: in the task when the page cache holds them, else on the
//! blocking pool with one chunk read ahead).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::task::JoinHandle;

use super::metrics::{Metrics, Route};
use crate::images::{ArtifactError, VerifiedArtifact};

/// Bytes read from disk per chunk of a file-backed artifact. Large chunks
/// amortise the hop to the blocking pool and let the socket write big
/// slices (measured with scripts/bench-http.sh); the buffers are pooled.
const CHUNK: usize = crate::images::MAX_READ;

/// Called once, when a body whose every byte was handed to hyper is
/// dropped: hyper stops polling a body once `is_end_stream` says it is
/// done, so the end of the stream is never seen from `poll_frame`.
pub type OnComplete = Box<dyn FnOnce() + Send + Sync>;

/// A response body.
pub enum HttpBody {
    /// Nothing (HEAD, 304, 416...).
    Empty,
    /// Bytes already in memory (scripts, JSON, iPXE binaries).
    Full(Option<Bytes>),
    /// A range of a verified artifact.
    Artifact(Box<ArtifactBody>),
}

impl std::fmt::Debug for HttpBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpBody::Empty => f.write_str("Empty"),
            HttpBody::Full(b) => write!(f, "Full({:?} bytes)", b.as_ref().map(Bytes::len)),
            HttpBody::Artifact(a) => write!(f, "Artifact({})", a.artifact.name),
        }
    }
}

impl HttpBody {
    /// A body of these bytes.
    pub fn full(bytes: impl Into<Bytes>) -> HttpBody {
        HttpBody::Full(Some(bytes.into()))
    }
}

/// Streams `start..end` of an artifact, counting bytes and reporting
/// completion; a file found changed on disk ends the body with an error
/// (hyper then closes the connection: the client sees a short body).
pub struct ArtifactBody {
    artifact: Arc<VerifiedArtifact>,
    route: Route,
    pos: u64,
    end: u64,
    ahead: Option<JoinHandle<Result<Bytes, ArtifactError>>>,
    metrics: Arc<Metrics>,
    on_complete: Option<OnComplete>,
    failed: bool,
}

impl std::fmt::Debug for ArtifactBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactBody")
            .field("artifact", &self.artifact.name)
            .field("pos", &self.pos)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl ArtifactBody {
    /// A body for `start..end` of `artifact`.
    pub fn new(
        artifact: Arc<VerifiedArtifact>,
        route: Route,
        start: u64,
        end: u64,
        metrics: Arc<Metrics>,
        on_complete: Option<OnComplete>,
    ) -> ArtifactBody {
        metrics.active(1);
        ArtifactBody {
            artifact,
            route,
            pos: start,
            end,
            ahead: None,
            metrics,
            on_complete,
            failed: false,
        }
    }

    fn chunk_len(&self, pos: u64) -> usize {
        (self.end - pos).min(CHUNK as u64) as usize
    }

    fn spawn_read(&self, pos: u64) -> JoinHandle<Result<Bytes, ArtifactError>> {
        let artifact = Arc::clone(&self.artifact);
        let len = self.chunk_len(pos);
        tokio::task::spawn_blocking(move || artifact.read_at(pos, len))
    }
}

impl Drop for ArtifactBody {
    fn drop(&mut self) {
        self.metrics.active(-1);
        if self.pos < self.end || self.failed {
            self.metrics.aborted();
        } else if !self.failed
            && let Some(done) = self.on_complete.take()
        {
            done();
        }
        if let Some(handle) = self.ahead.take() {
            handle.abort();
        }
    }
}

impl Body for HttpBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            HttpBody::Empty => Poll::Ready(None),
            HttpBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            HttpBody::Artifact(body) => body.poll_chunk(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            HttpBody::Empty => true,
            HttpBody::Full(bytes) => bytes.is_none(),
            HttpBody::Artifact(body) => body.pos >= body.end,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            HttpBody::Empty => SizeHint::with_exact(0),
            HttpBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            HttpBody::Artifact(body) => SizeHint::with_exact(body.end - body.pos),
        }
    }
}

impl ArtifactBody {
    fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.pos >= self.end {
            return Poll::Ready(None);
        }
        let mut waited = false;
        let chunk = if self.artifact.in_memory() {
            // Verified bytes already in memory: one slice, no copy.
            self.artifact
                .read_at(self.pos, (self.end - self.pos) as usize)
        } else if self.ahead.is_none()
            && let Some(cached) = self
                .artifact
                .read_cached(self.pos, self.chunk_len(self.pos))
        {
            // In the page cache: read here, no hop to the blocking pool.
            cached
        } else {
            waited = true;
            if self.ahead.is_none() {
                self.ahead = Some(self.spawn_read(self.pos));
            }
            let Some(handle) = self.ahead.as_mut() else {
                unreachable!("a read was just started")
            };
            let joined = ready!(Pin::new(handle).poll(cx));
            self.ahead = None;
            joined.unwrap_or_else(|join| {
                Err(ArtifactError::Open {
                    path: self.artifact.path.clone(),
                    source: std::io::Error::other(join.to_string()),
                })
            })
        };
        match chunk {
            Ok(bytes) if !bytes.is_empty() => {
                self.pos += bytes.len() as u64;
                self.metrics.bytes(self.route, bytes.len() as u64);
                if waited && self.pos < self.end {
                    // The file is being read from disk: start on the next
                    // chunk while this one is sent.
                    self.ahead = Some(self.spawn_read(self.pos));
                }
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Ok(_) => Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{}: empty read", self.artifact.path.display()),
            )))),
            Err(e) => {
                if matches!(e, ArtifactError::Changed { .. }) {
                    self.metrics.integrity_error();
                }
                tracing::error!(artifact = %self.artifact.path.display(), error = %e, "artifact read failed; response aborted");
                self.end = self.pos;
                self.failed = true;
                Poll::Ready(Some(Err(std::io::Error::other(e.to_string()))))
            }
        }
    }
}
