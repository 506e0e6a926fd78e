//! Counters for `/metrics` (Prometheus text exposition format, written by
//! hand: a dozen series do not need a metrics crate).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// What a request asked for, as a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Route {
    /// `/boot/<mac>.ipxe`.
    Script,
    /// `/images/...`.
    Artifact,
    /// `/ipxe/...`.
    Ipxe,
    /// `/api/...`.
    Api,
    /// `/metrics`.
    Metrics,
    /// `POST /attest/enroll`.
    AttestEnroll,
    /// `POST /attest/activate`.
    AttestActivate,
    /// `GET /attest/nonce`.
    AttestNonce,
    /// `POST /attest/quote`.
    AttestQuote,
    /// `POST /attest/report`.
    AttestReport,
    /// Anything else.
    Other,
}

impl Route {
    fn as_str(self) -> &'static str {
        match self {
            Route::Script => "script",
            Route::Artifact => "artifact",
            Route::Ipxe => "ipxe",
            Route::Api => "api",
            Route::Metrics => "metrics",
            Route::AttestEnroll => "attest-enroll",
            Route::AttestActivate => "attest-activate",
            Route::AttestNonce => "attest-nonce",
            Route::AttestQuote => "attest-quote",
            Route::AttestReport => "attest-report",
            Route::Other => "other",
        }
    }
}

/// The HTTP server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(Route, u16), u64>>,
    bytes: Mutex<BTreeMap<Route, u64>>,
    active: AtomicI64,
    range_refused: AtomicU64,
    integrity_errors: AtomicU64,
    aborted: AtomicU64,
}

impl Metrics {
    /// Counts a response.
    pub fn response(&self, route: Route, status: u16) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((route, status))
            .or_insert(0) += 1;
    }

    /// Counts body bytes handed to the connection.
    pub fn bytes(&self, route: Route, n: u64) {
        *self
            .bytes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(route)
            .or_insert(0) += n;
    }

    /// A transfer (artifact or iPXE body) started (+1) or ended (-1).
    pub fn active(&self, delta: i64) {
        self.active.fetch_add(delta, Ordering::Relaxed);
    }

    /// A Range header refused.
    pub fn range_refused(&self) {
        self.range_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A served artifact found changed on disk.
    pub fn integrity_error(&self) {
        self.integrity_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A body the client did not take to its end.
    pub fn aborted(&self) {
        self.aborted.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text, with the boot-stage counts and the image and
    /// TFTP figures the caller adds.
    pub fn render(&self, stages: &BTreeMap<String, u64>, extra: &[(&str, &str, u64)]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP ironrack_http_requests_total HTTP responses by route and status."
        );
        let _ = writeln!(out, "# TYPE ironrack_http_requests_total counter");
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "ironrack_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                route.as_str()
            );
        }
        let _ = writeln!(
            out,
            "# HELP ironrack_http_bytes_total Body bytes sent by route."
        );
        let _ = writeln!(out, "# TYPE ironrack_http_bytes_total counter");
        for (route, n) in self.bytes.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                out,
                "ironrack_http_bytes_total{{route=\"{}\"}} {n}",
                route.as_str()
            );
        }
        let gauge = [
            (
                "ironrack_http_active_transfers",
                "gauge",
                "Artifact and iPXE bodies being sent.",
                self.active.load(Ordering::Relaxed).max(0) as u64,
            ),
            (
                "ironrack_http_range_refused_total",
                "counter",
                "Range headers refused with 416.",
                self.range_refused.load(Ordering::Relaxed),
            ),
            (
                "ironrack_http_integrity_errors_total",
                "counter",
                "Artifacts found changed on disk while served.",
                self.integrity_errors.load(Ordering::Relaxed),
            ),
            (
                "ironrack_http_aborted_total",
                "counter",
                "Bodies not taken to their end by the client.",
                self.aborted.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, value) in gauge {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP ironrack_boot_events_total Boot timeline events recorded, by kind."
        );
        let _ = writeln!(out, "# TYPE ironrack_boot_events_total counter");
        for (kind, n) in stages {
            let _ = writeln!(out, "ironrack_boot_events_total{{kind=\"{kind}\"}} {n}");
        }
        for (name, help, value) in extra {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}
