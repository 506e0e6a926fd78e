//! Key ids: the 8 random bytes minisign puts in every key and signature.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// A minisign key id. Stored little-endian, shown the way minisign prints it:
/// the 64-bit number in 16 upper-case hex digits (`minisign public key
/// 380C73A758C0392E`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// The raw bytes, as they appear in key and signature blobs.
    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", u64::from_le_bytes(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let syntax = || Error::KeyIdSyntax {
            text: text.chars().take(64).collect(),
        };
        if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(syntax());
        }
        let value = u64::from_str_radix(text, 16).map_err(|_| syntax())?;
        Ok(KeyId(value.to_le_bytes()))
    }
}

impl Serialize for KeyId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_like_minisign() {
        // Bytes from a key `minisign -G` made here; it printed 380C73A758C0392E.
        let id = KeyId([0x2e, 0x39, 0xc0, 0x58, 0xa7, 0x73, 0x0c, 0x38]);
        assert_eq!(id.to_string(), "380C73A758C0392E");
        assert_eq!("380c73a758c0392e".parse::<KeyId>().unwrap(), id);
    }

    #[test]
    fn rejects_bad_text() {
        for text in [
            "",
            "380C73A758C0392",
            "380C73A758C0392EE",
            "+80C73A758C0392E",
            "zz0C73A758C0392E",
        ] {
            assert!(text.parse::<KeyId>().is_err(), "{text}");
        }
    }
}
