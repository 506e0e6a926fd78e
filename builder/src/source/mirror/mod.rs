//! The local mirror: a Debian-format repository the site controls, made of
//! immutable, signed, content-addressed snapshots.
//!
//! ```text
//! MIRROR/
//!   mirror.toml                    name and architectures (not trusted: see below)
//!   pool/<component>/<prefix>/<source>/<file>.deb   shared, immutable (mode 0444)
//!   snapshots/<id>/                id = sha256 hex of the signed Release bytes
//!     dists/<suite>/Release        our Release: SHA256 of every index
//!     dists/<suite>/Release.minisig
//!     dists/<suite>/<component>/binary-<arch>/Packages{,.xz}
//!     pool -> ../../pool           so `deb [trusted=yes] file:/MIRROR/snapshots/<id> SUITE COMPONENT` works
//!   refs/<name>                    a snapshot id, one line
//!   tmp/                           in-progress imports and syncs, partial downloads
//! ```
//!
//! Writers ([`import`], [`sync`]) hold `tmp/lock`, download and verify into
//! `tmp/`, move verified files into the pool, build the new snapshot in
//! `tmp/`, fsync it, rename it into `snapshots/`, and only then move the
//! ref. A crash at any point leaves the previous snapshots and refs as they
//! were.
//!
//! Readers ([`Mirror::snapshot`]) verify on every open: the Release hashes
//! to the snapshot id, our minisign signature over it verifies with a key
//! the *caller* supplies ([`Verifier`]: a pinned public key, or the site's
//! trust file and a `mirror:NAME` scope), and every index matches the
//! Release. [`Snapshot::open_deb`] and [`Snapshot::deb_path`] hash a .deb
//! before handing it out. Nothing in the mirror directory decides which key
//! is trusted, since whoever can write the mirror could replace it.

mod error;
mod fsio;
pub mod host_apt;
pub mod import;
mod pool;
mod publish;
mod snapshot;
mod stanza;
pub mod sync;
mod verifier;

pub use error::{DigestProblem, Error, FetchProblem, GpgvProblem, SourcesProblem};
pub use publish::Publication;
pub use snapshot::{Snapshot, SnapshotSummary, VerifiedDeb};
pub use stanza::{Entry, check_filename, parse_entries};
pub use verifier::Verifier;

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The mirror's configuration file.
pub const CONFIG_FILE: &str = "mirror.toml";
const POOL: &str = "pool";
const SNAPSHOTS: &str = "snapshots";
const REFS: &str = "refs";
const TMP: &str = "tmp";
/// Refs and mirror.toml are a few bytes; anything larger is damage.
const SMALL_FILE_LIMIT: u64 = 64 << 10;

/// A snapshot's id: the SHA-256 of its signed Release file.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapshotId(pub [u8; 32]);

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SnapshotId({self})")
    }
}

impl FromStr for SnapshotId {
    type Err = ();

    /// Exactly 64 lower-case hex digits (one spelling per id, and never a
    /// path).
    fn from_str(text: &str) -> Result<Self, ()> {
        if text.len() != 64 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(|_| ())?;
        Ok(Self(out))
    }
}

/// `mirror.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MirrorConfig {
    /// The mirror's name: the `mirror:NAME` scope its snapshot signer needs
    /// in trust.json, and the name its signatures carry.
    pub name: String,
    /// Architectures whose Packages indexes snapshots carry (`all`
    /// packages are listed under each).
    pub architectures: Vec<String>,
}

/// An opened local mirror.
#[derive(Debug, Clone)]
pub struct Mirror {
    root: PathBuf,
    config: MirrorConfig,
}

/// Checks a name used as a path component or apt token.
pub fn check_name(what: &'static str, value: &str) -> Result<(), Error> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && !value.starts_with('.')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'));
    if ok {
        Ok(())
    } else {
        Err(Error::Name {
            what,
            value: value.chars().take(64).collect(),
        })
    }
}

impl Mirror {
    /// Creates an empty mirror at `root` (created if needed).
    pub fn init(root: &Path, name: &str, architectures: &[String]) -> Result<Mirror, Error> {
        check_name("mirror name", name)?;
        for arch in architectures {
            check_name("architecture", arch)?;
        }
        let config = MirrorConfig {
            name: name.to_owned(),
            architectures: if architectures.is_empty() {
                vec!["amd64".to_owned()]
            } else {
                architectures.to_vec()
            },
        };
        fsio::create_dirs(root)?;
        let config_path = root.join(CONFIG_FILE);
        if config_path.exists() {
            return Err(Error::AlreadyAMirror {
                path: root.to_owned(),
            });
        }
        for dir in [POOL, SNAPSHOTS, REFS, TMP] {
            fsio::create_dirs(&root.join(dir))?;
        }
        let text = toml::to_string(&config).unwrap_or_default();
        let text = format!("# ironrack local mirror (see `ironrack mirror --help`)\n{text}");
        fsio::write_atomic(&config_path, text.as_bytes(), 0o644)?;
        tracing::info!(root = %root.display(), name, "mirror created");
        Ok(Mirror {
            root: root.to_owned(),
            config,
        })
    }

    /// Opens the mirror at `root`.
    pub fn open(root: &Path) -> Result<Mirror, Error> {
        let path = root.join(CONFIG_FILE);
        if !path.is_file() {
            return Err(Error::NotAMirror {
                path: root.to_owned(),
            });
        }
        let bytes = fsio::read_limited(&path, SMALL_FILE_LIMIT)?;
        let config = parse_config(&bytes, &path)?;
        Ok(Mirror {
            root: root.to_owned(),
            config,
        })
    }

    /// The mirror's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The mirror's name (from mirror.toml).
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The architectures snapshots carry indexes for.
    pub fn architectures(&self) -> &[String] {
        &self.config.architectures
    }

    /// The directory of a snapshot (whether or not it exists).
    pub fn snapshot_dir(&self, id: SnapshotId) -> PathBuf {
        self.root.join(SNAPSHOTS).join(id.to_string())
    }

    /// The pool directory.
    pub fn pool_dir(&self) -> PathBuf {
        self.root.join(POOL)
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join(TMP)
    }

    /// A snapshot id (64 hex digits) or a ref name, resolved to an id.
    pub fn resolve(&self, id_or_ref: &str) -> Result<SnapshotId, Error> {
        if let Ok(id) = id_or_ref.parse() {
            return Ok(id);
        }
        check_name("ref name", id_or_ref)?;
        match self.read_ref(id_or_ref)? {
            Some(id) => Ok(id),
            None => Err(Error::NoSuchRef {
                mirror: self.name().to_owned(),
                name: id_or_ref.to_owned(),
            }),
        }
    }

    /// The snapshot a ref points at, if the ref exists.
    pub fn read_ref(&self, name: &str) -> Result<Option<SnapshotId>, Error> {
        check_name("ref name", name)?;
        let path = self.root.join(REFS).join(name);
        if !path.exists() {
            return Ok(None);
        }
        let bytes = fsio::read_limited(&path, SMALL_FILE_LIMIT)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| Error::BadRef { path: path.clone() })?;
        text.trim()
            .parse()
            .map(Some)
            .map_err(|()| Error::BadRef { path })
    }

    /// Points a ref at a snapshot, atomically.
    pub(crate) fn write_ref(&self, name: &str, id: SnapshotId) -> Result<(), Error> {
        check_name("ref name", name)?;
        let path = self.root.join(REFS).join(name);
        fsio::write_atomic(&path, format!("{id}\n").as_bytes(), 0o644)
    }

    /// Every ref and the id it holds, sorted by name. Unreadable refs are
    /// reported as errors.
    pub fn refs(&self) -> Result<Vec<(String, SnapshotId)>, Error> {
        let mut out = Vec::new();
        for name in list_dir(&self.root.join(REFS))? {
            if name.starts_with('.') {
                continue;
            }
            if let Some(id) = self.read_ref(&name)? {
                out.push((name, id));
            }
        }
        Ok(out)
    }

    /// The ids of every published snapshot, sorted.
    pub fn snapshot_ids(&self) -> Result<Vec<SnapshotId>, Error> {
        let mut ids: Vec<SnapshotId> = list_dir(&self.root.join(SNAPSHOTS))?
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Opens and verifies a snapshot by id or ref (see [`Snapshot`]).
    pub fn snapshot(&self, id_or_ref: &str, verifier: &Verifier) -> Result<Snapshot, Error> {
        let id = self.resolve(id_or_ref)?;
        Snapshot::open(self, id, verifier)
    }

    /// Takes the writer lock (`tmp/lock`), failing at once if another
    /// writer holds it. What interrupted runs left (snapshot trees being
    /// built, sync scratch, import copies) is removed; partial downloads
    /// (`tmp/downloads/`) are kept for resuming.
    pub(crate) fn lock(&self) -> Result<WriteLock, Error> {
        let tmp = self.tmp_dir();
        fsio::create_dirs(&tmp)?;
        let path = tmp.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(fsio::write_error(&path))?;
        // A child process forked by another thread (gpgv, apt-config) holds
        // a copy of every descriptor until its exec closes them, ours
        // included: a lock we just released can look held for that moment.
        // So a held lock is retried briefly before it counts as another
        // writer's.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(fs::TryLockError::WouldBlock) => return Err(Error::Locked { path }),
                Err(fs::TryLockError::Error(e)) => return Err(fsio::write_error(&path)(e)),
            }
        }
        for name in list_dir(&tmp)? {
            let path = tmp.join(&name);
            if name.starts_with("snapshot-") || name.starts_with("sync-") {
                fsio::remove_tree(&path);
            } else if name.starts_with("import-") {
                let _ = fs::remove_file(&path);
            }
        }
        Ok(WriteLock { _file: file })
    }
}

/// Held while a writer changes the mirror; released when dropped.
#[derive(Debug)]
pub(crate) struct WriteLock {
    _file: File,
}

/// Parses mirror.toml.
pub fn parse_config(bytes: &[u8], path: &Path) -> Result<MirrorConfig, Error> {
    let text = String::from_utf8_lossy(bytes);
    let config: MirrorConfig = toml::from_str(&text).map_err(|e| Error::Config {
        path: path.to_owned(),
        source: Box::new(e),
    })?;
    check_name("mirror name", &config.name)?;
    for arch in &config.architectures {
        check_name("architecture", arch)?;
    }
    Ok(config)
}

fn list_dir(dir: &Path) -> Result<Vec<String>, Error> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(fsio::read_error(dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(fsio::read_error(dir))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_one_spelling() {
        let hex = "ab".repeat(32);
        let id: SnapshotId = hex.parse().unwrap();
        assert_eq!(id.to_string(), hex);
        for bad in [
            hex.to_uppercase(),
            hex[..63].to_owned(),
            format!("{hex}0"),
            "../../etc".into(),
        ] {
            assert!(bad.parse::<SnapshotId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn names_cannot_escape() {
        for bad in ["", "..", ".hidden", "a/b", "a b", "ä"] {
            assert!(check_name("ref name", bad).is_err(), "{bad:?}");
        }
        for good in ["bookworm", "site-1", "non-free-firmware", "a+b_c.d"] {
            check_name("ref name", good).unwrap();
        }
    }

    #[test]
    fn init_open_and_refs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("m");
        let m = Mirror::init(&root, "site", &[]).unwrap();
        assert_eq!(m.architectures(), ["amd64"]);
        assert!(matches!(
            Mirror::init(&root, "site", &[]),
            Err(Error::AlreadyAMirror { .. })
        ));
        let m = Mirror::open(&root).unwrap();
        assert_eq!(m.name(), "site");
        let id = SnapshotId([7; 32]);
        m.write_ref("main", id).unwrap();
        assert_eq!(m.resolve("main").unwrap(), id);
        assert_eq!(m.resolve(&id.to_string()).unwrap(), id);
        assert_eq!(m.refs().unwrap(), [("main".to_owned(), id)]);
        assert!(matches!(m.resolve("other"), Err(Error::NoSuchRef { .. })));
        std::fs::write(root.join("refs/bad"), "nope\n").unwrap();
        assert!(matches!(m.resolve("bad"), Err(Error::BadRef { .. })));
        let lock = m.lock().unwrap();
        assert!(matches!(m.lock(), Err(Error::Locked { .. })));
        drop(lock);
        m.lock().unwrap();
    }

    #[test]
    fn config_is_strict() {
        let p = Path::new("mirror.toml");
        assert!(parse_config(b"name = \"a\"\narchitectures = []\n", p).is_ok());
        let err = parse_config(b"name = \"a\"\narchitectures = []\nkey = 1\n", p).unwrap_err();
        let cause = std::error::Error::source(&err).unwrap().to_string();
        assert!(cause.contains("key"), "{cause}");
        assert!(parse_config(b"name = \"../x\"\narchitectures = []\n", p).is_err());
    }
}
