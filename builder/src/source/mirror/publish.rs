//! Publishing a snapshot: indexes and a signed Release built in `tmp/`,
//! synced, renamed into `snapshots/<id>`, and only then the ref moved.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use ironrack_keys::{MinisignSignature, Signer};
use sha2::{Digest, Sha256};

use super::error::Error;
use super::stanza::Entry;
use super::verifier::trusted_comment;
use super::{Mirror, SnapshotId, WriteLock, check_name, fsio};
use crate::source::control::write_field;

/// Everything a new snapshot holds.
#[derive(Debug, Clone)]
pub struct Publication {
    /// The local suite.
    pub suite: String,
    /// Components to carry (those of the entries are added).
    pub components: Vec<String>,
    /// The Release `Date` (RFC 2822, as Debian writes it).
    pub date: String,
    /// The packages; duplicates of one file are merged, conflicts refused.
    pub entries: Vec<Entry>,
    /// Provenance lines for the Release (`URL SUITE DATE sha256:...` of
    /// each verified upstream Release this snapshot took packages from).
    pub sources: Vec<String>,
}

/// Builds, signs and publishes `publication`, then points `ref_name` at
/// it. Every entry's file must already be in the pool. Returns the id and
/// the number of packages in the snapshot.
pub(crate) fn publish(
    mirror: &Mirror,
    _lock: &WriteLock,
    mut publication: Publication,
    signer: &dyn Signer,
    ref_name: &str,
) -> Result<(SnapshotId, usize), Error> {
    check_name("suite", &publication.suite)?;
    check_name("ref name", ref_name)?;
    let entries = dedup(std::mem::take(&mut publication.entries))?;
    for e in &entries {
        let path = mirror.root().join(&e.filename);
        let meta = std::fs::metadata(&path).map_err(|_| Error::Missing {
            what: format!("new snapshot, package {} {}", e.name, e.version),
            path: path.clone(),
        })?;
        if meta.len() != e.size {
            return Err(Error::Digest {
                what: format!("new snapshot, package {}", e.name),
                path,
                problem: super::DigestProblem::Size {
                    expected: e.size,
                    actual: meta.len(),
                },
            });
        }
    }
    let mut components: BTreeSet<String> = publication.components.iter().cloned().collect();
    components.extend(entries.iter().map(|e| e.component.clone()));
    for c in &components {
        check_name("component", c)?;
    }
    let work = mirror.tmp_dir().join(fsio::temp_name("snapshot-"));
    let result = build(mirror, &publication, &components, &entries, signer, &work);
    let id = match result {
        Ok(id) => id,
        Err(e) => {
            fsio::remove_tree(&work);
            return Err(e);
        }
    };
    let dest = mirror.snapshot_dir(id);
    if dest.exists() {
        // Same Release bytes: the same snapshot, already published.
        fsio::remove_tree(&work);
    } else {
        let snapshots = dest.parent().unwrap_or(mirror.root());
        std::fs::rename(&work, &dest).map_err(fsio::write_error(&dest))?;
        fsio::sync_dir(snapshots)?;
    }
    mirror.write_ref(ref_name, id)?;
    tracing::info!(snapshot = %id, r#ref = ref_name, packages = entries.len(), "snapshot published");
    Ok((id, entries.len()))
}

/// Writes the snapshot tree under `work`; returns its id.
fn build(
    mirror: &Mirror,
    publication: &Publication,
    components: &BTreeSet<String>,
    entries: &[Entry],
    signer: &dyn Signer,
    work: &Path,
) -> Result<SnapshotId, Error> {
    let suite_dir = work.join("dists").join(&publication.suite);
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for component in components {
        for arch in mirror.architectures() {
            let stanzas: Vec<&str> = entries
                .iter()
                .filter(|e| &e.component == component)
                .filter(|e| e.architecture == *arch || e.architecture == "all")
                .map(|e| e.stanza.as_str())
                .collect();
            let text = stanzas.join("\n").into_bytes();
            let dir = format!("{component}/binary-{arch}");
            fsio::create_dirs(&suite_dir.join(&dir))?;
            let xz = xz(&text).map_err(fsio::write_error(&suite_dir.join(&dir)))?;
            files.push((format!("{dir}/Packages"), text));
            files.push((format!("{dir}/Packages.xz"), xz));
        }
    }
    for (rel, data) in &files {
        fsio::write_new(&suite_dir.join(rel), data, 0o444)?;
    }
    for component in components {
        for arch in mirror.architectures() {
            fsio::sync_dir(&suite_dir.join(format!("{component}/binary-{arch}")))?;
            fsio::sync_dir(&suite_dir.join(component))?;
        }
    }
    let release = release_text(mirror, publication, components, &files);
    let release_path = suite_dir.join("Release");
    fsio::write_new(&release_path, release.as_bytes(), 0o444)?;
    let comment = trusted_comment(mirror.name(), &publication.suite);
    let untrusted = format!("ironrack mirror {} snapshot signature", mirror.name());
    let sig = MinisignSignature::sign(signer, release.as_bytes(), &comment, &untrusted).map_err(
        |source| Error::Sign {
            path: release_path.clone(),
            source: Box::new(source),
        },
    )?;
    let sig_path = suite_dir.join("Release.minisig");
    fsio::write_new(&sig_path, sig.to_file_text().as_bytes(), 0o444)?;
    fsio::sync_dir(&suite_dir)?;
    fsio::sync_dir(&work.join("dists"))?;
    let link = work.join("pool");
    std::os::unix::fs::symlink("../../pool", &link).map_err(fsio::write_error(&link))?;
    fsio::sync_dir(work)?;
    Ok(SnapshotId(Sha256::digest(release.as_bytes()).into()))
}

fn release_text(
    mirror: &Mirror,
    publication: &Publication,
    components: &BTreeSet<String>,
    files: &[(String, Vec<u8>)],
) -> String {
    let mut out = String::new();
    let components: Vec<&str> = components.iter().map(String::as_str).collect();
    write_field(&mut out, "Origin", "ironrack");
    write_field(
        &mut out,
        "Label",
        &format!("ironrack mirror {}", mirror.name()),
    );
    write_field(&mut out, "Suite", &publication.suite);
    write_field(&mut out, "Codename", &publication.suite);
    write_field(&mut out, "Date", &publication.date);
    write_field(&mut out, "Architectures", &mirror.architectures().join(" "));
    write_field(&mut out, "Components", &components.join(" "));
    write_field(
        &mut out,
        "Description",
        &format!("snapshot of the ironrack mirror {}", mirror.name()),
    );
    let mut sources: Vec<&str> = publication.sources.iter().map(String::as_str).collect();
    sources.sort_unstable();
    sources.dedup();
    if !sources.is_empty() {
        write_field(
            &mut out,
            "X-Ironrack-Sources",
            &format!("\n{}", sources.join("\n")),
        );
    }
    let mut list: Vec<String> = files
        .iter()
        .map(|(path, data)| {
            let hash = hex::encode(Sha256::digest(data));
            format!(" {hash} {:>10} {path}", data.len())
        })
        .collect();
    list.sort_by(|a, b| a.rsplit(' ').next().cmp(&b.rsplit(' ').next()));
    write_field(&mut out, "SHA256", &format!("\n{}", list.join("\n")));
    out
}

/// Sorts entries and merges duplicates of the same file; two files for
/// one package version, or one filename for two contents, is an error.
fn dedup(mut entries: Vec<Entry>) -> Result<Vec<Entry>, Error> {
    entries.sort_by(|a, b| {
        a.sort_key_cmp(b)
            .then_with(|| a.sha256.cmp(&b.sha256))
            .then_with(|| a.filename.cmp(&b.filename))
    });
    let mut out: Vec<Entry> = Vec::with_capacity(entries.len());
    let mut by_file = std::collections::HashMap::new();
    for e in entries {
        if let Some(&i) = by_file.get(&e.filename) {
            let first: &Entry = &out[i];
            if first.sha256 != e.sha256 || first.size != e.size {
                return Err(conflict(first, &e));
            }
            continue;
        }
        // dpkg-equal versions (`1.0`, `1.0-0`) are one package version:
        // one file, even if two pool paths hold copies of it.
        if let Some(last) = out.last()
            && (&last.name, &last.version, &last.architecture)
                == (&e.name, &e.version, &e.architecture)
        {
            if (last.sha256, last.size) == (e.sha256, e.size) {
                continue;
            }
            return Err(conflict(last, &e));
        }
        by_file.insert(e.filename.clone(), out.len());
        out.push(e);
    }
    Ok(out)
}

fn conflict(first: &Entry, second: &Entry) -> Error {
    Error::PackageConflict {
        package: second.name.clone(),
        version: second.version.to_string(),
        arch: second.architecture.clone(),
        first: first.file_label(),
        second: second.file_label(),
    }
}

fn xz(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
    e.write_all(data)?;
    e.finish()
}

/// A Unix time as a Release `Date` (`Sat, 10 Jun 2023 08:55:41 UTC`).
pub fn format_date(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    // H. Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} UTC",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::release::parse_date;

    #[test]
    fn dates_round_trip() {
        assert_eq!(format_date(0), "Thu, 01 Jan 1970 00:00:00 UTC");
        assert_eq!(format_date(1_686_387_341), "Sat, 10 Jun 2023 08:55:41 UTC");
        for t in [0, 951_782_400, 1_709_204_400, 4_102_444_799, 1_234_567_890] {
            assert_eq!(parse_date(&format_date(t)).unwrap(), t, "{t}");
        }
    }
}
