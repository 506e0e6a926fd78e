//! Which key may sign a mirror's snapshots.
//!
//! The verifying key always comes from the caller, never from the mirror
//! directory: anyone who can write the mirror could replace a key file
//! kept there along with the snapshots it vouches for. Builds take it from
//! the site's trust file (installed out of band, root-signed, with a
//! `mirror:NAME` scope for the snapshot signer) or from a public key the
//! operator pins on the command line.

use ironrack_keys::{MinisignSignature, PublicKey, Timestamp, Trust};

/// How a snapshot's Release signature is checked.
#[derive(Debug, Clone)]
pub enum Verifier {
    /// Exactly this key.
    Key(PublicKey),
    /// Any key the trust file delegates a `mirror:` scope covering `mirror`
    /// to, unexpired and unrevoked at `now`.
    Trust {
        /// The verified trust state.
        trust: Box<Trust>,
        /// The mirror name the caller expects (also checked against the
        /// name the signature carries).
        mirror: String,
        /// The time for expiry checks.
        now: Timestamp,
    },
}

impl Verifier {
    /// Verify with one pinned public key.
    pub fn public_key(key: PublicKey) -> Self {
        Self::Key(key)
    }

    /// Verify through the site's trust file, for mirror `mirror`, now.
    pub fn trust(trust: Trust, mirror: &str) -> Self {
        Self::trust_at(trust, mirror, Timestamp::now())
    }

    /// [`Verifier::trust`] at a given time.
    pub fn trust_at(trust: Trust, mirror: &str, now: Timestamp) -> Self {
        Self::Trust {
            trust: Box::new(trust),
            mirror: mirror.to_owned(),
            now,
        }
    }

    /// The mirror name a signature must carry: the trust verifier's own,
    /// else the name of the mirror being read.
    pub(crate) fn expected_mirror<'a>(&'a self, mirror_name: &'a str) -> &'a str {
        match self {
            Self::Key(_) => mirror_name,
            Self::Trust { mirror, .. } => mirror,
        }
    }

    /// Checks a minisign signature file over `message`.
    pub(crate) fn verify(
        &self,
        message: &[u8],
        signature: &[u8],
    ) -> Result<MinisignSignature, ironrack_keys::Error> {
        let sig = MinisignSignature::parse(signature)?;
        match self {
            Self::Key(key) => sig.verify(key, message)?,
            Self::Trust { trust, mirror, now } => {
                let signer = trust.authorize_mirror(sig.key_id, mirror, *now)?;
                sig.verify(&signer.public, message)?;
            }
        }
        Ok(sig)
    }
}

/// The trusted comment we sign with a snapshot's Release.
pub(crate) fn trusted_comment(mirror: &str, suite: &str) -> String {
    format!("mirror:{mirror}\tsuite:{suite}")
}

/// The mirror name in an authenticated trusted comment.
pub(crate) fn signed_mirror(comment: &str) -> Option<&str> {
    comment.split('\t').find_map(|f| f.strip_prefix("mirror:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_round_trip() {
        let c = trusted_comment("site", "bookworm");
        assert_eq!(signed_mirror(&c), Some("site"));
        assert_eq!(signed_mirror("timestamp:1\tfile:Release"), None);
    }
}
