//! Netascii (RFC 764 NVT ASCII as RFC 1350 uses it): LF is sent as CR LF
//! and a bare CR as CR NUL, so the receiver can restore the exact bytes.
//! PXE clients always ask for octet; netascii is served for completeness
//! (tftp-hpa's `mode ascii`), converted in memory.

/// Converts local text to its netascii form.
pub fn encode(bytes: &[u8]) -> Vec<u8> {
    let extra = bytes.iter().filter(|&&b| b == b'\n' || b == b'\r').count();
    let mut out = Vec::with_capacity(bytes.len() + extra);
    for &b in bytes {
        match b {
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'\r' => out.extend_from_slice(b"\r\0"),
            b => out.push(b),
        }
    }
    out
}

/// Converts netascii back to local bytes (what a receiving client does).
pub fn decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut iter = bytes.iter().copied().peekable();
    while let Some(b) = iter.next() {
        match (b, iter.peek()) {
            (b'\r', Some(b'\n')) => {
                out.push(b'\n');
                iter.next();
            }
            (b'\r', Some(0)) => {
                out.push(b'\r');
                iter.next();
            }
            (b, _) => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn line_ends_and_bare_cr() {
        assert_eq!(encode(b"a\nb\r\nc\rd"), b"a\r\nb\r\0\r\nc\r\0d");
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(decode(&encode(&bytes)), bytes);
        }
    }
}
