//! minisign-format keys and signatures, readable and writable by the
//! standard `minisign` and (for public keys and `Ed` signatures)
//! `signify-openbsd` tools.
//!
//! Every file is lines of text: an `untrusted comment: ` line, then a base64
//! blob whose first two bytes name the algorithm; a signature adds a
//! `trusted comment: ` line and a base64 global signature over the signature
//! bytes and that comment.

mod kdf;
mod pubkey;
mod seckey;
mod signature;

pub use kdf::KdfLimits;
pub use pubkey::PublicKey;
pub use seckey::{Protection, SecretKey};
pub use signature::{
    MinisignSignature, SignatureAlgorithm, default_trusted_comment, sign_file, verify_file,
};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::{Error, Item};

/// Algorithm id of Ed25519 keys and of signatures over the raw file.
pub(crate) const ALG_ED: [u8; 2] = *b"Ed";
/// Algorithm id of signatures over the BLAKE2b-512 hash of the file.
pub(crate) const ALG_ED_HASHED: [u8; 2] = *b"ED";

pub(crate) const UNTRUSTED_PREFIX: &[u8] = b"untrusted comment: ";
pub(crate) const TRUSTED_PREFIX: &[u8] = b"trusted comment: ";
/// minisign reads the untrusted comment line with a 1024-byte fgets buffer.
pub(crate) const UNTRUSTED_MAX: usize = 1024 - 1 - 19 - 1;
/// minisign refuses trusted comments of 8192 - 18 bytes or more.
pub(crate) const TRUSTED_MAX: usize = 8192 - 18 - 1;

/// The lines of a small minisign text file, consumed in order.
pub(crate) struct Lines<'a> {
    rest: &'a [u8],
    line: usize,
    what: Item,
}

impl<'a> Lines<'a> {
    pub(crate) fn new(bytes: &'a [u8], what: Item, limit: usize) -> Result<Self, Error> {
        if bytes.len() > limit {
            return Err(Error::TooLarge {
                what,
                limit: limit as u64,
            });
        }
        Ok(Lines {
            rest: bytes,
            line: 0,
            what,
        })
    }

    /// The next line, without its line ending (trailing CRs are dropped, as
    /// minisign does).
    pub(crate) fn next(&mut self, expected: &'static str) -> Result<&'a [u8], Error> {
        self.line += 1;
        if self.rest.is_empty() {
            return Err(Error::MissingLine {
                what: self.what,
                line: self.line,
                expected,
            });
        }
        let (mut line, rest) = match self.rest.iter().position(|&b| b == b'\n') {
            Some(end) => (&self.rest[..end], &self.rest[end + 1..]),
            None => (self.rest, &[][..]),
        };
        self.rest = rest;
        while let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        Ok(line)
    }

    /// The next line, which must start with `prefix`; returns what follows it.
    pub(crate) fn next_prefixed(
        &mut self,
        prefix: &'static [u8],
        expected: &'static str,
    ) -> Result<&'a [u8], Error> {
        let line = self.next(expected)?;
        line.strip_prefix(prefix).ok_or(Error::LinePrefix {
            what: self.what,
            line: self.line,
            prefix: std::str::from_utf8(prefix).unwrap_or_default(),
        })
    }

    /// Decode the next line as base64 of exactly `len` bytes.
    pub(crate) fn next_base64(
        &mut self,
        len: usize,
        expected: &'static str,
    ) -> Result<Vec<u8>, Error> {
        let line = self.next(expected)?;
        decode_base64(line, len, self.what, self.line)
    }

    /// Nothing may follow the last line.
    pub(crate) fn end(self) -> Result<(), Error> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Error::TrailingData {
                what: self.what,
                line: self.line,
            })
        }
    }
}

/// Decode canonical padded base64 of exactly `len` bytes.
pub(crate) fn decode_base64(
    text: &[u8],
    len: usize,
    what: Item,
    line: usize,
) -> Result<Vec<u8>, Error> {
    // A line far longer than the blob is not worth decoding.
    if text.len() > len.div_ceil(3) * 4 + 4 {
        return Err(Error::Length {
            what,
            line,
            got: text.len() / 4 * 3,
            want: len,
        });
    }
    let bytes = STANDARD
        .decode(text)
        .map_err(|_| Error::Base64 { what, line })?;
    if bytes.len() != len {
        return Err(Error::Length {
            what,
            line,
            got: bytes.len(),
            want: len,
        });
    }
    Ok(bytes)
}

pub(crate) fn encode_base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Is this comment text something minisign will accept back? One line,
/// printable (tab allowed), UTF-8, within `max` bytes.
pub(crate) fn comment_ok(text: &str, max: usize) -> bool {
    text.len() <= max && text.chars().all(|c| c == '\t' || !c.is_control())
}

/// Check a comment we are about to write.
pub(crate) fn check_comment(text: &str, field: &'static str, max: usize) -> Result<(), Error> {
    if comment_ok(text, max) {
        Ok(())
    } else {
        Err(Error::InvalidComment { field, max })
    }
}
