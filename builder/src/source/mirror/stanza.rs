//! Packages index paragraphs kept verbatim, with the fields the mirror
//! needs (name, version, architecture, file, size, digest) parsed out.
//!
//! A snapshot's index repeats each upstream paragraph exactly as the signed
//! upstream index had it, so apt and our resolver see what Debian published.

use std::cmp::Ordering;
use std::ops::Range;

use super::error::Error;
use crate::source::Version;
use crate::source::control::{Paragraphs, ParseOptions, RawField};
use crate::source::error::ValueProblem;
use crate::source::index::{parse_sha256, parse_u64};

/// One package of an index: its paragraph and the fields the mirror uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `Package`.
    pub name: String,
    /// `Version`.
    pub version: Version,
    /// `Architecture`.
    pub architecture: String,
    /// `Filename`, validated: a relative path under `pool/`.
    pub filename: String,
    /// `Size`.
    pub size: u64,
    /// `SHA256`.
    pub sha256: [u8; 32],
    /// The component whose index listed it (`main`, ...).
    pub component: String,
    /// The whole paragraph, each line ending with `\n`, no blank line.
    pub stanza: String,
}

impl Entry {
    /// Name, version (dpkg order), architecture: the order of our indexes.
    pub fn sort_key_cmp(&self, other: &Self) -> Ordering {
        self.name
            .cmp(&other.name)
            .then_with(|| self.version.cmp(&other.version))
            .then_with(|| self.version.as_str().cmp(other.version.as_str()))
            .then_with(|| self.architecture.cmp(&other.architecture))
    }

    /// `filename sha256:HEX`, for messages.
    pub fn file_label(&self) -> String {
        format!("{} sha256:{}", self.filename, hex::encode(self.sha256))
    }
}

/// Byte ranges of the paragraphs of a deb822 text, with the 1-based line
/// each starts on. Blank lines (only spaces, tabs, CR) separate them, as
/// in [`Paragraphs`].
pub fn paragraph_spans(text: &str) -> Vec<(Range<usize>, usize)> {
    let mut out = Vec::new();
    let mut start: Option<(usize, usize)> = None;
    let mut pos = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let blank = line
            .bytes()
            .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
        match (blank, start) {
            (true, Some((s, l))) => {
                out.push((s..pos, l));
                start = None;
            }
            (false, None) => start = Some((pos, i + 1)),
            _ => {}
        }
        pos += line.len();
    }
    if let Some((s, l)) = start {
        out.push((s..text.len(), l));
    }
    out
}

/// Parses the entries of a Packages text; `origin` names it in errors.
pub fn parse_entries(text: &str, origin: &str, component: &str) -> Result<Vec<Entry>, Error> {
    let mut out = Vec::new();
    let mut fields = Vec::new();
    for (span, line) in paragraph_spans(text) {
        let para = &text[span];
        let mut parser = Paragraphs::new(para, origin, ParseOptions::default());
        parser
            .next_into(&mut fields)
            .map_err(|e| Error::Format(e.shift_lines(line - 1)))?;
        out.push(entry_from_fields(&fields, para, origin, component, line)?);
    }
    Ok(out)
}

fn entry_from_fields(
    fields: &[RawField<'_>],
    para: &str,
    origin: &str,
    component: &str,
    line: usize,
) -> Result<Entry, Error> {
    let get = |name: &str| {
        fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value.as_ref())
    };
    let name = get("Package").unwrap_or("?");
    let missing = |field| {
        Error::Format(crate::source::Error::MissingField {
            origin: origin.to_owned(),
            line,
            package: name.to_owned(),
            field,
        })
    };
    let field_error = |field: &str, source| {
        let field_line = fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(field))
            .map_or(line, |f| f.line + line - 1);
        Error::Format(crate::source::Error::Field {
            origin: origin.to_owned(),
            line: field_line,
            package: name.to_owned(),
            field: field.to_owned(),
            source: Box::new(source),
        })
    };
    let version = get("Version").ok_or_else(|| missing("Version"))?;
    let version = Version::parse(version).map_err(|e| field_error("Version", e))?;
    let filename = get("Filename").ok_or_else(|| missing("Filename"))?;
    check_filename(name, filename)?;
    let size = get("Size").ok_or_else(|| missing("Size"))?;
    let size = parse_u64(size).map_err(|e| field_error("Size", e))?;
    let sha256 = get("SHA256").ok_or_else(|| Error::NoSha256 {
        origin: origin.to_owned(),
        package: name.to_owned(),
    })?;
    let sha256 = parse_sha256(sha256).map_err(|e| field_error("SHA256", e))?;
    let architecture = get("Architecture").ok_or_else(|| missing("Architecture"))?;
    if get("Package").is_none() {
        return Err(missing("Package"));
    }
    crate::source::relation::is_package_name(name)
        .then_some(())
        .ok_or_else(|| {
            field_error(
                "Package",
                crate::source::Error::Value {
                    value: name.to_owned(),
                    problem: ValueProblem::BadSource,
                },
            )
        })?;
    let mut stanza = para.trim_end_matches(['\n', '\r', ' ', '\t']).to_owned();
    stanza.push('\n');
    Ok(Entry {
        name: name.to_owned(),
        version,
        architecture: architecture.to_owned(),
        filename: filename.to_owned(),
        size,
        sha256,
        component: component.to_owned(),
        stanza,
    })
}

/// A `Filename` must be a plain relative path under `pool/`: no `..`, no
/// empty or hidden components, nothing apt or a shell would read oddly.
pub fn check_filename(package: &str, filename: &str) -> Result<(), Error> {
    let ok = filename.starts_with("pool/")
        && filename.len() < 512
        && filename.split('/').all(|c| {
            !c.is_empty()
                && !c.starts_with('.')
                && c.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'.' | b'_' | b'-' | b'+' | b'~' | b'%')
                })
        });
    if ok {
        Ok(())
    } else {
        Err(Error::BadFilename {
            package: package.to_owned(),
            filename: filename.chars().take(200).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
\n\
Package: a\nVersion: 1.0\nArchitecture: amd64\nFilename: pool/main/a/a/a_1.0_amd64.deb\nSize: 3\n\
SHA256: 3a2118df47bf3f04285649f0455c2fc6fe2dc7f0b237073038aa00af41f0d5f2\nDescription: x\n y\n\
 \t\r\n\
Package: b\nVersion: 1:2~rc1\nArchitecture: all\nFilename: pool/main/b/b/b_2~rc1_all.deb\nSize: 4\n\
SHA256: 3a2118df47bf3f04285649f0455c2fc6fe2dc7f0b237073038aa00af41f0d5f2";

    #[test]
    fn spans_and_entries() {
        let spans = paragraph_spans(TEXT);
        assert_eq!(spans.len(), 2);
        assert_eq!((spans[0].1, spans[1].1), (2, 11));
        let entries = parse_entries(TEXT, "P", "main").unwrap();
        assert_eq!(entries[0].name, "a");
        assert!(entries[0].stanza.ends_with("Description: x\n y\n"));
        assert_eq!(entries[1].version.as_str(), "1:2~rc1");
        assert!(entries[1].stanza.ends_with("f0d5f2\n"));
        assert_eq!(entries[1].size, 4);
    }

    #[test]
    fn refuses_unsafe_filenames_and_missing_digests() {
        for bad in [
            "pool/../etc/passwd",
            "/pool/a.deb",
            "pool//a.deb",
            "dists/a.deb",
            "pool/a b.deb",
            "pool/.x/a.deb",
        ] {
            let text = TEXT.replace("pool/main/a/a/a_1.0_amd64.deb", bad);
            let err = parse_entries(&text, "P", "main").unwrap_err();
            assert!(matches!(err, Error::BadFilename { .. }), "{bad}: {err}");
        }
        let text = TEXT.replace("SHA256:", "SHA1:");
        let err = parse_entries(&text, "P", "main").unwrap_err();
        assert!(matches!(err, Error::NoSha256 { .. }), "{err}");
        let text = TEXT.replace("Size: 3", "Size: three");
        let err = parse_entries(&text, "P", "main").unwrap_err();
        assert!(
            err.to_string().starts_with("P:6: package a: field Size"),
            "{err}"
        );
    }
}
