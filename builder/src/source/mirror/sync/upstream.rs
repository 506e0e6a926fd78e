//! One upstream suite: its Release fetched and verified with gpgv, then
//! its Packages indexes fetched and checked against the signed hashes.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::super::error::Error;
use super::super::fsio;
use super::super::snapshot::check_digest;
use super::fetch::{Fetcher, Location};
use super::gpgv::{self, Keyring};
use crate::source::compress::Compression;
use crate::source::release::{ClearSigned, Release};

/// InRelease files of Debian suites are ~150 KB; this is generous.
const RELEASE_LIMIT: u64 = 64 << 20;
/// A decompressed index larger than this is not an index.
const INDEX_TEXT_LIMIT: u64 = 1 << 30;

/// A Release whose signature gpgv accepted.
#[derive(Debug)]
pub(crate) struct VerifiedRelease {
    /// The URL of the signed file (InRelease or Release).
    pub url: String,
    /// The suite as asked for (the path under dists/).
    pub suite: String,
    /// The parsed, signed text.
    pub release: Release,
    /// SHA-256 of the signed text (provenance).
    pub sha256: [u8; 32],
}

/// Checks an upstream suite name: a path under `dists/` that stays there.
pub(crate) fn check_suite_path(suite: &str) -> Result<(), Error> {
    let ok = !suite.is_empty()
        && suite.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
        });
    if ok {
        Ok(())
    } else {
        Err(Error::Name {
            what: "upstream suite",
            value: suite.chars().take(64).collect(),
        })
    }
}

/// Fetches and verifies `dists/SUITE/InRelease` (or `Release` +
/// `Release.gpg`). `work` is a private scratch directory.
pub(crate) fn fetch_release(
    fetcher: &Fetcher,
    at: &Location,
    suite: &str,
    keyring: &Keyring,
    work: &Path,
    now: Option<i64>,
) -> Result<VerifiedRelease, Error> {
    check_suite_path(suite)?;
    let scratch = work.join(fsio::temp_name("release-"));
    fsio::create_dirs(&scratch)?;
    let home = scratch.join("gnupg");
    std::fs::create_dir(&home).map_err(fsio::write_error(&home))?;
    let result = fetch_release_in(fetcher, at, suite, keyring, &scratch, &home, now);
    fsio::remove_tree(&scratch);
    result
}

fn fetch_release_in(
    fetcher: &Fetcher,
    at: &Location,
    suite: &str,
    keyring: &Keyring,
    scratch: &Path,
    home: &Path,
    now: Option<i64>,
) -> Result<VerifiedRelease, Error> {
    let (data, sig) = (scratch.join("data"), scratch.join("data.sig"));
    let inrelease = format!("dists/{suite}/InRelease");
    let (url, text) = match fetcher.get(at, &inrelease, RELEASE_LIMIT)? {
        Some(bytes) => {
            let url = at.url(&inrelease);
            let text = crate::source::control::utf8(&bytes, &url)?;
            // Verify exactly the bytes we will parse: the extracted text,
            // as a detached signature over its canonical form.
            let msg = ClearSigned::parse(text, &url)?;
            fsio::write_new(&data, &msg.signed_data(), 0o600)?;
            fsio::write_new(&sig, msg.signature.as_bytes(), 0o600)?;
            gpgv::verify_detached(keyring, &sig, &data, home, &url)?;
            (url, msg.text)
        }
        None => {
            let rel = format!("dists/{suite}/Release");
            let url = at.url(&rel);
            let missing = |rel: &str| Error::Fetch {
                url: at.url(rel),
                problem: super::super::FetchProblem::Status(404),
            };
            let bytes = fetcher
                .get(at, &rel, RELEASE_LIMIT)?
                .ok_or_else(|| missing(&rel))?;
            let gpg_rel = format!("{rel}.gpg");
            let signature = fetcher
                .get(at, &gpg_rel, 1 << 20)?
                .ok_or_else(|| missing(&gpg_rel))?;
            fsio::write_new(&data, &bytes, 0o600)?;
            fsio::write_new(&sig, &signature, 0o600)?;
            gpgv::verify_detached(keyring, &sig, &data, home, &url)?;
            let text = crate::source::control::utf8(&bytes, &url)?.to_owned();
            (url, text)
        }
    };
    let release = Release::parse(&text, &url)?;
    let leaf = suite.rsplit('/').next().unwrap_or(suite);
    let names = [release.suite.as_deref(), release.codename.as_deref()];
    // A signed Release of a sibling suite (same key) must not stand in
    // for the one asked for: apt checks this too.
    if !names.iter().any(|n| *n == Some(suite) || *n == Some(leaf)) {
        return Err(Error::WrongSuite {
            url,
            suite: release.suite.clone(),
            codename: release.codename.clone(),
            wanted: suite.to_owned(),
        });
    }
    if let (Some(now), Some(valid_until)) = (now, release.valid_until_unix)
        && valid_until < now
    {
        return Err(Error::Expired { url, valid_until });
    }
    tracing::info!(
        url,
        suite,
        date = release.date.as_deref().unwrap_or("?"),
        "upstream Release verified"
    );
    Ok(VerifiedRelease {
        sha256: Sha256::digest(text.as_bytes()).into(),
        url,
        suite: suite.to_owned(),
        release,
    })
}

/// Fetches the Packages index of `component`/`arch` that the Release
/// lists (xz, then gz, then plain), checks it against the signed hash and
/// returns its URL and text; `None` if the Release lists none.
pub(crate) fn fetch_index(
    fetcher: &Fetcher,
    at: &Location,
    verified: &VerifiedRelease,
    component: &str,
    arch: &str,
) -> Result<Option<(String, String)>, Error> {
    let release = &verified.release;
    for compression in [Compression::Xz, Compression::Gzip, Compression::None] {
        let rel = format!("{component}/binary-{arch}/Packages{}", compression.suffix());
        let Some(listed) = release.index_file(&rel) else {
            continue;
        };
        let dists = format!("dists/{}", verified.suite);
        let canonical = format!("{dists}/{rel}");
        let url = at.url(&canonical);
        let mut bytes = None;
        if release.acquire_by_hash {
            // By hash: immune to the archive updating mid-sync.
            let by_hash = format!(
                "{dists}/{component}/binary-{arch}/by-hash/SHA256/{}",
                hex::encode(listed.sha256)
            );
            bytes = fetcher.get(at, &by_hash, listed.size)?;
        }
        let bytes = match bytes {
            Some(b) => b,
            None => match fetcher.get(at, &canonical, listed.size)? {
                Some(b) => b,
                // Debian lists uncompressed indexes it does not serve.
                None => continue,
            },
        };
        let hashed = (bytes.len() as u64, Sha256::digest(&bytes).into());
        let what = format!("index checked against signed {}", verified.url);
        check_digest(&what, Path::new(&url), listed.size, &listed.sha256, hashed)?;
        let mut text = Vec::new();
        compression
            .decoder(&bytes[..])
            .and_then(|d| d.take(INDEX_TEXT_LIMIT).read_to_end(&mut text))
            .map_err(|e| Error::Fetch {
                url: url.clone(),
                problem: super::super::FetchProblem::Io(e),
            })?;
        let text = crate::source::control::utf8(&text, &url)?.to_owned();
        return Ok(Some((url, text)));
    }
    Ok(None)
}
