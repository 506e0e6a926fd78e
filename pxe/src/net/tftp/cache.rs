//! An in-memory cache for the small files every node asks for (iPXE
//! binaries, scripts): a storm of a thousand nodes then reads each from
//! disk once.
//!
//! Entries are keyed by name and checked against the file's identity
//! (device, inode, size, mtime, ctime) taken from the descriptor the
//! request just opened, so a file replaced or rewritten is read afresh on
//! the next request. Bytes are shared (`Arc`): a session keeps serving the
//! version it started with even if the entry is evicted or replaced.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::source::{FileIdentity, SafeName};

/// A byte-bounded, least-recently-used cache of whole files.
#[derive(Debug)]
pub struct FileCache {
    max_total: u64,
    max_file: u64,
    inner: Mutex<Inner>,
    filling: Mutex<HashMap<SafeName, Arc<Mutex<()>>>>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<SafeName, Entry>,
    total: u64,
    clock: u64,
}

#[derive(Debug)]
struct Entry {
    identity: FileIdentity,
    bytes: Arc<[u8]>,
    last_used: u64,
}

impl FileCache {
    /// A cache holding at most `max_total` bytes, of files of at most
    /// `max_file` bytes each.
    pub fn new(max_total: u64, max_file: u64) -> Self {
        Self {
            max_total,
            max_file: max_file.min(max_total),
            inner: Mutex::default(),
            filling: Mutex::default(),
        }
    }

    /// Runs `fill` for `name` with no other fill of the same name running:
    /// when a storm's first wave asks for the same file at once, one
    /// request reads it and the others find it cached. Blocks; call it
    /// from a blocking thread.
    pub fn fill_once<T>(&self, name: &SafeName, fill: impl FnOnce() -> T) -> T {
        let slot = {
            let mut filling = self.filling.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(filling.entry(name.clone()).or_default())
        };
        let result = {
            let _turn = slot.lock().unwrap_or_else(|e| e.into_inner());
            fill()
        };
        let mut filling = self.filling.lock().unwrap_or_else(|e| e.into_inner());
        // Two references: the map's and ours. Anyone else still waits.
        if Arc::strong_count(&slot) == 2 {
            filling.remove(name);
        }
        result
    }

    /// True when a file of `len` bytes may be cached.
    pub fn admits(&self, len: u64) -> bool {
        len <= self.max_file
    }

    /// The cached bytes of `name` if they belong to `identity`; a stale
    /// entry is dropped.
    pub fn get(&self, name: &SafeName, identity: &FileIdentity) -> Option<Arc<[u8]>> {
        let mut inner = self.lock();
        inner.clock += 1;
        let clock = inner.clock;
        match inner.entries.get_mut(name) {
            Some(entry) if entry.identity == *identity => {
                entry.last_used = clock;
                Some(Arc::clone(&entry.bytes))
            }
            Some(_) => {
                inner.remove(name);
                None
            }
            None => None,
        }
    }

    /// Caches `bytes` as `name` at `identity`, evicting the least recently
    /// used entries to stay within the byte bound.
    pub fn insert(&self, name: SafeName, identity: FileIdentity, bytes: Arc<[u8]>) {
        let len = bytes.len() as u64;
        if !self.admits(len) {
            return;
        }
        let mut inner = self.lock();
        inner.remove(&name);
        while inner.total + len > self.max_total {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(n, _)| n.clone())
            else {
                break;
            };
            inner.remove(&oldest);
        }
        inner.clock += 1;
        let last_used = inner.clock;
        inner.total += len;
        inner.entries.insert(
            name,
            Entry {
                identity,
                bytes,
                last_used,
            },
        );
    }

    /// Drops every entry (on a reload that swaps the file source).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.total = 0;
    }

    /// Largest file cached.
    pub fn max_file(&self) -> u64 {
        self.max_file
    }

    /// Bytes held.
    pub fn total_bytes(&self) -> u64 {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the map consistent (every
        // mutation is a single insert/remove), so a poisoned lock is usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn remove(&mut self, name: &SafeName) {
        if let Some(entry) = self.entries.remove(name) {
            self.total -= entry.bytes.len() as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ino: u64, len: u64) -> FileIdentity {
        FileIdentity {
            dev: 1,
            ino,
            len,
            mtime_ns: 0,
            ctime_ns: 0,
        }
    }

    fn name(n: &str) -> SafeName {
        SafeName::parse(n).unwrap()
    }

    fn bytes(len: usize) -> Arc<[u8]> {
        vec![7u8; len].into()
    }

    #[test]
    fn hit_only_for_the_same_identity() {
        let cache = FileCache::new(100, 50);
        cache.insert(name("a"), id(1, 10), bytes(10));
        assert!(cache.get(&name("a"), &id(1, 10)).is_some());
        assert!(cache.get(&name("a"), &id(2, 10)).is_none());
        // The stale entry is gone, not just skipped.
        assert_eq!(cache.total_bytes(), 0);
        assert!(cache.get(&name("a"), &id(1, 10)).is_none());
    }

    #[test]
    fn evicts_least_recently_used_within_the_bound() {
        let cache = FileCache::new(100, 50);
        cache.insert(name("a"), id(1, 40), bytes(40));
        cache.insert(name("b"), id(2, 40), bytes(40));
        assert!(cache.get(&name("a"), &id(1, 40)).is_some());
        cache.insert(name("c"), id(3, 40), bytes(40));
        assert_eq!(cache.total_bytes(), 80);
        assert!(cache.get(&name("b"), &id(2, 40)).is_none());
        assert!(cache.get(&name("a"), &id(1, 40)).is_some());
        assert!(cache.get(&name("c"), &id(3, 40)).is_some());
    }

    #[test]
    fn concurrent_fills_of_one_name_read_once() {
        let cache = Arc::new(FileCache::new(100, 50));
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (cache, reads) = (Arc::clone(&cache), Arc::clone(&reads));
                std::thread::spawn(move || {
                    cache.fill_once(&name("a"), || {
                        if cache.get(&name("a"), &id(1, 10)).is_none() {
                            reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(20));
                            cache.insert(name("a"), id(1, 10), bytes(10));
                        }
                    })
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(cache.filling.lock().unwrap().is_empty());
    }

    #[test]
    fn files_over_the_per_file_bound_are_not_cached() {
        let cache = FileCache::new(100, 50);
        cache.insert(name("big"), id(1, 60), bytes(60));
        assert_eq!(cache.total_bytes(), 0);
        assert!(!cache.admits(51));
    }
}
