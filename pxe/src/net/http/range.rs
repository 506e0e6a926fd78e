//! `Range: bytes=...` (RFC 9110 §14): one range served as 206; anything
//! this server will not honour is refused with 416 and a reason that is
//! logged.
//!
//! Choices: multiple ranges get 416 (no client of a boot server asks for
//! multipart/byteranges, and overlapping range lists are a known
//! amplification trick); a header that does not parse gets 416 too rather
//! than being ignored, so a broken client is seen in the log; a range
//! whose end lies past the file is clamped (RFC 9110 says so); a first
//! byte at or past the end is unsatisfiable (416 with `Content-Range:
//! bytes */<size>`).

/// Longest Range header looked at.
const MAX_HEADER: usize = 128;

/// A satisfiable byte range, `start..end` (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// Why a Range header is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeRefusal {
    /// Longer than any sane single range.
    #[error("Range header of {0} bytes is too long")]
    TooLong(usize),
    /// Not `bytes=...`, or numbers that do not parse (or overflow).
    #[error("Range header {0:?} does not parse")]
    Syntax(String),
    /// More than one range.
    #[error("Range header asks for {0} ranges; one is served")]
    Multiple(usize),
    /// first > last.
    #[error("Range {first}-{last} ends before it starts")]
    Backwards {
        /// First byte asked.
        first: u64,
        /// Last byte asked.
        last: u64,
    },
    /// Starts at or past the end of the file (or an empty suffix).
    #[error("Range starts at byte {start} of a {size}-byte file")]
    Unsatisfiable {
        /// First byte asked.
        start: u64,
        /// File size.
        size: u64,
    },
}

/// Parses a Range header against a representation of `size` bytes.
pub fn parse(header: &[u8], size: u64) -> Result<ByteRange, RangeRefusal> {
    if header.len() > MAX_HEADER {
        return Err(RangeRefusal::TooLong(header.len()));
    }
    let text = std::str::from_utf8(header)
        .map_err(|_| RangeRefusal::Syntax(String::from_utf8_lossy(header).into_owned()))?;
    let syntax = || RangeRefusal::Syntax(text.to_owned());
    let spec = text
        .trim()
        .strip_prefix("bytes=")
        .ok_or_else(syntax)?
        .trim();
    let count = spec.split(',').count();
    if count > 1 {
        return Err(RangeRefusal::Multiple(count));
    }
    let (first, last) = spec.split_once('-').ok_or_else(syntax)?;
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| -> Result<u64, RangeRefusal> {
        if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        s.parse().map_err(|_| syntax())
    };
    match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => {
            let n = number(last)?;
            if n == 0 || size == 0 {
                return Err(RangeRefusal::Unsatisfiable { start: size, size });
            }
            Ok(ByteRange {
                start: size.saturating_sub(n),
                end: size,
            })
        }
        // bytes=N-: from N to the end.
        (false, true) => {
            let start = number(first)?;
            if start >= size {
                return Err(RangeRefusal::Unsatisfiable { start, size });
            }
            Ok(ByteRange { start, end: size })
        }
        (false, false) => {
            let (start, last) = (number(first)?, number(last)?);
            if last < start {
                return Err(RangeRefusal::Backwards { first: start, last });
            }
            if start >= size {
                return Err(RangeRefusal::Unsatisfiable { start, size });
            }
            Ok(ByteRange {
                start,
                end: last.saturating_add(1).min(size),
            })
        }
        (true, true) => Err(syntax()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(h: &str, size: u64) -> Result<(u64, u64), RangeRefusal> {
        parse(h.as_bytes(), size).map(|r| (r.start, r.end))
    }

    #[test]
    fn single_ranges() {
        assert_eq!(r("bytes=0-99", 1000), Ok((0, 100)));
        assert_eq!(r("bytes=900-", 1000), Ok((900, 1000)));
        assert_eq!(r("bytes=-100", 1000), Ok((900, 1000)));
        assert_eq!(r("bytes=-5000", 1000), Ok((0, 1000)));
        assert_eq!(r("bytes=990-5000", 1000), Ok((990, 1000)));
        assert_eq!(r(" bytes= 5 - 9 ", 1000), Ok((5, 10)));
    }

    #[test]
    fn abuse_is_refused_with_a_reason() {
        assert!(matches!(
            r("bytes=0-1,2-3", 1000),
            Err(RangeRefusal::Multiple(2))
        ));
        assert!(matches!(
            r("bytes=0-,0-,0-", 1000),
            Err(RangeRefusal::Multiple(3))
        ));
        assert!(matches!(
            r("bytes=5-1", 1000),
            Err(RangeRefusal::Backwards { .. })
        ));
        assert!(matches!(
            r("bytes=1000-", 1000),
            Err(RangeRefusal::Unsatisfiable { .. })
        ));
        assert!(matches!(
            r("bytes=-0", 1000),
            Err(RangeRefusal::Unsatisfiable { .. })
        ));
        assert!(matches!(
            r("bytes=99999999999999999999999-", 1000),
            Err(RangeRefusal::Syntax(_))
        ));
        assert!(matches!(
            r("bytes=18446744073709551616-", 1000),
            Err(RangeRefusal::Syntax(_))
        ));
        assert!(matches!(r("items=0-1", 1000), Err(RangeRefusal::Syntax(_))));
        assert!(matches!(
            r("bytes=+1-2", 1000),
            Err(RangeRefusal::Syntax(_))
        ));
        assert!(matches!(r("bytes=-", 1000), Err(RangeRefusal::Syntax(_))));
        let long = format!("bytes={}", "0-1,".repeat(100));
        assert!(matches!(r(&long, 1000), Err(RangeRefusal::TooLong(_))));
    }

    proptest! {
        #[test]
        fn never_panics_and_ranges_fit(header in proptest::collection::vec(any::<u8>(), 0..160), size in 0u64..u64::MAX) {
            if let Ok(range) = parse(&header, size) {
                prop_assert!(range.start < range.end && range.end <= size);
            }
        }

        #[test]
        fn well_formed_ranges_fit(a in 0u64..u64::MAX, b in 0u64..u64::MAX, size in 1u64..u64::MAX) {
            let header = format!("bytes={a}-{b}");
            if let Ok(range) = parse(header.as_bytes(), size) {
                prop_assert_eq!(range.start, a);
                prop_assert!(range.end <= size && range.start < range.end);
            }
        }
    }
}
