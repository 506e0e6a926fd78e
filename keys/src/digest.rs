//! SHA-256 digests of artifacts, streamed in large chunks.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::error::Error;

/// Chunk size for hashing: big enough that syscalls vanish in the cost.
const CHUNK: usize = 1 << 20;

/// A SHA-256 digest, written as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest(pub [u8; 32]);

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{self}")
    }
}

impl FromStr for Sha256Digest {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let syntax = || Error::DigestSyntax {
            text: text.chars().take(80).collect(),
        };
        // Lower case only: one spelling per digest keeps JSON canonical.
        if text.len() != 64 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(syntax());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(|_| syntax())?;
        Ok(Sha256Digest(out))
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Hash a stream; returns its length and digest.
pub fn sha256_reader(mut reader: impl Read) -> io::Result<(u64, Sha256Digest)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut len = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, Sha256Digest(hasher.finalize().into())))
}

/// Hash a file; returns its length and digest.
pub fn sha256_file(path: &Path) -> Result<(u64, Sha256Digest), Error> {
    let read_error = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    sha256_reader(file).map_err(read_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let (len, digest) = sha256_reader(&b"abc"[..]).unwrap();
        assert_eq!(len, 3);
        assert_eq!(
            digest.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // Longer than one chunk, so chunk boundaries are crossed.
        let data = vec![b'a'; CHUNK * 2 + 17];
        let (len, digest) = sha256_reader(&data[..]).unwrap();
        assert_eq!(len, data.len() as u64);
        assert_eq!(digest.0, <[u8; 32]>::from(Sha256::digest(&data)));
    }

    #[test]
    fn parses_lower_case_only() {
        let text = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(text.parse::<Sha256Digest>().unwrap().to_string(), text);
        assert!(text.to_uppercase().parse::<Sha256Digest>().is_err());
        assert!(text[1..].parse::<Sha256Digest>().is_err());
    }
}
