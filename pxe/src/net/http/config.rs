//! The `[http]` table of site.toml.

use std::net::SocketAddr;

use serde::Deserialize;

/// HTTP server settings. Every key has a default.
///
/// ```toml
/// [http]
/// listen = ["198.18.0.1:8080"]     # default: every interface address, base URL port
/// memory-cache-bytes = 268435456   # verified artifacts held in memory
/// max-connections = 4096
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct HttpConfig {
    /// Addresses to listen on. Empty: each `[[interface]]` address at the
    /// port of `server.http-base-url`.
    pub listen: Vec<SocketAddr>,
    /// Bytes of verified artifacts kept in memory (smallest first: kernels,
    /// initrds, UKIs); larger ones are served from their verified open
    /// file with an identity check on every chunk.
    pub memory_cache_bytes: u64,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// How long a client may take to send a request head (slow-loris bound).
    pub header_timeout_ms: u64,
    /// Seconds an iPXE script waits before asking again, first attempt; it
    /// doubles per attempt up to `retry-max-seconds`.
    pub retry_initial_seconds: u32,
    /// Ceiling of the script's retry backoff.
    pub retry_max_seconds: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            memory_cache_bytes: 256 << 20,
            max_connections: 4096,
            header_timeout_ms: 10_000,
            retry_initial_seconds: 2,
            retry_max_seconds: 60,
        }
    }
}

impl HttpConfig {
    /// Checks ranges; the error is (kebab-case key, why).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.max_connections == 0 {
            return Err(("max-connections", "must be at least 1".into()));
        }
        if !(100..=600_000).contains(&self.header_timeout_ms) {
            return Err(("header-timeout-ms", "must be 100 to 600000".into()));
        }
        if self.retry_initial_seconds == 0 || self.retry_initial_seconds > self.retry_max_seconds {
            return Err((
                "retry-initial-seconds",
                "must be at least 1 and at most retry-max-seconds".into(),
            ));
        }
        if self.retry_max_seconds > 3600 {
            return Err(("retry-max-seconds", "must be at most 3600".into()));
        }
        Ok(())
    }

    /// The script's wait before attempt `attempt` (0-based): doubling from
    /// `retry-initial-seconds`, capped.
    pub fn retry_delay(&self, attempt: u32) -> u32 {
        let doubled = u64::from(self.retry_initial_seconds) << attempt.min(20);
        doubled.min(u64::from(self.retry_max_seconds)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let c = HttpConfig::default();
        let delays: Vec<u32> = (0..8).map(|a| c.retry_delay(a)).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(c.retry_delay(u32::MAX), 60);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<HttpConfig>("listn = []").is_err());
        let c: HttpConfig = toml::from_str("retry-initial-seconds = 0").unwrap();
        assert_eq!(c.validate().unwrap_err().0, "retry-initial-seconds");
    }
}
