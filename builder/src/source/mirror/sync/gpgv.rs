//! Upstream Release signatures, checked by `gpgv` as apt does.
//!
//! The verdict comes from gpgv's machine-readable status lines
//! (`--status-fd`), not its exit code: gpgv exits non-zero when *one* of
//! several signatures is by a key the keyring lacks (Debian signs with
//! several keys) and zero for some outcomes apt still refuses. Like apt
//! we need a GOODSIG with its VALIDSIG from a key of the keyring, over a
//! strong digest, and no BADSIG at all.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::super::error::{Error, GpgvProblem};

/// The OpenPGP keys an upstream must be signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyring {
    /// Binary keyring files (gpgv `--keyring`).
    pub files: Vec<PathBuf>,
    /// When non-empty, only these fingerprints (primary or subkey, upper
    /// case hex) count (apt's `Signed-By: FINGERPRINT`).
    pub fingerprints: Vec<String>,
}

impl Keyring {
    /// One keyring file, any key in it.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            files: vec![path.into()],
            fingerprints: Vec::new(),
        }
    }

    fn describe(&self) -> String {
        let files: Vec<String> = self.files.iter().map(|f| f.display().to_string()).collect();
        files.join(",")
    }
}

/// A good signature: who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoodSignature {
    /// Fingerprint of the signing (sub)key.
    pub fingerprint: String,
    /// Fingerprint of its primary key.
    pub primary: String,
}

/// Runs gpgv on a detached signature over `data`; `url` names the signed
/// file in errors; `home` is an empty directory gpgv may use.
pub(crate) fn verify_detached(
    keyring: &Keyring,
    signature: &Path,
    data: &Path,
    home: &Path,
    url: &str,
) -> Result<Vec<GoodSignature>, Error> {
    let fail = |problem| Error::Gpgv {
        url: url.to_owned(),
        keyrings: keyring.describe(),
        problem,
    };
    let mut cmd = Command::new("gpgv");
    // A private home: gpgv must not read the operator's trustedkeys.kbx.
    cmd.arg("--homedir").arg(home).arg("--status-fd").arg("1");
    for file in &keyring.files {
        cmd.arg("--keyring").arg(absolute(file));
    }
    cmd.arg(signature).arg(data);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(GpgvProblem::Spawn(e.to_string())))?;
    let status = String::from_utf8_lossy(&out.stdout);
    tracing::debug!(url, status = %status, stderr = %String::from_utf8_lossy(&out.stderr), "gpgv");
    judge(&status, &keyring.fingerprints).map_err(fail)
}

/// gpgv takes a keyring path without a slash as a name in its home.
fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir().map_or_else(|_| path.to_owned(), |d| d.join(path))
    }
}

/// Digest algorithms apt refuses: MD5 (1), SHA-1 (2), RIPEMD-160 (3).
const WEAK_DIGESTS: [&str; 3] = ["1", "2", "3"];

/// The verdict on gpgv's status lines (the `--status-fd` output).
pub fn judge(status: &str, allowed: &[String]) -> Result<Vec<GoodSignature>, GpgvProblem> {
    let mut good_keyids = Vec::new();
    let mut valid = Vec::new();
    let mut seen = Vec::new();
    for line in status.lines() {
        let Some(rest) = line.strip_prefix("[GNUPG:] ") else {
            continue;
        };
        let words: Vec<&str> = rest.split_ascii_whitespace().collect();
        let Some(&keyword) = words.first() else {
            continue;
        };
        if !seen.contains(&keyword) {
            seen.push(keyword);
        }
        match keyword {
            "BADSIG" => {
                let key = words.get(1).copied().unwrap_or("?");
                return Err(GpgvProblem::BadSignature(key.to_owned()));
            }
            "GOODSIG" => good_keyids.extend(words.get(1).map(|k| k.to_ascii_uppercase())),
            // VALIDSIG fpr date ts expire version reserved pk-algo hash-algo class primary-fpr
            "VALIDSIG" if words.len() >= 9 => valid.push((
                words[1].to_ascii_uppercase(),
                words[8].to_owned(),
                words.get(10).unwrap_or(&words[1]).to_ascii_uppercase(),
            )),
            _ => {}
        }
    }
    // GOODSIG names the long key id: the last 16 digits of the fingerprint.
    // Without it (expired or revoked key) a VALIDSIG does not count.
    let good: Vec<&(String, String, String)> = valid
        .iter()
        .filter(|(fpr, ..)| good_keyids.iter().any(|k| fpr.ends_with(k.as_str())))
        .collect();
    if good.is_empty() {
        return Err(GpgvProblem::NoGoodSignature {
            status: seen.join(" "),
        });
    }
    let strong: Vec<&&(String, String, String)> = good
        .iter()
        .filter(|(_, hash, _)| !WEAK_DIGESTS.contains(&hash.as_str()))
        .collect();
    if strong.is_empty() {
        return Err(GpgvProblem::WeakDigest(good[0].1.clone()));
    }
    let wanted = |fpr: &str| allowed.iter().any(|a| a.eq_ignore_ascii_case(fpr));
    let accepted: Vec<GoodSignature> = strong
        .iter()
        .filter(|(fpr, _, primary)| allowed.is_empty() || wanted(fpr) || wanted(primary))
        .map(|(fpr, _, primary)| GoodSignature {
            fingerprint: fpr.clone(),
            primary: primary.clone(),
        })
        .collect();
    if accepted.is_empty() {
        let found: Vec<&str> = strong.iter().map(|(f, ..)| f.as_str()).collect();
        return Err(GpgvProblem::WrongSigner {
            found: found.join(","),
        });
    }
    Ok(accepted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FPR: &str = "B8E5F13176D2A7A75220028078DBA3BC47EF2265";
    const PRIMARY: &str = "4D64FEC119C2029067D6E791F8D2585B8783D481";

    fn status(hash: &str, extra: &str) -> String {
        format!(
            "[GNUPG:] NEWSIG\n[GNUPG:] KEY_CONSIDERED {PRIMARY} 0\n\
             [GNUPG:] SIG_ID x 2025-05-17 1747476913\n\
             [GNUPG:] GOODSIG 78DBA3BC47EF2265 Debian Stable Release Key (12/bookworm)\n\
             [GNUPG:] VALIDSIG {FPR} 2025-05-17 1747476913 0 4 0 1 {hash} 01 {PRIMARY}\n{extra}"
        )
    }

    #[test]
    fn accepts_a_good_strong_signature() {
        let good = judge(&status("10", ""), &[]).unwrap();
        assert_eq!(good[0].primary, PRIMARY);
        // Another key missing from the keyring does not spoil it (apt's rule).
        let extra = "[GNUPG:] NEWSIG\n[GNUPG:] ERRSIG 1234 1 10 01 1 9\n[GNUPG:] NO_PUBKEY 1234\n";
        assert_eq!(judge(&status("10", extra), &[]).unwrap().len(), 1);
        assert!(judge(&status("8", ""), &[PRIMARY.to_lowercase()]).is_ok());
    }

    #[test]
    fn refuses_bad_weak_missing_and_foreign_signatures() {
        let bad = status("10", "[GNUPG:] BADSIG 1111 someone\n");
        assert!(matches!(judge(&bad, &[]), Err(GpgvProblem::BadSignature(k)) if k == "1111"));
        assert!(matches!(
            judge(&status("2", ""), &[]),
            Err(GpgvProblem::WeakDigest(_))
        ));
        let none = "[GNUPG:] NEWSIG\n[GNUPG:] ERRSIG 1234 1 10 01 1 9\n[GNUPG:] NO_PUBKEY 1234\n";
        let err = judge(none, &[]).unwrap_err();
        assert!(err.to_string().contains("NO_PUBKEY"), "{err}");
        let expired = status("10", "").replace("GOODSIG", "EXPKEYSIG");
        assert!(matches!(
            judge(&expired, &[]),
            Err(GpgvProblem::NoGoodSignature { .. })
        ));
        assert!(matches!(
            judge(&status("10", ""), &["0000".into()]),
            Err(GpgvProblem::WrongSigner { .. })
        ));
        assert!(judge("", &[]).is_err());
    }
}
