//! Read buffers for file-backed artifacts, reused across reads.
//!
//! A fresh 1 MiB `vec![0; n]` per served chunk is a new mapping from the
//! allocator: the read then faults in 256 pages, and the free gives them
//! back with `madvise`. Measured with perf on `scripts/bench-http.sh`, that
//! was a third of the file path's read cost. A buffer handed to hyper as
//! [`Bytes`] comes back here when hyper drops it.

use std::sync::Mutex;

use bytes::Bytes;

/// The size of every pooled buffer: the largest read asked for.
pub const BUFFER: usize = 1 << 20;

/// Buffers kept for reuse; more in flight are allocated and freed as
/// usual. 64 MiB in all at most.
const KEPT: usize = 64;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A buffer of [`BUFFER`] bytes (contents unspecified) from the pool.
pub fn take() -> Vec<u8> {
    let reused = POOL.lock().unwrap_or_else(|e| e.into_inner()).pop();
    reused.unwrap_or_else(|| vec![0u8; BUFFER])
}

/// The first `len` bytes of `buf` as [`Bytes`]; `buf` returns to the pool
/// when the last clone is dropped.
pub fn freeze(buf: Vec<u8>, len: usize) -> Bytes {
    debug_assert!(len <= buf.len());
    Bytes::from_owner(Pooled { buf, len })
}

struct Pooled {
    buf: Vec<u8>,
    len: usize,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Returns an unused buffer from [`take`] to the pool.
pub fn put(buf: Vec<u8>) {
    if buf.len() != BUFFER {
        return;
    }
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if pool.len() < KEPT {
        pool.push(buf);
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        put(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_buffer_is_reused_and_its_slice_is_exact() {
        let mut buf = take();
        buf[..3].copy_from_slice(b"abc");
        let ptr = buf.as_ptr();
        let bytes = freeze(buf, 3);
        assert_eq!(&bytes[..], b"abc");
        let clone = bytes.slice(1..);
        drop(bytes);
        assert_eq!(&clone[..], b"bc", "a clone keeps the buffer alive");
        drop(clone);
        // Other tests may take buffers concurrently: look for ours among a few.
        let taken: Vec<Vec<u8>> = (0..KEPT).map(|_| take()).collect();
        assert!(
            taken.iter().any(|b| b.as_ptr() == ptr),
            "the buffer came back"
        );
        assert!(taken.iter().all(|b| b.len() == BUFFER));
    }
}
