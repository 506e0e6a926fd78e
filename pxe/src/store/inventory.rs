//! Inventory records: nodes, their boot timelines, the highest image
//! version served to each, and the status of every image the server
//! loaded (so `ironrack nodes` can show a refused image's reason without
//! asking the server).

use serde::Serialize;

use super::StoreError;
use crate::site::MacAddr;

/// One event of a node's boot timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeEvent {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The node's boot MAC.
    pub mac: MacAddr,
    /// The node's name when the site knows it.
    pub node: Option<String>,
    /// What happened: `dhcp-offer`, `dhcp-ack`, `tftp-start`, `tftp-probe`,
    /// `tftp-end`, `script`, `kernel`, `initrd`, `uki`, `rootfs`, `refused`,
    /// `pending`, `approved`, `revoked`, and from the agent side `agent`,
    /// `enrolled`, `attested` (verdicts of the attestation service), `running`, `failed`.
    pub kind: String,
    /// `name@version` of the image concerned, if any.
    pub image: Option<String>,
    /// Free text: file served, address, reason of a refusal or failure.
    pub detail: Option<String>,
}

impl NodeEvent {
    /// The event as a timeline line, its time relative to `first_ms`
    /// (what `ironrack nodes show` prints).
    pub fn timeline_line(&self, first_ms: u64) -> String {
        let offset = self.at_ms.saturating_sub(first_ms) as f64 / 1000.0;
        format!(
            "+{offset:>8.3}s  {:<16} {}{}",
            self.kind,
            self.image
                .as_deref()
                .map(|i| format!("[{i}] "))
                .unwrap_or_default(),
            self.detail.as_deref().unwrap_or("")
        )
    }
}

/// A node as the inventory knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRecord {
    /// Boot MAC.
    pub mac: MacAddr,
    /// Name, when known.
    pub name: Option<String>,
    /// Image last served or assigned (`name@version`).
    pub image: Option<String>,
    /// Boot state derived from the events (see [`node_state_after`]).
    pub state: String,
    /// Kind of the last event.
    pub last_event: String,
    /// Its time, ms since the epoch.
    pub last_at_ms: u64,
    /// First event ever seen, ms since the epoch.
    pub first_seen_ms: u64,
}

/// How a loaded image fared on the last (re)load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageStatus {
    /// Image name.
    pub name: String,
    /// Version, when known.
    pub version: Option<u64>,
    /// Its directory.
    pub dir: String,
    /// `verified` or `refused`.
    pub status: String,
    /// Why it was refused.
    pub reason: Option<String>,
}

/// The node state an event leads to; `None` keeps the previous state
/// (events that say nothing new about where the node is).
pub fn node_state_after(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "dhcp-discover" | "dhcp-offer" | "dhcp-request" | "dhcp-ack" | "dhcp-proxy-offer"
        | "dhcp-proxy-ack" => "dhcp",
        "tftp-start" | "tftp-probe" | "tftp-end" | "ipxe-http" => "firmware",
        "script" => "ipxe",
        "kernel" | "initrd" | "uki" => "booting",
        "rootfs" => "image",
        "pending" => "pending",
        "approved" => "approved",
        "waiting" => "waiting",
        "refused" => "refused",
        "tftp-failed" | "failed" | "agent-failed" => "failed",
        "agent" => "agent",
        "enrolled" => "enrolled",
        "revoked" => "revoked",
        "attested" => "attested",
        "running" => "running",
        _ => return None,
    })
}

/// An operator's approval of a node (`ironrack nodes approve`). Under
/// `unknown-nodes = "enroll"` it admits a MAC no rack lists, to boot
/// `image`; the attestation service will also require it for a node whose
/// endorsement key has no certificate from a trusted CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approval {
    /// The node's boot MAC.
    pub mac: MacAddr,
    /// The image it may boot when the site does not list it.
    pub image: Option<String>,
    /// When it was approved, ms since the epoch.
    pub at_ms: u64,
}

/// Nodes, boot timelines, rollback records, approvals and image status.
pub trait InventoryStore: Send + Sync {
    /// Appends events (one transaction, durable when it returns) and
    /// updates each node's record.
    fn record_events(&self, events: &[NodeEvent]) -> Result<(), StoreError>;
    /// Every node ever seen, by MAC.
    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError>;
    /// The node with this MAC.
    fn node(&self, mac: &MacAddr) -> Result<Option<NodeRecord>, StoreError>;
    /// The node's last `limit` events, oldest first.
    fn events(&self, mac: &MacAddr, limit: usize) -> Result<Vec<NodeEvent>, StoreError>;
    /// The highest version of `image` ever served to the node.
    fn highest_served(&self, mac: &MacAddr, image: &str) -> Result<Option<u64>, StoreError>;
    /// Records that `version` of `image` was served to the node (keeps the
    /// highest). Durable when it returns.
    fn record_served(&self, mac: &MacAddr, image: &str, version: u64) -> Result<(), StoreError>;
    /// Records (or replaces) the node's approval and `event`, its timeline
    /// entry, in one transaction.
    fn approve(&self, approval: &Approval, event: &NodeEvent) -> Result<(), StoreError>;
    /// The node's approval, if an operator gave one.
    fn approval(&self, mac: &MacAddr) -> Result<Option<Approval>, StoreError>;
    /// Replaces the image status table with the result of a (re)load.
    fn replace_image_status(&self, images: &[ImageStatus]) -> Result<(), StoreError>;
    /// The image status table.
    fn image_status(&self) -> Result<Vec<ImageStatus>, StoreError>;
}
