//! The license a Debian package declares, as an SPDX expression.
//!
//! Debian packages declare licenses only in `/usr/share/doc/PKG/copyright`,
//! and only the machine-readable format (DEP-5) says it in a form a program
//! can read: `License:` fields with short names (`GPL-2+`, `Expat`, ...)
//! joined by `or`/`and`. We take every `License:` of the `Files:`
//! paragraphs, translate the short names DEP-5 and SPDX share under other
//! spellings, and join the distinct expressions with `AND` (the package
//! ships files under each of them). Anything else (a free-text copyright
//! file, a name we do not know) becomes `NOASSERTION` or a `LicenseRef-`
//! that the SBOM defines, never a guess.

use std::collections::BTreeSet;

/// What a package's copyright file lets us say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Declared {
    /// Not machine-readable, or no `License:` field.
    NoAssertion,
    /// An SPDX license expression; `refs` are the `LicenseRef-` ids it uses.
    Expression {
        /// The expression (`GPL-2.0-or-later AND MIT`).
        text: String,
        /// `LicenseRef-` ids in it, each with the DEP-5 name it stands for.
        refs: BTreeSet<(String, String)>,
    },
}

/// Reads a copyright file's text.
pub fn declared(copyright: &str) -> Declared {
    if !is_dep5(copyright) {
        return Declared::NoAssertion;
    }
    let mut exprs = BTreeSet::new();
    let mut refs = BTreeSet::new();
    for paragraph in copyright.split("\n\n") {
        let mut fields = paragraph.lines();
        let Some(first) = fields.next() else { continue };
        // Only file paragraphs declare what ships; stand-alone License
        // paragraphs hold the texts.
        if !first.starts_with("Files:") && !paragraph.lines().any(|l| l.starts_with("Files:")) {
            continue;
        }
        for line in paragraph.lines() {
            if let Some(value) = strip_field(line, "License")
                && let Some(expr) = expression(value, &mut refs)
            {
                exprs.insert(expr);
            }
        }
    }
    if exprs.is_empty() {
        return Declared::NoAssertion;
    }
    let text = if exprs.len() == 1 {
        exprs.into_iter().next().unwrap_or_default()
    } else {
        exprs
            .iter()
            .map(|e| {
                if e.contains(' ') {
                    format!("({e})")
                } else {
                    e.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    Declared::Expression { text, refs }
}

fn is_dep5(text: &str) -> bool {
    text.lines()
        .next()
        .and_then(|l| strip_field(l, "Format"))
        .is_some_and(|v| {
            v.contains("copyright-format") || v.contains("dep5") || v.contains("DEP-5")
        })
}

/// `Name: value` (case-insensitive name) → trimmed value.
fn strip_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let (key, value) = line.split_once(':')?;
    key.eq_ignore_ascii_case(name).then(|| value.trim())
}

/// One `License:` value (`GPL-2+ or Artistic`, `GPL-2 with OpenSSL
/// exception`) as an SPDX expression.
fn expression(value: &str, refs: &mut BTreeSet<(String, String)>) -> Option<String> {
    let words: Vec<&str> = value
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        match w.to_ascii_lowercase().as_str() {
            "or" => out.push("OR".into()),
            "and" => out.push("AND".into()),
            "with" => {
                // DEP-5: "with NAME exception"; SPDX has a few exceptions
                // by id, the rest become part of a LicenseRef.
                let mut exc = Vec::new();
                i += 1;
                while i < words.len() && !words[i].eq_ignore_ascii_case("exception") {
                    exc.push(words[i]);
                    i += 1;
                }
                let exc = exc.join("-");
                let last = out.pop().unwrap_or_default();
                match exception(&exc) {
                    Some(id) => out.push(format!("{last} WITH {id}")),
                    None => {
                        let r = license_ref(&format!("{last}-with-{exc}-exception"));
                        refs.insert((r.clone(), format!("{last} with {exc} exception")));
                        out.push(r);
                    }
                }
            }
            _ => out.push(license_id(w, refs)),
        }
        i += 1;
    }
    // An operator at either end or two in a row: not an expression.
    let operator = |s: &String| s == "OR" || s == "AND";
    let malformed = out.first().is_none_or(operator)
        || out.last().is_none_or(operator)
        || out.windows(2).any(|w| operator(&w[0]) == operator(&w[1]));
    if malformed {
        let r = license_ref(value);
        refs.insert((r.clone(), value.to_owned()));
        return Some(r);
    }
    Some(out.join(" "))
}

/// DEP-5 short names whose SPDX id is spelled differently, or that SPDX
/// has under the same spelling (checked against the SPDX license list in
/// the tests).
fn license_id(name: &str, refs: &mut BTreeSet<(String, String)>) -> String {
    let lower = name.to_ascii_lowercase();
    let (base, later) = match lower.strip_suffix('+') {
        Some(b) => (b, true),
        None => (lower.as_str(), false),
    };
    let id = gnu_id(base, later).or_else(|| (!later).then(|| other_id(base)).flatten());
    id.unwrap_or_else(|| {
        let r = license_ref(name);
        refs.insert((r.clone(), name.to_owned()));
        r
    })
}

/// `GPL-2+` → `GPL-2.0-or-later`, for the GNU versions SPDX has.
fn gnu_id(base: &str, later: bool) -> Option<String> {
    const KNOWN: [&str; 11] = [
        "GPL-1.0", "GPL-2.0", "GPL-3.0", "LGPL-2.0", "LGPL-2.1", "LGPL-3.0", "AGPL-1.0",
        "AGPL-3.0", "GFDL-1.1", "GFDL-1.2", "GFDL-1.3",
    ];
    let (family, version) = base.split_once('-')?;
    let family = family.to_ascii_uppercase();
    let version = if version.contains('.') {
        version.to_owned()
    } else {
        format!("{version}.0")
    };
    let stem = format!("{family}-{version}");
    KNOWN
        .contains(&stem.as_str())
        .then(|| format!("{stem}-{}", if later { "or-later" } else { "only" }))
}

fn other_id(base: &str) -> Option<String> {
    let id = match base {
        "expat" | "mit" => "MIT",
        "isc" => "ISC",
        "zlib" => "Zlib",
        "bsd-2-clause" => "BSD-2-Clause",
        "bsd-3-clause" => "BSD-3-Clause",
        "bsd-4-clause" => "BSD-4-Clause",
        "apache-2.0" | "apache-2" => "Apache-2.0",
        "artistic" | "artistic-1" | "artistic-1.0" => "Artistic-1.0-Perl",
        "artistic-2.0" | "artistic-2" => "Artistic-2.0",
        "mpl-1.1" => "MPL-1.1",
        "mpl-2.0" => "MPL-2.0",
        "cc0-1.0" | "cc0" => "CC0-1.0",
        "psf-2" | "python-2.0" => "Python-2.0",
        "bsl-1.0" | "boost-1.0" => "BSL-1.0",
        "curl" => "curl",
        "openssl" => "OpenSSL",
        "x11" => "X11",
        "fsfap" => "FSFAP",
        "fsful" => "FSFUL",
        "fsfullr" => "FSFULLR",
        "unicode-dfs-2016" => "Unicode-DFS-2016",
        "wtfpl" => "WTFPL",
        "sleepycat" => "Sleepycat",
        "ofl-1.1" => "OFL-1.1",
        "cc-by-sa-3.0" => "CC-BY-SA-3.0",
        "cc-by-sa-4.0" => "CC-BY-SA-4.0",
        "cc-by-4.0" => "CC-BY-4.0",
        "ftl" => "FTL",
        "libpng" => "Libpng",
        "ijg" => "IJG",
        "0bsd" => "0BSD",
        _ => return None,
    };
    Some(id.to_owned())
}

fn exception(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().as_str() {
        "openssl" => Some("openvpn-openssl-exception"),
        "gcc-runtime-library" | "gcc" => Some("GCC-exception-3.1"),
        "autoconf" => Some("Autoconf-exception-3.0"),
        "classpath" => Some("Classpath-exception-2.0"),
        "font" => Some("Font-exception-2.0"),
        "bison" => Some("Bison-exception-2.2"),
        "libtool" => Some("Libtool-exception"),
        _ => None,
    }
}

/// `LicenseRef-` + the name with every character SPDX ids do not allow
/// replaced (ids are letters, digits, `.` and `-`).
pub fn license_ref(name: &str) -> String {
    let body: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else if c == '+' {
                'p'
            } else {
                '-'
            }
        })
        .collect();
    format!("LicenseRef-{}", body.trim_matches('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(d: &Declared) -> &str {
        match d {
            Declared::NoAssertion => "NOASSERTION",
            Declared::Expression { text, .. } => text,
        }
    }

    const DEP5: &str =
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n";

    #[test]
    fn file_paragraphs_joined_with_and() {
        let c = format!(
            "{DEP5}Upstream-Name: x\n\nFiles: *\nCopyright: a\nLicense: GPL-2+\n\n\
             Files: lib/*\nLicense: LGPL-2.1+ or Expat\n\nLicense: GPL-2+\n text\n"
        );
        assert_eq!(
            text(&declared(&c)),
            "GPL-2.0-or-later AND (LGPL-2.1-or-later OR MIT)"
        );
    }

    #[test]
    fn free_text_is_no_assertion() {
        assert_eq!(
            declared("This package was debianized by...\nLicense: GPL\n"),
            Declared::NoAssertion
        );
    }

    #[test]
    fn unknown_names_become_defined_refs() {
        let c = format!("{DEP5}\nFiles: *\nLicense: NVIDIA\n");
        let d = declared(&c);
        assert_eq!(text(&d), "LicenseRef-NVIDIA");
        let Declared::Expression { refs, .. } = d else {
            panic!()
        };
        assert_eq!(
            refs.into_iter().collect::<Vec<_>>(),
            [("LicenseRef-NVIDIA".to_owned(), "NVIDIA".to_owned())]
        );
    }

    #[test]
    fn exceptions_and_odd_versions() {
        let c = format!("{DEP5}\nFiles: *\nLicense: GPL-3+ with GCC-Runtime-Library exception\n");
        assert_eq!(
            text(&declared(&c)),
            "GPL-3.0-or-later WITH GCC-exception-3.1"
        );
        let c = format!("{DEP5}\nFiles: *\nLicense: GPL-7\n");
        assert_eq!(text(&declared(&c)), "LicenseRef-GPL-7");
        let c = format!("{DEP5}\nFiles: *\nLicense: or GPL-2\n");
        assert_eq!(text(&declared(&c)), "LicenseRef-or-GPL-2");
    }
}
