//! The trust state a verifier holds, and the rules for changing it.

use std::path::Path;

use super::{Delegation, KeyEntry, Scope, TrustBody, TrustFile};
use crate::error::{Error, Item, Quorum};
use crate::files;
use crate::keyid::KeyId;
use crate::minisign::PublicKey;
use crate::time::Timestamp;

/// A trust file whose root signatures have been checked.
///
/// The rules, after TUF:
/// - A verifier starts from a trust file it received out of band (installed
///   with the verifier), optionally cross-checked against root public keys
///   the operator pinned: [`Trust::from_installed`]. The file must carry a
///   threshold of valid signatures by its own roots (and, when pins are
///   given, that threshold must be met by pinned roots alone).
/// - It moves to a newer file only through [`Trust::update`]: the new file
///   must have a higher version, must not have expired, and must be signed
///   by a threshold of the roots it replaces *and* a threshold of its own
///   roots. So one stolen root key cannot lower the threshold, swap the
///   roots, or replay an old file.
/// - Signatures by the same key count once; signatures by keys that are not
///   roots count for nothing.
#[derive(Debug, Clone)]
pub struct Trust {
    file: TrustFile,
}

impl Trust {
    /// Accept a trust file installed out of band. `pinned` may be empty;
    /// otherwise the file's threshold must be met by pinned keys. Expiry is
    /// not checked here (an expired state can still accept an update), but
    /// an expired state authorizes no manifest.
    pub fn from_installed(bytes: &[u8], pinned: &[PublicKey]) -> Result<Trust, Error> {
        let file = TrustFile::parse(bytes)?;
        let roots = &file.signed.roots;
        file.check_threshold(&roots.keys, roots.threshold, Quorum::OwnRoots)?;
        if !pinned.is_empty() {
            let pinned_roots: Vec<KeyEntry> = roots
                .keys
                .iter()
                .filter(|k| pinned.contains(&k.public))
                .cloned()
                .collect();
            file.check_threshold(&pinned_roots, roots.threshold, Quorum::PinnedRoots)?;
        }
        Ok(Trust { file })
    }

    /// [`Trust::from_installed`] for a file on disk.
    pub fn load(path: &Path, pinned: &[PublicKey]) -> Result<Trust, Error> {
        let bytes = files::read_limited(path, Item::Trust, super::FILE_LIMIT)?;
        Trust::from_installed(&bytes, pinned).map_err(|err| err.in_file(path))
    }

    /// Accept `bytes` as the successor of this state (see the type's rules).
    pub fn update(&self, bytes: &[u8], now: Timestamp) -> Result<Trust, Error> {
        let next = TrustFile::parse(bytes)?;
        let (current, offered) = (self.version(), next.signed.version);
        if offered <= current {
            return Err(Error::TrustNotNewer { current, offered });
        }
        if next.signed.expires <= now {
            return Err(Error::TrustExpired {
                version: offered,
                expires: next.signed.expires,
            });
        }
        let own = &next.signed.roots;
        next.check_threshold(&own.keys, own.threshold, Quorum::OwnRoots)?;
        let held = &self.file.signed.roots;
        next.check_threshold(&held.keys, held.threshold, Quorum::CurrentRoots)?;
        tracing::info!(from = current, to = offered, "trust file updated");
        Ok(Trust { file: next })
    }

    /// The checked file.
    pub fn file(&self) -> &TrustFile {
        &self.file
    }

    /// The signed body.
    pub fn body(&self) -> &TrustBody {
        &self.file.signed
    }

    /// The version.
    pub fn version(&self) -> u64 {
        self.file.signed.version
    }

    /// Fail if this state has expired at `now`.
    pub fn check_current(&self, now: Timestamp) -> Result<(), Error> {
        let body = self.body();
        if body.expires <= now {
            return Err(Error::TrustExpired {
                version: body.version,
                expires: body.expires,
            });
        }
        Ok(())
    }

    /// The delegation for `key_id`: revoked keys and unknown keys are refused
    /// (a revoked key is reported as revoked even though it has left the
    /// signer list).
    pub fn delegation(&self, key_id: KeyId) -> Result<&Delegation, Error> {
        let body = self.body();
        if body.is_revoked(key_id) {
            return Err(Error::KeyRevoked { key_id });
        }
        body.signer(key_id).ok_or(Error::UnknownKey { key_id })
    }

    /// May `key_id` sign `image` on `channel` at `now`? Checks this state's
    /// expiry, revocation, delegation, the key's expiry and its scope.
    pub fn authorize(
        &self,
        key_id: KeyId,
        image: &str,
        channel: &str,
        now: Timestamp,
    ) -> Result<&Delegation, Error> {
        let signer = self.current_signer(key_id, now)?;
        if !Scope::allows(&signer.scope, image, channel) {
            return Err(Error::OutOfScope {
                key_id,
                name: signer.name.clone(),
                image: image.to_owned(),
                channel: channel.to_owned(),
            });
        }
        Ok(signer)
    }

    /// May `key_id` sign snapshots of the mirror `mirror` at `now`? The same
    /// checks as [`Trust::authorize`], against the key's `mirror:` scopes.
    pub fn authorize_mirror(
        &self,
        key_id: KeyId,
        mirror: &str,
        now: Timestamp,
    ) -> Result<&Delegation, Error> {
        let signer = self.current_signer(key_id, now)?;
        if !Scope::allows_mirror(&signer.scope, mirror) {
            return Err(Error::MirrorOutOfScope {
                key_id,
                name: signer.name.clone(),
                mirror: mirror.to_owned(),
            });
        }
        Ok(signer)
    }

    /// The delegation of a key that may sign something at `now`: this state
    /// is current, the key is delegated, not revoked and not expired.
    fn current_signer(&self, key_id: KeyId, now: Timestamp) -> Result<&Delegation, Error> {
        self.check_current(now)?;
        let signer = self.delegation(key_id)?;
        if signer.expires <= now {
            return Err(Error::KeyExpired {
                key_id,
                name: signer.name.clone(),
                expires: signer.expires,
            });
        }
        Ok(signer)
    }
}
