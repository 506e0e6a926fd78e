//! What the DHCP server reports as it works, for the boot timeline and the
//! inventory (unknown MACs under the discover and enroll policies).

use std::net::Ipv4Addr;
use std::time::SystemTime;

use crate::site::MacAddr;

/// Kinds of DHCP event. Received messages and the server's answers are
/// separate events, so a timeline shows a DISCOVER that got no OFFER.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhcpEventKind {
    /// DHCPDISCOVER received.
    Discover,
    /// DHCPREQUEST received.
    Request,
    /// DHCPDECLINE received.
    Decline,
    /// DHCPRELEASE received.
    Release,
    /// DHCPINFORM received.
    Inform,
    /// DHCPOFFER sent.
    Offer,
    /// DHCPACK sent.
    Ack,
    /// DHCPNAK sent.
    Nak,
    /// proxyDHCP offer sent (boot options, no address).
    ProxyOffer,
    /// proxyDHCP ACK sent on port 4011.
    ProxyAck,
    /// A request deliberately left unanswered; `reason` says why.
    Silent,
    /// A datagram refused as malformed or hostile; `reason` says why.
    Refused,
    /// The lease could not be stored, so no ACK was sent.
    StoreFailed,
}

impl DhcpEventKind {
    /// The timeline name, e.g. `dhcp-offer`.
    pub fn as_str(self) -> &'static str {
        match self {
            DhcpEventKind::Discover => "dhcp-discover",
            DhcpEventKind::Request => "dhcp-request",
            DhcpEventKind::Decline => "dhcp-decline",
            DhcpEventKind::Release => "dhcp-release",
            DhcpEventKind::Inform => "dhcp-inform",
            DhcpEventKind::Offer => "dhcp-offer",
            DhcpEventKind::Ack => "dhcp-ack",
            DhcpEventKind::Nak => "dhcp-nak",
            DhcpEventKind::ProxyOffer => "dhcp-proxy-offer",
            DhcpEventKind::ProxyAck => "dhcp-proxy-ack",
            DhcpEventKind::Silent => "dhcp-silent",
            DhcpEventKind::Refused => "dhcp-refused",
            DhcpEventKind::StoreFailed => "dhcp-store-failed",
        }
    }
}

/// One DHCP event.
#[derive(Debug, Clone)]
pub struct DhcpEvent {
    /// What happened.
    pub kind: DhcpEventKind,
    /// When.
    pub at: SystemTime,
    /// Receiving interface.
    pub interface: String,
    /// The client (absent for datagrams refused before decoding).
    pub mac: Option<MacAddr>,
    /// The address concerned.
    pub ip: Option<Ipv4Addr>,
    /// Client system architecture (option 93).
    pub arch: Option<u16>,
    /// The node's name when the site knows the MAC.
    pub node: Option<String>,
    /// Boot file or URL handed out.
    pub boot: Option<String>,
    /// Why (silence, refusal, store failure).
    pub reason: Option<String>,
}

/// Receives DHCP events. Called on the server's hot path: must not block.
pub trait DhcpEvents: Send + Sync {
    /// Records one event.
    fn record(&self, event: DhcpEvent);
}

/// Events into a channel (the timeline writer, tests).
impl DhcpEvents for tokio::sync::mpsc::UnboundedSender<DhcpEvent> {
    fn record(&self, event: DhcpEvent) {
        // A closed channel means nobody listens any more: nothing to do.
        let _ = self.send(event);
    }
}

/// Discards events.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl DhcpEvents for NoEvents {
    fn record(&self, _event: DhcpEvent) {}
}
