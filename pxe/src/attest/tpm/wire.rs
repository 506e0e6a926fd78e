//! Big-endian TPM wire format: a growable writer and a bounds-checked reader.
//!
//! Every size read from the wire is checked against what is left of the
//! buffer before anything is allocated or sliced, so a hostile length field
//! costs an error, never a panic or a large allocation.

use thiserror::Error;

/// A TPM structure that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// The buffer ended inside a field.
    #[error("{what}: truncated (need {need} bytes, {have} left)")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Bytes the field needs.
        need: usize,
        /// Bytes left in the buffer.
        have: usize,
    },
    /// Bytes were left after the structure ended.
    #[error("{what}: {count} trailing bytes")]
    Trailing {
        /// The structure that should have consumed everything.
        what: &'static str,
        /// How many bytes were left.
        count: usize,
    },
    /// A selector, tag or enumerated value this code does not accept.
    #[error("{what}: unexpected value {value:#x}")]
    Unexpected {
        /// The field holding the value.
        what: &'static str,
        /// The value found.
        value: u32,
    },
    /// A size or count larger than the structure allows.
    #[error("{what}: size {size} exceeds the limit {max}")]
    TooLarge {
        /// The field holding the size.
        what: &'static str,
        /// The size found.
        size: usize,
        /// The largest size accepted.
        max: usize,
    },
}

/// Appends TPM fields to a byte buffer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// Appends a big-endian u16.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends a big-endian u32.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends a big-endian u64.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// Appends a TPM2B: a u16 size then the bytes.
    ///
    /// # Panics
    /// If `v` is longer than 65535 bytes: every caller passes a digest, a
    /// key or a bounded buffer, so a longer one is a programming error.
    pub fn tpm2b(&mut self, v: &[u8]) -> &mut Self {
        let len = u16::try_from(v.len()).expect("TPM2B payload fits a u16");
        self.u16(len).bytes(v)
    }

    /// Appends a TPM2B whose payload is the structure `f` writes.
    pub fn sized(&mut self, f: impl FnOnce(&mut Writer)) -> &mut Self {
        let mut inner = Writer::new();
        f(&mut inner);
        self.tpm2b(&inner.buf)
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The finished buffer.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    /// Overwrites 4 bytes at `at` (used for the command size in the header).
    pub(crate) fn patch_u32(&mut self, at: usize, v: u32) {
        self.buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
}

/// Reads TPM fields from a byte slice, checking every length.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Current offset from the start.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if n > self.remaining() {
            return Err(WireError::Truncated {
                what,
                need: n,
                have: self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// Reads a big-endian u16.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    /// Reads a big-endian u32.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    /// Reads a big-endian u64.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// Reads a TPM2B and returns its payload.
    pub fn tpm2b(&mut self, what: &'static str) -> Result<&'a [u8], WireError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }

    /// Reads a TPM2B whose payload may be at most `max` bytes.
    pub fn tpm2b_max(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], WireError> {
        let v = self.tpm2b(what)?;
        if v.len() > max {
            return Err(WireError::TooLarge {
                what,
                size: v.len(),
                max,
            });
        }
        Ok(v)
    }

    /// Reads a list count and checks it against `max` and against the
    /// bytes left (each element taking at least `min_elem` bytes), so that
    /// no caller allocates for elements that cannot be there.
    pub fn count(
        &mut self,
        what: &'static str,
        max: usize,
        min_elem: usize,
    ) -> Result<usize, WireError> {
        let n = self.u32(what)? as usize;
        if n > max {
            return Err(WireError::TooLarge { what, size: n, max });
        }
        let need = n.saturating_mul(min_elem);
        if need > self.remaining() {
            return Err(WireError::Truncated {
                what,
                need,
                have: self.remaining(),
            });
        }
        Ok(n)
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self, what: &'static str) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(WireError::Trailing { what, count }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tpm2b_round_trip_and_bounds() {
        let mut w = Writer::new();
        w.tpm2b(b"abc").u32(7);
        let bytes = w.finish();
        assert_eq!(bytes, [0, 3, b'a', b'b', b'c', 0, 0, 0, 7]);
        let mut r = Reader::new(&bytes);
        assert_eq!(r.tpm2b("x").unwrap(), b"abc");
        assert_eq!(r.u32("y").unwrap(), 7);
        r.finish("all").unwrap();

        let lying = [0xff, 0xff, 1, 2];
        let err = Reader::new(&lying).tpm2b("lying").unwrap_err();
        assert!(matches!(
            err,
            WireError::Truncated {
                need: 65535,
                have: 2,
                ..
            }
        ));
    }

    #[test]
    fn count_refuses_more_elements_than_bytes() {
        let bytes = [0, 0, 0, 4, 1, 2, 3];
        let err = Reader::new(&bytes).count("list", 16, 2).unwrap_err();
        assert!(matches!(err, WireError::Truncated { need: 8, .. }));
        let err = Reader::new(&bytes).count("list", 3, 1).unwrap_err();
        assert!(matches!(err, WireError::TooLarge { size: 4, .. }));
    }
}
