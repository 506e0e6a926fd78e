//! Reading a snapshot, verified: its Release hashes to its id, our
//! signature over the Release verifies, every index matches the Release,
//! and every .deb handed out matches its index.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::{DigestProblem, Error};
use super::stanza::{Entry, parse_entries};
use super::verifier::{Verifier, signed_mirror};
use super::{Mirror, SnapshotId, check_name, fsio, list_dir};
use crate::source::Catalog;
use crate::source::release::Release;

/// Our Release files list a few indexes; anything this large is damage.
const RELEASE_LIMIT: u64 = 16 << 20;
const SIGNATURE_LIMIT: u64 = 16 << 10;
/// An uncompressed Packages index of a whole Debian suite is ~50 MB.
const INDEX_LIMIT: u64 = 1 << 30;

/// A verified snapshot: its packages, and verified access to their files.
#[derive(Debug)]
pub struct Snapshot {
    root: PathBuf,
    id: SnapshotId,
    /// `id` in hex, as lock files name it.
    id_hex: String,
    suite: String,
    release: Release,
    signer: Option<ironrack_keys::KeyId>,
    entries: Vec<Entry>,
    by_file: HashMap<String, usize>,
    catalog: Catalog,
}

/// An open .deb whose content matched its digest; read it through `file`
/// (positioned at the start): the path may be replaced after the check,
/// the open file cannot.
#[derive(Debug)]
pub struct VerifiedDeb {
    /// The pool file.
    pub path: PathBuf,
    /// The opened file, at offset 0.
    pub file: File,
    /// Its size.
    pub size: u64,
}

/// What `mirror list` shows of a snapshot (read without verification).
#[derive(Debug, Clone)]
pub struct SnapshotSummary {
    /// The id.
    pub id: SnapshotId,
    /// The local suite.
    pub suite: String,
    /// The Release Date as written.
    pub date: Option<String>,
    /// Number of package files.
    pub packages: usize,
    /// Their total size in bytes.
    pub bytes: u64,
}

impl Snapshot {
    /// Opens snapshot `id` of `mirror`, verifying it with `verifier`.
    pub fn open(mirror: &Mirror, id: SnapshotId, verifier: &Verifier) -> Result<Self, Error> {
        Self::open_inner(mirror, id, Some(verifier))
    }

    /// A summary of snapshot `id`, read WITHOUT checking its signature (for
    /// listings; digests of the indexes read are still checked).
    pub fn summary_unverified(mirror: &Mirror, id: SnapshotId) -> Result<SnapshotSummary, Error> {
        let s = Self::open_inner(mirror, id, None)?;
        Ok(SnapshotSummary {
            id,
            suite: s.suite.clone(),
            date: s.release.date.clone(),
            packages: s.entries.len(),
            bytes: s.entries.iter().map(|e| e.size).sum(),
        })
    }

    fn open_inner(
        mirror: &Mirror,
        id: SnapshotId,
        verifier: Option<&Verifier>,
    ) -> Result<Self, Error> {
        let dir = mirror.snapshot_dir(id);
        if !dir.is_dir() {
            return Err(Error::NoSuchSnapshot {
                mirror: mirror.name().to_owned(),
                id,
            });
        }
        let suites = list_dir(&dir.join("dists"))?;
        let suite = match &suites[..] {
            [one] if check_name("suite", one).is_ok() => one.clone(),
            _ => return Err(Error::SnapshotSuites { id, found: suites }),
        };
        let suite_dir = dir.join("dists").join(&suite);
        let release_path = suite_dir.join("Release");
        let release_bytes = fsio::read_limited(&release_path, RELEASE_LIMIT)?;
        let actual = SnapshotId(Sha256::digest(&release_bytes).into());
        if actual != id {
            return Err(Error::SnapshotIdMismatch { id, actual });
        }
        let signer = match verifier {
            Some(v) => Some(check_signature(mirror, id, v, &release_bytes, &suite_dir)?),
            None => None,
        };
        let origin = release_path.display().to_string();
        let text = crate::source::control::utf8(&release_bytes, &origin)?;
        let release = Release::parse(text, &origin)?;
        if release.suite.as_deref() != Some(suite.as_str()) {
            return Err(Error::SnapshotSuites {
                id,
                found: vec![release.suite.unwrap_or_default()],
            });
        }
        let what = format!("snapshot {id} Release");
        let parsed: Vec<String> = release
            .components
            .iter()
            .flat_map(|c| {
                let archs = release.architectures.iter();
                archs.map(move |a| format!("{c}/binary-{a}/Packages"))
            })
            .collect();
        for file in &release.sha256 {
            if parsed.contains(&file.path) {
                continue; // read, hashed and parsed below
            }
            let path = index_path(&suite_dir, &file.path, &what)?;
            check_digest(
                &what,
                &path,
                file.size,
                &file.sha256,
                fsio::hash_file(&path)?,
            )?;
        }
        let mut entries: Vec<Entry> = Vec::new();
        let mut by_file = HashMap::new();
        for component in &release.components {
            check_name("component", component)?;
            for arch in &release.architectures {
                check_name("architecture", arch)?;
                let rel = format!("{component}/binary-{arch}/Packages");
                let listed = release.index_file(&rel).ok_or_else(|| Error::Missing {
                    what: what.clone(),
                    path: suite_dir.join(&rel),
                })?;
                let path = suite_dir.join(&rel);
                let bytes = fsio::read_limited(&path, INDEX_LIMIT)?;
                let hashed = (bytes.len() as u64, Sha256::digest(&bytes).into());
                check_digest(&what, &path, listed.size, &listed.sha256, hashed)?;
                let origin = path.display().to_string();
                let text = crate::source::control::utf8(&bytes, &origin)?;
                for entry in parse_entries(text, &origin, component)? {
                    // `all` packages are listed under every architecture.
                    if !by_file.contains_key(&entry.filename) {
                        by_file.insert(entry.filename.clone(), entries.len());
                        entries.push(entry);
                    }
                }
            }
        }
        let catalog = catalog_of(&entries, &format!("snapshot {id}"))?;
        Ok(Self {
            root: mirror.root().to_owned(),
            id,
            id_hex: id.to_string(),
            suite,
            release,
            signer,
            entries,
            by_file,
            catalog,
        })
    }

    /// The snapshot id.
    pub fn id(&self) -> SnapshotId {
        self.id
    }

    /// The local suite (`bookworm`).
    pub fn suite(&self) -> &str {
        &self.suite
    }

    /// The components (`main`, `non-free-firmware`, ...).
    pub fn components(&self) -> &[String] {
        &self.release.components
    }

    /// The architectures with indexes.
    pub fn architectures(&self) -> &[String] {
        &self.release.architectures
    }

    /// The Release Date in Unix seconds: the newest upstream Release date
    /// the snapshot was made from (builds use it as SOURCE_DATE_EPOCH).
    pub fn date(&self) -> i64 {
        self.release.date_unix.unwrap_or(0)
    }

    /// The parsed Release.
    pub fn release(&self) -> &Release {
        &self.release
    }

    /// The key that signed the Release (`None` for an unverified summary).
    pub fn signer(&self) -> Option<ironrack_keys::KeyId> {
        self.signer
    }

    /// Every package file, in index order (the order of [`Snapshot::catalog`]'s ids).
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// All packages, for the resolver. `PackageId::index()` is the
    /// position in [`Snapshot::entries`].
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The index entry of a pool file.
    pub fn entry(&self, filename: &str) -> Option<&Entry> {
        self.by_file.get(filename).map(|&i| &self.entries[i])
    }

    /// Opens a .deb the snapshot lists with this sha256, hashing it first.
    pub fn open_deb(&self, filename: &str, sha256: &[u8; 32]) -> Result<VerifiedDeb, Error> {
        let entry = self
            .entry(filename)
            .filter(|e| e.sha256 == *sha256)
            .ok_or_else(|| Error::NotInSnapshot {
                id: self.id,
                filename: filename.to_owned(),
                sha256: hex::encode(sha256),
            })?;
        let path = self.root.join(&entry.filename);
        let mut file = File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Missing {
                what: format!("snapshot {} index", self.id),
                path: path.clone(),
            },
            _ => fsio::read_error(&path)(e),
        })?;
        let hashed = fsio::hash_reader(&mut file).map_err(fsio::read_error(&path))?;
        check_digest(
            &format!("snapshot {} package {}", self.id, entry.name),
            &path,
            entry.size,
            &entry.sha256,
            hashed,
        )?;
        file.seek(SeekFrom::Start(0))
            .map_err(fsio::read_error(&path))?;
        Ok(VerifiedDeb {
            path,
            file,
            size: entry.size,
        })
    }

    /// The path of a .deb the snapshot lists with this sha256, after
    /// hashing it. Prefer [`Snapshot::open_deb`] where the file is read
    /// right away: it cannot be swapped between the check and the read.
    pub fn deb_path(&self, filename: &str, sha256: &[u8; 32]) -> Result<PathBuf, Error> {
        self.open_deb(filename, sha256).map(|d| d.path)
    }

    /// Re-hashes every package file; returns how many and their bytes.
    pub fn verify_files(&self) -> Result<(usize, u64), Error> {
        let mut bytes = 0;
        for e in &self.entries {
            bytes += self.open_deb(&e.filename, &e.sha256)?.size;
        }
        Ok((self.entries.len(), bytes))
    }
}

/// Checks our signature and the mirror name it carries; returns the key.
fn check_signature(
    mirror: &Mirror,
    id: SnapshotId,
    verifier: &Verifier,
    release: &[u8],
    suite_dir: &Path,
) -> Result<ironrack_keys::KeyId, Error> {
    let path = suite_dir.join("Release.minisig");
    let sig_bytes = fsio::read_limited(&path, SIGNATURE_LIMIT)?;
    let sig = verifier
        .verify(release, &sig_bytes)
        .map_err(|source| Error::SnapshotSignature {
            id,
            path: path.clone(),
            source: Box::new(source),
        })?;
    let expected = verifier.expected_mirror(mirror.name());
    let signed = signed_mirror(&sig.trusted_comment);
    if signed != Some(expected) {
        return Err(Error::SnapshotMirrorName {
            id,
            signed: signed.map(str::to_owned),
            expected: expected.to_owned(),
            comment: sig.trusted_comment.clone(),
        });
    }
    Ok(sig.key_id)
}

/// A Release-listed path, refused if it could leave the suite directory.
fn index_path(suite_dir: &Path, rel: &str, what: &str) -> Result<PathBuf, Error> {
    let safe = rel
        .split('/')
        .all(|c| !c.is_empty() && c != "." && c != "..");
    if !safe {
        return Err(Error::Missing {
            what: what.to_owned(),
            path: PathBuf::from(rel),
        });
    }
    Ok(suite_dir.join(rel))
}

/// Compares a (size, sha256) with a signed list's values.
pub(crate) fn check_digest(
    what: &str,
    path: &Path,
    size: u64,
    sha256: &[u8; 32],
    (actual_size, actual): (u64, [u8; 32]),
) -> Result<(), Error> {
    let problem = if actual_size != size {
        DigestProblem::Size {
            expected: size,
            actual: actual_size,
        }
    } else if actual != *sha256 {
        DigestProblem::Sha256 {
            expected: hex::encode(sha256),
            actual: hex::encode(actual),
        }
    } else {
        return Ok(());
    };
    Err(Error::Digest {
        what: what.to_owned(),
        path: path.to_owned(),
        problem,
    })
}

/// A catalog whose package ids are the positions in `entries`.
pub(crate) fn catalog_of(entries: &[Entry], origin: &str) -> Result<Catalog, Error> {
    let mut text = String::with_capacity(entries.iter().map(|e| e.stanza.len() + 1).sum());
    for e in entries {
        text.push_str(&e.stanza);
        text.push('\n');
    }
    let mut catalog = Catalog::new();
    catalog.add_packages_text(&text, origin)?;
    Ok(catalog)
}

/// A lock's files come from a verified snapshot: only files its index
/// lists can be opened (the lock check hashes what it reads).
impl crate::source::lock::LockedFiles for Snapshot {
    fn snapshot_id(&self) -> &str {
        &self.id_hex
    }

    fn open(&self, filename: &str) -> std::io::Result<Box<dyn std::io::Read + '_>> {
        let entry = self.entry(filename).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("not in snapshot {}", self.id),
            )
        })?;
        Ok(Box::new(File::open(self.root.join(&entry.filename))?))
    }
}
