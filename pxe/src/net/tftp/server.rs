//! The request socket, admission, and the life of each session.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::task::JoinSet;

use super::TftpError;
use super::admission::{Admission, Rate, Ticket, Verdict};
use super::body::{self, BlockReader, Body};
use super::cache::FileCache;
use super::config::TftpConfig;
use super::events::{FailReason, RefusalReason, TransferEvent, TransferEvents};
use super::options::Negotiated;
use super::packet::{ErrorCode, Mode, Packet, Request, error_packet};
use super::session::{Retransmit, Transfer, TransferSocket};
use super::source::{FileSource, SafeName};

/// Requests are at most 512 bytes (RFC 2347); the buffer is larger so an
/// oversized datagram is seen, and logged, at its real length.
const REQUEST_BUFFER: usize = 65536;

/// A bound TFTP server. [`TftpServer::run`] serves until shutdown.
#[derive(Debug)]
pub struct TftpServer {
    socket: UdpSocket,
    local: SocketAddr,
    shared: Arc<Shared>,
}

/// Changes a running server (a reload) and reads its state.
#[derive(Debug, Clone)]
pub struct TftpHandle {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: TftpConfig,
    source: RwLock<Arc<dyn FileSource>>,
    cache: Arc<FileCache>,
    events: Arc<dyn TransferEvents>,
    admission: Arc<Admission>,
}

impl TftpServer {
    /// Validates `config` and binds its listen address. Files come from
    /// `files`; events go to `events`.
    pub async fn bind(
        config: TftpConfig,
        files: Arc<dyn FileSource>,
        events: Arc<dyn TransferEvents>,
    ) -> Result<Self, TftpError> {
        config.validate()?;
        let socket = UdpSocket::bind(config.listen)
            .await
            .map_err(|source| TftpError::Bind {
                addr: config.listen,
                source,
            })?;
        let local = socket.local_addr().map_err(|source| TftpError::Bind {
            addr: config.listen,
            source,
        })?;
        let shared = Arc::new(Shared {
            cache: Arc::new(FileCache::new(
                config.cache_bytes,
                config.cache_max_file_bytes,
            )),
            admission: Arc::new(Admission::new(&config)),
            source: RwLock::new(files),
            events,
            config,
        });
        Ok(Self {
            socket,
            local,
            shared,
        })
    }

    /// The address requests are received on (the real port when the
    /// configuration asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A handle for reloads and state, usable while the server runs.
    pub fn handle(&self) -> TftpHandle {
        TftpHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Serves requests until `shutdown` completes, then stops taking new
    /// requests and waits for transfers in flight to end. Dropping the
    /// returned future aborts every transfer.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), TftpError> {
        let mut sessions = JoinSet::new();
        let mut buf = vec![0u8; REQUEST_BUFFER];
        tokio::pin!(shutdown);
        tracing::info!(addr = %self.local, "tftp server listening");
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(ended) = sessions.join_next(), if !sessions.is_empty() => {
                    if let Err(err) = ended {
                        tracing::error!(error = %err, "tftp session task panicked");
                    }
                }
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, peer)) => self.on_datagram(&buf[..len], peer, &mut sessions).await,
                    // ICMP errors from earlier replies surface here on
                    // Linux; they concern one peer, not the socket.
                    Err(err) => tracing::debug!(error = %err, "tftp request socket receive error"),
                },
            }
        }
        tracing::info!(
            active = sessions.len(),
            "tftp server stopping; finishing transfers"
        );
        while let Some(ended) = sessions.join_next().await {
            if let Err(err) = ended {
                tracing::error!(error = %err, "tftp session task panicked");
            }
        }
        Ok(())
    }

    async fn on_datagram(&self, bytes: &[u8], peer: SocketAddr, sessions: &mut JoinSet<()>) {
        let packet = Packet::parse(bytes);
        if let Ok(Packet::Rrq(_)) = &packet {
            // Retransmissions of an admitted request cost no token.
            if self.shared.admission.is_admitted(peer) {
                tracing::trace!(client = %peer, "duplicate request ignored");
                return;
            }
        }
        if let Rate::Limited { log } = self.shared.admission.check_rate(peer.ip(), Instant::now()) {
            if log {
                self.shared.refuse(peer, None, RefusalReason::RateLimited);
            }
            return;
        }
        let refusal = match packet {
            Ok(Packet::Rrq(request)) => match self.shared.admission.admit(peer) {
                Verdict::Admitted(ticket) => {
                    let shared = Arc::clone(&self.shared);
                    let local = self.local.ip();
                    sessions.spawn(async move { shared.serve(ticket, peer, local, request).await });
                    return;
                }
                Verdict::Duplicate => return,
                Verdict::Refused(reason) => (Some(request.filename), reason),
            },
            Ok(Packet::Wrq(request)) => (Some(request.filename), RefusalReason::WriteRequest),
            // Never answer an error with an error (RFC 1350).
            Ok(Packet::Error { code, message }) => {
                tracing::debug!(client = %peer, %code, %message, "error packet on the request port ignored");
                return;
            }
            Ok(_) => (None, RefusalReason::NotARequest),
            Err(err) => (None, RefusalReason::Malformed(err)),
        };
        let (file, reason) = refusal;
        if let Some(reply) = self.shared.refuse(peer, file, reason)
            && let Err(err) = self.socket.send_to(&reply, peer).await
        {
            tracing::debug!(client = %peer, error = %err, "sending refusal failed");
        }
    }
}

impl TftpHandle {
    /// Serves files from `files` from now on. Transfers in flight keep the
    /// file they opened; the cache is emptied.
    pub fn replace_source(&self, files: Arc<dyn FileSource>) {
        let mut source = self
            .shared
            .source
            .write()
            .unwrap_or_else(|e| e.into_inner());
        *source = files;
        self.shared.cache.clear();
        tracing::info!("tftp file source replaced");
    }

    /// Transfers running or waiting for a session.
    pub fn admitted(&self) -> usize {
        self.shared.admission.admitted()
    }

    /// Bytes in the file cache.
    pub fn cached_bytes(&self) -> u64 {
        self.shared.cache.total_bytes()
    }
}

impl Shared {
    /// Logs and reports a refusal; returns the ERROR packet to send, if any.
    fn refuse(
        &self,
        client: SocketAddr,
        file: Option<String>,
        reason: RefusalReason,
    ) -> Option<Vec<u8>> {
        let shown = file.as_deref().unwrap_or("-");
        tracing::warn!(client = %client, file = %shown, reason = %reason, "tftp request refused");
        let reply = reason
            .reply()
            .map(|(code, message)| error_packet(code, &message));
        self.events.event(TransferEvent::Refused {
            client,
            file,
            reason,
        });
        reply
    }

    fn current_source(&self) -> Arc<dyn FileSource> {
        Arc::clone(&self.source.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// One request, from the queue to the last ACK.
    ///
    /// The ticket (the client's place) is given back before the last
    /// packet and the events go out: a client that asks again from the
    /// same port right after must not be taken for a retransmission.
    async fn serve(
        self: Arc<Self>,
        ticket: Ticket,
        client: SocketAddr,
        local: IpAddr,
        request: Request,
    ) {
        let received = Instant::now();
        let wait = self.config.queue_timeout();
        let Ok(permit) = tokio::time::timeout(wait, ticket.session()).await else {
            drop(ticket);
            self.refuse(
                client,
                Some(request.filename),
                RefusalReason::QueueTimeout(wait),
            );
            return;
        };
        let socket = match TransferSocket::open(local, client) {
            Ok(socket) => socket,
            Err(err) => {
                tracing::error!(client = %client, file = %request.filename, error = %err, "cannot open a transfer socket");
                return;
            }
        };
        let (name, body, agreed) = match self.prepare(&request).await {
            Ok(prepared) => prepared,
            Err(reason) => {
                drop((permit, ticket));
                if let Some(reply) = self.refuse(client, Some(request.filename), reason) {
                    let _ = socket.send(&reply).await;
                }
                return;
            }
        };
        let file = name.to_string();
        let len = body.len();
        self.events.event(TransferEvent::Started {
            client,
            file: file.clone(),
            size: len,
            blksize: agreed.blksize,
            windowsize: agreed.windowsize,
        });
        tracing::info!(client = %client, file = %file, size = len, blksize = agreed.blksize, windowsize = agreed.windowsize, "tftp transfer started");
        let mut transfer = Transfer::new(
            &socket,
            BlockReader::new(body, agreed.blksize),
            file.clone(),
            agreed.blksize,
            agreed.windowsize,
            len,
            self.retransmit(&agreed),
        );
        let outcome = Self::transfer(&mut transfer, &agreed, len).await;
        drop((permit, ticket));
        let duration = received.elapsed();
        let bytes = transfer.bytes_acked();
        match outcome {
            Ok(()) => {
                tracing::info!(client = %client, file = %file, bytes, ?duration, "tftp transfer completed");
                self.events.event(TransferEvent::Completed {
                    client,
                    file,
                    bytes,
                    duration,
                });
            }
            Err(reason) => {
                tracing::warn!(client = %client, file = %file, bytes, ?duration, reason = %reason, "tftp transfer failed");
                match &reason {
                    FailReason::Read { .. } => {
                        transfer.abort(ErrorCode::UNDEFINED, "read error").await
                    }
                    FailReason::Timeout { .. } => {
                        transfer.abort(ErrorCode::UNDEFINED, "timed out").await
                    }
                    _ => {}
                }
                self.events.event(TransferEvent::Failed {
                    client,
                    file,
                    bytes,
                    duration,
                    reason,
                });
            }
        }
    }

    async fn prepare(
        &self,
        request: &Request,
    ) -> Result<(SafeName, Body, Negotiated), RefusalReason> {
        let name = SafeName::parse(&request.filename)?;
        if request.mode == Mode::Mail {
            return Err(RefusalReason::UnsupportedMode(request.mode));
        }
        let body = body::load(
            self.current_source(),
            Arc::clone(&self.cache),
            name.clone(),
            request.mode,
        )
        .await?;
        let (agreed, ignored) =
            Negotiated::from_request(&request.options, self.config.option_limits());
        for option in ignored {
            tracing::debug!(file = %name, option = %option.name, value = %option.value, reason = option.reason, "tftp option ignored");
        }
        Ok((name, body, agreed))
    }

    fn retransmit(&self, agreed: &Negotiated) -> Retransmit {
        let initial = agreed.timeout.unwrap_or(self.config.retransmit_timeout());
        Retransmit {
            initial,
            max: self.config.max_retransmit_timeout().max(initial),
            max_retries: self.config.max_retries,
        }
    }

    /// OACK (when any option was agreed), then the blocks.
    async fn transfer(
        transfer: &mut Transfer<'_>,
        agreed: &Negotiated,
        len: u64,
    ) -> Result<(), FailReason> {
        let options = agreed.oack_options(len);
        if !options.is_empty() {
            transfer.negotiate(&Packet::Oack { options }).await?;
        }
        transfer.send_file().await
    }
}
