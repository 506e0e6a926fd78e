//! Release files and InRelease clear-signed messages.
//!
//! A Release file lists a suite's indexes with their sizes and hashes; its
//! signature (InRelease, or Release + Release.gpg) is the root of trust of
//! a Debian repository. The OpenPGP verification itself is done by
//! `gpgv`/`sqv`; this module parses, and extracts from an InRelease exactly
//! the bytes its signature covers (RFC 4880 §7), so that what we parse is
//! what was signed and nothing else.

use super::control::{self, Paragraph};
use super::error::{ClearSignedProblem, Error, ValueProblem};
use super::index::{parse_sha256, parse_u64};

/// One entry of a Release file's `SHA256` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    /// Path relative to the suite directory (`main/binary-amd64/Packages.xz`).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the file.
    pub sha256: [u8; 32],
}

/// A parsed Release file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// `Suite` (`stable`, `bookworm-security`, ...).
    pub suite: Option<String>,
    /// `Codename` (`bookworm`).
    pub codename: Option<String>,
    /// `Date`, as written.
    pub date: Option<String>,
    /// `Date` in seconds since the Unix epoch.
    pub date_unix: Option<i64>,
    /// `Valid-Until` in seconds since the Unix epoch.
    pub valid_until_unix: Option<i64>,
    /// `Components`.
    pub components: Vec<String>,
    /// `Architectures`.
    pub architectures: Vec<String>,
    /// `Acquire-By-Hash: yes`.
    pub acquire_by_hash: bool,
    /// The `SHA256` list.
    pub sha256: Vec<IndexFile>,
    /// Every field as written (Origin, Label, Version, MD5Sum, ...).
    pub fields: Paragraph,
}

impl Release {
    /// Parses Release text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, Error> {
        let fields = control::parse_single(text, origin)?;
        let field_error = |name: &str, source: Error| {
            let line = fields.field(name).map_or(fields.line, |f| f.line);
            Error::ReleaseField {
                origin: origin.to_owned(),
                line,
                field: name.to_owned(),
                source: Box::new(source),
            }
        };
        let words = |name| -> Vec<String> {
            fields
                .get(name)
                .map(|v| v.split_ascii_whitespace().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        let date_of = |name: &str| {
            fields
                .get(name)
                .map(|v| parse_date(v).map_err(|e| field_error(name, e)))
                .transpose()
        };
        let acquire_by_hash = match fields.get("Acquire-By-Hash") {
            None | Some("no") => false,
            Some("yes") => true,
            Some(other) => {
                let e = Error::Value {
                    value: other.to_owned(),
                    problem: ValueProblem::NotYesNo,
                };
                return Err(field_error("Acquire-By-Hash", e));
            }
        };
        let sha256 = match fields.get("SHA256") {
            Some(list) => parse_hash_list(list).map_err(|e| field_error("SHA256", e))?,
            None => Vec::new(),
        };
        Ok(Self {
            suite: fields.get("Suite").map(str::to_owned),
            codename: fields.get("Codename").map(str::to_owned),
            date: fields.get("Date").map(str::to_owned),
            date_unix: date_of("Date")?,
            valid_until_unix: date_of("Valid-Until")?,
            components: words("Components"),
            architectures: words("Architectures"),
            acquire_by_hash,
            sha256,
            fields,
        })
    }

    /// The `SHA256` entry for a path relative to the suite directory.
    pub fn index_file(&self, path: &str) -> Option<&IndexFile> {
        self.sha256.iter().find(|f| f.path == path)
    }
}

fn parse_hash_list(list: &str) -> Result<Vec<IndexFile>, Error> {
    let mut out = Vec::new();
    for line in list.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.split_ascii_whitespace();
        let (Some(hash), Some(size), Some(path), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::Value {
                value: line.trim().to_owned(),
                problem: ValueProblem::BadHashLine,
            });
        };
        out.push(IndexFile {
            path: path.to_owned(),
            size: parse_u64(size)?,
            sha256: parse_sha256(hash)?,
        });
    }
    Ok(out)
}

/// Parses a Release date (`Sat, 10 Jun 2023 08:55:41 UTC`; the weekday is
/// optional, the zone is `UTC`, `GMT`, `Z` or `+0000`-style) to Unix seconds.
pub fn parse_date(text: &str) -> Result<i64, Error> {
    let bad = || Error::Value {
        value: text.to_owned(),
        problem: ValueProblem::BadDate,
    };
    let rest = match text.split_once(',') {
        Some((_, rest)) => rest,
        None => text,
    };
    let parts: Vec<&str> = rest.split_ascii_whitespace().collect();
    let [day, month, year, time, zone] = parts[..] else {
        return Err(bad());
    };
    let num = |s: &str| {
        s.parse::<i64>()
            .ok()
            .filter(|_| s.bytes().all(|b| b.is_ascii_digit()))
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month).ok_or_else(bad)? as i64 + 1;
    let (day, year) = (num(day).ok_or_else(bad)?, num(year).ok_or_else(bad)?);
    let hms: Vec<i64> = time
        .split(':')
        .map(num)
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    let [h, m, s] = hms[..] else {
        return Err(bad());
    };
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 || !(1970..=9999).contains(&year) {
        return Err(bad());
    }
    let offset = match zone {
        "UTC" | "GMT" | "Z" => 0,
        z if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => {
            // `get`: a 5-byte token may still split a multi-byte character.
            let hh = z.get(1..3).and_then(num).ok_or_else(bad)?;
            let mm = z.get(3..5).and_then(num).ok_or_else(bad)?;
            let sign = if z.starts_with('-') { -1 } else { 1 };
            sign * (hh * 3600 + mm * 60)
        }
        _ => return Err(bad()),
    };
    Ok(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An OpenPGP cleartext-signed message, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearSigned {
    /// The `Hash:` armor header values (e.g. `SHA512`).
    pub hashes: Vec<String>,
    /// The signed text as LF-terminated lines: dash-escapes removed and
    /// trailing blanks dropped, i.e. exactly the signed content. Parse this,
    /// never the raw file.
    pub text: String,
    /// The signature block, `-----BEGIN PGP SIGNATURE-----` through
    /// `-----END PGP SIGNATURE-----`, each line LF-terminated.
    pub signature: String,
}

const BEGIN_MESSAGE: &str = "-----BEGIN PGP SIGNED MESSAGE-----";
const BEGIN_SIGNATURE: &str = "-----BEGIN PGP SIGNATURE-----";
const END_SIGNATURE: &str = "-----END PGP SIGNATURE-----";

impl ClearSigned {
    /// Splits a clear-signed message; `origin` names it in errors. Nothing
    /// but blank lines may stand before or after the message.
    pub fn parse(input: &str, origin: &str) -> Result<Self, Error> {
        let fail = |line: usize, problem| Error::ClearSigned {
            origin: origin.to_owned(),
            line,
            problem,
        };
        let mut lines = input
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .enumerate()
            .map(|(i, l)| (i + 1, l));
        let Some((mut last, begin)) = lines.by_ref().find(|(_, l)| !is_blank(l)) else {
            return Err(fail(1, ClearSignedProblem::NoBegin));
        };
        if trim_blanks(begin) != BEGIN_MESSAGE {
            return Err(fail(last, ClearSignedProblem::NoBegin));
        }
        let mut hashes = Vec::new();
        loop {
            let Some((n, line)) = lines.next() else {
                return Err(fail(last, ClearSignedProblem::BadArmorHeader));
            };
            last = n;
            if line.is_empty() {
                break;
            }
            match line.strip_prefix("Hash: ") {
                Some(v) => hashes.extend(v.split(',').map(|h| h.trim().to_owned())),
                None => return Err(fail(n, ClearSignedProblem::BadArmorHeader)),
            }
        }
        let mut text = String::new();
        loop {
            let Some((n, line)) = lines.next() else {
                return Err(fail(last, ClearSignedProblem::NoSignature));
            };
            last = n;
            if trim_blanks(line) == BEGIN_SIGNATURE {
                break;
            }
            let line = match line.strip_prefix("- ") {
                Some(unescaped) => unescaped,
                None if line.starts_with('-') => {
                    return Err(fail(n, ClearSignedProblem::NotDashEscaped));
                }
                None => line,
            };
            text.push_str(trim_end_blanks(line));
            text.push('\n');
        }
        let mut signature = format!("{BEGIN_SIGNATURE}\n");
        loop {
            let Some((n, line)) = lines.next() else {
                return Err(fail(last, ClearSignedProblem::NoSignatureEnd));
            };
            last = n;
            signature.push_str(trim_end_blanks(line));
            signature.push('\n');
            if trim_blanks(line) == END_SIGNATURE {
                break;
            }
        }
        if let Some((n, _)) = lines.find(|(_, l)| !is_blank(l)) {
            return Err(fail(n, ClearSignedProblem::TrailingText));
        }
        Ok(Self {
            hashes,
            text,
            signature,
        })
    }

    /// The bytes the signature is computed over (RFC 4880 §7.1): the text's
    /// lines, trailing blanks removed, joined by CRLF, with no line ending
    /// after the last line.
    pub fn signed_data(&self) -> Vec<u8> {
        let body = self.text.strip_suffix('\n').unwrap_or(&self.text);
        body.replace('\n', "\r\n").into_bytes()
    }

    /// Parses the signed text as a Release file.
    pub fn release(&self, origin: &str) -> Result<Release, Error> {
        Release::parse(&self.text, origin)
    }
}

fn is_blank(line: &str) -> bool {
    line.bytes().all(|b| b == b' ' || b == b'\t')
}

fn trim_end_blanks(line: &str) -> &str {
    line.trim_end_matches([' ', '\t'])
}

fn trim_blanks(line: &str) -> &str {
    line.trim_matches([' ', '\t'])
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELEASE: &str = "\
Origin: Debian
Suite: stable
Codename: bookworm
Date: Sat, 10 Jun 2023 08:55:41 UTC
Acquire-By-Hash: yes
Architectures: all amd64 arm64
Components: main contrib non-free-firmware
SHA256:
 3a2118df47bf3f04285649f0455c2fc6fe2dc7f0b237073038aa00af41f0d5f2   738242 contrib/Contents-all
 d943033bedada21853d2ae54a2578a7bd943033bedada21853d2ae54a2578a7b 123 main/binary-amd64/Packages.xz
";

    #[test]
    fn parses_release_fields_and_hash_list() {
        let r = Release::parse(RELEASE, "Release").unwrap();
        assert_eq!(r.codename.as_deref(), Some("bookworm"));
        assert_eq!(r.date_unix, Some(1_686_387_341));
        assert!(r.acquire_by_hash);
        assert_eq!(r.components, ["main", "contrib", "non-free-firmware"]);
        assert_eq!(r.architectures.len(), 3);
        let f = r.index_file("main/binary-amd64/Packages.xz").unwrap();
        assert_eq!((f.size, f.sha256[0]), (123, 0xd9));
        assert_eq!(r.fields.get("origin"), Some("Debian"));
    }

    #[test]
    fn release_errors_name_the_field() {
        let bad = RELEASE.replace(" 123 main", " 12x main");
        let err = Release::parse(&bad, "R").unwrap_err();
        assert!(
            err.to_string().starts_with("R:8: Release field SHA256: "),
            "{err}"
        );
        let bad = RELEASE.replace("Jun 2023", "Juno 2023");
        assert!(Release::parse(&bad, "R").is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("Thu, 01 Jan 1970 00:00:00 UTC").unwrap(), 0);
        assert_eq!(
            parse_date("29 Feb 2024 12:00:00 +0100").unwrap(),
            1_709_204_400
        );
        assert!(parse_date("Thu, 01 Jan 1970 00:00 UTC").is_err());
        assert!(parse_date("Thu, 01 Jan 1970 00:00:00 +0\u{e9}0").is_err());
    }

    const SIGNED: &str = "\
-----BEGIN PGP SIGNED MESSAGE-----\r
Hash: SHA512\r
\r
Origin: Debian  \r
- -Dashed: yes\r
Suite: stable\r
-----BEGIN PGP SIGNATURE-----\r
\r
iQIzBAEBCgAdFiEE\r
=abcd\r
-----END PGP SIGNATURE-----\r
";

    #[test]
    fn splits_clear_signed_text_exactly() {
        let m = ClearSigned::parse(SIGNED, "InRelease").unwrap();
        assert_eq!(m.hashes, ["SHA512"]);
        assert_eq!(m.text, "Origin: Debian\n-Dashed: yes\nSuite: stable\n");
        assert_eq!(
            m.signed_data(),
            b"Origin: Debian\r\n-Dashed: yes\r\nSuite: stable"
        );
        assert!(m.signature.starts_with(BEGIN_SIGNATURE));
        assert!(m.signature.ends_with("-----END PGP SIGNATURE-----\n"));
    }

    #[test]
    fn refuses_unsigned_surroundings() {
        let cases = [
            (
                format!("Suite: evil\n{SIGNED}"),
                ClearSignedProblem::NoBegin,
            ),
            (
                format!("{SIGNED}Suite: evil\n"),
                ClearSignedProblem::TrailingText,
            ),
            (
                SIGNED.replace("- -Dashed", "-Dashed"),
                ClearSignedProblem::NotDashEscaped,
            ),
            (
                SIGNED.replace("Hash: SHA512", "Comment: x"),
                ClearSignedProblem::BadArmorHeader,
            ),
            (
                SIGNED.replace("-----END PGP SIGNATURE-----", "x"),
                ClearSignedProblem::NoSignatureEnd,
            ),
            (
                SIGNED[..SIGNED.find(BEGIN_SIGNATURE).unwrap()].to_owned(),
                ClearSignedProblem::NoSignature,
            ),
        ];
        for (text, want) in cases {
            match ClearSigned::parse(&text, "I") {
                Err(Error::ClearSigned { problem, .. }) => assert_eq!(problem, want),
                other => panic!("{want:?}: {other:?}"),
            }
        }
    }
}
