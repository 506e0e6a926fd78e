//! The host apt's repositories and keyrings, as `mirror sync
//! --from-host-apt` reads them.
//!
//! apt's own `apt-config` says where its files are (`Dir::Etc::*`); the
//! sources come from `sources.list` (one-line format) and the
//! `sources.list.d/` parts (`*.list` one-line, `*.sources` deb822), with
//! their `Signed-By` keyrings (files, inline armored keys, or
//! fingerprints). Files with other extensions are ignored, as apt does.

mod armor;

pub use armor::dearmor;

use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::{Error, SourcesProblem};
use super::fsio;
use super::sync::{Keyring, Upstream};
use crate::source::control::{Paragraphs, ParseOptions};

/// One repository entry of the host's apt configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    /// The repository base URI.
    pub uri: String,
    /// Suites (may end with `/` for flat repositories).
    pub suites: Vec<String>,
    /// Components.
    pub components: Vec<String>,
    /// How its Release must be signed.
    pub signed_by: SignedBy,
    /// `arch=`/`Architectures:` restriction, if any.
    pub architectures: Option<Vec<String>>,
    /// `file:line` of the entry.
    pub origin: String,
}

/// The `Signed-By` of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedBy {
    /// None given: apt's trusted.gpg and trusted.gpg.d.
    Default,
    /// Keyring files.
    Keyrings(Vec<PathBuf>),
    /// Fingerprints of keys in the default keyrings.
    Fingerprints(Vec<String>),
    /// An inline ASCII-armored key block (deb822 only).
    Inline(String),
}

/// Where the host's apt keeps its sources and keys, from `apt-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptPaths {
    /// `Dir::Etc::SourceList`.
    pub source_list: PathBuf,
    /// `Dir::Etc::SourceParts`.
    pub source_parts: PathBuf,
    /// `Dir::Etc::Trusted`.
    pub trusted: PathBuf,
    /// `Dir::Etc::TrustedParts`.
    pub trusted_parts: PathBuf,
    /// `APT::Architecture`.
    pub architecture: String,
}

const APT_CONFIG_VARS: [(&str, &str); 5] = [
    ("SL", "Dir::Etc::SourceList/f"),
    ("SP", "Dir::Etc::SourceParts/d"),
    ("TR", "Dir::Etc::Trusted/f"),
    ("TP", "Dir::Etc::TrustedParts/d"),
    ("AR", "APT::Architecture"),
];

impl AptPaths {
    /// Asks the host's `apt-config`.
    pub fn from_host() -> Result<Self, Error> {
        let mut cmd = Command::new("apt-config");
        cmd.arg("shell");
        for (var, key) in APT_CONFIG_VARS {
            cmd.arg(var).arg(key);
        }
        let out = cmd.output().map_err(|e| Error::HostApt {
            problem: format!("running apt-config: {e}"),
        })?;
        if !out.status.success() {
            return Err(Error::HostApt {
                problem: format!(
                    "apt-config failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Self::parse_shell(&String::from_utf8_lossy(&out.stdout))
    }

    /// Parses `apt-config shell` output (`VAR='value'` lines).
    pub fn parse_shell(text: &str) -> Result<Self, Error> {
        let mut values = std::collections::HashMap::new();
        for line in text.lines() {
            if let Some((var, quoted)) = line.split_once('=') {
                values.insert(var.trim(), unquote_shell(quoted.trim()));
            }
        }
        let get = |var: &str| {
            values
                .get(var)
                .cloned()
                .flatten()
                .ok_or_else(|| Error::HostApt {
                    problem: format!("apt-config gave no {var} value"),
                })
        };
        Ok(Self {
            source_list: get("SL")?.into(),
            source_parts: get("SP")?.into(),
            trusted: get("TR")?.into(),
            trusted_parts: get("TP")?.into(),
            architecture: get("AR")?,
        })
    }

    /// Every source entry of the host, in apt's order: sources.list,
    /// then the parts in file-name order.
    pub fn read_sources(&self) -> Result<Vec<AptSource>, Error> {
        let mut out = Vec::new();
        if self.source_list.is_file() {
            out.extend(read_one_line_file(&self.source_list)?);
        }
        let mut parts: Vec<PathBuf> = match std::fs::read_dir(&self.source_parts) {
            Ok(dir) => dir.filter_map(Result::ok).map(|e| e.path()).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(fsio::read_error(&self.source_parts)(e)),
        };
        parts.sort();
        for path in parts {
            let origin = path.display().to_string();
            match path.extension().and_then(|e| e.to_str()) {
                Some("list") => out.extend(read_one_line_file(&path)?),
                Some("sources") => {
                    let text = read_text(&path)?;
                    out.extend(parse_deb822_sources(&text, &origin)?);
                }
                _ => {
                    tracing::debug!(file = %origin, "not a .list or .sources file; apt ignores it too")
                }
            }
        }
        Ok(out)
    }

    /// The default keyrings (trusted.gpg, trusted.gpg.d/*.gpg|*.asc).
    fn default_keyrings(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if self.trusted.is_file() {
            out.push(self.trusted.clone());
        }
        let mut parts: Vec<PathBuf> = std::fs::read_dir(&self.trusted_parts)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        parts.retain(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("gpg" | "asc")));
        parts.sort();
        out.extend(parts);
        out
    }
}

/// `'it'\''s'` → `it's`.
fn unquote_shell(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('\'') {
            let end = after.find('\'')?;
            out.push_str(&after[..end]);
            rest = &after[end + 1..];
        } else if let Some(after) = rest.strip_prefix('\\') {
            let c = after.chars().next()?;
            out.push(c);
            rest = &after[c.len_utf8()..];
        } else {
            return None;
        }
    }
    Some(out)
}

fn read_text(path: &Path) -> Result<String, Error> {
    let bytes = fsio::read_limited(path, 4 << 20)?;
    Ok(crate::source::control::utf8(&bytes, &path.display().to_string())?.to_owned())
}

fn read_one_line_file(path: &Path) -> Result<Vec<AptSource>, Error> {
    parse_sources_list(&read_text(path)?, &path.display().to_string())
}

fn sources_error(origin: &str, line: usize, problem: SourcesProblem) -> Error {
    Error::SourcesList {
        origin: origin.to_owned(),
        line,
        problem,
    }
}

/// Parses one-line-format sources (`deb [opts] URI SUITE [COMPONENT...]`);
/// `deb-src` lines are skipped.
pub fn parse_sources_list(text: &str, origin: &str) -> Result<Vec<AptSource>, Error> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let fail = |p| sources_error(origin, line_no, p);
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (kind, rest) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| fail(SourcesProblem::Syntax))?;
        let mut rest = rest.trim_start();
        let mut options = Vec::new();
        if let Some(after) = rest.strip_prefix('[') {
            let (inside, after) = after
                .split_once(']')
                .ok_or_else(|| fail(SourcesProblem::Options))?;
            for opt in inside.split_whitespace() {
                let (key, value) = opt
                    .split_once('=')
                    .ok_or_else(|| fail(SourcesProblem::Options))?;
                options.push((
                    key.trim_end_matches(['+', '-']).to_ascii_lowercase(),
                    value.to_owned(),
                ));
            }
            rest = after.trim_start();
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        let [uri, suite, components @ ..] = &words[..] else {
            return Err(fail(SourcesProblem::Syntax));
        };
        if !matches!(kind, "deb" | "deb-src") {
            return Err(fail(SourcesProblem::Syntax));
        }
        if kind == "deb-src" {
            continue;
        }
        let option = |name: &str| {
            options
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if option("trusted") == Some("yes") {
            return Err(fail(SourcesProblem::Trusted((*uri).to_owned())));
        }
        let list = |v: &str| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        out.push(AptSource {
            uri: (*uri).to_owned(),
            suites: vec![(*suite).to_owned()],
            components: components.iter().map(|c| (*c).to_owned()).collect(),
            signed_by: option("signed-by").map_or(SignedBy::Default, |v| signed_by_list(&list(v))),
            architectures: option("arch").map(list),
            origin: format!("{origin}:{line_no}"),
        });
    }
    Ok(out)
}

/// Keyring paths, or fingerprints when none looks like a path.
fn signed_by_list(items: &[String]) -> SignedBy {
    if items.iter().all(|i| i.starts_with('/')) {
        SignedBy::Keyrings(items.iter().map(PathBuf::from).collect())
    } else {
        SignedBy::Fingerprints(
            items
                .iter()
                .map(|f| f.trim_end_matches('!').to_ascii_uppercase())
                .collect(),
        )
    }
}

/// Parses deb822 `.sources` text. `Enabled: no` stanzas and stanzas
/// without the `deb` type are skipped.
pub fn parse_deb822_sources(text: &str, origin: &str) -> Result<Vec<AptSource>, Error> {
    let mut out = Vec::new();
    let options = ParseOptions { comments: true };
    for paragraph in Paragraphs::new(text, origin, options) {
        let p = paragraph.map_err(|e| {
            let line = match &e {
                crate::source::Error::Control { line, .. } => *line,
                _ => 0,
            };
            sources_error(origin, line, SourcesProblem::Control(e.to_string()))
        })?;
        let fail = |problem| sources_error(origin, p.line, problem);
        let words = |name: &str| -> Vec<String> {
            p.get(name)
                .map(|v| v.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        if p.get("Enabled")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("no"))
        {
            continue;
        }
        let types = words("Types");
        if types.is_empty() {
            return Err(fail(SourcesProblem::MissingField("Types")));
        }
        if !types.iter().any(|t| t == "deb") {
            continue;
        }
        let uris = words("URIs");
        let suites = words("Suites");
        if uris.is_empty() {
            return Err(fail(SourcesProblem::MissingField("URIs")));
        }
        if suites.is_empty() {
            return Err(fail(SourcesProblem::MissingField("Suites")));
        }
        if p.get("Trusted")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("yes"))
        {
            return Err(fail(SourcesProblem::Trusted(uris.join(" "))));
        }
        let signed_by = match p.get("Signed-By").map(str::trim) {
            None | Some("") => SignedBy::Default,
            Some(v) if v.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") => {
                SignedBy::Inline(v.to_owned())
            }
            Some(v) => {
                let items: Vec<String> = v
                    .split(|c: char| c.is_whitespace() || c == ',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                signed_by_list(&items)
            }
        };
        let architectures = p.get("Architectures").map(|_| words("Architectures"));
        for uri in uris {
            out.push(AptSource {
                uri,
                suites: suites.clone(),
                components: words("Components"),
                signed_by: signed_by.clone(),
                architectures: architectures.clone(),
                origin: format!("{origin}:{}", p.line),
            });
        }
    }
    Ok(out)
}

/// Turns host sources into sync upstreams: components in `add` are added
/// to every entry; entries the mirror cannot use (https, flat
/// repositories, other architectures) are skipped with a warning. Keys
/// that need converting (armored files, inline keys) are written under
/// `key_dir`.
pub fn upstreams(
    paths: &AptPaths,
    sources: &[AptSource],
    add: &[String],
    architectures: &[String],
    key_dir: &Path,
) -> Result<Vec<Upstream>, Error> {
    let mut out: Vec<Upstream> = Vec::new();
    for (n, source) in sources.iter().enumerate() {
        if !source.uri.starts_with("http://") && !source.uri.starts_with("file:") {
            tracing::warn!(uri = %source.uri, origin = %source.origin, "skipping: only http:// and file: sources can be mirrored");
            continue;
        }
        if let Some(archs) = &source.architectures
            && !architectures.iter().any(|a| archs.contains(a))
        {
            tracing::warn!(uri = %source.uri, origin = %source.origin, "skipping: not for the mirror's architectures");
            continue;
        }
        let suites: Vec<String> = source
            .suites
            .iter()
            .filter(|s| !s.ends_with('/'))
            .cloned()
            .collect();
        if suites.len() < source.suites.len() {
            tracing::warn!(uri = %source.uri, origin = %source.origin, "skipping flat-repository suites");
        }
        if suites.is_empty() {
            continue;
        }
        let mut components = source.components.clone();
        for c in add {
            if !components.contains(c) {
                components.push(c.clone());
            }
        }
        let keyring = keyring_of(paths, source, &key_dir.join(format!("source-{n}")))?;
        let uri = source.uri.trim_end_matches('/').to_owned();
        // One upstream per (URI, keyring): suites and components merged.
        if let Some(u) = out
            .iter_mut()
            .find(|u| u.url == uri && u.keyring == keyring)
        {
            for s in suites {
                if !u.suites.contains(&s) {
                    u.suites.push(s);
                }
            }
            for c in components {
                if !u.components.contains(&c) {
                    u.components.push(c);
                }
            }
            continue;
        }
        out.push(Upstream {
            url: uri,
            suites,
            components,
            keyring,
        });
    }
    if out.is_empty() {
        return Err(Error::HostApt {
            problem: "no usable (http:// or file:) deb source in the host's apt configuration"
                .into(),
        });
    }
    Ok(out)
}

/// The gpgv keyring of a source: binary files as they are, armored ones
/// and inline keys decoded into `dir`.
fn keyring_of(paths: &AptPaths, source: &AptSource, dir: &Path) -> Result<Keyring, Error> {
    let (files, fingerprints) = match &source.signed_by {
        SignedBy::Default => (paths.default_keyrings(), Vec::new()),
        SignedBy::Fingerprints(f) => (paths.default_keyrings(), f.clone()),
        SignedBy::Keyrings(files) => (files.clone(), Vec::new()),
        SignedBy::Inline(text) => {
            fsio::create_dirs(dir)?;
            let path = dir.join("inline.gpg");
            fsio::write_atomic(&path, &dearmor(text, &source.origin)?, 0o644)?;
            (vec![path], Vec::new())
        }
    };
    let mut out = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let bytes = fsio::read_limited(file, 16 << 20)?;
        if bytes.starts_with(b"-----BEGIN PGP") {
            fsio::create_dirs(dir)?;
            let path = dir.join(format!("key-{i}.gpg"));
            let text = String::from_utf8_lossy(&bytes);
            fsio::write_atomic(&path, &dearmor(&text, &file.display().to_string())?, 0o644)?;
            out.push(path);
        } else {
            out.push(file.clone());
        }
    }
    Ok(Keyring {
        files: out,
        fingerprints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_format() {
        let text = "\
# comment
deb http://deb.debian.org/debian bookworm main contrib # trailing
deb-src http://deb.debian.org/debian bookworm main
deb [ arch=amd64,arm64 signed-by=/usr/share/keyrings/x.gpg ] http://h/r stable main
deb [signed-by=ABCDEF0123456789ABCDEF0123456789ABCDEF01] file:/srv/r ./
";
        let s = parse_sources_list(text, "sources.list").unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].components, ["main", "contrib"]);
        assert_eq!(
            (s[0].signed_by.clone(), s[0].origin.as_str()),
            (SignedBy::Default, "sources.list:2")
        );
        assert_eq!(
            s[1].architectures.as_deref(),
            Some(&["amd64".to_owned(), "arm64".to_owned()][..])
        );
        assert_eq!(
            s[1].signed_by,
            SignedBy::Keyrings(vec!["/usr/share/keyrings/x.gpg".into()])
        );
        assert!(
            matches!(s[2].signed_by, SignedBy::Fingerprints(ref f) if f[0].starts_with("ABCDEF"))
        );
        for (bad, want) in [
            ("deb http://h", SourcesProblem::Syntax),
            ("deb [arch=amd64 http://h s c", SourcesProblem::Options),
            ("rpm http://h s c", SourcesProblem::Syntax),
        ] {
            match parse_sources_list(bad, "f") {
                Err(Error::SourcesList {
                    problem, line: 1, ..
                }) => assert_eq!(problem, want, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let err = parse_sources_list("deb [trusted=yes] http://h s c", "f").unwrap_err();
        assert!(err.to_string().contains("trusted=yes"), "{err}");
    }

    #[test]
    fn deb822_format() {
        let text = "\
Types: deb deb-src
# a comment inside
URIs: http://deb.debian.org/debian http://other/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://x
Suites: s

Types: deb
URIs: http://disabled
Suites: s
Enabled: no
";
        let s = parse_deb822_sources(text, "debian.sources").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].uri, "http://other/debian");
        assert_eq!(s[0].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(s[0].origin, "debian.sources:1");
        let err = parse_deb822_sources("Types: deb\nSuites: s\n", "f").unwrap_err();
        assert!(
            matches!(
                err,
                Error::SourcesList {
                    problem: SourcesProblem::MissingField("URIs"),
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn apt_config_shell_output() {
        let text = "SL='/etc/apt/sources.list'\nSP='/etc/apt/sources.list.d/'\nTR='/it'\\''s'\nTP='/etc/apt/trusted.gpg.d/'\nAR='amd64'\n";
        let p = AptPaths::parse_shell(text).unwrap();
        assert_eq!(p.trusted, PathBuf::from("/it's"));
        assert_eq!(p.architecture, "amd64");
        assert!(AptPaths::parse_shell("SL='x'\n").is_err());
    }

    #[test]
    fn upstreams_merge_and_skip() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = dir.path().join("k.gpg");
        std::fs::write(&keyring, b"\x99binary").unwrap();
        let paths = AptPaths {
            source_list: dir.path().join("none"),
            source_parts: dir.path().join("none.d"),
            trusted: dir.path().join("none.gpg"),
            trusted_parts: dir.path().join("none.gpg.d"),
            architecture: "amd64".into(),
        };
        let text = format!(
            "deb [signed-by={k}] http://d/debian bookworm main\n\
             deb [signed-by={k}] http://d/debian/ bookworm-updates main\n\
             deb https://secure/x s main\n\
             deb [arch=arm64] http://arm/x s main\n",
            k = keyring.display()
        );
        let sources = parse_sources_list(&text, "l").unwrap();
        let add = ["non-free-firmware".to_owned()];
        let ups = upstreams(&paths, &sources, &add, &["amd64".into()], dir.path()).unwrap();
        assert_eq!(ups.len(), 1);
        assert_eq!(ups[0].url, "http://d/debian");
        assert_eq!(ups[0].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(ups[0].components, ["main", "non-free-firmware"]);
        assert_eq!(ups[0].keyring.files, [keyring]);
    }
}
