//! Package relation fields: Depends, Pre-Depends, Recommends, Suggests,
//! Enhances, Conflicts, Breaks, Replaces, Provides (and Build-Depends
//! syntax: `[arch]` restrictions and `<profile>` lists).
//!
//! The grammar and its errors follow dpkg's `f_dependency`: `,` separates
//! relations, `|` separates alternatives (not allowed in Conflicts, Breaks,
//! Replaces, Provides), `name[:arch] [(op version)] [[arches]] [<profiles>]`,
//! the obsolete `<`/`>` operators mean `<=`/`>=`, and a version without an
//! operator means `=`. Names are interned so a resolver can index by them.
//!
//! Like dpkg reading its status file and apt reading indexes (and unlike
//! `dpkg-deb --build`, which is strict), a constraint version that dpkg
//! only warns about is accepted; [`Version::lint`] reports it.

use std::fmt;

use super::error::{Error, RelationProblem};
use super::names::{Interner, Name};
use super::version::{RelOp, Version};

/// A `:arch` qualifier on a relation (Multi-Arch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArchQualifier {
    /// `:any`: any architecture, for a `Multi-Arch: allowed` target.
    Any,
    /// `:native`: the native architecture (build dependencies).
    Native,
    /// An explicit architecture, e.g. `:i386`.
    Arch(Name),
}

/// A version constraint `(op version)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Constraint {
    /// The operator.
    pub op: RelOp,
    /// The version on the right-hand side.
    pub version: Version,
}

impl Constraint {
    /// Whether `version` satisfies this constraint.
    pub fn allows(&self, version: &Version) -> bool {
        version.satisfies(self.op, &self.version)
    }
}

/// A term of a `[...]` architecture restriction list, e.g. `!linux-any`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArchTerm {
    /// Written with `!`.
    pub negated: bool,
    /// The architecture or wildcard.
    pub arch: Name,
}

/// A term of a `<...>` build profile list, e.g. `!nocheck`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProfileTerm {
    /// Written with `!`.
    pub negated: bool,
    /// The profile name.
    pub profile: Box<str>,
}

/// Restrictions that are rare in binary packages, kept out of line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Restrictions {
    /// The `[...]` list (empty when absent).
    pub arches: Vec<ArchTerm>,
    /// Each `<...>` list: an OR of lists, each an AND of terms.
    pub profiles: Vec<Vec<ProfileTerm>>,
}

/// One package relation: `name[:arch] [(op version)] ...`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dependency {
    /// The package (or virtual package) name.
    pub name: Name,
    /// The `:arch` qualifier, if any.
    pub arch: Option<ArchQualifier>,
    /// The version constraint, if any.
    pub constraint: Option<Constraint>,
    /// Architecture and profile restrictions, if any.
    pub restrictions: Option<Box<Restrictions>>,
    /// Whether this atom closes its group of alternatives (kept here, in
    /// padding, instead of a second vector in [`Relations`]).
    last_in_group: bool,
}

impl Dependency {
    /// An unversioned, unqualified relation on `name`.
    pub fn new(name: Name) -> Self {
        Self {
            name,
            arch: None,
            constraint: None,
            restrictions: None,
            last_in_group: false,
        }
    }

    /// Whether a package of this version satisfies the version part
    /// (always, when there is no constraint).
    pub fn allows(&self, version: &Version) -> bool {
        self.constraint.as_ref().is_none_or(|c| c.allows(version))
    }

    /// A displayable form, e.g. `libc6:any (>= 2.36)`.
    pub fn display<'a>(&'a self, names: &'a Interner) -> impl fmt::Display + 'a {
        DependencyDisplay { dep: self, names }
    }
}

struct DependencyDisplay<'a> {
    dep: &'a Dependency,
    names: &'a Interner,
}

impl fmt::Display for DependencyDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (d, n) = (self.dep, self.names);
        f.write_str(n.resolve(d.name))?;
        match d.arch {
            Some(ArchQualifier::Any) => f.write_str(":any")?,
            Some(ArchQualifier::Native) => f.write_str(":native")?,
            Some(ArchQualifier::Arch(a)) => write!(f, ":{}", n.resolve(a))?,
            None => {}
        }
        if let Some(c) = &d.constraint {
            write!(f, " ({} {})", c.op, c.version)?;
        }
        if let Some(r) = &d.restrictions {
            if !r.arches.is_empty() {
                let terms: Vec<String> = r
                    .arches
                    .iter()
                    .map(|t| format!("{}{}", if t.negated { "!" } else { "" }, n.resolve(t.arch)))
                    .collect();
                write!(f, " [{}]", terms.join(" "))?;
            }
            for list in &r.profiles {
                let terms: Vec<String> = list
                    .iter()
                    .map(|t| format!("{}{}", if t.negated { "!" } else { "" }, t.profile))
                    .collect();
                write!(f, " <{}>", terms.join(" "))?;
            }
        }
        Ok(())
    }
}

/// A parsed relation field: an AND of groups, each an OR of [`Dependency`].
///
/// Stored flat (all atoms in one vector, each marking whether it closes
/// its group) because nearly every group has a single atom: one
/// allocation per field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Relations {
    atoms: Vec<Dependency>,
    groups: u32,
}

impl Relations {
    /// The groups in order; each slice holds the alternatives of one relation.
    pub fn groups(&self) -> impl Iterator<Item = &[Dependency]> + '_ {
        self.atoms.split_inclusive(|d| d.last_in_group)
    }

    /// Every atom of every group, in order.
    pub fn atoms(&self) -> &[Dependency] {
        &self.atoms
    }

    /// The number of groups.
    pub fn len(&self) -> usize {
        self.groups as usize
    }

    /// Whether the field had no relation.
    pub fn is_empty(&self) -> bool {
        self.groups == 0
    }

    /// Appends a group of alternatives (from code rather than text).
    pub fn push_group(&mut self, alternatives: impl IntoIterator<Item = Dependency>) {
        let before = self.atoms.len();
        self.atoms.extend(alternatives);
        if self.atoms.len() > before {
            for d in &mut self.atoms[before..] {
                d.last_in_group = false;
            }
            if let Some(last) = self.atoms.last_mut() {
                last.last_in_group = true;
            }
            self.groups += 1;
        }
    }

    /// Rewrites every name (package, `:arch`, `[arch]`) through `map`,
    /// e.g. from one interner's numbering to another's.
    pub fn remap_names(&mut self, map: impl Fn(Name) -> Name) {
        for d in &mut self.atoms {
            d.name = map(d.name);
            if let Some(ArchQualifier::Arch(a)) = &mut d.arch {
                *a = map(*a);
            }
            if let Some(r) = &mut d.restrictions {
                for t in &mut r.arches {
                    t.arch = map(t.arch);
                }
            }
        }
    }

    /// A displayable form, e.g. `a (>= 1) | b, c`.
    pub fn display<'a>(&'a self, names: &'a Interner) -> impl fmt::Display + 'a {
        RelationsDisplay { rel: self, names }
    }
}

struct RelationsDisplay<'a> {
    rel: &'a Relations,
    names: &'a Interner,
}

impl fmt::Display for RelationsDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, group) in self.rel.groups().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            for (j, dep) in group.iter().enumerate() {
                if j > 0 {
                    f.write_str(" | ")?;
                }
                write!(f, "{}", dep.display(self.names))?;
            }
        }
        Ok(())
    }
}

/// Whether dpkg allows `|` in a field of this name.
pub fn allows_alternatives(field: &str) -> bool {
    !["Conflicts", "Breaks", "Replaces", "Provides"]
        .iter()
        .any(|f| f.eq_ignore_ascii_case(field))
}

/// Parses the value of relation field `field` (its name decides whether
/// alternatives are allowed and appears in errors).
pub fn parse_relations(field: &str, text: &str, names: &mut Interner) -> Result<Relations, Error> {
    let mut p = Parser {
        src: text,
        s: text.as_bytes(),
        i: 0,
        names,
    };
    p.relations(allows_alternatives(field))
        .map_err(|(offset, problem)| Error::Relation {
            field: field.to_owned(),
            text: text.to_owned(),
            offset,
            problem,
        })
}

/// Checks a package name as dpkg does: an alphanumeric first, then
/// alphanumerics and `-+._`.
pub fn is_package_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"-+._".contains(&c))
}

fn is_arch_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name[0].is_ascii_alphanumeric()
        && name.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
}

type Failure = (usize, RelationProblem);

struct Parser<'t, 'n> {
    src: &'t str,
    s: &'t [u8],
    i: usize,
    names: &'n mut Interner,
}

impl<'t> Parser<'t, '_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn text(&self, from: usize) -> &'t str {
        // Token ends are ASCII bytes, so both ends are char boundaries.
        self.src.get(from..self.i).unwrap_or("")
    }

    fn relations(&mut self, alternatives: bool) -> Result<Relations, Failure> {
        self.skip_space();
        if self.peek().is_none() {
            return Ok(Relations::default());
        }
        // One allocation of the right size: an atom per ',' or '|', plus one.
        let separators = memchr::memchr2_iter(b',', b'|', self.s).count();
        let mut out = Relations {
            atoms: Vec::with_capacity(separators + 1),
            groups: 0,
        };
        loop {
            loop {
                let dep = self.dependency()?;
                out.atoms.push(dep);
                if self.peek() != Some(b'|') {
                    break;
                }
                if !alternatives {
                    return Err((self.i, RelationProblem::AlternativesNotAllowed));
                }
                self.i += 1;
                self.skip_space();
            }
            if let Some(last) = out.atoms.last_mut() {
                last.last_in_group = true;
            }
            out.groups += 1;
            match self.peek() {
                None => return Ok(out),
                Some(b',') => {
                    self.i += 1;
                    self.skip_space();
                }
                Some(_) => return Err((self.i, RelationProblem::TrailingGarbage)),
            }
        }
    }

    fn token(&mut self, stop: &[u8]) -> usize {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| !c.is_ascii_whitespace() && !stop.contains(&c))
        {
            self.i += 1;
        }
        start
    }

    fn dependency(&mut self) -> Result<Dependency, Failure> {
        let start = self.token(b":(,|[<");
        if self.i == start {
            return Err((start, RelationProblem::MissingName));
        }
        let name = self.text(start);
        if !is_package_name(name) {
            let name = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
            return Err((start, RelationProblem::IllegalName(name)));
        }
        let name = self.names.intern(name);
        let arch = if self.peek() == Some(b':') {
            self.i += 1;
            Some(self.qualifier()?)
        } else {
            None
        };
        self.skip_space();
        let constraint = if self.peek() == Some(b'(') {
            Some(self.constraint()?)
        } else {
            None
        };
        let restrictions = self.restrictions()?;
        Ok(Dependency {
            name,
            arch,
            constraint,
            restrictions,
            last_in_group: false,
        })
    }

    fn arch_name(&mut self, stop: &[u8]) -> Result<Name, Failure> {
        let start = self.token(stop);
        if !is_arch_name(&self.s[start..self.i]) {
            let text = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
            return Err((start, RelationProblem::IllegalArch(text)));
        }
        let text = self.text(start);
        Ok(self.names.intern(text))
    }

    fn qualifier(&mut self) -> Result<ArchQualifier, Failure> {
        let start = self.i;
        let arch = self.arch_name(b":(,|[<")?;
        Ok(match &self.s[start..self.i] {
            b"any" => ArchQualifier::Any,
            b"native" => ArchQualifier::Native,
            _ => ArchQualifier::Arch(arch),
        })
    }

    fn constraint(&mut self) -> Result<Constraint, Failure> {
        self.i += 1; // '('
        self.skip_space();
        let op_start = self.i;
        let op = match (self.peek(), self.s.get(self.i + 1).copied()) {
            (Some(c1 @ (b'<' | b'>')), c2) => {
                let (strict, or_equal) = if c1 == b'<' {
                    (RelOp::Lt, RelOp::Le)
                } else {
                    (RelOp::Gt, RelOp::Ge)
                };
                self.i += 1;
                match c2 {
                    Some(b'=') => {
                        self.i += 1;
                        or_equal
                    }
                    Some(c) if c == c1 => {
                        self.i += 1;
                        strict
                    }
                    Some(b'<' | b'>') => {
                        let op = String::from_utf8_lossy(&self.s[op_start..op_start + 2]);
                        return Err((op_start, RelationProblem::BadOperator(op.into_owned())));
                    }
                    _ => or_equal, // obsolete `<` / `>`
                }
            }
            (Some(b'='), _) => {
                self.i += 1;
                RelOp::Eq
            }
            _ => RelOp::Eq, // dpkg: implicit exact match
        };
        self.skip_space();
        let v_start = self.token(b"()");
        let v_end = self.i;
        self.skip_space();
        if self.peek() != Some(b')') {
            return Err((self.i, RelationProblem::UnterminatedVersion));
        }
        self.i += 1;
        if v_start == v_end {
            return Err((v_start, RelationProblem::EmptyVersion));
        }
        let text = self.src.get(v_start..v_end).unwrap_or("");
        let version = Version::parse(text).map_err(|e| match e {
            Error::Version { version, problem } => {
                (v_start, RelationProblem::BadVersion { version, problem })
            }
            _ => (v_start, RelationProblem::EmptyVersion),
        })?;
        self.skip_space();
        Ok(Constraint { op, version })
    }

    fn restrictions(&mut self) -> Result<Option<Box<Restrictions>>, Failure> {
        let mut r = Restrictions::default();
        if self.peek() == Some(b'[') {
            let open = self.i;
            self.i += 1;
            r.arches = self
                .terms(b']', open, RelationProblem::BadArchList, |p| {
                    p.arch_name(b"]!")
                })?
                .into_iter()
                .map(ArchTerm::from)
                .collect();
        }
        while self.peek() == Some(b'<') {
            let open = self.i;
            self.i += 1;
            let list = self.terms(b'>', open, RelationProblem::BadProfileList, |p| {
                let start = p.token(b">!");
                let name = p.text(start);
                if name.is_empty() {
                    return Err((start, RelationProblem::BadProfileList));
                }
                Ok(Box::<str>::from(name))
            })?;
            r.profiles.push(
                list.into_iter()
                    .map(|(negated, profile)| ProfileTerm { negated, profile })
                    .collect(),
            );
        }
        if r.arches.is_empty() && r.profiles.is_empty() {
            return Ok(None);
        }
        Ok(Some(Box::new(r)))
    }

    /// Reads `!`-able terms up to `close`; an empty or unclosed list fails.
    fn terms<T>(
        &mut self,
        close: u8,
        open: usize,
        problem: RelationProblem,
        mut term: impl FnMut(&mut Self) -> Result<T, Failure>,
    ) -> Result<Vec<(bool, T)>, Failure> {
        let mut out = Vec::new();
        loop {
            self.skip_space();
            match self.peek() {
                None => return Err((open, problem)),
                Some(c) if c == close => {
                    self.i += 1;
                    self.skip_space();
                    if out.is_empty() {
                        return Err((open, problem));
                    }
                    return Ok(out);
                }
                Some(b'!') => {
                    self.i += 1;
                    out.push((true, term(self)?));
                }
                Some(_) => out.push((false, term(self)?)),
            }
        }
    }
}

/// Architecture-list terms come back as `(negated, name)` pairs.
impl From<(bool, Name)> for ArchTerm {
    fn from((negated, arch): (bool, Name)) -> Self {
        Self { negated, arch }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(field: &str, text: &str) -> (Relations, Interner) {
        let mut names = Interner::new();
        let r = parse_relations(field, text, &mut names).unwrap();
        (r, names)
    }

    fn problem(field: &str, text: &str) -> RelationProblem {
        match parse_relations(field, text, &mut Interner::new()) {
            Err(Error::Relation { problem, .. }) => problem,
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn parses_groups_alternatives_and_constraints() {
        let text =
            "libc6 (>= 2.36), debconf (>= 0.5) | debconf-2.0,\n python3:any (<< 3.12~), x (1.0)";
        let (r, names) = parse("Depends", text);
        let groups: Vec<_> = r.groups().map(<[Dependency]>::len).collect();
        assert_eq!(groups, [1, 2, 1, 1]);
        let py = &r.atoms()[3];
        assert_eq!(py.arch, Some(ArchQualifier::Any));
        assert_eq!(py.constraint.as_ref().unwrap().op, RelOp::Lt);
        assert_eq!(r.atoms()[4].constraint.as_ref().unwrap().op, RelOp::Eq);
        assert_eq!(
            r.display(&names).to_string(),
            "libc6 (>= 2.36), debconf (>= 0.5) | debconf-2.0, python3:any (<< 3.12~), x (= 1.0)"
        );
    }

    #[test]
    fn obsolete_operators_mean_or_equal() {
        let (r, _) = parse("Depends", "a (< 1), b (> 2), c (<= 3), d (>>4)");
        let ops: Vec<_> = r
            .atoms()
            .iter()
            .map(|d| d.constraint.as_ref().unwrap().op)
            .collect();
        assert_eq!(ops, [RelOp::Le, RelOp::Ge, RelOp::Le, RelOp::Gt]);
    }

    #[test]
    fn versioned_provides_and_restrictions() {
        let (r, names) = parse("Provides", "foo (= 1.0), bar");
        assert_eq!(
            r.atoms()[0].constraint.as_ref().unwrap().version.as_str(),
            "1.0"
        );
        assert_eq!(names.resolve(r.atoms()[1].name), "bar");
        let (r, names) = parse(
            "Build-Depends",
            "a:native [amd64 !i386] <!nocheck> <stage1 cross>, b:armhf",
        );
        let a = &r.atoms()[0];
        assert_eq!(a.arch, Some(ArchQualifier::Native));
        let rs = a.restrictions.as_ref().unwrap();
        assert_eq!(rs.arches.len(), 2);
        assert!(rs.arches[1].negated);
        assert_eq!(rs.profiles.len(), 2);
        assert_eq!(&*rs.profiles[1][1].profile, "cross");
        assert_eq!(
            r.display(&names).to_string(),
            "a:native [amd64 !i386] <!nocheck> <stage1 cross>, b:armhf"
        );
    }

    #[test]
    fn rejects_like_dpkg() {
        assert_eq!(problem("Depends", "a,"), RelationProblem::MissingName);
        assert_eq!(problem("Depends", "a,,b"), RelationProblem::MissingName);
        assert_eq!(
            problem("Depends", "A_b!"),
            RelationProblem::IllegalName("A_b!".into())
        );
        assert_eq!(
            problem("Depends", "a (<> 1)"),
            RelationProblem::BadOperator("<>".into())
        );
        assert_eq!(
            problem("Depends", "a (>= 1"),
            RelationProblem::UnterminatedVersion
        );
        assert_eq!(
            problem("Depends", "a (>= 1 2)"),
            RelationProblem::UnterminatedVersion
        );
        assert_eq!(problem("Depends", "a (>= )"), RelationProblem::EmptyVersion);
        assert_eq!(
            problem("Conflicts", "a | b"),
            RelationProblem::AlternativesNotAllowed
        );
        assert_eq!(problem("Depends", "a b"), RelationProblem::TrailingGarbage);
        assert_eq!(problem("Depends", "a [amd64"), RelationProblem::BadArchList);
        assert_eq!(problem("Depends", "a []"), RelationProblem::BadArchList);
        assert!(matches!(
            problem("Depends", "a (>= 1:)"),
            RelationProblem::BadVersion { .. }
        ));
        assert!(parse("Depends", "  \n ").0.is_empty());
    }
}
