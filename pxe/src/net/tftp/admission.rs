//! Admission control: what keeps a boot storm (or a hostile client) from
//! exhausting the server.
//!
//! - a retransmitted request from a client whose transfer is already
//!   admitted (same address and port) is ignored, never a second session;
//! - a token bucket per client IP bounds the rate of new requests;
//! - each client IP may hold a few transfers at once;
//! - at most `max-sessions` transfers run; `max-queued` more wait for a
//!   free session (a storm is served in waves rather than refused), and
//!   beyond that a request is refused with "server busy".

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::config::TftpConfig;
use super::events::RefusalReason;

/// Buckets kept before idle ones are pruned (bounds memory under a flood
/// of spoofed source addresses).
const MAX_BUCKETS: usize = 4096;

#[derive(Debug)]
pub(super) struct Admission {
    sessions: Arc<Semaphore>,
    max_admitted: usize,
    per_client: usize,
    rate: f64,
    burst: f64,
    inner: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    tids: HashSet<SocketAddr>,
    per_ip: HashMap<IpAddr, usize>,
    buckets: HashMap<IpAddr, Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    refusal_logged: bool,
}

/// The outcome of the rate check.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Rate {
    Allowed,
    /// Over the limit; `log` is true for the first refusal of a burst so
    /// a flood does not flood the log too.
    Limited {
        log: bool,
    },
}

/// The outcome of admission.
#[derive(Debug)]
pub(super) enum Verdict {
    Admitted(Ticket),
    /// A retransmission of a request already admitted.
    Duplicate,
    Refused(RefusalReason),
}

/// A client's place in the server; dropping it (the session ended,
/// failed, or was aborted) frees the place.
#[derive(Debug)]
pub(super) struct Ticket {
    admission: Arc<Admission>,
    client: SocketAddr,
}

impl Admission {
    pub(super) fn new(config: &TftpConfig) -> Self {
        Self {
            sessions: Arc::new(Semaphore::new(config.max_sessions)),
            max_admitted: config.max_sessions + config.max_queued,
            per_client: config.per_client_sessions,
            rate: f64::from(config.per_client_requests_per_second),
            burst: f64::from(config.per_client_burst),
            inner: Mutex::default(),
        }
    }

    /// Takes one token from the client's bucket.
    pub(super) fn check_rate(&self, ip: IpAddr, now: Instant) -> Rate {
        if self.rate == 0.0 {
            return Rate::Allowed;
        }
        let mut inner = self.lock();
        if inner.buckets.len() >= MAX_BUCKETS && !inner.buckets.contains_key(&ip) {
            let (rate, burst) = (self.rate, self.burst);
            inner.buckets.retain(|_, b| !b.is_full(rate, burst, now));
            if inner.buckets.len() >= MAX_BUCKETS {
                // Thousands of distinct senders inside one refill period:
                // forget them all rather than grow without bound.
                inner.buckets.clear();
            }
        }
        let bucket = inner.buckets.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            last: now,
            refusal_logged: false,
        });
        bucket.refill(self.rate, self.burst, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.refusal_logged = false;
            Rate::Allowed
        } else {
            let log = !bucket.refusal_logged;
            bucket.refusal_logged = true;
            Rate::Limited { log }
        }
    }

    /// Admits a request from `client` unless a bound refuses it.
    pub(super) fn admit(self: &Arc<Self>, client: SocketAddr) -> Verdict {
        let mut inner = self.lock();
        if inner.tids.contains(&client) {
            return Verdict::Duplicate;
        }
        let active = inner.tids.len();
        if active >= self.max_admitted {
            return Verdict::Refused(RefusalReason::Busy { active });
        }
        let mine = inner.per_ip.get(&client.ip()).copied().unwrap_or(0);
        if mine >= self.per_client {
            return Verdict::Refused(RefusalReason::PerClientLimit { active: mine });
        }
        inner.tids.insert(client);
        *inner.per_ip.entry(client.ip()).or_insert(0) += 1;
        Verdict::Admitted(Ticket {
            admission: Arc::clone(self),
            client,
        })
    }

    /// True while a request from `client` (address and port) is admitted.
    pub(super) fn is_admitted(&self, client: SocketAddr) -> bool {
        self.lock().tids.contains(&client)
    }

    /// Transfers admitted (running or queued).
    pub(super) fn admitted(&self) -> usize {
        self.lock().tids.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // Every mutation is a single insert/remove: usable after a poison.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Ticket {
    /// Waits for a free session. Cancel-safe: dropping the future leaves
    /// the queue.
    pub(super) async fn session(&self) -> OwnedSemaphorePermit {
        match Arc::clone(&self.admission.sessions).acquire_owned().await {
            Ok(permit) => permit,
            // The semaphore lives as long as `Admission` and is never
            // closed.
            Err(_) => unreachable!("session semaphore closed"),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut inner = self.admission.lock();
        inner.tids.remove(&self.client);
        let ip = self.client.ip();
        if let Some(count) = inner.per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                inner.per_ip.remove(&ip);
            }
        }
    }
}

impl Bucket {
    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.last = now;
    }

    fn is_full(&self, rate: f64, burst: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * rate >= burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config() -> TftpConfig {
        TftpConfig {
            max_sessions: 2,
            max_queued: 1,
            per_client_sessions: 2,
            per_client_requests_per_second: 2,
            per_client_burst: 3,
            ..TftpConfig::default()
        }
    }

    fn addr(ip: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((ip, port))
    }

    #[test]
    fn duplicates_per_client_and_global_bounds() {
        let admission = Arc::new(Admission::new(&config()));
        let Verdict::Admitted(a) = admission.admit(addr([127, 0, 0, 1], 1000)) else {
            panic!()
        };
        assert!(matches!(
            admission.admit(addr([127, 0, 0, 1], 1000)),
            Verdict::Duplicate
        ));
        let Verdict::Admitted(_b) = admission.admit(addr([127, 0, 0, 1], 1001)) else {
            panic!()
        };
        assert!(matches!(
            admission.admit(addr([127, 0, 0, 1], 1002)),
            Verdict::Refused(RefusalReason::PerClientLimit { active: 2 })
        ));
        let Verdict::Admitted(_c) = admission.admit(addr([127, 0, 0, 2], 1000)) else {
            panic!()
        };
        assert!(matches!(
            admission.admit(addr([127, 0, 0, 3], 1000)),
            Verdict::Refused(RefusalReason::Busy { active: 3 })
        ));
        drop(a);
        assert_eq!(admission.admitted(), 2);
        assert!(matches!(
            admission.admit(addr([127, 0, 0, 1], 1000)),
            Verdict::Admitted(_)
        ));
    }

    #[test]
    fn token_bucket_limits_and_refills() {
        let admission = Admission::new(&config());
        let ip: IpAddr = [127, 0, 0, 1].into();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(admission.check_rate(ip, t0), Rate::Allowed);
        }
        assert_eq!(admission.check_rate(ip, t0), Rate::Limited { log: true });
        assert_eq!(admission.check_rate(ip, t0), Rate::Limited { log: false });
        // Another client is not affected.
        assert_eq!(
            admission.check_rate([127, 0, 0, 2].into(), t0),
            Rate::Allowed
        );
        // Two requests per second: half a second buys one token.
        let later = t0 + Duration::from_millis(500);
        assert_eq!(admission.check_rate(ip, later), Rate::Allowed);
        assert_eq!(admission.check_rate(ip, later), Rate::Limited { log: true });
    }
}
