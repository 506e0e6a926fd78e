//! Interned package and architecture names.
//!
//! A Packages index mentions the same few tens of thousands of names
//! millions of times (every Depends atom). Interning turns each into a
//! [`Name`], a `u32` that is cheap to store, compare and hash, and dense:
//! a resolver can keep per-name tables as plain vectors indexed by
//! [`Name::index`] instead of hash maps keyed by strings.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

/// An interned name; meaningful only with the [`Interner`] that made it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(u32);

impl Name {
    /// The dense index of this name (0, 1, 2, ... in order of first sight).
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name#{}", self.0)
    }
}

/// The table of interned names.
#[derive(Debug, Default, Clone)]
pub struct Interner {
    ids: HashMap<Box<str>, Name, BuildHasherDefault<FxHasher>>,
    names: Vec<Box<str>>,
}

impl Interner {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The name for `s`, adding it if new.
    pub fn intern(&mut self, s: &str) -> Name {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = Name(u32::try_from(self.names.len()).expect("fewer than 2^32 names"));
        self.names.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }

    /// The name for `s` if it was ever interned.
    pub fn get(&self, s: &str) -> Option<Name> {
        self.ids.get(s).copied()
    }

    /// The text of a name.
    ///
    /// # Panics
    /// If `name` came from another interner with more names.
    pub fn resolve(&self, name: Name) -> &str {
        &self.names[name.index()]
    }

    /// How many distinct names there are (one past the largest index).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Every name, in index order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.names.iter().map(|n| &**n)
    }

    /// Whether no name was interned yet.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// The rustc "Fx" hash: far quicker than SipHash on short keys, and the
/// keys here are package names from files we parse, not attacker-chosen
/// hash-flooding input reaching a server.
#[derive(Default, Clone, Copy)]
struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_once_and_resolves() {
        let mut names = Interner::new();
        let a = names.intern("libc6");
        let b = names.intern("dpkg");
        assert_eq!(names.intern("libc6"), a);
        assert_ne!(a, b);
        assert_eq!((a.index(), b.index()), (0, 1));
        assert_eq!(names.resolve(b), "dpkg");
        assert_eq!(names.get("dpkg"), Some(b));
        assert_eq!(names.get("apt"), None);
        assert_eq!(names.len(), 2);
    }
}
