//! Packages indexes (`dists/S/C/binary-A/Packages[.gz|.xz]`) parsed into
//! [`Package`] records.
//!
//! This is on the hot path of every lock and of the benchmark against apt:
//! the text is split into borrowed fields by [`Paragraphs`], the fields a
//! resolver and a mirror need are parsed into typed values with interned
//! names, and everything else is kept verbatim in one string per package.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::compress::Compression;
use super::control::{self, Paragraph, Paragraphs, ParseOptions, RawField};
use super::error::{Error, ValueProblem};
use super::names::{Interner, Name};
use super::relation::{Relations, parse_relations};
use super::version::Version;

/// The `Multi-Arch` field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum MultiArch {
    /// Absent or `no`.
    #[default]
    No,
    /// `same`: co-installable across architectures.
    Same,
    /// `foreign`: satisfies dependencies of any architecture.
    Foreign,
    /// `allowed`: satisfies `:any` dependencies of any architecture.
    Allowed,
}

/// The `Priority` field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Priority {
    /// `required`.
    Required,
    /// `important`.
    Important,
    /// `standard`.
    Standard,
    /// `optional`.
    Optional,
    /// `extra` (deprecated, as optional).
    Extra,
    /// Anything else, kept as written.
    Unlisted(Box<str>),
}

impl Priority {
    fn parse(s: &str) -> Self {
        match s {
            "required" => Self::Required,
            "important" => Self::Important,
            "standard" => Self::Standard,
            "optional" => Self::Optional,
            "extra" => Self::Extra,
            other => Self::Unlisted(other.into()),
        }
    }
}

/// A byte range in [`Package`]'s text block.
type Span = (u32, u32);

/// One binary package from an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// `Package`.
    pub name: Name,
    /// `Version`.
    pub version: Version,
    /// `Architecture` (`amd64`, `all`, ...).
    pub architecture: Name,
    /// `Multi-Arch`.
    pub multi_arch: MultiArch,
    /// `Essential: yes`.
    pub essential: bool,
    /// `Priority`.
    pub priority: Option<Priority>,
    /// The version of `Source: name (version)`, when given.
    pub source_version: Option<Version>,
    /// `Installed-Size` in KiB.
    pub installed_size: Option<u64>,
    /// `Depends`.
    pub depends: Relations,
    /// `Pre-Depends`.
    pub pre_depends: Relations,
    /// `Recommends`.
    pub recommends: Relations,
    /// `Provides`.
    pub provides: Relations,
    /// `Conflicts`.
    pub conflicts: Relations,
    /// `Breaks`.
    pub breaks: Relations,
    /// `Replaces`.
    pub replaces: Relations,
    /// `Size` of the .deb in bytes.
    pub size: u64,
    /// `SHA256` of the .deb, when the index has it.
    pub sha256: Option<[u8; 32]>,
    /// Filename, Section, Source name, Description's first line and the
    /// other fields, in one allocation (read through the methods).
    text: Box<str>,
    filename: Span,
    section: Option<Span>,
    source: Option<Span>,
    description: Span,
    other: Span,
    /// 1-based line of the paragraph in its index.
    pub line: u32,
}

impl Package {
    fn span(&self, (start, end): Span) -> &str {
        self.text.get(start as usize..end as usize).unwrap_or("")
    }

    /// `Filename`: the path of the .deb from the repository root.
    pub fn filename(&self) -> &str {
        self.span(self.filename)
    }

    /// `Section`.
    pub fn section(&self) -> Option<&str> {
        self.section.map(|s| self.span(s))
    }

    /// The source package name of `Source`, when the field is present.
    pub fn source(&self) -> Option<&str> {
        self.source.map(|s| self.span(s))
    }

    /// The first line of `Description`.
    pub fn description(&self) -> &str {
        self.span(self.description)
    }

    /// The fields not parsed into typed members (Maintainer, Homepage,
    /// MD5sum, Description-md5, Tag, ...), as deb822 text.
    pub fn other_text(&self) -> &str {
        self.span(self.other)
    }

    /// The fields not parsed into typed members, as a paragraph.
    pub fn other_fields(&self) -> Paragraph {
        let mut p = Paragraphs::new(self.other_text(), "package fields", ParseOptions::default());
        p.next().and_then(Result::ok).unwrap_or_default()
    }

    /// Rewrites every interned name through `map`.
    pub fn remap_names(&mut self, map: impl Fn(Name) -> Name + Copy) {
        self.name = map(self.name);
        self.architecture = map(self.architecture);
        for r in [
            &mut self.depends,
            &mut self.pre_depends,
            &mut self.recommends,
            &mut self.provides,
            &mut self.conflicts,
            &mut self.breaks,
            &mut self.replaces,
        ] {
            r.remap_names(map);
        }
    }

    /// `Source` name, or the package name when the field is absent.
    pub fn source_name<'a>(&'a self, names: &'a Interner) -> &'a str {
        self.source().unwrap_or(names.resolve(self.name))
    }
}

/// Reads a Packages file, decompressing by extension (`.gz`, `.xz`, ...).
pub fn read_packages_file(path: &Path, names: &mut Interner) -> Result<Vec<Package>, Error> {
    let text = read_index_text(path)?;
    parse_packages(&text, &path.display().to_string(), names)
}

/// Reads an index file into memory, decompressing by extension.
pub fn read_index_text(path: &Path) -> Result<String, Error> {
    let read_error = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    let hint = file.metadata().map(|m| m.len()).unwrap_or(0);
    let compression = Compression::from_path(path);
    let mut bytes = Vec::with_capacity(if compression == Compression::None {
        hint as usize + 1
    } else {
        (hint as usize).saturating_mul(5)
    });
    compression
        .decoder(file)
        .and_then(|mut d| d.read_to_end(&mut bytes))
        .map_err(read_error)?;
    let origin = path.display().to_string();
    control::utf8(&bytes, &origin)?;
    // Checked just above; this cannot fail.
    String::from_utf8(bytes).map_err(|_| Error::NotUtf8 { origin, line: 0 })
}

/// Parses the text of a Packages index; `origin` names it in errors.
pub fn parse_packages(
    text: &str,
    origin: &str,
    names: &mut Interner,
) -> Result<Vec<Package>, Error> {
    let mut parser = Paragraphs::new(text, origin, ParseOptions::default());
    let mut fields = Vec::with_capacity(32);
    // A Packages paragraph averages ~800 bytes; reserve close to the end count.
    let mut out = Vec::with_capacity(text.len() / 700 + 1);
    let mut scratch = (String::with_capacity(1024), String::with_capacity(4096));
    while let Some(line) = parser.next_into(&mut fields)? {
        out.push(build_package(&fields, line, origin, names, &mut scratch)?);
    }
    Ok(out)
}

/// Parses like [`parse_packages`] on up to `threads` threads: the text is
/// cut at paragraph boundaries, each part parsed with its own interner,
/// and the names merged in order. The result, names' numbering included,
/// is identical to [`parse_packages`] whatever the thread count.
pub fn parse_packages_parallel(
    text: &str,
    origin: &str,
    names: &mut Interner,
    threads: usize,
) -> Result<Vec<Package>, Error> {
    let bounds = chunk_bounds(text, threads.max(1));
    if bounds.len() <= 2 {
        return parse_packages(text, origin, names);
    }
    let chunks: Vec<&str> = bounds.windows(2).map(|w| &text[w[0]..w[1]]).collect();
    let (first, rest) = std::thread::scope(|scope| {
        let workers: Vec<_> = chunks[1..]
            .iter()
            .map(|chunk| {
                scope.spawn(move || {
                    let mut local = Interner::new();
                    parse_packages(chunk, origin, &mut local).map(|p| (p, local))
                })
            })
            .collect();
        let first = parse_packages(chunks[0], origin, names);
        let rest: Vec<_> = workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect();
        (first, rest)
    });
    let mut out = first?;
    let mut line_offset = memchr::memchr_iter(b'\n', chunks[0].as_bytes()).count();
    for (chunk, result) in chunks[1..].iter().zip(rest) {
        let (mut packages, local) = result.map_err(|e| e.shift_lines(line_offset))?;
        // Interning in the part's first-seen order reproduces the numbering
        // a single pass would have given.
        let map: Vec<Name> = local.iter().map(|n| names.intern(n)).collect();
        for p in &mut packages {
            p.remap_names(|n| map[n.index()]);
            p.line = p.line.saturating_add(line_offset as u32);
        }
        out.append(&mut packages);
        line_offset += memchr::memchr_iter(b'\n', chunk.as_bytes()).count();
    }
    Ok(out)
}

/// Byte offsets cutting `text` into about `parts` pieces, each cut just
/// after a blank line (so at the start of a paragraph).
fn chunk_bounds(text: &str, parts: usize) -> Vec<usize> {
    let mut bounds = vec![0];
    for k in 1..parts {
        let target = (text.len() * k / parts).max(*bounds.last().unwrap_or(&0));
        let Some(found) = memchr::memmem::find(&text.as_bytes()[target..], b"\n\n") else {
            break;
        };
        let cut = target + found + 2;
        if cut < text.len() && cut > *bounds.last().unwrap_or(&0) {
            bounds.push(cut);
        }
    }
    bounds.push(text.len());
    bounds
}

fn field_error(origin: &str, package: &str, field: &RawField<'_>, source: Error) -> Error {
    Error::Field {
        origin: origin.to_owned(),
        line: field.line,
        package: package.to_owned(),
        field: field.name.to_owned(),
        source: Box::new(source),
    }
}

fn value_error(value: &str, problem: ValueProblem) -> Error {
    Error::Value {
        value: value.to_owned(),
        problem,
    }
}

/// Builds a record from one paragraph's fields.
pub fn package_from_fields(
    fields: &[RawField<'_>],
    line: usize,
    origin: &str,
    names: &mut Interner,
) -> Result<Package, Error> {
    build_package(fields, line, origin, names, &mut Default::default())
}

/// [`package_from_fields`] with a reusable buffer for the unknown fields,
/// so each record gets one exact allocation for them.
fn build_package(
    fields: &[RawField<'_>],
    line: usize,
    origin: &str,
    names: &mut Interner,
    scratch: &mut (String, String),
) -> Result<Package, Error> {
    let find = |name: &str| fields.iter().find(|f| f.name.eq_ignore_ascii_case(name));
    let package = find("Package").map_or("?", |f| &*f.value);
    let missing = |field| Error::MissingField {
        origin: origin.to_owned(),
        line,
        package: package.to_owned(),
        field,
    };
    scratch.0.clear();
    scratch.1.clear();
    let mut b = Builder {
        known: std::mem::take(&mut scratch.0),
        other: std::mem::take(&mut scratch.1),
        ..Builder::default()
    };
    let parsed = fields.iter().try_for_each(|f| {
        b.field(f, names)
            .map_err(|e| field_error(origin, package, f, e))
    });
    // Known strings, then the other fields: one exact allocation.
    let mut text = String::with_capacity(b.known.len() + b.other.len());
    text.push_str(&b.known);
    text.push_str(&b.other);
    let other = (b.known.len() as u32, text.len() as u32);
    *scratch = (std::mem::take(&mut b.known), std::mem::take(&mut b.other));
    parsed?;
    Ok(Package {
        name: b.name.ok_or_else(|| missing("Package"))?,
        version: b.version.ok_or_else(|| missing("Version"))?,
        architecture: b.architecture.ok_or_else(|| missing("Architecture"))?,
        multi_arch: b.multi_arch,
        essential: b.essential,
        priority: b.priority,
        source_version: b.source_version,
        installed_size: b.installed_size,
        depends: b.depends,
        pre_depends: b.pre_depends,
        recommends: b.recommends,
        provides: b.provides,
        conflicts: b.conflicts,
        breaks: b.breaks,
        replaces: b.replaces,
        filename: b.filename.ok_or_else(|| missing("Filename"))?,
        size: b.size.ok_or_else(|| missing("Size"))?,
        sha256: b.sha256,
        text: text.into_boxed_str(),
        section: b.section,
        source: b.source,
        description: b.description,
        other,
        line: u32::try_from(line).unwrap_or(u32::MAX),
    })
}

#[derive(Default)]
struct Builder {
    name: Option<Name>,
    version: Option<Version>,
    architecture: Option<Name>,
    multi_arch: MultiArch,
    essential: bool,
    priority: Option<Priority>,
    section: Option<Span>,
    source: Option<Span>,
    source_version: Option<Version>,
    installed_size: Option<u64>,
    depends: Relations,
    pre_depends: Relations,
    recommends: Relations,
    provides: Relations,
    conflicts: Relations,
    breaks: Relations,
    replaces: Relations,
    filename: Option<Span>,
    size: Option<u64>,
    sha256: Option<[u8; 32]>,
    description: Span,
    known: String,
    other: String,
}

impl Builder {
    /// Appends to the known-strings block; returns where it went.
    fn keep(&mut self, v: &str) -> Span {
        let start = self.known.len() as u32;
        self.known.push_str(v);
        (start, self.known.len() as u32)
    }

    fn field(&mut self, f: &RawField<'_>, names: &mut Interner) -> Result<(), Error> {
        let v: &str = &f.value;
        // Exact spelling first (the common case), then any case.
        let key = KNOWN
            .iter()
            .position(|k| *k == f.name)
            .or_else(|| KNOWN.iter().position(|k| k.eq_ignore_ascii_case(f.name)));
        let Some(key) = key else {
            control::write_field(&mut self.other, f.name, v);
            return Ok(());
        };
        let rel = |names: &mut Interner| parse_relations(KNOWN[key], v, names);
        match KNOWN[key] {
            "Package" => self.name = Some(names.intern(v)),
            "Version" => self.version = Some(Version::parse(v)?),
            "Architecture" => self.architecture = Some(names.intern(v)),
            "Multi-Arch" => self.multi_arch = parse_multi_arch(v)?,
            "Essential" => self.essential = parse_yes_no(v)?,
            "Priority" => self.priority = Some(Priority::parse(v)),
            "Section" => self.section = Some(self.keep(v)),
            "Source" => {
                let (name, version) = parse_source(v)?;
                self.source = Some(self.keep(name));
                self.source_version = version;
            }
            "Installed-Size" => self.installed_size = Some(parse_u64(v)?),
            "Depends" => self.depends = rel(names)?,
            "Pre-Depends" => self.pre_depends = rel(names)?,
            "Recommends" => self.recommends = rel(names)?,
            "Provides" => self.provides = rel(names)?,
            "Conflicts" => self.conflicts = rel(names)?,
            "Breaks" => self.breaks = rel(names)?,
            "Replaces" => self.replaces = rel(names)?,
            "Filename" => self.filename = Some(self.keep(v)),
            "Size" => self.size = Some(parse_u64(v)?),
            "SHA256" => self.sha256 = Some(parse_sha256(v)?),
            _ => self.description = self.keep(v.split_once('\n').map_or(v, |(first, _)| first)),
        }
        Ok(())
    }
}

const KNOWN: [&str; 20] = [
    "Package",
    "Version",
    "Architecture",
    "Multi-Arch",
    "Essential",
    "Priority",
    "Section",
    "Source",
    "Installed-Size",
    "Depends",
    "Pre-Depends",
    "Recommends",
    "Provides",
    "Conflicts",
    "Breaks",
    "Replaces",
    "Filename",
    "Size",
    "SHA256",
    "Description",
];

/// A decimal size or count.
pub fn parse_u64(v: &str) -> Result<u64, Error> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(value_error(v, ValueProblem::NotANumber));
    }
    v.parse()
        .map_err(|_| value_error(v, ValueProblem::NotANumber))
}

/// A SHA-256 written as 64 hex digits.
pub fn parse_sha256(v: &str) -> Result<[u8; 32], Error> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(v, &mut out).map_err(|_| value_error(v, ValueProblem::BadSha256))?;
    Ok(out)
}

fn parse_yes_no(v: &str) -> Result<bool, Error> {
    match v {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(value_error(v, ValueProblem::NotYesNo)),
    }
}

fn parse_multi_arch(v: &str) -> Result<MultiArch, Error> {
    Ok(match v {
        "no" => MultiArch::No,
        "same" => MultiArch::Same,
        "foreign" => MultiArch::Foreign,
        "allowed" => MultiArch::Allowed,
        _ => return Err(value_error(v, ValueProblem::BadMultiArch)),
    })
}

fn parse_source(v: &str) -> Result<(&str, Option<Version>), Error> {
    let bad = || value_error(v, ValueProblem::BadSource);
    let (name, version) = match v.split_once('(') {
        None => (v.trim(), None),
        Some((name, rest)) => {
            let version = rest.trim_end().strip_suffix(')').ok_or_else(bad)?;
            (name.trim(), Some(Version::parse(version.trim())?))
        }
    };
    if !super::relation::is_package_name(name) {
        return Err(bad());
    }
    Ok((name, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "\
Package: libfoo1
Source: foo (1.2-1)
Version: 1.2-1+b1
Installed-Size: 40
Maintainer: Someone <a@example.org>
Architecture: amd64
Multi-Arch: same
Depends: libc6 (>= 2.34), libbar | libbaz
Pre-Depends: dpkg (>= 1.15)
Provides: foo-abi (= 1)
Breaks: libfoo0 (<< 1.0)
Description: the foo library
 Long text.
Homepage: https://example.org
Section: libs
Priority: optional
Filename: pool/main/f/foo/libfoo1_1.2-1+b1_amd64.deb
Size: 1234
SHA256: 3a2118df47bf3f04285649f0455c2fc6fe2dc7f0b237073038aa00af41f0d5f2

Package: base-files
Essential: yes
Priority: required
Version: 12.4
Architecture: amd64
Filename: pool/main/b/base-files/base-files_12.4_amd64.deb
Size: 70000
";

    #[test]
    fn parses_typed_fields_and_keeps_the_rest() {
        let mut names = Interner::new();
        let ps = parse_packages(INDEX, "Packages", &mut names).unwrap();
        assert_eq!(ps.len(), 2);
        let p = &ps[0];
        assert_eq!(names.resolve(p.name), "libfoo1");
        assert_eq!(p.version.as_str(), "1.2-1+b1");
        assert_eq!(p.multi_arch, MultiArch::Same);
        assert_eq!(p.source_version.as_ref().unwrap().as_str(), "1.2-1");
        assert_eq!(p.source_name(&names), "foo");
        assert_eq!(p.depends.len(), 2);
        assert_eq!(p.depends.groups().nth(1).unwrap().len(), 2);
        assert_eq!(p.provides.display(&names).to_string(), "foo-abi (= 1)");
        assert_eq!(p.sha256.unwrap()[0], 0x3a);
        assert_eq!(p.description(), "the foo library");
        assert_eq!(p.filename(), "pool/main/f/foo/libfoo1_1.2-1+b1_amd64.deb");
        assert_eq!((p.section(), p.source()), (Some("libs"), Some("foo")));
        assert_eq!(ps[1].section(), None);
        let other = p.other_fields();
        assert_eq!(other.get("maintainer"), Some("Someone <a@example.org>"));
        assert_eq!(other.get("Homepage"), Some("https://example.org"));
        assert!(ps[1].essential);
        assert_eq!(ps[1].priority, Some(Priority::Required));
        assert_eq!((ps[1].line, ps[1].sha256), (21, None));
    }

    #[test]
    fn parallel_parse_equals_sequential() {
        let text = [INDEX; 7].join("\n").replace(
            "Package: base-files",
            "Package: base-files\nDepends: z-late-name",
        );
        let mut seq_names = Interner::new();
        let seq = parse_packages(&text, "P", &mut seq_names).unwrap();
        for threads in 1..6 {
            let mut names = Interner::new();
            let par = parse_packages_parallel(&text, "P", &mut names, threads).unwrap();
            assert_eq!(par, seq, "{threads} threads");
            assert!(
                names.iter().eq(seq_names.iter()),
                "{threads} threads: name numbering"
            );
        }
        let bad = format!("{text}\n{}", INDEX.replace("Size: 70000", "Size: x"));
        let want = parse_packages(&bad, "P", &mut Interner::new())
            .unwrap_err()
            .to_string();
        let got = parse_packages_parallel(&bad, "P", &mut Interner::new(), 4)
            .unwrap_err()
            .to_string();
        assert_eq!(got, want);
    }

    #[test]
    fn errors_name_file_line_package_and_field() {
        let mut names = Interner::new();
        let bad = INDEX.replace("Size: 70000", "Size: 7e4");
        let err = parse_packages(&bad, "Packages", &mut names).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Packages:27: package base-files: field Size: not a decimal number in \"7e4\""
        );
        let bad = INDEX.replace("Filename: pool/main/b", "X-Filename: pool/main/b");
        let err = parse_packages(&bad, "P", &mut names).unwrap_err();
        assert!(
            matches!(
                err,
                Error::MissingField {
                    line: 21,
                    field: "Filename",
                    ..
                }
            ),
            "{err}"
        );
        let bad = INDEX.replace("libbar | libbaz", "libbar |");
        let err = parse_packages(&bad, "P", &mut names).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("P:8: package libfoo1: field Depends: "),
            "{err}"
        );
    }
}
