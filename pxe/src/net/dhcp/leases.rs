//! The server's in-memory view of who holds which address: the persisted
//! leases plus short-lived offers. The policy reads it; the server applies
//! the [`LeaseChange`] the policy returns, to the store first (durably) and
//! then here.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::site::MacAddr;
use crate::store::{Lease, LeaseState};

/// How long an offered address stays set aside for the client it was
/// offered to (RFC 2131 leaves it to the server; a PXE ROM that waits for
/// several offers takes a few seconds).
pub const OFFER_HOLD_SECS: u64 = 60;
/// How long a declined address is kept out of the pool.
pub const DECLINE_QUARANTINE_SECS: u64 = 600;

/// An address offered but not yet requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// The offered address.
    pub ip: Ipv4Addr,
    /// Until when it is set aside.
    pub until: u64,
}

/// See [`LeaseTable::covers`]: seconds a re-bind may extend a lease
/// without a write, at most (and at most a quarter of the lease: clients
/// renew at half of it, so they always renew before what is stored ends).
pub const RENEWAL_SLACK: u64 = 60;

/// What the policy wants done to the lease state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseChange {
    /// Set `ip` aside for `mac` (not persisted).
    Offer {
        /// The client.
        mac: MacAddr,
        /// The offer.
        offer: Offer,
    },
    /// Forget an offer (the client chose another server).
    DropOffer {
        /// The client.
        mac: MacAddr,
    },
    /// Store a bound or declined lease (persisted before any reply).
    Put(Lease),
    /// The client released its lease.
    Release {
        /// The address.
        ip: Ipv4Addr,
    },
}

/// Who holds an address right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Bound to a client.
    Bound(MacAddr),
    /// Offered to a client.
    Offered(MacAddr),
    /// Declined; out of use until the quarantine ends.
    Declined,
}

/// Leases and offers, indexed both ways.
#[derive(Debug, Clone, Default)]
pub struct LeaseTable {
    by_ip: HashMap<Ipv4Addr, Lease>,
    bound_by_mac: HashMap<MacAddr, Ipv4Addr>,
    offers: HashMap<MacAddr, Offer>,
    offered_ips: HashMap<Ipv4Addr, MacAddr>,
}

impl LeaseTable {
    /// A table holding `leases` (as loaded from the store).
    pub fn from_leases(leases: impl IntoIterator<Item = Lease>) -> LeaseTable {
        let mut t = LeaseTable::default();
        for lease in leases {
            t.put(lease);
        }
        t
    }

    /// The client's bound lease, if still valid at `now`.
    pub fn bound(&self, mac: &MacAddr, now: u64) -> Option<&Lease> {
        let ip = self.bound_by_mac.get(mac)?;
        self.by_ip
            .get(ip)
            .filter(|l| l.state == LeaseState::Bound && l.is_active(now))
    }

    /// The client's pending offer, if still held at `now`.
    pub fn offer(&self, mac: &MacAddr, now: u64) -> Option<Offer> {
        self.offers.get(mac).copied().filter(|o| o.until > now)
    }

    /// Who holds `ip` at `now`, if anyone.
    pub fn holder(&self, ip: Ipv4Addr, now: u64) -> Option<Holder> {
        if let Some(lease) = self.by_ip.get(&ip).filter(|l| l.is_active(now)) {
            return Some(match lease.state {
                LeaseState::Bound => Holder::Bound(lease.mac),
                LeaseState::Declined => Holder::Declined,
            });
        }
        let mac = self.offered_ips.get(&ip)?;
        self.offer(mac, now)
            .filter(|o| o.ip == ip)
            .map(|_| Holder::Offered(*mac))
    }

    /// Whether `mac` may be given `ip` (nobody else holds it, not declined).
    pub fn is_free_for(&self, ip: Ipv4Addr, mac: &MacAddr, now: u64) -> bool {
        match self.holder(ip, now) {
            None => true,
            Some(Holder::Bound(m) | Holder::Offered(m)) => m == *mac,
            Some(Holder::Declined) => false,
        }
    }

    /// Whether `change` only re-binds the client's bound lease (same
    /// address and host name) to end at most [`RENEWAL_SLACK`] seconds
    /// after the stored one. Such a change need not be written (nor
    /// applied): the stored lease already holds the address for the
    /// client until it renews at half the lease time. A boot storm showed
    /// why it matters: each node's firmware and then iPXE ask within
    /// seconds, and every retransmitted REQUEST was a durable write, so
    /// ACKs queued behind fsyncs and clients retransmitted more.
    ///
    /// The slack is also at most a quarter of the lease the client is
    /// told: it renews at half of that, so before the stored lease (which
    /// the table keeps, and a restarted server loads) ends, and the address
    /// is never free in the table while the client still holds it.
    pub fn covers(&self, change: &LeaseChange, now: u64) -> bool {
        let LeaseChange::Put(new) = change else {
            return false;
        };
        let slack = RENEWAL_SLACK.min(new.expires_at.saturating_sub(now) / 4);
        new.state == LeaseState::Bound
            && self.bound(&new.mac, now).is_some_and(|stored| {
                stored.ip == new.ip
                    && stored.hostname == new.hostname
                    && new.expires_at >= stored.expires_at
                    && new.expires_at - stored.expires_at <= slack
            })
    }

    /// Applies a change decided by the policy.
    pub fn apply(&mut self, change: &LeaseChange) {
        match change {
            LeaseChange::Offer { mac, offer } => {
                self.drop_offer(mac);
                self.offers.insert(*mac, *offer);
                self.offered_ips.insert(offer.ip, *mac);
            }
            LeaseChange::DropOffer { mac } => self.drop_offer(mac),
            LeaseChange::Put(lease) => {
                self.drop_offer(&lease.mac);
                self.put(lease.clone());
            }
            LeaseChange::Release { ip } => {
                if let Some(lease) = self.by_ip.remove(ip)
                    && self.bound_by_mac.get(&lease.mac) == Some(ip)
                {
                    self.bound_by_mac.remove(&lease.mac);
                }
            }
        }
    }

    /// Number of records (bound and declined, expired included).
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }

    /// Forgets expired leases and offers.
    pub fn prune(&mut self, now: u64) {
        self.by_ip.retain(|_, l| l.is_active(now));
        let by_ip = &self.by_ip;
        self.bound_by_mac.retain(|_, ip| by_ip.contains_key(ip));
        self.offers.retain(|_, o| o.until > now);
        let offers = &self.offers;
        self.offered_ips
            .retain(|ip, mac| offers.get(mac).is_some_and(|o| o.ip == *ip));
    }

    fn drop_offer(&mut self, mac: &MacAddr) {
        if let Some(old) = self.offers.remove(mac) {
            self.offered_ips.remove(&old.ip);
        }
    }

    fn put(&mut self, lease: Lease) {
        // Whoever held this address before loses it.
        if let Some(prev) = self.by_ip.remove(&lease.ip)
            && self.bound_by_mac.get(&prev.mac) == Some(&lease.ip)
        {
            self.bound_by_mac.remove(&prev.mac);
        }
        // A client holds one address: a new bound lease replaces its old one.
        if lease.state == LeaseState::Bound
            && let Some(old_ip) = self.bound_by_mac.insert(lease.mac, lease.ip)
        {
            self.by_ip.remove(&old_ip);
        }
        self.by_ip.insert(lease.ip, lease);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(ip: [u8; 4], expires_at: u64, hostname: Option<&str>) -> Lease {
        Lease {
            ip: Ipv4Addr::from(ip),
            mac: "52:54:00:5e:00:01".parse().unwrap(),
            state: LeaseState::Bound,
            expires_at,
            hostname: hostname.map(str::to_owned),
        }
    }

    #[test]
    fn only_a_prompt_rebind_of_the_same_lease_is_covered() {
        let stored = lease([198, 18, 1, 1], 10_000, Some("n1"));
        let table = LeaseTable::from_leases([stored.clone()]);
        let put = |l: Lease| LeaseChange::Put(l);
        let now = 6_400;
        // The iPXE round seconds after the firmware's: covered.
        assert!(table.covers(&put(lease([198, 18, 1, 1], 10_030, Some("n1"))), now));
        assert!(table.covers(&put(stored.clone()), now));
        // A renewal that moves the end further: written.
        assert!(!table.covers(
            &put(lease(
                [198, 18, 1, 1],
                10_000 + RENEWAL_SLACK + 1,
                Some("n1")
            )),
            now
        ));
        // Another address, another host name, a shorter lease, a decline.
        assert!(!table.covers(&put(lease([198, 18, 1, 2], 10_030, Some("n1"))), now));
        assert!(!table.covers(&put(lease([198, 18, 1, 1], 10_030, Some("n2"))), now));
        assert!(!table.covers(&put(lease([198, 18, 1, 1], 9_000, Some("n1"))), now));
        let mut declined = lease([198, 18, 1, 1], 10_030, Some("n1"));
        declined.state = LeaseState::Declined;
        assert!(!table.covers(&put(declined), now));
        // A short lease (60 s, the shortest a site may set) gets a quarter
        // of it: 15 s, so its renewal at 30 s comes before the stored end.
        let short = LeaseTable::from_leases([lease([198, 18, 1, 1], 1_060, Some("n1"))]);
        assert!(short.covers(&put(lease([198, 18, 1, 1], 1_075, Some("n1"))), 1_015));
        assert!(!short.covers(&put(lease([198, 18, 1, 1], 1_076, Some("n1"))), 1_016));
        // An expired stored lease covers nothing; nor does a release.
        assert!(!table.covers(&put(stored.clone()), 10_000));
        assert!(!table.covers(&LeaseChange::Release { ip: stored.ip }, now));
    }
}
