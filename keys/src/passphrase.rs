//! Passphrases that protect secret keys: read from a file or the
//! environment, wiped from memory when dropped, never printed.

use std::ffi::OsStr;
use std::fmt;
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::{Error, Item};
use crate::files;

/// minisign reads at most 1023 bytes of a password; a longer one would make
/// a key minisign cannot open.
const MAX_LEN: usize = 1023;

/// A passphrase. Its `Debug` output never shows the bytes.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl Passphrase {
    /// A passphrase from bytes. It must be 1 to 1023 bytes long.
    pub fn new(bytes: &[u8]) -> Result<Passphrase, Error> {
        if bytes.is_empty() || bytes.len() > MAX_LEN {
            return Err(Error::PassphraseLength);
        }
        Ok(Passphrase(Zeroizing::new(bytes.to_vec())))
    }

    /// The first line of a file, without its line ending, as minisign reads a
    /// typed password. A regular file must not be accessible by group or
    /// others; a pipe such as `/dev/stdin` is accepted as is.
    pub fn from_file(path: &Path) -> Result<Passphrase, Error> {
        let bytes = files::read_secret(path, Item::Passphrase, 64 * 1024)?;
        let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = trim_line_end(line);
        Passphrase::new(line).map_err(|err| err.in_file(path))
    }

    /// The value of an environment variable, if set.
    pub fn from_env(var: impl AsRef<OsStr>) -> Result<Option<Passphrase>, Error> {
        match std::env::var_os(var) {
            None => Ok(None),
            Some(value) => {
                let value = Zeroizing::new(value.into_encoded_bytes());
                Passphrase::new(trim_line_end(&value)).map(Some)
            }
        }
    }

    /// The passphrase bytes, for the key derivation.
    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }
}

/// Drop trailing CR and LF, as minisign's trim() does.
fn trim_line_end(mut line: &[u8]) -> &[u8] {
    while let Some((&last, rest)) = line.split_last() {
        if last == b'\n' || last == b'\r' {
            line = rest;
        } else {
            break;
        }
    }
    line
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn first_line_without_line_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass");
        std::fs::write(&path, "s3cret horse\r\nsecond line\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let pass = Passphrase::from_file(&path).unwrap();
        assert_eq!(pass.expose(), b"s3cret horse");
        assert_eq!(format!("{pass:?}"), "Passphrase(<redacted>)");
    }

    #[test]
    fn refuses_readable_and_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass");
        std::fs::write(&path, "s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = Passphrase::from_file(&path).unwrap_err();
        assert!(matches!(err, Error::TooOpen { mode: 0o640, .. }), "{err}");
        assert!(!err.to_string().contains("s3cret"));
        std::fs::write(&path, "\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = Passphrase::from_file(&path).unwrap_err();
        assert!(matches!(err.innermost(), Error::PassphraseLength), "{err}");
    }
}
