//! `mirror sync`: fetch chosen packages from upstream Debian-format
//! repositories into a new snapshot.
//!
//! In order, and nothing is published unless every step passes:
//! 1. each upstream suite's InRelease (or Release + Release.gpg) is
//!    verified by gpgv against the operator's keyring;
//! 2. each Packages index used is checked against the SHA256 list of that
//!    signed Release;
//! 3. the [`Selection`] picks packages among all synced suites, merged
//!    (every version kept);
//! 4. the wanted .debs missing from the pool are downloaded in parallel,
//!    resumably, each checked against its index's Size and SHA256 before
//!    it enters the pool;
//! 5. a new snapshot (the ref's previous packages + the selected ones) is
//!    published atomically and the ref moved.

mod closure;
mod download;
mod fetch;
pub mod gpgv;
mod select;
mod upstream;

pub use closure::SpecClosure;
pub use gpgv::Keyring;
pub use select::{ExactPackages, PackageRequest, Selection, Union};

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use ironrack_keys::Signer;

use super::error::Error;
use super::import::{pick_suite, previous_snapshot};
use super::publish::{Publication, format_date, publish};
use super::stanza::{Entry, parse_entries};
use super::{Mirror, SnapshotId, fsio, host_apt, pool};
use crate::source::Catalog;
use download::Job;
use fetch::{Fetcher, Location};

/// One upstream repository and what to read from it.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Base URL: `http://host/path` or `file:/path`.
    pub url: String,
    /// Suites under `dists/` (`bookworm`, `bookworm-updates`, ...).
    pub suites: Vec<String>,
    /// Components (`main`, `non-free-firmware`, ...).
    pub components: Vec<String>,
    /// The keys its Release must be signed with.
    pub keyring: Keyring,
}

/// Where to sync from.
#[derive(Debug, Clone)]
pub enum Sources {
    /// These repositories.
    Upstreams(Vec<Upstream>),
    /// The host apt's repositories and keyrings, with these components
    /// added to every source.
    HostApt {
        /// Extra components (`non-free-firmware`, ...).
        add_components: Vec<String>,
    },
}

/// How to sync.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The repositories to read.
    pub sources: Sources,
    /// The ref to extend and move.
    pub ref_name: String,
    /// The local suite (default: the ref's previous snapshot's, else the
    /// first upstream Release's Codename).
    pub local_suite: Option<String>,
    /// Start from an empty snapshot instead of the ref's previous one.
    pub fresh: bool,
    /// Parallel downloads.
    pub jobs: usize,
    /// Refuse upstream Releases past their Valid-Until (apt's default).
    pub check_valid_until: bool,
    /// Draw a progress bar on stderr when it is a terminal.
    pub progress: bool,
}

/// What a sync did.
#[derive(Debug, Clone)]
pub struct SyncReport {
    /// The published snapshot.
    pub snapshot: SnapshotId,
    /// Packages in it.
    pub packages: usize,
    /// Package files the selection chose.
    pub selected: usize,
    /// Of those, files downloaded now.
    pub downloaded: usize,
    /// Bytes downloaded now (resumed parts excluded).
    pub downloaded_bytes: u64,
    /// Of those, files already in the pool (verified, not fetched).
    pub reused: usize,
}

/// Everything the synced upstream suites offer.
struct Offer {
    entries: Vec<Entry>,
    /// The same packages for the resolver: id `i` is `entries[i]`.
    catalog: Catalog,
    /// For each entry, its repository.
    locations: Vec<Arc<Location>>,
    /// Provenance lines of the verified Releases.
    sources: Vec<String>,
    /// Newest upstream Release date.
    date: Option<i64>,
    /// The first Release's Codename.
    codename: Option<String>,
}

/// Syncs, then publishes the new snapshot under `options.ref_name`.
pub fn sync(
    mirror: &Mirror,
    options: &SyncOptions,
    selection: &dyn Selection,
    signer: &dyn Signer,
) -> Result<SyncReport, Error> {
    let lock = mirror.lock()?;
    let previous = if options.fresh {
        None
    } else {
        previous_snapshot(mirror, &options.ref_name, signer)?
    };
    let work = mirror.tmp_dir().join(fsio::temp_name("sync-"));
    fsio::create_dirs(&work)?;
    let fetcher = Fetcher::new(options.jobs);
    let offer = upstreams(mirror, &options.sources, &work)
        .and_then(|ups| read_upstreams(mirror, &fetcher, &ups, options.check_valid_until, &work));
    fsio::remove_tree(&work);
    let (upstreams, offer) = offer?;
    let chosen = selection.select(&offer.catalog, &offer.entries, mirror.architectures())?;
    let chosen = one_file_per_package(&offer.entries, chosen);
    let (jobs, selected, reused) = plan_downloads(mirror, &offer, &chosen)?;
    tracing::info!(selected, reused, download = jobs.len(), "packages chosen");
    let moved = download::run(mirror, &fetcher, &jobs, options.jobs, options.progress)?;

    let asked = options
        .local_suite
        .clone()
        .or_else(|| previous.is_none().then(|| offer.codename.clone()).flatten());
    let suite = pick_suite(previous.as_ref(), asked.as_deref())?;
    let mut entries: Vec<Entry> = previous
        .as_ref()
        .map(|s| s.entries().to_vec())
        .unwrap_or_default();
    entries.extend(chosen.iter().map(|&i| offer.entries[i].clone()));
    let mut components: Vec<String> = previous
        .as_ref()
        .map(|s| s.components().to_vec())
        .unwrap_or_default();
    components.extend(upstreams.iter().flat_map(|u| u.components.clone()));
    let mut sources = offer.sources.clone();
    if let Some(v) = previous
        .as_ref()
        .and_then(|s| s.release().fields.get("X-Ironrack-Sources"))
    {
        sources.extend(
            v.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned),
        );
    }
    let date = offer
        .date
        .into_iter()
        .chain(previous.as_ref().map(|p| p.date()))
        .max()
        .unwrap_or_else(|| ironrack_keys::Timestamp::now().unix());
    let publication = Publication {
        suite,
        components,
        date: format_date(date),
        entries,
        sources,
    };
    let (snapshot, packages) = publish(mirror, &lock, publication, signer, &options.ref_name)?;
    Ok(SyncReport {
        snapshot,
        packages,
        selected,
        downloaded: moved.files,
        downloaded_bytes: moved.bytes,
        reused,
    })
}

/// The upstreams to read (host apt keyrings decoded under `work`).
fn upstreams(
    mirror: &Mirror,
    sources: &Sources,
    work: &std::path::Path,
) -> Result<Vec<Upstream>, Error> {
    let upstreams = match sources {
        Sources::Upstreams(u) => u.clone(),
        Sources::HostApt { add_components } => {
            let paths = host_apt::AptPaths::from_host()?;
            let found = paths.read_sources()?;
            let keys = work.join("keys");
            host_apt::upstreams(
                &paths,
                &found,
                add_components,
                mirror.architectures(),
                &keys,
            )?
        }
    };
    if upstreams.is_empty() {
        return Err(Error::Nothing("no upstream repository given"));
    }
    for u in &upstreams {
        tracing::info!(url = %u.url, suites = ?u.suites, components = ?u.components, "upstream");
    }
    Ok(upstreams)
}

/// Verifies every upstream suite's Release and reads its indexes.
fn read_upstreams(
    mirror: &Mirror,
    fetcher: &Fetcher,
    upstreams: &[Upstream],
    check_valid_until: bool,
    work: &std::path::Path,
) -> Result<(Vec<Upstream>, Offer), Error> {
    let now = check_valid_until.then(|| ironrack_keys::Timestamp::now().unix());
    let mut offer = Offer {
        entries: Vec::new(),
        catalog: Catalog::new(),
        locations: Vec::new(),
        sources: Vec::new(),
        date: None,
        codename: None,
    };
    let mut found: HashSet<(String, String)> = HashSet::new();
    let mut suites_read = Vec::new();
    for upstream in upstreams {
        let at = Arc::new(Location::parse(&upstream.url)?);
        for suite in &upstream.suites {
            let verified =
                upstream::fetch_release(fetcher, &at, suite, &upstream.keyring, work, now)?;
            let release = &verified.release;
            offer.sources.push(format!(
                "{} {} sha256:{}",
                verified.url,
                release.date_unix.unwrap_or(0),
                hex::encode(verified.sha256)
            ));
            offer.date = offer.date.max(release.date_unix);
            if offer.codename.is_none() {
                offer.codename = release.codename.clone().or_else(|| release.suite.clone());
            }
            suites_read.push(verified.url.clone());
            for component in &upstream.components {
                for arch in mirror.architectures() {
                    let Some((url, text)) =
                        upstream::fetch_index(fetcher, &at, &verified, component, arch)?
                    else {
                        tracing::warn!(url = %verified.url, component, arch, "the Release lists no Packages index for this component");
                        continue;
                    };
                    found.insert((component.clone(), arch.clone()));
                    let entries = parse_entries(&text, &url, component)?;
                    tracing::info!(url, packages = entries.len(), "index verified");
                    offer
                        .locations
                        .extend(std::iter::repeat_n(at.clone(), entries.len()));
                    // Both parsers read one record per paragraph, so the
                    // catalog's ids stay the entries' positions.
                    offer.catalog.add_packages_text(&text, &url)?;
                    offer.entries.extend(entries);
                    if offer.catalog.packages().len() != offer.entries.len() {
                        return Err(Error::IndexCount { url });
                    }
                }
            }
        }
    }
    for upstream in upstreams {
        for component in &upstream.components {
            for arch in mirror.architectures() {
                if !found.contains(&(component.clone(), arch.clone())) {
                    return Err(Error::NoIndex {
                        component: component.clone(),
                        arch: arch.clone(),
                        suites: suites_read.join(", "),
                    });
                }
            }
        }
    }
    Ok((upstreams.to_vec(), offer))
}

/// Drops chosen entries that are copies of another chosen package file:
/// Debian's point releases copy security updates into the main pool (one
/// .deb, two Filenames). The first Filename in byte order is kept, so the
/// choice is stable.
fn one_file_per_package(entries: &[Entry], mut chosen: Vec<usize>) -> Vec<usize> {
    let key = |e: &Entry| {
        (
            e.name.clone(),
            e.version.to_string(),
            e.architecture.clone(),
            e.sha256,
        )
    };
    let mut seen = HashSet::new();
    chosen.sort_by(|&a, &b| entries[a].filename.cmp(&entries[b].filename));
    chosen.dedup();
    chosen.retain(|&i| seen.insert(key(&entries[i])));
    chosen
}

/// The downloads the chosen entries need: files not yet in the pool,
/// once each. Returns (jobs, files chosen, files already pooled).
fn plan_downloads(
    mirror: &Mirror,
    offer: &Offer,
    chosen: &[usize],
) -> Result<(Vec<Job>, usize, usize), Error> {
    let mut seen = BTreeSet::new();
    let mut jobs = Vec::new();
    let mut reused = 0;
    for &i in chosen {
        let e = &offer.entries[i];
        if !seen.insert(e.filename.clone()) {
            continue;
        }
        if pool::holds(mirror, &e.filename, e.size, &e.sha256)? {
            reused += 1;
            continue;
        }
        jobs.push(Job {
            at: offer.locations[i].clone(),
            filename: e.filename.clone(),
            size: e.size,
            sha256: e.sha256,
        });
    }
    Ok((jobs, seen.len(), reused))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_security_update_copied_into_main_is_one_package() {
        let stanza = |file: &str, sha: &str| {
            format!(
                "Package: libx\nVersion: 1.0-1+deb12u1\nArchitecture: amd64\nFilename: {file}\nSize: 1\nSHA256: {}\n",
                sha.repeat(64)
            )
        };
        let text = [
            stanza("pool/updates/main/l/libx/libx_1.0-1+deb12u1_amd64.deb", "a"),
            stanza("pool/main/l/libx/libx_1.0-1+deb12u1_amd64.deb", "a"),
            stanza("pool/main/o/other/libx_1.0-1+deb12u1_amd64.deb", "b"),
        ]
        .join("\n");
        let entries = parse_entries(&text, "P", "main").unwrap();
        let kept = one_file_per_package(&entries, vec![0, 1, 2, 0]);
        // Same bytes: one kept (the first path); other bytes: both kept,
        // for publish to refuse as a conflict.
        assert_eq!(kept, [1, 2]);
    }
}
