//! The DHCP server: one listener per interface (and per port), one engine
//! task that owns the lease table and runs the policy on each request in
//! turn, so decisions never race each other.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::site::Site;
use crate::store::Store;

use super::events::{DhcpEvent, DhcpEventKind, DhcpEvents};
use super::leases::{LeaseChange, LeaseTable};
use super::packet::{Refusal, Request, parse_request};
use super::policy::{self, Decision, Ingress, PXE_PORT, Port, ReplyKind, SERVER_PORT};
use super::{DhcpError, reply, socket};

/// The site as the server sees it: a reload sends a new `Arc<Site>` into the
/// watch channel and the next request uses it.
pub type SiteView = watch::Receiver<Arc<Site>>;

/// Largest datagram read. DHCP messages are at most a few KB; anything
/// longer is truncated and then refused by the parser.
const MAX_DATAGRAM: usize = 4096;
/// Requests queued between the listeners and the engine.
const QUEUE: usize = 1024;
/// How often expired leases and offers are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(300);

/// A DHCP server not yet listening.
pub struct DhcpServer {
    site: SiteView,
    store: Arc<dyn Store>,
    events: Arc<dyn DhcpEvents>,
}

impl std::fmt::Debug for DhcpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhcpServer")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

struct Listener {
    interface: String,
    server_ip: Ipv4Addr,
    port: Port,
    socket: Arc<UdpSocket>,
}

/// A DHCP server with its sockets bound and its leases loaded.
pub struct BoundDhcpServer {
    site: SiteView,
    store: Arc<dyn Store>,
    events: Arc<dyn DhcpEvents>,
    listeners: Vec<Arc<Listener>>,
    leases: LeaseTable,
}

impl std::fmt::Debug for BoundDhcpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundDhcpServer")
            .field("listeners", &self.listeners.len())
            .field("leases", &self.leases.len())
            .finish_non_exhaustive()
    }
}

struct Inbound {
    listener: Arc<Listener>,
    bytes: Vec<u8>,
    source: SocketAddrV4,
}

impl DhcpServer {
    /// A server for the site in `site`, persisting leases in `store` and
    /// reporting to `events`.
    pub fn new(site: SiteView, store: Arc<dyn Store>, events: Arc<dyn DhcpEvents>) -> DhcpServer {
        DhcpServer {
            site,
            store,
            events,
        }
    }

    /// Loads the leases and binds ports 67 and 4011 on every interface of
    /// the site. Returns once the sockets listen.
    pub async fn bind(self) -> Result<BoundDhcpServer, DhcpError> {
        let store = self.store.clone();
        let stored = tokio::task::spawn_blocking(move || store.leases().all_leases())
            .await
            .map_err(|e| DhcpError::StoreTask(e.to_string()))??;
        let site = self.site.borrow().clone();
        let mut listeners = Vec::new();
        for iface in &site.config.interfaces {
            // 4011 in both modes: UEFI PXE (EDK2) treats an offer that
            // says PXEClient but carries no boot menu as a "BINL" offer and
            // asks port 4011 of the server for the boot file, even when the
            // offer came from the authoritative server.
            for (number, port) in [(SERVER_PORT, Port::Dhcp), (PXE_PORT, Port::Pxe)] {
                let socket = socket::bind_on_interface(&iface.name, number)?;
                tracing::info!(interface = %iface.name, port = number, server_ip = %iface.address.addr, "DHCP listening");
                listeners.push(Arc::new(Listener {
                    interface: iface.name.clone(),
                    server_ip: iface.address.addr,
                    port,
                    socket: Arc::new(socket),
                }));
            }
        }
        Ok(BoundDhcpServer {
            site: self.site,
            store: self.store,
            events: self.events,
            listeners,
            leases: LeaseTable::from_leases(stored),
        })
    }
}

impl BoundDhcpServer {
    /// Serves until `shutdown` completes. A reload of the site applies to
    /// the next request; a change to the set of interfaces needs a restart
    /// (it is logged).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), DhcpError> {
        let (tx, mut rx) = mpsc::channel::<Inbound>(QUEUE);
        let mut receivers = JoinSet::new();
        for listener in &self.listeners {
            receivers.spawn(receive(listener.clone(), tx.clone()));
        }
        drop(tx);
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                inbound = rx.recv() => match inbound {
                    Some(inbound) => self.handle(inbound).await,
                    None => break,
                },
                changed = self.site.changed() => {
                    if changed.is_ok() {
                        self.check_interfaces();
                    }
                }
                _ = prune.tick() => self.prune().await,
            }
        }
        receivers.abort_all();
        Ok(())
    }

    fn check_interfaces(&self) {
        let site = self.site.borrow().clone();
        for iface in &site.config.interfaces {
            if !self.listeners.iter().any(|l| l.interface == iface.name) {
                tracing::warn!(interface = %iface.name, "site reload added an interface; DHCP serves it after a restart");
            }
        }
    }

    async fn prune(&mut self) {
        let now = unix_now();
        self.leases.prune(now);
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.leases().prune_leases(now)).await {
            Ok(Ok(n)) if n > 0 => tracing::debug!(pruned = n, "expired leases removed"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "pruning expired leases"),
            Err(e) => tracing::warn!(error = %e, "lease pruning task failed"),
        }
    }

    async fn handle(&mut self, inbound: Inbound) {
        let Inbound {
            listener,
            bytes,
            source,
        } = inbound;
        let req = match parse_request(&bytes) {
            Ok(req) => req,
            Err(refusal) => return self.refused(&listener, source, &refusal),
        };
        self.record_received(&listener, &req);
        let site = self.site.borrow().clone();
        let server_ip = site
            .config
            .interfaces
            .iter()
            .find(|i| i.name == listener.interface)
            .map_or(listener.server_ip, |i| i.address.addr);
        let ingress = Ingress {
            interface: &listener.interface,
            server_ip,
            port: listener.port,
            source,
        };
        let decision = policy::decide(&req, &ingress, &site, &self.leases, unix_now());
        if let Some(change) = &decision.lease
            && self.leases.covers(change, unix_now())
        {
            if let LeaseChange::Put(lease) = change {
                self.leases
                    .apply(&LeaseChange::DropOffer { mac: lease.mac });
            }
        } else if let Some(change) = &decision.lease {
            if let Err(e) = self.persist(change).await {
                tracing::error!(mac = %req.mac, error = %e, "lease not stored; no reply sent");
                let mut event = self.event(&listener, DhcpEventKind::StoreFailed, &req, &decision);
                event.reason = Some(e.to_string());
                self.events.record(event);
                return;
            }
            self.leases.apply(change);
        }
        match &decision.outcome {
            Ok(reply) => self.send(&listener, &req, &decision, reply).await,
            Err(why) => {
                if why.is_problem() {
                    tracing::warn!(interface = %listener.interface, mac = %req.mac, reason = %why, "DHCP request not answered");
                } else {
                    tracing::debug!(interface = %listener.interface, mac = %req.mac, reason = %why, "DHCP request not answered");
                }
                let mut event = self.event(&listener, DhcpEventKind::Silent, &req, &decision);
                event.reason = Some(why.to_string());
                self.events.record(event);
            }
        }
    }

    async fn send(
        &self,
        listener: &Listener,
        req: &Request,
        decision: &Decision,
        reply: &policy::Reply,
    ) {
        let bytes = match reply::encode(&reply.message) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(mac = %req.mac, error = %e, "encoding DHCP reply");
                return;
            }
        };
        if let Err(e) = listener
            .socket
            .send_to(&bytes, SocketAddr::V4(reply.to))
            .await
        {
            tracing::warn!(interface = %listener.interface, to = %reply.to, error = %e, "sending DHCP reply");
            return;
        }
        let kind = match reply.kind {
            ReplyKind::Offer => DhcpEventKind::Offer,
            ReplyKind::Ack => DhcpEventKind::Ack,
            ReplyKind::Nak => DhcpEventKind::Nak,
            ReplyKind::ProxyOffer => DhcpEventKind::ProxyOffer,
            ReplyKind::ProxyAck => DhcpEventKind::ProxyAck,
        };
        tracing::info!(
            interface = %listener.interface, mac = %req.mac, ip = ?decision.ip, node = ?decision.node,
            arch = ?req.arch, boot = ?decision.boot, to = %reply.to, event = kind.as_str(), "DHCP reply"
        );
        self.events
            .record(self.event(listener, kind, req, decision));
    }

    /// Makes a lease change durable: ACKs and releases are on disk before
    /// the client hears about them. Offers live in memory only.
    async fn persist(&self, change: &LeaseChange) -> Result<(), DhcpError> {
        let store = self.store.clone();
        let result = match change.clone() {
            LeaseChange::Put(lease) => {
                tokio::task::spawn_blocking(move || store.leases().put_lease(&lease)).await
            }
            LeaseChange::Release { ip } => {
                tokio::task::spawn_blocking(move || store.leases().remove_lease(ip)).await
            }
            LeaseChange::Offer { .. } | LeaseChange::DropOffer { .. } => return Ok(()),
        };
        result
            .map_err(|e| DhcpError::StoreTask(e.to_string()))?
            .map_err(DhcpError::Store)
    }

    fn refused(&self, listener: &Listener, source: SocketAddrV4, refusal: &Refusal) {
        tracing::warn!(interface = %listener.interface, from = %source, reason = %refusal, "DHCP datagram refused");
        self.events.record(DhcpEvent {
            kind: DhcpEventKind::Refused,
            at: SystemTime::now(),
            interface: listener.interface.clone(),
            mac: None,
            ip: None,
            arch: None,
            node: None,
            boot: None,
            reason: Some(format!("from {source}: {refusal}")),
        });
    }

    fn record_received(&self, listener: &Listener, req: &Request) {
        let node = self
            .site
            .borrow()
            .node_by_mac(&req.mac)
            .map(|n| n.name().to_owned());
        self.events.record(DhcpEvent {
            kind: received_kind(req),
            at: SystemTime::now(),
            interface: listener.interface.clone(),
            mac: Some(req.mac),
            ip: req
                .requested_ip
                .or(Some(req.ciaddr()).filter(|a| !a.is_unspecified())),
            arch: req.arch,
            node,
            boot: None,
            reason: None,
        });
    }

    fn event(
        &self,
        listener: &Listener,
        kind: DhcpEventKind,
        req: &Request,
        d: &Decision,
    ) -> DhcpEvent {
        DhcpEvent {
            kind,
            at: SystemTime::now(),
            interface: listener.interface.clone(),
            mac: Some(req.mac),
            ip: d.ip,
            arch: req.arch,
            node: d.node.clone(),
            boot: d.boot.clone(),
            reason: None,
        }
    }
}

fn received_kind(req: &Request) -> DhcpEventKind {
    use dhcproto::v4::MessageType as M;
    match req.kind {
        M::Discover => DhcpEventKind::Discover,
        M::Decline => DhcpEventKind::Decline,
        M::Release => DhcpEventKind::Release,
        M::Inform => DhcpEventKind::Inform,
        _ => DhcpEventKind::Request,
    }
}

/// Reads datagrams from one listener into the engine's queue.
async fn receive(listener: Arc<Listener>, tx: mpsc::Sender<Inbound>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, from) = match listener.socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors from earlier sends surface here; keep serving,
                // without spinning if the error persists.
                tracing::debug!(interface = %listener.interface, error = %e, "DHCP receive error");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let SocketAddr::V4(source) = from else {
            continue;
        };
        let inbound = Inbound {
            listener: listener.clone(),
            bytes: buf[..len].to_vec(),
            source,
        };
        if tx.send(inbound).await.is_err() {
            return;
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
