//! Debian package versions, parsed and ordered exactly as dpkg does.
//!
//! The rules are dpkg's own (`lib/dpkg/parsehelp.c` `parseversion` and
//! `lib/dpkg/version.c` `verrevcmp`), including their corners: the epoch is
//! read like C `strtol` (a `+` sign is accepted, `-0` is zero), `~` sorts
//! before everything, even the end of the string, letters sort before other
//! characters, digit runs compare numerically whatever their length, and a
//! run of zeros equals no digits at all (`1.0` = `1.` = `1.00-0`).
//!
//! dpkg *rejects* some strings (empty, embedded blanks, a bad epoch, an
//! empty upstream or revision) and only *warns* about others (upstream not
//! starting with a digit, characters outside the allowed set). [`Version::parse`]
//! rejects exactly the first kind, accepts the second, and reports the
//! warning through [`Version::lint`] so a strict caller can refuse it.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use super::error::{Error, VersionProblem};

/// A parsed Debian version: `[epoch:]upstream[-revision]`.
///
/// Equality, ordering and hashing follow dpkg: `1.0` equals `0:1.0`,
/// `1.00` and `1.0-0`. The original text is kept for display.
#[derive(Clone)]
pub struct Version {
    text: Box<str>,
    epoch: u32,
    upstream_start: u32,
    upstream_end: u32,
}

/// Something dpkg accepts in a version but warns about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionLint {
    /// The upstream part does not start with a digit.
    UpstreamNotDigit,
    /// The upstream part has a character outside `[A-Za-z0-9.+~:-]`.
    UpstreamBadChar,
    /// The revision has a character outside `[A-Za-z0-9.+~]`.
    RevisionBadChar,
}

impl fmt::Display for VersionLint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UpstreamNotDigit => "version number does not start with digit",
            Self::UpstreamBadChar => "invalid character in version number",
            Self::RevisionBadChar => "invalid character in revision number",
        })
    }
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// What C `isspace` skips in the "C" locale, which `strtol` uses.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn problem(text: &str, problem: VersionProblem) -> Error {
    Error::Version {
        version: text.to_owned(),
        problem,
    }
}

impl Version {
    /// Parses a version, rejecting what dpkg rejects.
    pub fn parse(text: &str) -> Result<Self, Error> {
        Self::parse_inner(text).map_err(|p| problem(text, p))
    }

    fn parse_inner(text: &str) -> Result<Self, VersionProblem> {
        let bytes = text.as_bytes();
        if bytes.contains(&0) {
            return Err(VersionProblem::Nul);
        }
        let start = bytes.iter().position(|&b| !is_blank(b));
        let Some(start) = start else {
            return Err(VersionProblem::Empty);
        };
        let end = bytes[start..]
            .iter()
            .position(|&b| is_blank(b))
            .map_or(bytes.len(), |p| start + p);
        if bytes[end..].iter().any(|&b| !is_blank(b)) {
            return Err(VersionProblem::EmbeddedSpaces);
        }
        // dpkg searches for ':' in the left-trimmed string, trailing blanks included.
        let (epoch, after_epoch) = match bytes[start..].iter().position(|&b| b == b':') {
            Some(rel) => {
                let colon = start + rel;
                let epoch = parse_epoch(&bytes[start..colon])?;
                if colon + 1 == bytes.len() {
                    return Err(VersionProblem::NothingAfterColon);
                }
                (epoch, colon + 1)
            }
            None => (0, start),
        };
        let body = &bytes[after_epoch.min(end)..end];
        let upstream_len = match body.iter().rposition(|&b| b == b'-') {
            Some(h) if h + 1 == body.len() => return Err(VersionProblem::RevisionEmpty),
            Some(h) => h,
            None => body.len(),
        };
        if upstream_len == 0 {
            return Err(VersionProblem::UpstreamEmpty);
        }
        let trimmed = &text[start..end];
        let offset = after_epoch.min(end) - start;
        let to_u32 = |n: usize| u32::try_from(n).map_err(|_| VersionProblem::EmbeddedSpaces);
        Ok(Self {
            text: trimmed.into(),
            epoch,
            upstream_start: to_u32(offset)?,
            upstream_end: to_u32(offset + upstream_len)?,
        })
    }

    /// The epoch (0 when absent).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The upstream part, between the epoch and the last `-`.
    pub fn upstream(&self) -> &str {
        &self.text[self.upstream_start as usize..self.upstream_end as usize]
    }

    /// The Debian revision after the last `-`, or `""` when there is none.
    pub fn revision(&self) -> &str {
        let end = self.upstream_end as usize;
        if end < self.text.len() {
            &self.text[end + 1..]
        } else {
            ""
        }
    }

    /// The version as written (leading and trailing blanks removed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// What dpkg would warn about in this version, if anything.
    pub fn lint(&self) -> Option<VersionLint> {
        let up = self.upstream().as_bytes();
        if !up[0].is_ascii_digit() {
            return Some(VersionLint::UpstreamNotDigit);
        }
        if up[1..]
            .iter()
            .any(|&b| !b.is_ascii_alphanumeric() && !b".-+~:".contains(&b))
        {
            return Some(VersionLint::UpstreamBadChar);
        }
        if self
            .revision()
            .bytes()
            .any(|b| !b.is_ascii_alphanumeric() && !b".+~".contains(&b))
        {
            return Some(VersionLint::RevisionBadChar);
        }
        None
    }

    /// dpkg's three-way comparison.
    pub fn compare(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(self.upstream().as_bytes(), other.upstream().as_bytes()))
            .then_with(|| verrevcmp(self.revision().as_bytes(), other.revision().as_bytes()))
    }

    /// Whether `self OP other` holds, e.g. `v.satisfies(RelOp::Ge, &min)`.
    pub fn satisfies(&self, op: RelOp, other: &Self) -> bool {
        op.holds(self.compare(other))
    }
}

/// C `strtol(s, &end, 10)` as dpkg uses it, then dpkg's checks.
fn parse_epoch(s: &[u8]) -> Result<u32, VersionProblem> {
    let mut i = s.iter().take_while(|&&b| is_c_space(b)).count();
    let negative = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits = s[i.min(s.len())..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 {
        return Err(VersionProblem::EpochEmpty);
    }
    if i + digits != s.len() {
        return Err(VersionProblem::EpochNotNumber);
    }
    let magnitude = s[i..].iter().fold(0u64, |acc, &b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    });
    if negative && magnitude > 0 {
        return Err(VersionProblem::EpochNegative);
    }
    match u32::try_from(magnitude) {
        Ok(e) if e <= i32::MAX as u32 => Ok(e),
        _ => Err(VersionProblem::EpochTooBig),
    }
}

/// dpkg's character weight: `~` first, then end of string and digits (0),
/// then letters, then everything else. dpkg's `char` is signed on the
/// platforms Debian builds for, so bytes >= 0x80 weigh `b - 256 + 256`.
fn order(b: Option<u8>) -> i32 {
    match b {
        None => 0,
        Some(b) if b.is_ascii_digit() => 0,
        Some(b) if b.is_ascii_alphabetic() => i32::from(b),
        Some(b'~') => -1,
        Some(b) if b >= 0x80 => i32::from(b),
        Some(b) => i32::from(b) + 256,
    }
}

fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    let non_digit = |s: &[u8], k: usize| s.get(k).is_some_and(|c| !c.is_ascii_digit());
    while i < a.len() || j < b.len() {
        while non_digit(a, i) || non_digit(b, j) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
            if !x.is_ascii_digit() || !y.is_ascii_digit() {
                break;
            }
            if first_diff == Ordering::Equal {
                first_diff = x.cmp(y);
            }
            i += 1;
            j += 1;
        }
        if a.get(i).is_some_and(u8::is_ascii_digit) {
            return Ordering::Greater;
        }
        if b.get(j).is_some_and(u8::is_ascii_digit) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// Feeds the hasher a form in which dpkg-equal strings are identical:
/// each digit run reduced to its value (`007` -> `7`, `00` -> `0`), and a
/// zero run at the very end dropped (`1.0` = `1.`, revision `0` = none).
/// A zero run anywhere else still counts: `1.0a` sorts before `1.a`.
fn hash_normalised<H: Hasher>(s: &[u8], state: &mut H) {
    let mut i = 0;
    while i < s.len() {
        if s[i].is_ascii_digit() {
            let run = s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
            let digits = &s[i..i + run];
            i += run;
            match digits.iter().position(|&d| d != b'0') {
                Some(p) => state.write(&digits[p..]),
                None if i == s.len() => break,
                None => state.write(b"0"),
            }
            state.write_u8(0xff);
        } else {
            state.write_u8(s[i]);
            i += 1;
        }
    }
    state.write_u8(0xfe);
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.compare(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.compare(other)
    }
}

impl Hash for Version {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.epoch.hash(state);
        hash_normalised(self.upstream().as_bytes(), state);
        hash_normalised(self.revision().as_bytes(), state);
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({:?})", &*self.text)
    }
}

impl FromStr for Version {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

/// A version relation operator as written in control files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RelOp {
    /// `<<`: strictly earlier.
    Lt,
    /// `<=` (and the obsolete `<`).
    Le,
    /// `=`.
    Eq,
    /// `>=` (and the obsolete `>`).
    Ge,
    /// `>>`: strictly later.
    Gt,
}

impl RelOp {
    /// Reads an operator. The obsolete `<` and `>` mean `<=` and `>=`, as
    /// dpkg still reads them (with a warning).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "<<" => Self::Lt,
            "<=" | "<" => Self::Le,
            "=" => Self::Eq,
            ">=" | ">" => Self::Ge,
            ">>" => Self::Gt,
            _ => return None,
        })
    }

    /// The canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lt => "<<",
            Self::Le => "<=",
            Self::Eq => "=",
            Self::Ge => ">=",
            Self::Gt => ">>",
        }
    }

    /// Whether a comparison result (`candidate.compare(&wanted)`) satisfies it.
    pub fn holds(self, ord: Ordering) -> bool {
        match self {
            Self::Lt => ord == Ordering::Less,
            Self::Le => ord != Ordering::Greater,
            Self::Eq => ord == Ordering::Equal,
            Self::Ge => ord != Ordering::Less,
            Self::Gt => ord == Ordering::Greater,
        }
    }
}

impl fmt::Display for RelOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn splits_epoch_upstream_revision() {
        let x = v(" 2:1.0-3-4~b1 ");
        assert_eq!(
            (x.epoch(), x.upstream(), x.revision()),
            (2, "1.0-3", "4~b1")
        );
        assert_eq!(x.as_str(), "2:1.0-3-4~b1");
        let y = v("1:2:3");
        assert_eq!((y.epoch(), y.upstream(), y.revision()), (1, "2:3", ""));
        assert_eq!(v("+1:2").epoch(), 1);
        assert_eq!(v("-0:2").epoch(), 0);
    }

    #[test]
    fn orders_like_dpkg() {
        let ascending = [
            "1.0~~", "1.0~~a", "1.0~", "1.0", "1.0-1", "1.0a", "1.0+", "1.0.1", "1.1", "1.10", "2",
            "2.0", "1:0", "1:0.1",
        ];
        for w in ascending.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(v("1.0"), v("0:1.00-0"));
        assert_eq!(v("1.0"), v("1."));
        assert!(v("99999999999999999999999999999") > v("99999999999999999999999999998"));
    }

    #[test]
    fn rejects_what_dpkg_rejects() {
        let bad = [
            ("", VersionProblem::Empty),
            ("1 2", VersionProblem::EmbeddedSpaces),
            (":1", VersionProblem::EpochEmpty),
            ("a:1", VersionProblem::EpochEmpty),
            ("1a:1", VersionProblem::EpochNotNumber),
            ("-1:1", VersionProblem::EpochNegative),
            ("2147483648:1", VersionProblem::EpochTooBig),
            ("1:", VersionProblem::NothingAfterColon),
            ("1: ", VersionProblem::UpstreamEmpty),
            ("1.0-", VersionProblem::RevisionEmpty),
            ("-1", VersionProblem::UpstreamEmpty),
        ];
        for (text, want) in bad {
            match Version::parse(text) {
                Err(Error::Version { problem, .. }) => assert_eq!(problem, want, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn warns_where_dpkg_warns() {
        assert_eq!(v("a1").lint(), Some(VersionLint::UpstreamNotDigit));
        assert_eq!(v("1_0").lint(), Some(VersionLint::UpstreamBadChar));
        assert_eq!(v("1-a_b").lint(), Some(VersionLint::RevisionBadChar));
        assert_eq!(v("1:1.0+dfsg~rc1-2.1").lint(), None);
    }

    #[test]
    fn equal_versions_hash_alike() {
        use std::collections::HashSet;
        let set: HashSet<Version> = ["1.0", "0:1.00", "1.0-0", "1.", "01.0"].map(v).into();
        assert_eq!(set.len(), 1);
        assert_eq!(HashSet::from(["1.2", "12"].map(v)).len(), 2);
    }

    #[test]
    fn operators() {
        assert_eq!(RelOp::parse("<"), Some(RelOp::Le));
        assert_eq!(RelOp::parse(">"), Some(RelOp::Ge));
        assert!(v("1").satisfies(RelOp::Lt, &v("2")));
        assert!(!v("2").satisfies(RelOp::Lt, &v("2")));
        assert!(v("2").satisfies(RelOp::Le, &v("2")));
        assert!(v("2.0").satisfies(RelOp::Eq, &v("2.00")));
        assert!(!v("2.0").satisfies(RelOp::Eq, &v("2")));
        assert!(v("3").satisfies(RelOp::Gt, &v("2")));
        assert_eq!(RelOp::parse("=>"), None);
    }
}
