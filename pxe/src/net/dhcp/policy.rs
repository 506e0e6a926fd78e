//! The DHCP policy as a pure function: a request, where it came in, the site
//! and the lease table give a [`Decision`] (a reply and where to send it, or
//! silence and why, plus the lease change to make). No sockets, no clock,
//! no I/O: every RFC 2131 and PXE rule here is unit-testable.

use std::net::{Ipv4Addr, SocketAddrV4};

use dhcproto::v4::{Flags, Message, MessageType};

use crate::site::{DhcpMode, MacAddr, Node, Site, Subnet, UnknownNodePolicy};
use crate::store::{Lease, LeaseState};

use super::boot::{self, BootOutcome};
use super::leases::{
    DECLINE_QUARANTINE_SECS, Holder, LeaseChange, LeaseTable, OFFER_HOLD_SECS, Offer,
};
use super::packet::Request;
use super::reply;

/// DHCP server port.
pub const SERVER_PORT: u16 = 67;
/// DHCP client port.
pub const CLIENT_PORT: u16 = 68;
/// PXE boot server port (proxyDHCP requests).
pub const PXE_PORT: u16 = 4011;

/// Which server port a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// 67: DHCP, and proxyDHCP offers.
    Dhcp,
    /// 4011: PXE requests to a proxyDHCP server.
    Pxe,
}

/// Where a request came in.
#[derive(Debug, Clone)]
pub struct Ingress<'a> {
    /// Interface name (as in the site file).
    pub interface: &'a str,
    /// This server's address on it: the server identifier.
    pub server_ip: Ipv4Addr,
    /// Port 67 or 4011.
    pub port: Port,
    /// The datagram's source.
    pub source: SocketAddrV4,
}

/// What kind of reply is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// DHCPOFFER with an address.
    Offer,
    /// DHCPACK (address, renewal or INFORM).
    Ack,
    /// DHCPNAK.
    Nak,
    /// proxyDHCP offer: boot options, no address.
    ProxyOffer,
    /// proxyDHCP ACK on port 4011.
    ProxyAck,
}

/// Why no reply is sent. Some are the normal end of an exchange (release,
/// another server chosen); [`Silence::is_problem`] tells them apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Silence {
    /// Unknown MAC, policy ignore.
    #[error("unknown MAC and the site's unknown-node policy is ignore")]
    UnknownIgnored,
    /// giaddr in no `[[relay]]` subnet.
    #[error("relayed via {giaddr}, which no [[relay]] subnet contains")]
    UnknownRelay {
        /// The relay's address.
        giaddr: Ipv4Addr,
    },
    /// The interface left the site configuration (reload).
    #[error("interface {interface} is no longer in the site configuration")]
    UnknownInterface {
        /// The interface.
        interface: String,
    },
    /// No pool for a node without a reservation.
    #[error("{subnet} has no pool for nodes without a reservation")]
    NoPool {
        /// The subnet's label.
        subnet: String,
    },
    /// Every pool address is taken.
    #[error("the pool of {subnet} is exhausted")]
    PoolExhausted {
        /// The subnet's label.
        subnet: String,
    },
    /// The node's reservation is on another subnet than the request's.
    #[error("reserved address {ip} is not on {subnet}, where the request came from")]
    ReservationElsewhere {
        /// The reservation.
        ip: Ipv4Addr,
        /// The request's subnet.
        subnet: String,
    },
    /// The node's reservation is leased to another client.
    #[error("reserved address {ip} is still leased to {holder}")]
    ReservationHeld {
        /// The reservation.
        ip: Ipv4Addr,
        /// The other client.
        holder: MacAddr,
    },
    /// The address was declined and is quarantined.
    #[error("address {ip} was declined by a client and is quarantined")]
    AddressDeclined {
        /// The address.
        ip: Ipv4Addr,
    },
    /// SELECTING: the client chose another server's offer.
    #[error("the client selected server {server}")]
    OtherServerSelected {
        /// The chosen server.
        server: Ipv4Addr,
    },
    /// A message for another server (server identifier).
    #[error("addressed to server {server}, not this one")]
    NotForUs {
        /// The server named.
        server: Ipv4Addr,
    },
    /// A message missing what its type requires.
    #[error("malformed {kind:?}: {what}")]
    Malformed {
        /// Message type.
        kind: MessageType,
        /// What is missing.
        what: &'static str,
    },
    /// RELEASE handled.
    #[error("released {ip}")]
    Released {
        /// The address.
        ip: Ipv4Addr,
    },
    /// DECLINE handled.
    #[error(
        "client declined {ip} (in use on the network?); quarantined for {DECLINE_QUARANTINE_SECS} s"
    )]
    Declined {
        /// The address.
        ip: Ipv4Addr,
    },
    /// RELEASE or DECLINE of an address the client does not hold.
    #[error("release or decline of {ip}, which this client does not hold")]
    NotHeld {
        /// The address.
        ip: Ipv4Addr,
    },
    /// proxyDHCP answers DISCOVER on 67 and REQUEST/INFORM on 4011 only.
    #[error("a proxyDHCP server does not answer {kind:?} on this port")]
    ProxyIgnores {
        /// Message type.
        kind: MessageType,
    },
    /// proxyDHCP: not a PXE, HTTP boot or iPXE client.
    #[error("not a PXE, UEFI HTTP or iPXE client")]
    NotBootClient,
    /// No binary for the client's architecture.
    #[error("no boot file configured for client architecture {arch:?}")]
    NoBootFile {
        /// Option 93.
        arch: Option<u16>,
    },
}

impl Silence {
    /// Whether an operator should hear about it (as opposed to the normal
    /// end of an exchange, or traffic that is not ours).
    pub fn is_problem(&self) -> bool {
        !matches!(
            self,
            Silence::UnknownIgnored
                | Silence::OtherServerSelected { .. }
                | Silence::NotForUs { .. }
                | Silence::Released { .. }
                | Silence::ProxyIgnores { .. }
                | Silence::NotBootClient
        )
    }
}

/// A reply and its destination.
#[derive(Debug, Clone)]
pub struct Reply {
    /// What it is.
    pub kind: ReplyKind,
    /// The message.
    pub message: Message,
    /// Where it goes.
    pub to: SocketAddrV4,
}

/// The policy's answer to one request.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Reply, or silence with its reason.
    pub outcome: Result<Reply, Silence>,
    /// The lease change to make (durably, before the reply is sent).
    pub lease: Option<LeaseChange>,
    /// The node's name, when the MAC is known.
    pub node: Option<String>,
    /// The address concerned (offered, acknowledged, released...).
    pub ip: Option<Ipv4Addr>,
    /// The boot file or URL handed out.
    pub boot: Option<String>,
}

struct Cx<'a> {
    req: &'a Request,
    ingress: &'a Ingress<'a>,
    site: &'a Site,
    leases: &'a LeaseTable,
    now: u64,
    node: Option<&'a Node>,
}

/// Decides what to do with `req`, received at `ingress`, given the site and
/// the lease table at time `now` (seconds since the Unix epoch).
pub fn decide(
    req: &Request,
    ingress: &Ingress<'_>,
    site: &Site,
    leases: &LeaseTable,
    now: u64,
) -> Decision {
    let cx = Cx {
        req,
        ingress,
        site,
        leases,
        now,
        node: site.node_by_mac(&req.mac),
    };
    match (site.mode(), ingress.port) {
        (_, Port::Pxe) => cx.proxy(),
        (DhcpMode::Proxy, Port::Dhcp) => cx.proxy(),
        (DhcpMode::Authoritative, Port::Dhcp) => match req.kind {
            MessageType::Discover => cx.discover(),
            MessageType::Request => cx.request(),
            MessageType::Decline => cx.decline(),
            MessageType::Release => cx.release(),
            MessageType::Inform => cx.inform(),
            kind => cx.silent(Silence::Malformed {
                kind,
                what: "not a client message type",
            }),
        },
    }
}

impl Cx<'_> {
    fn decision(&self, outcome: Result<Reply, Silence>) -> Decision {
        Decision {
            outcome,
            lease: None,
            node: self.node.map(|n| n.name().to_owned()),
            ip: None,
            boot: None,
        }
    }

    fn silent(&self, why: Silence) -> Decision {
        self.decision(Err(why))
    }

    fn is_unknown_ignored(&self) -> bool {
        self.node.is_none() && self.site.config.server.unknown_nodes == UnknownNodePolicy::Ignore
    }

    /// The subnet the client is on: the relay's for relayed requests, else
    /// the receiving interface's.
    fn subnet(&self) -> Result<&Subnet, Silence> {
        let giaddr = self.req.giaddr();
        if !giaddr.is_unspecified() {
            return self
                .site
                .relay_subnet(giaddr)
                .ok_or(Silence::UnknownRelay { giaddr });
        }
        self.site
            .interface_subnet(self.ingress.interface)
            .ok_or_else(|| Silence::UnknownInterface {
                interface: self.ingress.interface.to_owned(),
            })
    }

    /// Where a reply goes (RFC 2131 4.1): through the relay if there is one;
    /// NAKs broadcast; to ciaddr if the client has an address; else
    /// broadcast on the segment. A client that did not ask for broadcast
    /// could get a unicast to yiaddr, but that needs an ARP entry the kernel
    /// does not have yet (raw sockets or ARP table writes); every client
    /// accepts a broadcast, so that is what it gets.
    fn destination(&self, kind: ReplyKind) -> SocketAddrV4 {
        if self.ingress.port == Port::Pxe {
            return self.ingress.source;
        }
        let giaddr = self.req.giaddr();
        if !giaddr.is_unspecified() {
            return SocketAddrV4::new(giaddr, SERVER_PORT);
        }
        let ciaddr = self.req.ciaddr();
        if kind != ReplyKind::Nak && !ciaddr.is_unspecified() {
            return SocketAddrV4::new(ciaddr, CLIENT_PORT);
        }
        SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT)
    }

    fn usable(&self, subnet: &Subnet, ip: Ipv4Addr) -> bool {
        self.leases.is_free_for(ip, &self.req.mac, self.now)
            && self.site.reservation_holder(ip).is_none()
            && subnet.router != Some(ip)
            && !self
                .site
                .config
                .interfaces
                .iter()
                .any(|i| i.address.addr == ip)
    }

    /// The address this client gets on `subnet`: its reservation, else the
    /// pool address it already holds or was offered, else `hint` (requested)
    /// if free, else a free pool address starting at a point derived from
    /// the MAC (so a client tends to get the same address back).
    fn pick_address(&self, subnet: &Subnet, hint: Option<Ipv4Addr>) -> Result<Ipv4Addr, Silence> {
        let mac = &self.req.mac;
        if let Some(ip) = self.node.and_then(|n| n.config.ip) {
            if !subnet.net.contains(ip) {
                return Err(Silence::ReservationElsewhere {
                    ip,
                    subnet: subnet.label.clone(),
                });
            }
            return match self.leases.holder(ip, self.now) {
                Some(Holder::Declined) => Err(Silence::AddressDeclined { ip }),
                Some(Holder::Bound(m) | Holder::Offered(m)) if m != *mac => {
                    Err(Silence::ReservationHeld { ip, holder: m })
                }
                _ => Ok(ip),
            };
        }
        if self.is_unknown_ignored() {
            return Err(Silence::UnknownIgnored);
        }
        let pool = subnet.pool.ok_or_else(|| Silence::NoPool {
            subnet: subnet.label.clone(),
        })?;
        let held = self.leases.bound(mac, self.now).map(|l| l.ip);
        let offered = self.leases.offer(mac, self.now).map(|o| o.ip);
        for candidate in [held, offered, hint].into_iter().flatten() {
            if pool.contains(candidate) && self.usable(subnet, candidate) {
                return Ok(candidate);
            }
        }
        let start = mac_hash(mac);
        (0..pool.len())
            .map(|i| pool.nth(start.wrapping_add(i) % pool.len()))
            .find(|ip| self.usable(subnet, *ip))
            .ok_or_else(|| Silence::PoolExhausted {
                subnet: subnet.label.clone(),
            })
    }

    fn hostname(&self) -> Option<&str> {
        self.node.map(|n| n.name())
    }

    /// Adds boot options if the client is booting; returns the file/URL.
    fn add_boot(&self, msg: &mut Message) -> Option<String> {
        match boot::choose(self.req, self.site, self.node) {
            BootOutcome::Boot(choice) => {
                reply::add_boot(msg, self.req, &choice, self.ingress.server_ip);
                Some(choice.file)
            }
            BootOutcome::NotBooting => None,
            BootOutcome::Unsupported { arch } => {
                tracing::warn!(mac = %self.req.mac, ?arch, "no boot file for this architecture; address only");
                None
            }
        }
    }

    fn address_reply(
        &self,
        kind: ReplyKind,
        subnet: &Subnet,
        ip: Ipv4Addr,
    ) -> (Reply, Option<String>) {
        let msg_type = if kind == ReplyKind::Offer {
            MessageType::Offer
        } else {
            MessageType::Ack
        };
        let mut msg = reply::base(self.req, msg_type, self.ingress.server_ip);
        msg.set_yiaddr(ip);
        let dhcp = &self.site.config.dhcp;
        reply::add_address_options(
            &mut msg,
            subnet,
            dhcp,
            Some(dhcp.lease_time),
            self.hostname(),
        );
        let boot = self.add_boot(&mut msg);
        let to = self.destination(kind);
        (
            Reply {
                kind,
                message: msg,
                to,
            },
            boot,
        )
    }

    fn discover(&self) -> Decision {
        let subnet = match self.subnet() {
            Ok(s) => s,
            Err(why) => return self.silent(why),
        };
        let ip = match self.pick_address(subnet, self.req.requested_ip) {
            Ok(ip) => ip,
            Err(why) => return self.silent(why),
        };
        let (reply, boot) = self.address_reply(ReplyKind::Offer, subnet, ip);
        let mut d = self.decision(Ok(reply));
        d.lease = Some(LeaseChange::Offer {
            mac: self.req.mac,
            offer: Offer {
                ip,
                until: self.now + OFFER_HOLD_SECS,
            },
        });
        d.ip = Some(ip);
        d.boot = boot;
        d
    }

    fn nak(&self, ip: Option<Ipv4Addr>, why: &str) -> Decision {
        tracing::info!(mac = %self.req.mac, ?ip, reason = why, "DHCPNAK");
        let mut msg = reply::base(self.req, MessageType::Nak, self.ingress.server_ip);
        msg.opts_mut()
            .insert(dhcproto::v4::DhcpOption::Message(why.to_owned()));
        let to = self.destination(ReplyKind::Nak);
        let mut d = self.decision(Ok(Reply {
            kind: ReplyKind::Nak,
            message: msg,
            to,
        }));
        d.ip = ip;
        d
    }

    /// REQUEST in all its states (RFC 2131 4.3.2): SELECTING (server id
    /// present), INIT-REBOOT (requested address, no ciaddr), RENEWING and
    /// REBINDING (ciaddr, nothing else).
    fn request(&self) -> Decision {
        let req = self.req;
        if let Some(server) = req.server_id
            && server != self.ingress.server_ip
        {
            let mut d = self.silent(Silence::OtherServerSelected { server });
            d.lease = Some(LeaseChange::DropOffer { mac: req.mac });
            return d;
        }
        let ciaddr = Some(req.ciaddr()).filter(|a| !a.is_unspecified());
        let Some(wanted) = req.requested_ip.or(ciaddr) else {
            return self.silent(Silence::Malformed {
                kind: MessageType::Request,
                what: "neither a requested address nor ciaddr",
            });
        };
        let subnet = match self.subnet() {
            Ok(s) => s,
            Err(why) => return self.silent(why),
        };
        if !subnet.net.contains(wanted) {
            return self.nak(Some(wanted), "address not on this network");
        }
        match self.pick_address(subnet, Some(wanted)) {
            Ok(ip) if ip == wanted => self.ack(subnet, ip),
            Ok(_) => self.nak(Some(wanted), "address not assigned to this client"),
            // No record of this client: RFC 2131 says stay silent.
            Err(why @ (Silence::UnknownIgnored | Silence::NoPool { .. })) => self.silent(why),
            Err(why) => self.nak(Some(wanted), &why.to_string()),
        }
    }

    fn ack(&self, subnet: &Subnet, ip: Ipv4Addr) -> Decision {
        let (reply, boot) = self.address_reply(ReplyKind::Ack, subnet, ip);
        let mut d = self.decision(Ok(reply));
        d.lease = Some(LeaseChange::Put(Lease {
            ip,
            mac: self.req.mac,
            state: LeaseState::Bound,
            expires_at: self.now + u64::from(self.site.config.dhcp.lease_time),
            hostname: self.hostname().map(str::to_owned),
        }));
        d.ip = Some(ip);
        d.boot = boot;
        d
    }

    /// Checks the server identifier of RELEASE and DECLINE, which must name
    /// this server.
    fn for_us(&self, kind: MessageType) -> Result<(), Silence> {
        match self.req.server_id {
            Some(server) if server != self.ingress.server_ip => Err(Silence::NotForUs { server }),
            Some(_) => Ok(()),
            None => Err(Silence::Malformed {
                kind,
                what: "no server identifier",
            }),
        }
    }

    fn decline(&self) -> Decision {
        if let Err(why) = self.for_us(MessageType::Decline) {
            return self.silent(why);
        }
        let Some(ip) = self.req.requested_ip else {
            return self.silent(Silence::Malformed {
                kind: MessageType::Decline,
                what: "no requested address",
            });
        };
        let mut d = match self.leases.holder(ip, self.now) {
            Some(Holder::Bound(m) | Holder::Offered(m)) if m == self.req.mac => {
                let mut d = self.silent(Silence::Declined { ip });
                d.lease = Some(LeaseChange::Put(Lease {
                    ip,
                    mac: self.req.mac,
                    state: LeaseState::Declined,
                    expires_at: self.now + DECLINE_QUARANTINE_SECS,
                    hostname: self.hostname().map(str::to_owned),
                }));
                d
            }
            _ => self.silent(Silence::NotHeld { ip }),
        };
        d.ip = Some(ip);
        d
    }

    fn release(&self) -> Decision {
        if let Err(why) = self.for_us(MessageType::Release) {
            return self.silent(why);
        }
        let ip = self.req.ciaddr();
        let mut d = match self.leases.holder(ip, self.now) {
            Some(Holder::Bound(m)) if m == self.req.mac => {
                let mut d = self.silent(Silence::Released { ip });
                d.lease = Some(LeaseChange::Release { ip });
                d
            }
            _ => self.silent(Silence::NotHeld { ip }),
        };
        d.ip = Some(ip);
        d
    }

    /// INFORM: the client has an address (configured by other means) and
    /// wants the options; no address, no lease time (RFC 2131 3.4).
    fn inform(&self) -> Decision {
        let ciaddr = self.req.ciaddr();
        if ciaddr.is_unspecified() {
            return self.silent(Silence::Malformed {
                kind: MessageType::Inform,
                what: "no ciaddr",
            });
        }
        if self.is_unknown_ignored() {
            return self.silent(Silence::UnknownIgnored);
        }
        let subnet = match self.subnet() {
            Ok(s) => s,
            Err(why) => return self.silent(why),
        };
        let mut msg = reply::base(self.req, MessageType::Ack, self.ingress.server_ip);
        reply::add_address_options(
            &mut msg,
            subnet,
            &self.site.config.dhcp,
            None,
            self.hostname(),
        );
        let boot = self.add_boot(&mut msg);
        let to = self.destination(ReplyKind::Ack);
        let mut d = self.decision(Ok(Reply {
            kind: ReplyKind::Ack,
            message: msg,
            to,
        }));
        d.ip = Some(ciaddr);
        d.boot = boot;
        d
    }

    /// proxyDHCP (PXE specification 2.1): on port 67 a DISCOVER from a boot
    /// client gets an offer with no address and the boot options; on port
    /// 4011 its REQUEST (or INFORM) gets them in an ACK, sent back to where
    /// it came from.
    fn proxy(&self) -> Decision {
        let req = self.req;
        let (kind, msg_type) = match (self.ingress.port, req.kind) {
            (Port::Dhcp, MessageType::Discover) => (ReplyKind::ProxyOffer, MessageType::Offer),
            (Port::Pxe, MessageType::Request | MessageType::Inform) => {
                (ReplyKind::ProxyAck, MessageType::Ack)
            }
            (_, kind) => return self.silent(Silence::ProxyIgnores { kind }),
        };
        if !(req.is_pxe_client() || req.is_http_client() || req.ipxe) {
            return self.silent(Silence::NotBootClient);
        }
        if self.is_unknown_ignored() {
            return self.silent(Silence::UnknownIgnored);
        }
        let choice = match boot::choose(req, self.site, self.node) {
            BootOutcome::Boot(choice) => choice,
            BootOutcome::NotBooting => return self.silent(Silence::NotBootClient),
            BootOutcome::Unsupported { arch } => return self.silent(Silence::NoBootFile { arch }),
        };
        let mut msg = reply::base(req, msg_type, self.ingress.server_ip);
        if kind == ReplyKind::ProxyOffer {
            // The client has no address yet: it can only hear a broadcast.
            msg.set_flags(Flags::default().set_broadcast());
        }
        reply::add_boot(&mut msg, req, &choice, self.ingress.server_ip);
        let to = self.destination(kind);
        let mut d = self.decision(Ok(Reply {
            kind,
            message: msg,
            to,
        }));
        d.boot = Some(choice.file);
        d
    }
}

/// A stable per-MAC starting point in the pool (FNV-1a; not the std hasher,
/// whose seed changes per process).
fn mac_hash(mac: &MacAddr) -> u32 {
    mac.0.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
