//! Option negotiation: RFC 2347 (framework), 2348 (blksize), 2349 (timeout,
//! tsize) and 7440 (windowsize).
//!
//! Per RFC 2347 an option the server does not know, or whose value it will
//! not honour, is left out of the OACK; the transfer then goes on with the
//! default. Nothing here refuses a transfer: a client that cannot live
//! without an option aborts with error 8 itself.

use std::time::Duration;

use super::packet::{DEFAULT_BLKSIZE, MAX_BLKSIZE, MIN_BLKSIZE};

/// What the server will agree to at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionLimits {
    /// Largest block size granted (path MTU minus IP, UDP and TFTP headers).
    pub max_blksize: u16,
    /// Largest window granted.
    pub max_windowsize: u16,
}

/// The parameters of one transfer after negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Bytes per DATA block.
    pub blksize: u16,
    /// Blocks sent before waiting for an ACK.
    pub windowsize: u16,
    /// Retransmission timeout the client asked for.
    pub timeout: Option<Duration>,
    accepted: Vec<Accepted>,
}

/// An option the client sent that the server left out of its OACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredOption {
    /// Option name as sent.
    pub name: String,
    /// Value as sent.
    pub value: String,
    /// Why it was left out.
    pub reason: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accepted {
    Blksize(u16),
    Windowsize(u16),
    Timeout(u8),
    Tsize,
}

impl Negotiated {
    /// Negotiates `options` from a request within `limits`. Returns the
    /// agreed parameters and the options left out, for the debug log.
    pub fn from_request(
        options: &[(String, String)],
        limits: OptionLimits,
    ) -> (Self, Vec<IgnoredOption>) {
        let mut agreed = Self {
            blksize: DEFAULT_BLKSIZE,
            windowsize: 1,
            timeout: None,
            accepted: Vec::new(),
        };
        let mut ignored = Vec::new();
        for (name, value) in options {
            match agreed.accept(name, value, limits) {
                Ok(option) => agreed.accepted.push(option),
                Err(reason) => ignored.push(IgnoredOption {
                    name: name.clone(),
                    value: value.clone(),
                    reason,
                }),
            }
        }
        (agreed, ignored)
    }

    fn accept(
        &mut self,
        name: &str,
        value: &str,
        limits: OptionLimits,
    ) -> Result<Accepted, &'static str> {
        let kind = OptionKind::from_name(name).ok_or("unknown option")?;
        if self.accepted.iter().any(|a| OptionKind::of(a) == kind) {
            return Err("duplicate option; the first one counts");
        }
        // RFC 2347 values are decimal ASCII; no sign, no spaces.
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err("value is not a decimal number");
        }
        let number: u64 = value.parse().map_err(|_| "value out of range")?;
        let in_range = |lo: u64, hi: u64| (lo..=hi).contains(&number);
        match kind {
            OptionKind::Blksize if in_range(MIN_BLKSIZE.into(), MAX_BLKSIZE.into()) => {
                self.blksize = u16::try_from(number)
                    .unwrap_or(MAX_BLKSIZE)
                    .min(limits.max_blksize);
                Ok(Accepted::Blksize(self.blksize))
            }
            OptionKind::Windowsize if in_range(1, 65535) => {
                self.windowsize = u16::try_from(number)
                    .unwrap_or(u16::MAX)
                    .min(limits.max_windowsize);
                Ok(Accepted::Windowsize(self.windowsize))
            }
            OptionKind::Timeout if in_range(1, 255) => {
                let seconds = u8::try_from(number).unwrap_or(u8::MAX);
                self.timeout = Some(Duration::from_secs(seconds.into()));
                Ok(Accepted::Timeout(seconds))
            }
            // RFC 2349 says a reader sends 0; any number is answered with the
            // real size, as tftpd-hpa and dnsmasq do.
            OptionKind::Tsize => Ok(Accepted::Tsize),
            _ => Err("value out of range"),
        }
    }

    /// The OACK's option list; `size` is the byte count the client will
    /// receive (after netascii conversion, if any). Empty means no OACK:
    /// the transfer starts with DATA block 1.
    ///
    /// `tsize` is left out for an empty file: curl (7.88) rejects
    /// `tsize 0` in an OACK as invalid and aborts (it fails the same way
    /// against tftpd-hpa); RFC 2347 lets a server omit any option.
    pub fn oack_options(&self, size: u64) -> Vec<(String, String)> {
        self.accepted
            .iter()
            .filter_map(|option| match *option {
                Accepted::Blksize(v) => Some(("blksize".to_owned(), v.to_string())),
                Accepted::Windowsize(v) => Some(("windowsize".to_owned(), v.to_string())),
                Accepted::Timeout(v) => Some(("timeout".to_owned(), v.to_string())),
                Accepted::Tsize if size == 0 => None,
                Accepted::Tsize => Some(("tsize".to_owned(), size.to_string())),
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OptionKind {
    Blksize,
    Windowsize,
    Timeout,
    Tsize,
}

impl OptionKind {
    fn from_name(name: &str) -> Option<Self> {
        [
            ("blksize", Self::Blksize),
            ("windowsize", Self::Windowsize),
            ("timeout", Self::Timeout),
            ("tsize", Self::Tsize),
        ]
        .into_iter()
        .find(|(known, _)| name.eq_ignore_ascii_case(known))
        .map(|(_, kind)| kind)
    }

    fn of(accepted: &Accepted) -> Self {
        match accepted {
            Accepted::Blksize(_) => Self::Blksize,
            Accepted::Windowsize(_) => Self::Windowsize,
            Accepted::Timeout(_) => Self::Timeout,
            Accepted::Tsize => Self::Tsize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: OptionLimits = OptionLimits {
        max_blksize: 1468,
        max_windowsize: 16,
    };

    fn negotiate(options: &[(&str, &str)]) -> (Negotiated, Vec<IgnoredOption>) {
        let owned: Vec<_> = options
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        Negotiated::from_request(&owned, LIMITS)
    }

    #[test]
    fn no_options_means_rfc1350_defaults_and_no_oack() {
        let (agreed, ignored) = negotiate(&[]);
        assert_eq!((agreed.blksize, agreed.windowsize), (512, 1));
        assert!(agreed.oack_options(100).is_empty());
        assert!(ignored.is_empty());
    }

    #[test]
    fn clamps_blksize_and_windowsize_to_the_limits() {
        let (agreed, _) = negotiate(&[("BLKSIZE", "65464"), ("windowsize", "64")]);
        assert_eq!((agreed.blksize, agreed.windowsize), (1468, 16));
        assert_eq!(
            agreed.oack_options(7),
            vec![
                ("blksize".to_owned(), "1468".to_owned()),
                ("windowsize".to_owned(), "16".to_owned())
            ]
        );
    }

    #[test]
    fn smaller_blksize_is_granted_as_asked() {
        let (agreed, _) = negotiate(&[("blksize", "8"), ("tsize", "0"), ("timeout", "3")]);
        assert_eq!(agreed.blksize, 8);
        assert_eq!(agreed.timeout, Some(Duration::from_secs(3)));
        assert_eq!(
            agreed.oack_options(1234),
            vec![
                ("blksize".to_owned(), "8".to_owned()),
                ("tsize".to_owned(), "1234".to_owned()),
                ("timeout".to_owned(), "3".to_owned())
            ]
        );
    }

    #[test]
    fn out_of_range_and_unknown_options_are_left_out() {
        let (agreed, ignored) = negotiate(&[
            ("blksize", "7"),
            ("blksize", "65465"),
            ("timeout", "0"),
            ("timeout", "256"),
            ("windowsize", "0"),
            ("windowsize", "65536"),
            ("tsize", "-1"),
            ("tsize", "99999999999999999999999"),
            ("multicast", ""),
            ("blksize", " 1024"),
        ]);
        assert!(agreed.oack_options(100).is_empty());
        assert_eq!(
            (agreed.blksize, agreed.windowsize, agreed.timeout),
            (512, 1, None)
        );
        assert_eq!(ignored.len(), 10);
    }

    #[test]
    fn tsize_is_left_out_for_an_empty_file() {
        let (agreed, _) = negotiate(&[("tsize", "0")]);
        assert_eq!(
            agreed.oack_options(1),
            vec![("tsize".to_owned(), "1".to_owned())]
        );
        assert!(agreed.oack_options(0).is_empty());
    }

    #[test]
    fn first_of_duplicate_options_counts() {
        let (agreed, ignored) = negotiate(&[("blksize", "1024"), ("blksize", "1400")]);
        assert_eq!(agreed.blksize, 1024);
        assert_eq!(ignored[0].reason, "duplicate option; the first one counts");
    }
}
