//! HTTP boot: per-node iPXE scripts, verified image artifacts, iPXE
//! binaries, a JSON API for the inventory, and Prometheus metrics.
//!
//! hyper's HTTP/1.1 server on tokio, with no framework on top: a dozen
//! fixed routes need no router, and axum's tower stack would add layers
//! (and dependencies) between the socket and the artifact bytes that this
//! server wants to control itself (Range, ETag, streaming from a verified
//! descriptor). HTTP/2 is not enabled: iPXE and firmware speak HTTP/1.1.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /boot/<mac>.ipxe[?attempt=N]` | the node's script ([`script`]) |
//! | `GET/HEAD /images/<name>/<version>/<file>` | a verified artifact, or the image's `manifest.json`/`.minisig` as verified: Range, ETag (= its SHA-256), If-None-Match; any other name is 404 |
//! | `GET/HEAD /ipxe/<file>` | an iPXE binary from the `ipxe` package |
//! | `GET /api/nodes`, `/api/nodes/<mac-or-name>`, `/api/nodes/<..>/events`, `/api/images` | JSON |
//! | `GET /metrics` | Prometheus text format |
//! | `POST /attest/enroll`, `/attest/activate`, `/attest/quote`; `GET /attest/nonce?node=ID` | the attestation service (`attest.rs`), JSON |
//!
//! State that a reload changes (site, images, iPXE binaries) is one
//! `Arc<HttpState>` swapped under a lock ([`HttpHandle::replace_state`]);
//! a request takes the `Arc` once, so a response in flight keeps serving
//! what it started with.

mod api;
mod attest;
pub mod body;
mod config;
pub mod metrics;
pub mod range;
mod routes;
pub mod script;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

pub use config::HttpConfig;
pub use metrics::Metrics;

use crate::attest::service::AttestService;
use crate::images::{ImageStore, IpxeBinaries};
use crate::inventory::Inventory;
use crate::site::Site;
use crate::store::Store;

/// How long a stop waits for responses in flight.
const DRAIN: Duration = Duration::from_secs(30);

/// What the HTTP server serves; replaced whole on reload.
#[derive(Debug)]
pub struct HttpState {
    /// The site.
    pub site: Arc<Site>,
    /// Verified images.
    pub images: Arc<ImageStore>,
    /// iPXE binaries (empty when the site names no package).
    pub ipxe: Arc<IpxeBinaries>,
}

/// Failures starting the HTTP server.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A listen address could not be bound.
    #[error("binding HTTP listener {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

pub(crate) struct Shared {
    state: RwLock<Arc<HttpState>>,
    store: Arc<dyn Store>,
    inventory: Arc<Inventory>,
    metrics: Arc<Metrics>,
    config: HttpConfig,
    /// The attestation service behind `/attest/*` (404 until set).
    attest: RwLock<Option<Arc<AttestService>>>,
}

impl Shared {
    fn current(&self) -> Arc<HttpState> {
        Arc::clone(&self.state.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn attest(&self) -> Option<Arc<AttestService>> {
        self.attest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A bound HTTP server.
pub struct HttpServer {
    listeners: Vec<(SocketAddr, TcpListener)>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("listeners", &self.local_addrs())
            .finish_non_exhaustive()
    }
}

/// Changes a running server (reload) and reads its counters.
#[derive(Clone)]
pub struct HttpHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HttpHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpHandle").finish_non_exhaustive()
    }
}

impl HttpHandle {
    /// Serves `state` from the next request on; responses in flight keep
    /// the state they started with.
    pub fn replace_state(&self, state: HttpState) {
        *self.shared.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(state);
        tracing::info!("http state replaced");
    }

    /// Answers `/attest/*` with `service` from the next request on (at
    /// start, and on reload when `[attest]` changed: the service keeps its
    /// state in its store, so a new one takes over where the old stopped).
    pub fn set_attest(&self, service: Arc<AttestService>) {
        *self
            .shared
            .attest
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(service);
    }

    /// The server's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }
}

impl HttpServer {
    /// Binds every address in `addrs`. Settings (connection bound, header
    /// timeout, retry backoff) come from the site's `[http]` table.
    pub async fn bind(
        addrs: &[SocketAddr],
        state: HttpState,
        store: Arc<dyn Store>,
        inventory: Arc<Inventory>,
    ) -> Result<HttpServer, HttpError> {
        let mut listeners = Vec::new();
        for addr in addrs {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| HttpError::Bind {
                    addr: *addr,
                    source,
                })?;
            let local = listener.local_addr().map_err(|source| HttpError::Bind {
                addr: *addr,
                source,
            })?;
            listeners.push((local, listener));
        }
        let config = state.site.config.http.clone();
        Ok(HttpServer {
            listeners,
            shared: Arc::new(Shared {
                state: RwLock::new(Arc::new(state)),
                store,
                inventory,
                metrics: Arc::new(Metrics::default()),
                config,
                attest: RwLock::new(None),
            }),
        })
    }

    /// The bound addresses (real ports when port 0 was asked).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|(a, _)| *a).collect()
    }

    /// A handle for reloads.
    pub fn handle(&self) -> HttpHandle {
        HttpHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Serves until `shutdown` completes, then stops accepting, lets
    /// responses in flight finish (up to 30 s) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), HttpError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let limit = Arc::new(Semaphore::new(self.shared.config.max_connections));
        let mut accepters = JoinSet::new();
        for (addr, listener) in self.listeners {
            tracing::info!(%addr, "http server listening");
            accepters.spawn(accept_loop(
                listener,
                Arc::clone(&self.shared),
                Arc::clone(&limit),
                stop_rx.clone(),
            ));
        }
        shutdown.await;
        tracing::info!("http server stopping; finishing responses in flight");
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(DRAIN, async {
            while accepters.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("http responses still in flight after {DRAIN:?}; closing them");
            accepters.abort_all();
        }
        Ok(())
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = stop.changed() => break,
            permit = Arc::clone(&limit).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "http accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        let mut stop = stop.clone();
        while connections.try_join_next().is_some() {}
        connections.spawn(async move {
            let _permit = permit;
            let header_timeout = Duration::from_millis(shared.config.header_timeout_ms);
            let service = service_fn(move |req| routes::handle(Arc::clone(&shared), peer, req));
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => log_connection_end(peer, result),
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    log_connection_end(peer, conn.await);
                }
            }
        });
    }
    while connections.join_next().await.is_some() {}
}

fn log_connection_end(peer: SocketAddr, result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "http connection ended with an error");
    }
}
