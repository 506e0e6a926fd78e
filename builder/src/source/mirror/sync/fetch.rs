//! Reading upstream files over http:// or from file: URLs, with bounded
//! sizes, and resumable downloads into `tmp/`.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::super::error::{Error, FetchProblem};
use super::super::fsio;
use super::super::snapshot::check_digest;

/// Where an upstream repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// `http://host/path` (no trailing slash).
    Http(String),
    /// A local directory (`file:/path` or `file:///path`).
    File(PathBuf),
}

impl Location {
    /// Parses a repository base URL.
    pub(crate) fn parse(url: &str) -> Result<Self, Error> {
        let unsupported = || Error::UnsupportedUrl {
            url: url.to_owned(),
        };
        if let Some(rest) = url.strip_prefix("http://") {
            if rest.is_empty() || rest.starts_with('/') {
                return Err(unsupported());
            }
            return Ok(Self::Http(url.trim_end_matches('/').to_owned()));
        }
        if let Some(rest) = url.strip_prefix("file:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(unsupported());
            }
            return Ok(Self::File(PathBuf::from(path)));
        }
        Err(unsupported())
    }

    /// The URL of `rel` (a path under the repository root), for messages
    /// and requests.
    pub(crate) fn url(&self, rel: &str) -> String {
        match self {
            Self::Http(base) => format!("{base}/{rel}"),
            Self::File(dir) => format!("file:{}", dir.join(rel).display()),
        }
    }
}

/// Fetches upstream files. One per sync, shared by the download threads.
#[derive(Debug)]
pub(crate) struct Fetcher {
    agent: ureq::Agent,
}

/// Resolves each host once per sync, one lookup at a time. Seen here:
/// glibc lookups made by several threads at once stalled 5 s (a resolver
/// timeout) while a single lookup took a millisecond; a sync needs one
/// address per upstream host anyway.
#[derive(Debug, Default)]
struct CachingResolver {
    inner: ureq::unversioned::resolver::DefaultResolver,
    cache: Mutex<HashMap<String, ureq::unversioned::resolver::ResolvedSocketAddrs>>,
}

impl ureq::unversioned::resolver::Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let key = format!(
            "{:?}{:?}",
            uri.scheme_str(),
            uri.authority().map(|a| a.as_str())
        );
        // The lock is held across the lookup on purpose: one at a time.
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = cache.get(&key) {
            return Ok(found.clone());
        }
        let found = self.inner.resolve(uri, config, timeout)?;
        cache.insert(key, found.clone());
        Ok(found)
    }
}

/// A body to read, and the offset in the file where it starts.
struct Body {
    reader: Box<dyn Read>,
    start: u64,
}

fn fetch_error(url: &str, problem: FetchProblem) -> Error {
    Error::Fetch {
        url: url.to_owned(),
        problem,
    }
}

impl Fetcher {
    pub(crate) fn new(jobs: usize) -> Self {
        let config = ureq::Agent::config_builder()
            // Keep one connection per download thread.
            .max_idle_connections_per_host(jobs.max(1))
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            // An idle connection, not a slow one, is what fails a download.
            .timeout_per_read(Some(Duration::from_secs(60)))
            .user_agent(concat!("ironrack/", env!("CARGO_PKG_VERSION")))
            .build();
        Self {
            agent: ureq::Agent::with_parts(
                config,
                ureq::unversioned::transport::DefaultConnector::default(),
                CachingResolver::default(),
            ),
        }
    }

    /// The whole file at `rel`, at most `limit` bytes; `None` if the
    /// server says it does not exist.
    pub(crate) fn get(
        &self,
        at: &Location,
        rel: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, Error> {
        let url = at.url(rel);
        let Some(body) = self.open(at, rel, 0)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        body.reader
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| fetch_error(&url, FetchProblem::Io(e)))?;
        if out.len() as u64 > limit {
            return Err(fetch_error(
                &url,
                FetchProblem::TooLarge { expected: limit },
            ));
        }
        Ok(Some(out))
    }

    /// Opens `rel` from offset `start` (HTTP Range); the body may start
    /// at 0 when the server ignores the range. `None`: not found.
    fn open(&self, at: &Location, rel: &str, start: u64) -> Result<Option<Body>, Error> {
        let url = at.url(rel);
        match at {
            Location::File(dir) => {
                let path = dir.join(rel);
                let mut file = match File::open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(fetch_error(&url, FetchProblem::Io(e))),
                };
                file.seek(SeekFrom::Start(start))
                    .map_err(|e| fetch_error(&url, FetchProblem::Io(e)))?;
                Ok(Some(Body {
                    reader: Box::new(file),
                    start,
                }))
            }
            Location::Http(_) => self.open_http(&url, start),
        }
    }

    fn open_http(&self, url: &str, start: u64) -> Result<Option<Body>, Error> {
        let mut request = self.agent.get(url);
        if start > 0 {
            request = request.header("Range", &format!("bytes={start}-"));
        }
        let response = request
            .call()
            .map_err(|e| fetch_error(url, FetchProblem::Http(Box::new(e))))?;
        let status = response.status().as_u16();
        let body_start = match status {
            200 => 0,
            206 => {
                let range = response
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                if !range.starts_with(&format!("bytes {start}-")) {
                    return Err(fetch_error(url, FetchProblem::BadRange(range)));
                }
                start
            }
            // The partial file is as long as (or longer than) the whole.
            416 if start > 0 => return self.open_http(url, 0),
            404 | 410 => return Ok(None),
            other => return Err(fetch_error(url, FetchProblem::Status(other))),
        };
        Ok(Some(Body {
            reader: Box::new(response.into_body().into_reader()),
            start: body_start,
        }))
    }

    /// Downloads `rel` into `part` (kept across runs: a rerun continues
    /// where it stopped) until it holds `size` bytes with `sha256`.
    /// Returns the bytes transferred now; `progress` is told each chunk.
    pub(crate) fn download(
        &self,
        at: &Location,
        rel: &str,
        part: &Path,
        size: u64,
        sha256: &[u8; 32],
        progress: &dyn Fn(u64),
    ) -> Result<u64, Error> {
        let url = at.url(rel);
        let mut have = fs::metadata(part).map_or(0, |m| m.len());
        if have > size {
            remove(part);
            have = 0;
        }
        let mut transferred = 0;
        // A partial file from an older upstream version of the same name
        // fails the digest once resumed: then start over, once.
        for attempt in 0..2 {
            if have < size {
                transferred += self.fetch_into(at, rel, part, have, size, progress)?;
            }
            let hashed = fsio::hash_file(part)?;
            match check_digest(&format!("download {url}"), part, size, sha256, hashed) {
                Ok(()) => return Ok(transferred),
                Err(e) if attempt == 0 && have > 0 => {
                    tracing::warn!(url, error = %e, "resumed download does not verify; fetching it again");
                    remove(part);
                    have = 0;
                }
                Err(e) => {
                    remove(part);
                    return Err(e);
                }
            }
        }
        unreachable!("the second attempt returns")
    }

    /// Appends the rest of `rel` (from byte `have`) to `part`.
    fn fetch_into(
        &self,
        at: &Location,
        rel: &str,
        part: &Path,
        have: u64,
        size: u64,
        progress: &dyn Fn(u64),
    ) -> Result<u64, Error> {
        let url = at.url(rel);
        let body = self
            .open(at, rel, have)?
            .ok_or_else(|| fetch_error(&url, FetchProblem::Status(404)))?;
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(part)
            .map_err(fsio::write_error(part))?;
        file.set_len(body.start).map_err(fsio::write_error(part))?;
        file.seek(SeekFrom::Start(body.start))
            .map_err(fsio::write_error(part))?;
        let mut reader = body.reader.take(size - body.start + 1);
        let mut buf = vec![0u8; 256 << 10];
        let mut got = body.start;
        let mut transferred = 0;
        let result = loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(fetch_error(&url, FetchProblem::Io(e))),
            };
            if let Err(e) = file.write_all(&buf[..n]) {
                break Err(fsio::write_error(part)(e));
            }
            got += n as u64;
            transferred += n as u64;
            progress(n as u64);
        };
        // Keep what arrived, durably, for the next run.
        file.sync_all().map_err(fsio::write_error(part))?;
        drop(file);
        if got > size {
            remove(part);
            return Err(fetch_error(&url, FetchProblem::TooLarge { expected: size }));
        }
        result.map_err(|e| match e {
            Error::Fetch {
                url,
                problem: FetchProblem::Io(io),
            } => Error::Fetch {
                url,
                problem: FetchProblem::Io(io::Error::new(
                    io.kind(),
                    format!("{io} (after {got} of {size} bytes; kept for resuming)"),
                )),
            },
            other => other,
        })?;
        if got < size {
            return Err(fetch_error(
                &url,
                FetchProblem::Truncated {
                    got,
                    expected: size,
                },
            ));
        }
        Ok(transferred)
    }
}

fn remove(path: &Path) {
    if let Err(e) = fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "could not remove partial download");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            Location::parse("http://deb.debian.org/debian/").unwrap(),
            Location::Http("http://deb.debian.org/debian".into())
        );
        assert_eq!(
            Location::parse("file:///srv/repo").unwrap(),
            Location::File("/srv/repo".into())
        );
        assert_eq!(
            Location::parse("file:/srv/repo").unwrap(),
            Location::File("/srv/repo".into())
        );
        for bad in [
            "https://x/y",
            "ftp://x",
            "file:relative",
            "http://",
            "/srv/repo",
        ] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
        let at = Location::parse("http://h/d").unwrap();
        assert_eq!(at.url("dists/x/InRelease"), "http://h/d/dists/x/InRelease");
    }

    #[test]
    fn file_downloads_resume_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("f"), &data).unwrap();
        let sha: [u8; 32] = sha2::Sha256::digest(&data).into();
        use sha2::Digest;
        let at = Location::File(dir.path().to_owned());
        let part = dir.path().join("f.part");
        std::fs::write(&part, &data[..40_000]).unwrap();
        let f = Fetcher::new(1);
        let got = f
            .download(&at, "f", &part, data.len() as u64, &sha, &|_| {})
            .unwrap();
        assert_eq!(got, 60_000, "only the rest was read");
        assert_eq!(std::fs::read(&part).unwrap(), data);
        // A stale partial of other content is refetched whole.
        std::fs::write(&part, vec![0u8; 500]).unwrap();
        let got = f
            .download(&at, "f", &part, data.len() as u64, &sha, &|_| {})
            .unwrap();
        assert_eq!(got, data.len() as u64 - 500 + data.len() as u64);
        assert_eq!(std::fs::read(&part).unwrap(), data);
        // Wrong expected digest: refused, nothing kept.
        let err = f
            .download(&at, "f", &part, data.len() as u64, &[0; 32], &|_| {})
            .unwrap_err();
        assert!(matches!(err, Error::Digest { .. }), "{err}");
        assert!(!part.exists());
        assert!(f.get(&at, "missing", 10).unwrap().is_none());
        assert!(matches!(
            f.get(&at, "f", 10),
            Err(Error::Fetch {
                problem: FetchProblem::TooLarge { .. },
                ..
            })
        ));
    }
}
