//! Generating a key pair into `NAME.pub` and `NAME.key`.

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::files::{self, PUBLIC_MODE, SECRET_MODE};
use crate::keyid::KeyId;
use crate::minisign::{Protection, SecretKey};

/// The files of a freshly generated key pair.
#[derive(Debug, Clone)]
pub struct KeyPairFiles {
    /// `NAME.pub`, minisign public key.
    pub public: PathBuf,
    /// `NAME.key`, minisign secret key, mode 0600.
    pub secret: PathBuf,
    /// The new key's id.
    pub key_id: KeyId,
}

/// Generate a key pair as `DIR/NAME.pub` and `DIR/NAME.key`.
///
/// The secret key file is created with mode 0600 from its first byte,
/// written in full and synced before it gets its name; neither file is ever
/// overwritten. `DIR` is created (mode 0700) when missing.
pub fn generate_key_pair(
    dir: &Path,
    name: &str,
    protection: Protection<'_>,
) -> Result<KeyPairFiles, Error> {
    check_key_name(name)?;
    let public = dir.join(format!("{name}.pub"));
    let secret = dir.join(format!("{name}.key"));
    for path in [&public, &secret] {
        if std::fs::symlink_metadata(path).is_ok() {
            return Err(Error::AlreadyExists { path: path.clone() });
        }
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| Error::Write {
            path: dir.to_owned(),
            source,
        })?;

    let key = SecretKey::generate()?;
    let key_id = key.public_key().key_id();
    let encrypted = matches!(protection, Protection::Passphrase(..));
    let comment = format!(
        "ironrack secret key {name} {key_id}{}",
        if encrypted { "" } else { " (unencrypted)" }
    );
    let secret_text = key.to_file_text(&comment, protection)?;
    let public_text = key
        .public_key()
        .to_file_text(&format!("ironrack public key {name} {key_id}"))?;

    files::create_new(&secret, secret_text.as_bytes(), SECRET_MODE)?;
    if let Err(err) = files::create_new(&public, public_text.as_bytes(), PUBLIC_MODE) {
        // Never leave a secret key without its public half.
        let _ = std::fs::remove_file(&secret);
        return Err(err);
    }
    tracing::info!(key_id = %key_id, public = %public.display(), encrypted, "generated key pair");
    Ok(KeyPairFiles {
        public,
        secret,
        key_id,
    })
}

/// Key names become file names: keep them plain.
fn check_key_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::KeyName {
            name: name.chars().take(64).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_both_files_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate_key_pair(dir.path(), "ci", Protection::Unencrypted).unwrap();
        let mode = std::fs::metadata(&files.secret)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let key = SecretKey::load(&files.secret, None).unwrap();
        let public = crate::PublicKey::load(&files.public).unwrap();
        assert_eq!(key.public_key(), public);
        let err = generate_key_pair(dir.path(), "ci", Protection::Unencrypted).unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
    }

    #[test]
    fn refuses_names_that_are_paths() {
        for name in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(check_key_name(name).is_err(), "{name}");
        }
    }
}
