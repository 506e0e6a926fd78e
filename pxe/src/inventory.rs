//! The inventory as the running server feeds it: events from DHCP, TFTP
//! and HTTP become [`NodeEvent`]s, written to the store in batches by one
//! writer thread, and counted for `/metrics`.
//!
//! TFTP and HTTP requests carry an IP address, not a MAC; the inventory
//! keeps the address each MAC was last given (DHCP ACKs) or last fetched
//! its script from, and attributes transfers through that map.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::net::dhcp::{DhcpEvent, DhcpEventKind, DhcpEvents};
use crate::net::tftp::{FailReason, TransferEvent, TransferEvents};
use crate::site::{DhcpMode, MacAddr, Site};
use crate::store::{NodeEvent, Store};

/// Events written per transaction at most: bounds a transaction's size
/// while keeping one fsync per batch in a storm.
const MAX_BATCH: usize = 4096;

enum Message {
    Event(NodeEvent),
    Flush(Sender<()>),
}

/// The running inventory: accepts events from every protocol without
/// blocking, persists them in order.
pub struct Inventory {
    tx: Mutex<Sender<Message>>,
    site: RwLock<Arc<Site>>,
    ip_to_mac: RwLock<HashMap<Ipv4Addr, MacAddr>>,
    counts: Mutex<BTreeMap<String, u64>>,
    unattributed: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inventory").finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    ms(SystemTime::now())
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Inventory {
    /// Starts the writer thread over `store`. Addresses already leased are
    /// attributed from the start.
    pub fn start(store: Arc<dyn Store>, site: Arc<Site>) -> Arc<Inventory> {
        let (tx, rx) = mpsc::channel();
        let mut ip_to_mac = HashMap::new();
        if let Ok(leases) = store.leases().all_leases() {
            for lease in leases {
                ip_to_mac.insert(lease.ip, lease.mac);
            }
        }
        std::thread::Builder::new()
            .name("inventory-writer".into())
            .spawn(move || writer(store, rx))
            .unwrap_or_else(|e| panic!("cannot start the inventory writer thread: {e}"));
        Arc::new(Inventory {
            tx: Mutex::new(tx),
            site: RwLock::new(site),
            ip_to_mac: RwLock::new(ip_to_mac),
            counts: Mutex::default(),
            unattributed: Default::default(),
        })
    }

    /// The site used to name nodes, after a reload.
    pub fn set_site(&self, site: Arc<Site>) {
        *self.site.write().unwrap_or_else(|e| e.into_inner()) = site;
    }

    fn node_name(&self, mac: &MacAddr) -> Option<String> {
        let site = self.site.read().unwrap_or_else(|e| e.into_inner());
        site.node_by_mac(mac).map(|n| n.name().to_owned())
    }

    /// Records one event for `mac` now (the node's name comes from the site).
    pub fn record(&self, mac: MacAddr, kind: &str, image: Option<String>, detail: Option<String>) {
        self.record_at(now_ms(), mac, kind, image, detail);
    }

    fn record_at(
        &self,
        at_ms: u64,
        mac: MacAddr,
        kind: &str,
        image: Option<String>,
        detail: Option<String>,
    ) {
        let event = NodeEvent {
            at_ms,
            mac,
            node: self.node_name(&mac),
            kind: kind.to_owned(),
            image,
            detail,
        };
        *self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(event.kind.clone())
            .or_insert(0) += 1;
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if tx.send(Message::Event(event)).is_err() {
            tracing::error!(mac = %mac, kind, "inventory writer gone: event lost");
        }
    }

    /// Waits until every event recorded before this call is committed.
    pub fn flush(&self) {
        let (done_tx, done_rx) = mpsc::channel();
        let sent = self
            .tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(Message::Flush(done_tx));
        if sent.is_ok() {
            let _ = done_rx.recv_timeout(Duration::from_secs(30));
        }
    }

    /// Remembers that `mac` is at `ip` (a script fetched from there).
    pub fn learn(&self, ip: IpAddr, mac: MacAddr) {
        if let IpAddr::V4(v4) = ip {
            self.ip_to_mac
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(v4, mac);
        }
    }

    /// The MAC last seen at `ip`.
    pub fn mac_at(&self, ip: IpAddr) -> Option<MacAddr> {
        let IpAddr::V4(v4) = ip else { return None };
        let mac = self
            .ip_to_mac
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&v4)
            .copied();
        if mac.is_none() {
            self.unattributed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        mac
    }

    /// Events recorded since start, by kind (for `/metrics`).
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Transfers whose client address matched no known node.
    pub fn unattributed(&self) -> u64 {
        self.unattributed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn writer(store: Arc<dyn Store>, rx: Receiver<Message>) {
    let mut batch = Vec::new();
    let mut waiting = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Event(e) => batch.push(e),
                Message::Flush(done) => waiting.push(done),
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        commit(&*store, &mut batch);
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
    commit(&*store, &mut batch);
}

fn commit(store: &dyn Store, batch: &mut Vec<NodeEvent>) {
    if batch.is_empty() {
        return;
    }
    // A failing disk: retry a few times, then log what is lost by name.
    for attempt in 0..5 {
        match store.inventory().record_events(batch) {
            Ok(()) => {
                tracing::debug!(events = batch.len(), "boot events committed");
                batch.clear();
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, attempt, events = batch.len(), "committing boot events");
                std::thread::sleep(Duration::from_millis(200 << attempt));
            }
        }
    }
    for e in batch.drain(..) {
        tracing::error!(mac = %e.mac, kind = %e.kind, "boot event not stored");
    }
}

impl Inventory {
    /// Whether an event of `kind` tells which address the node uses (so
    /// later TFTP and HTTP requests from it are put in its timeline). Our
    /// own ACK does, in authoritative mode. A proxy never sees the site
    /// server's ACK: there the client's REQUEST (the address it asks for,
    /// or on port 4011 the address it already has) is the best evidence,
    /// and a later request from the same client corrects it.
    fn attributes(&self, kind: DhcpEventKind) -> bool {
        let proxy = self.site.read().unwrap_or_else(|e| e.into_inner()).mode() == DhcpMode::Proxy;
        match kind {
            DhcpEventKind::Ack => true,
            DhcpEventKind::Request => proxy,
            _ => false,
        }
    }
}

impl DhcpEvents for Inventory {
    fn record(&self, event: DhcpEvent) {
        let Some(mac) = event.mac else { return };
        if let Some(ip) = event.ip
            && self.attributes(event.kind)
        {
            self.learn(IpAddr::V4(ip), mac);
        }
        let mut detail = Vec::new();
        if let Some(ip) = event.ip {
            detail.push(format!("ip {ip}"));
        }
        if let Some(arch) = event.arch {
            detail.push(format!("arch {arch}"));
        }
        if let Some(boot) = &event.boot {
            detail.push(format!("boot {boot}"));
        }
        if let Some(reason) = &event.reason {
            detail.push(reason.clone());
        }
        let detail = (!detail.is_empty()).then(|| detail.join(", "));
        self.record_at(ms(event.at), mac, event.kind.as_str(), None, detail);
    }
}

/// A client that ends a transfer with an ERROR before taking a single
/// byte is sizing the file: PXE firmware (EDK2, iPXE's UNDI loader) asks
/// with `tsize`, reads the OACK and aborts, then asks again for the file.
/// That is a probe, not a failed boot.
fn failed_kind(bytes: u64, reason: &FailReason) -> &'static str {
    match reason {
        FailReason::ClientError { .. } if bytes == 0 => "tftp-probe",
        _ => "tftp-failed",
    }
}

impl TransferEvents for Inventory {
    fn event(&self, event: TransferEvent) {
        let (client, kind, detail) = match &event {
            TransferEvent::Started {
                client,
                file,
                size,
                blksize,
                ..
            } => (
                *client,
                "tftp-start",
                format!("{file} ({size} bytes, blksize {blksize})"),
            ),
            TransferEvent::Completed {
                client,
                file,
                bytes,
                duration,
            } => (
                *client,
                "tftp-end",
                format!("{file} ({bytes} bytes in {duration:?})"),
            ),
            TransferEvent::Failed {
                client,
                file,
                reason,
                bytes,
                ..
            } => (
                *client,
                failed_kind(*bytes, reason),
                format!("{file}: {reason}"),
            ),
            TransferEvent::Refused {
                client,
                file,
                reason,
            } => (
                *client,
                "tftp-refused",
                format!("{}: {reason}", file.as_deref().unwrap_or("-")),
            ),
        };
        if let Some(mac) = self.mac_at(client.ip()) {
            self.record(mac, kind, None, Some(detail));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::tftp::packet::ErrorCode;

    fn site(mode: &str) -> Arc<Site> {
        let text = format!(
            "[server]\nhttp-base-url = \"http://198.18.0.1:8080\"\n\
             [images]\ndirs = []\ntrust-root = \"trust.json\"\n\
             [dhcp]\nmode = \"{mode}\"\n\
             [[interface]]\nname = \"br0\"\naddress = \"198.18.0.1/24\"\n"
        );
        Arc::new(Site::from_toml(std::path::Path::new("site.toml"), &text).unwrap())
    }

    fn dhcp(kind: DhcpEventKind, mac: MacAddr, ip: Ipv4Addr) -> DhcpEvent {
        DhcpEvent {
            kind,
            at: SystemTime::now(),
            interface: "br0".into(),
            mac: Some(mac),
            ip: Some(ip),
            arch: None,
            node: None,
            boot: None,
            reason: None,
        }
    }

    #[test]
    fn a_proxy_attributes_addresses_from_requests_an_authoritative_server_from_acks() {
        let mac: MacAddr = "52:54:00:00:00:07".parse().unwrap();
        let ip = Ipv4Addr::new(198, 18, 0, 57);
        let store =
            || Arc::new(crate::store::SqliteStore::open_in_memory().unwrap()) as Arc<dyn Store>;

        let proxy = Inventory::start(store(), site("proxy"));
        DhcpEvents::record(&*proxy, dhcp(DhcpEventKind::Request, mac, ip));
        assert_eq!(proxy.mac_at(IpAddr::V4(ip)), Some(mac));

        let auth = Inventory::start(store(), site("authoritative"));
        DhcpEvents::record(&*auth, dhcp(DhcpEventKind::Request, mac, ip));
        assert_eq!(
            auth.mac_at(IpAddr::V4(ip)),
            None,
            "a request is only a wish here"
        );
        DhcpEvents::record(&*auth, dhcp(DhcpEventKind::Ack, mac, ip));
        assert_eq!(auth.mac_at(IpAddr::V4(ip)), Some(mac));
    }

    #[test]
    fn a_size_probe_is_not_a_failed_transfer() {
        let aborted = FailReason::ClientError {
            code: ErrorCode::OPTION_REFUSED,
            message: "User aborted the transfer".into(),
        };
        assert_eq!(failed_kind(0, &aborted), "tftp-probe");
        assert_eq!(failed_kind(1468, &aborted), "tftp-failed");
        assert_eq!(
            failed_kind(0, &FailReason::Timeout { retries: 5 }),
            "tftp-failed"
        );
    }
}
