//! `mirror import`: add local .deb files to a new snapshot made of the
//! previous snapshot of a ref plus the imported packages.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ironrack_keys::Signer;
use sha2::{Digest, Sha256};

use super::error::Error;
use super::publish::{Publication, format_date, publish};
use super::stanza::{Entry, check_filename};
use super::{Mirror, Snapshot, SnapshotId, Verifier, check_name, fsio, pool};
use crate::source::control::write_field;
use crate::source::{DebFile, Version};

/// Where imported packages go.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The ref to extend and move (its snapshot is the starting point).
    pub ref_name: String,
    /// The local suite; defaults to the previous snapshot's.
    pub suite: Option<String>,
    /// The component of the imported packages (default `main`).
    pub component: Option<String>,
    /// The Release Date, Unix seconds (default: now).
    pub date: Option<i64>,
}

/// Imports `debs` into a new snapshot; returns its id.
///
/// The previous snapshot of the ref is verified with the signer's own
/// public key: a new snapshot only ever extends one we signed.
pub fn import(
    mirror: &Mirror,
    debs: &[PathBuf],
    options: &ImportOptions,
    signer: &dyn Signer,
) -> Result<SnapshotId, Error> {
    if debs.is_empty() {
        return Err(Error::Nothing("no .deb files given"));
    }
    let lock = mirror.lock()?;
    let previous = previous_snapshot(mirror, &options.ref_name, signer)?;
    let suite = pick_suite(previous.as_ref(), options.suite.as_deref())?;
    let component = options
        .component
        .clone()
        .unwrap_or_else(|| "main".to_owned());
    check_name("component", &component)?;
    let mut entries: Vec<Entry> = previous
        .as_ref()
        .map(|s| s.entries().to_vec())
        .unwrap_or_default();
    for deb in debs {
        let entry = import_one(mirror, deb, &component)?;
        tracing::info!(package = %entry.name, version = %entry.version, file = %entry.filename, "imported");
        entries.push(entry);
    }
    let date = options
        .date
        .unwrap_or_else(|| ironrack_keys::Timestamp::now().unix());
    let mut components = previous
        .as_ref()
        .map(|s| s.components().to_vec())
        .unwrap_or_default();
    components.push(component);
    let sources = previous
        .as_ref()
        .and_then(|s| s.release().fields.get("X-Ironrack-Sources"))
        .map(|v| {
            v.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let publication = Publication {
        suite,
        components,
        date: format_date(date),
        entries,
        sources,
    };
    publish(mirror, &lock, publication, signer, &options.ref_name).map(|(id, _)| id)
}

/// The verified snapshot a ref points at, if any.
pub(crate) fn previous_snapshot(
    mirror: &Mirror,
    ref_name: &str,
    signer: &dyn Signer,
) -> Result<Option<Snapshot>, Error> {
    match mirror.read_ref(ref_name)? {
        Some(id) => {
            let verifier = Verifier::public_key(signer.public_key());
            Snapshot::open(mirror, id, &verifier).map(Some)
        }
        None => Ok(None),
    }
}

/// The suite to write: as asked, else the previous snapshot's.
pub(crate) fn pick_suite(
    previous: Option<&Snapshot>,
    asked: Option<&str>,
) -> Result<String, Error> {
    let suite = match (asked, previous) {
        (Some(s), _) => s.to_owned(),
        (None, Some(p)) => p.suite().to_owned(),
        (None, None) => return Err(Error::NeedsArgument { what: "suite" }),
    };
    check_name("suite", &suite)?;
    if let Some(p) = previous
        && p.suite() != suite
    {
        return Err(Error::SuiteMismatch {
            parent: p.id(),
            found: p.suite().to_owned(),
            wanted: suite,
        });
    }
    Ok(suite)
}

/// Copies one .deb into the pool (hashing the copy), reads its control
/// data from the copy, and returns its index entry.
fn import_one(mirror: &Mirror, deb: &Path, component: &str) -> Result<Entry, Error> {
    let tmp = mirror.tmp_dir().join(fsio::temp_name("import-"));
    let result = copy_and_describe(mirror, deb, &tmp, component);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn copy_and_describe(
    mirror: &Mirror,
    deb: &Path,
    tmp: &Path,
    component: &str,
) -> Result<Entry, Error> {
    let (size, sha256) = copy_hashing(deb, tmp)?;
    // Read the copy (the bytes just hashed), naming the operator's file.
    let copy = File::open(tmp).map_err(fsio::read_error(tmp))?;
    let control = DebFile::from_reader(io::BufReader::new(copy), deb)?
        .control()
        .clone();
    let field = |name: &'static str| {
        control.get(name).ok_or_else(|| {
            Error::Format(crate::source::Error::MissingField {
                origin: format!("{}:control", deb.display()),
                line: 1,
                package: control.get("Package").unwrap_or("?").to_owned(),
                field: name,
            })
        })
    };
    let name = field("Package")?.to_owned();
    let version = Version::parse(field("Version")?)?;
    let arch = field("Architecture")?.to_owned();
    check_name("architecture", &arch)?;
    let source = control
        .get("Source")
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or(&name)
        .to_owned();
    let prefix_len = if source.starts_with("lib") && source.len() > 3 {
        4
    } else {
        1
    };
    let prefix = source.get(..prefix_len).unwrap_or(&source);
    // Debian file names leave the epoch out.
    let file_version = version
        .as_str()
        .split_once(':')
        .map_or(version.as_str(), |(_, v)| v);
    let filename = format!("pool/{component}/{prefix}/{source}/{name}_{file_version}_{arch}.deb");
    check_filename(&name, &filename)?;
    let mut stanza = control.to_text();
    write_field(&mut stanza, "Filename", &filename);
    write_field(&mut stanza, "Size", &size.to_string());
    write_field(&mut stanza, "SHA256", &hex::encode(sha256));
    pool::insert(mirror, tmp, &filename, size, &sha256)?;
    Ok(Entry {
        name,
        version,
        architecture: arch,
        filename,
        size,
        sha256,
        component: component.to_owned(),
        stanza,
    })
}

fn copy_hashing(src: &Path, dest: &Path) -> Result<(u64, [u8; 32]), Error> {
    let mut input = File::open(src).map_err(fsio::read_error(src))?;
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(dest)
        .map_err(fsio::write_error(dest))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(fsio::read_error(src))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(fsio::write_error(dest))?;
        size += n as u64;
    }
    out.sync_all().map_err(fsio::write_error(dest))?;
    Ok((size, hasher.finalize().into()))
}
