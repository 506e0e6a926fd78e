//! The `[tftp]` table of site.toml.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::options::OptionLimits;
use super::packet::{MAX_BLKSIZE, MIN_BLKSIZE};

/// TFTP server settings. Every key has a default suited to one server
/// booting a few thousand nodes on an Ethernet MTU of 1500.
///
/// ```toml
/// [tftp]
/// root = "/srv/ironrack/tftp"
/// listen = "0.0.0.0:69"
/// max-sessions = 512
/// per-client-sessions = 4
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct TftpConfig {
    /// Directory served (when files come from a directory).
    pub root: PathBuf,
    /// Address and port of the request socket.
    pub listen: SocketAddr,
    /// Transfers running at once; further requests wait in the queue.
    pub max_sessions: usize,
    /// Requests waiting for a free session; beyond this they are refused
    /// with "server busy".
    pub max_queued: usize,
    /// How long a request may wait in the queue before it is dropped (the
    /// client has retried or given up by then).
    pub queue_timeout_ms: u64,
    /// Transfers (running or queued) one client IP may have at once.
    pub per_client_sessions: usize,
    /// New requests per second one client IP may make (token bucket);
    /// 0 disables the rate limit.
    pub per_client_requests_per_second: u32,
    /// Burst size of the per-client token bucket.
    pub per_client_burst: u32,
    /// Bytes the in-memory file cache may hold.
    pub cache_bytes: u64,
    /// Largest file the cache takes (and the largest netascii transfer,
    /// which is converted in memory).
    pub cache_max_file_bytes: u64,
    /// Largest block size granted: the path MTU minus 32 bytes of IP, UDP
    /// and TFTP headers (1468 for a 1500-byte MTU).
    pub max_blksize: u16,
    /// Largest window granted (RFC 7440).
    pub max_windowsize: u16,
    /// First retransmission timeout, unless the client negotiates one.
    pub retransmit_timeout_ms: u64,
    /// Ceiling of the exponential backoff.
    pub max_retransmit_timeout_ms: u64,
    /// Consecutive timeouts after which a transfer is abandoned.
    pub max_retries: u32,
}

impl Default for TftpConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/srv/ironrack/tftp"),
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 69)),
            max_sessions: 512,
            max_queued: 2048,
            queue_timeout_ms: 5_000,
            per_client_sessions: 4,
            per_client_requests_per_second: 10,
            per_client_burst: 20,
            cache_bytes: 64 << 20,
            cache_max_file_bytes: 16 << 20,
            max_blksize: 1468,
            max_windowsize: 32,
            retransmit_timeout_ms: 1_000,
            max_retransmit_timeout_ms: 8_000,
            max_retries: 6,
        }
    }
}

/// A TFTP setting out of its valid range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tftp.{key} = {value}: {expected}")]
pub struct ConfigError {
    /// The kebab-case key at fault.
    pub key: &'static str,
    /// Its value.
    pub value: String,
    /// What it must be.
    pub expected: &'static str,
}

impl TftpConfig {
    /// Checks every value's range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |ok: bool, key, value: &dyn ToString, expected| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError {
                    key,
                    value: value.to_string(),
                    expected,
                })
            }
        };
        check(
            (MIN_BLKSIZE..=MAX_BLKSIZE).contains(&self.max_blksize),
            "max-blksize",
            &self.max_blksize,
            "between 8 and 65464 (RFC 2348)",
        )?;
        check(
            self.max_windowsize >= 1,
            "max-windowsize",
            &self.max_windowsize,
            "at least 1",
        )?;
        check(
            self.max_sessions >= 1,
            "max-sessions",
            &self.max_sessions,
            "at least 1",
        )?;
        check(
            self.per_client_sessions >= 1,
            "per-client-sessions",
            &self.per_client_sessions,
            "at least 1",
        )?;
        check(
            self.per_client_requests_per_second == 0 || self.per_client_burst >= 1,
            "per-client-burst",
            &self.per_client_burst,
            "at least 1 when a rate is set",
        )?;
        check(
            (10..=255_000).contains(&self.retransmit_timeout_ms),
            "retransmit-timeout-ms",
            &self.retransmit_timeout_ms,
            "between 10 and 255000",
        )?;
        check(
            self.max_retransmit_timeout_ms >= self.retransmit_timeout_ms,
            "max-retransmit-timeout-ms",
            &self.max_retransmit_timeout_ms,
            "at least retransmit-timeout-ms",
        )?;
        check(
            self.max_retries >= 1,
            "max-retries",
            &self.max_retries,
            "at least 1",
        )
    }

    pub(crate) fn option_limits(&self) -> OptionLimits {
        OptionLimits {
            max_blksize: self.max_blksize,
            max_windowsize: self.max_windowsize,
        }
    }

    pub(crate) fn retransmit_timeout(&self) -> Duration {
        Duration::from_millis(self.retransmit_timeout_ms)
    }

    pub(crate) fn max_retransmit_timeout(&self) -> Duration {
        Duration::from_millis(self.max_retransmit_timeout_ms)
    }

    pub(crate) fn queue_timeout(&self) -> Duration {
        Duration::from_millis(self.queue_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kebab_case_and_fills_defaults() {
        let config: TftpConfig = toml::from_str(
            r#"
            root = "/srv/tftp"
            listen = "127.0.0.1:6969"
            max-blksize = 8972
            per-client-sessions = 2
            "#,
        )
        .unwrap();
        assert_eq!(config.root, PathBuf::from("/srv/tftp"));
        assert_eq!(config.listen, "127.0.0.1:6969".parse().unwrap());
        assert_eq!(config.max_blksize, 8972);
        assert_eq!(config.per_client_sessions, 2);
        assert_eq!(config.max_sessions, TftpConfig::default().max_sessions);
        config.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<TftpConfig>("blocksize = 1468").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `blocksize`"),
            "{err}"
        );
    }

    #[test]
    fn out_of_range_values_name_the_key() {
        let config = TftpConfig {
            max_blksize: 4,
            ..TftpConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().key, "max-blksize");
        let config = TftpConfig {
            max_retransmit_timeout_ms: 10,
            ..TftpConfig::default()
        };
        assert_eq!(
            config.validate().unwrap_err().key,
            "max-retransmit-timeout-ms"
        );
    }
}
