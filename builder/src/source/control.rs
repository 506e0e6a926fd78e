//! deb822 control data: paragraphs of `Name: value` fields.
//!
//! The format of `DEBIAN/control`, Packages and Release indexes, and
//! `.sources` files. Field names are matched case-insensitively; a line
//! starting with a space or tab continues the previous field; paragraphs are
//! separated by lines that are empty or hold only blanks. Comment lines
//! (`#` in the first column) are allowed only where the caller says so
//! (source-package control files and `.sources` files have them; binary
//! indexes do not).
//!
//! [`Paragraphs`] is the fast path: it borrows field names and values from
//! the input text and reuses one field vector, so parsing a whole archive
//! index allocates almost nothing here. [`Paragraph`] is the owned form.

use std::borrow::Cow;

use memchr::memchr;

use super::error::{ControlProblem, Error};

/// Parser switches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// Skip lines starting with `#` (deb822 source files); otherwise such a
    /// line is a bad field name.
    pub comments: bool,
}

/// A field borrowed from the text being parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawField<'a> {
    /// The name as written.
    pub name: &'a str,
    /// The value: the first line with blanks trimmed, then each
    /// continuation line (with its leading blank) after a `\n`.
    pub value: Cow<'a, str>,
    /// 1-based line of the field name.
    pub line: usize,
}

/// A streaming deb822 parser over a text.
#[derive(Debug)]
pub struct Paragraphs<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
    origin: &'a str,
    options: ParseOptions,
}

impl<'a> Paragraphs<'a> {
    /// Parses `text`; `origin` names it in errors (a path, `x.deb:control`).
    pub fn new(text: &'a str, origin: &'a str, options: ParseOptions) -> Self {
        Self {
            text,
            pos: 0,
            line: 0,
            origin,
            options,
        }
    }

    fn error(&self, line: usize, problem: ControlProblem) -> Error {
        Error::Control {
            origin: self.origin.to_owned(),
            line,
            problem,
        }
    }

    /// Reads the next paragraph into `fields` (cleared first). Returns the
    /// 1-based line where it starts, or `None` at the end of the text.
    pub fn next_into(&mut self, fields: &mut Vec<RawField<'a>>) -> Result<Option<usize>, Error> {
        fields.clear();
        let mut start_line = None;
        // After a comment inside a field, later continuation lines are no
        // longer contiguous with the value: the value becomes owned.
        let mut broken = false;
        while self.pos < self.text.len() {
            let rest = &self.text[self.pos..];
            let len = memchr(b'\n', rest.as_bytes()).unwrap_or(rest.len());
            let line = &rest[..len];
            let line_start = self.pos;
            self.pos += (len + 1).min(rest.len());
            self.line += 1;
            let first = line.as_bytes().first().copied();
            if line.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
                if start_line.is_some() {
                    break;
                }
                continue;
            }
            if first == Some(b'#') && self.options.comments {
                broken = true;
                continue;
            }
            if matches!(first, Some(b' ' | b'\t')) {
                let Some(field) = fields.last_mut() else {
                    return Err(self.error(self.line, ControlProblem::StrayContinuation));
                };
                extend_value(self.text, field, line_start, line, broken);
                continue;
            }
            start_line.get_or_insert(self.line);
            broken = false;
            let field = self.field_line(line)?;
            if fields
                .iter()
                .any(|f| f.name.eq_ignore_ascii_case(field.name))
            {
                return Err(self.error(
                    self.line,
                    ControlProblem::DuplicateField(field.name.to_owned()),
                ));
            }
            fields.push(field);
        }
        Ok(start_line)
    }

    fn field_line(&self, line: &'a str) -> Result<RawField<'a>, Error> {
        let Some(colon) = memchr(b':', line.as_bytes()) else {
            return Err(self.error(self.line, ControlProblem::NotAField));
        };
        let name = &line[..colon];
        if !is_field_name(name) {
            return Err(self.error(self.line, ControlProblem::BadFieldName(name.to_owned())));
        }
        let value = line[colon + 1..].trim_matches(|c| matches!(c, ' ' | '\t' | '\r'));
        Ok(RawField {
            name,
            value: Cow::Borrowed(value),
            line: self.line,
        })
    }
}

/// Appends a continuation line to a field's value, borrowing when the
/// value and the line are one contiguous run of the text.
fn extend_value<'a>(
    text: &'a str,
    field: &mut RawField<'a>,
    line_start: usize,
    line: &'a str,
    broken: bool,
) {
    let line = line.trim_end_matches([' ', '\t', '\r']);
    match &mut field.value {
        Cow::Borrowed(v) if !broken => {
            // Offset of the value inside `text`: both are slices of it.
            let v_start = v.as_ptr() as usize - text.as_ptr() as usize;
            if v.is_empty() {
                // `Name:` alone on its line: the value is an empty first
                // line, then this one.
                field.value = Cow::Owned(format!("\n{line}"));
            } else {
                *v = &text[v_start..line_start + line.len()];
            }
        }
        value => {
            let owned = value.to_mut();
            owned.push('\n');
            owned.push_str(line);
        }
    }
}

/// deb822 field names: printable US-ASCII but not `:`, not starting with
/// `#` or `-`.
pub fn is_field_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b[0] != b'#'
        && b[0] != b'-'
        && b.iter().all(|&c| (0x21..=0x7e).contains(&c) && c != b':')
}

impl<'a> Iterator for Paragraphs<'a> {
    type Item = Result<Paragraph, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut fields = Vec::new();
        match self.next_into(&mut fields) {
            Ok(Some(line)) => Some(Ok(Paragraph::from_raw(&fields, line))),
            Ok(None) => None,
            Err(e) => {
                self.pos = self.text.len();
                Some(Err(e))
            }
        }
    }
}

/// One field, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The name as written.
    pub name: String,
    /// The value (see [`RawField::value`]).
    pub value: String,
    /// 1-based line of the field name (0 for fields built in code).
    pub line: usize,
}

/// One paragraph, owned, fields in their original order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paragraph {
    /// The fields.
    pub fields: Vec<Field>,
    /// 1-based line where the paragraph starts (0 when built in code).
    pub line: usize,
}

impl Paragraph {
    fn from_raw(fields: &[RawField<'_>], line: usize) -> Self {
        Self {
            fields: fields
                .iter()
                .map(|f| Field {
                    name: f.name.to_owned(),
                    value: f.value.clone().into_owned(),
                    line: f.line,
                })
                .collect(),
            line,
        }
    }

    /// The value of a field, by case-insensitive name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.field(name).map(|f| f.value.as_str())
    }

    /// The field itself, by case-insensitive name.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// Sets a field, replacing one of the same name or appending.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .fields
            .iter_mut()
            .find(|f| f.name.eq_ignore_ascii_case(name))
        {
            Some(f) => f.value = value,
            None => self.fields.push(Field {
                name: name.to_owned(),
                value,
                line: 0,
            }),
        }
    }

    /// The paragraph as deb822 text, ending with a newline (no blank line).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for f in &self.fields {
            write_field(&mut out, &f.name, &f.value);
        }
        out
    }
}

/// Appends `Name: value\n`, turning the value's extra lines into
/// continuation lines (a leading space added where missing, empty lines
/// written as ` .`), so any value round-trips through the parser.
pub fn write_field(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push(':');
    let mut lines = value.split('\n');
    if let Some(first) = lines.next()
        && !first.is_empty()
    {
        out.push(' ');
        out.push_str(first);
    }
    for line in lines {
        out.push('\n');
        if line.trim().is_empty() {
            out.push_str(" .");
        } else {
            if !line.starts_with([' ', '\t']) {
                out.push(' ');
            }
            out.push_str(line);
        }
    }
    out.push('\n');
}

/// Parses every paragraph of `text`.
pub fn parse_paragraphs(
    text: &str,
    origin: &str,
    options: ParseOptions,
) -> Result<Vec<Paragraph>, Error> {
    Paragraphs::new(text, origin, options).collect()
}

/// Parses a text that must hold exactly one paragraph (`DEBIAN/control`).
pub fn parse_single(text: &str, origin: &str) -> Result<Paragraph, Error> {
    let mut all = parse_paragraphs(text, origin, ParseOptions::default())?;
    if all.len() != 1 {
        let line = all.get(1).map_or(1, |p| p.line);
        return Err(Error::Control {
            origin: origin.to_owned(),
            line,
            problem: ControlProblem::ParagraphCount(all.len()),
        });
    }
    Ok(all.remove(0))
}

/// Checks that `bytes` is UTF-8, naming the line of the first bad byte.
pub fn utf8<'b>(bytes: &'b [u8], origin: &str) -> Result<&'b str, Error> {
    std::str::from_utf8(bytes).map_err(|e| Error::NotUtf8 {
        origin: origin.to_owned(),
        line: 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "Package: a\nDescription: short\n more\n .\n end\nDepends: b,\n  c\n\n\n \t\npackage: b\n";

    #[test]
    fn parses_paragraphs_fields_and_continuations() {
        let ps = parse_paragraphs(TEXT, "t", ParseOptions::default()).unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].get("description"), Some("short\n more\n .\n end"));
        assert_eq!(ps[0].get("DEPENDS"), Some("b,\n  c"));
        assert_eq!(ps[0].field("depends").unwrap().line, 6);
        assert_eq!((ps[1].line, ps[1].get("Package")), (11, Some("b")));
    }

    #[test]
    fn errors_carry_line_numbers() {
        let cases = [
            ("A: 1\nno colon\n", 2, ControlProblem::NotAField),
            (" x\n", 1, ControlProblem::StrayContinuation),
            (
                "A: 1\na: 2\n",
                2,
                ControlProblem::DuplicateField("a".into()),
            ),
            (
                "A: 1\n\n-B: 2\n",
                3,
                ControlProblem::BadFieldName("-B".into()),
            ),
            (
                "# c: x\nA: 1\n",
                1,
                ControlProblem::BadFieldName("# c".into()),
            ),
        ];
        for (text, want_line, want) in cases {
            match parse_paragraphs(text, "f", ParseOptions::default()) {
                Err(Error::Control { line, problem, .. }) => {
                    assert_eq!((line, problem), (want_line, want), "{text:?}")
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn comments_where_allowed_keep_continuations() {
        let text = "# top\nA: x\n# inside\n y\nB:\n z\n";
        let p = parse_single_with_comments(text);
        assert_eq!(p.get("a"), Some("x\n y"));
        assert_eq!(p.get("b"), Some("\n z"));
    }

    fn parse_single_with_comments(text: &str) -> Paragraph {
        let mut all = parse_paragraphs(text, "c", ParseOptions { comments: true }).unwrap();
        assert_eq!(all.len(), 1);
        all.remove(0)
    }

    #[test]
    fn writer_round_trips() {
        let mut p = Paragraph::default();
        p.set("Package", "x");
        p.set("Description", "sum\nline\n\n indented");
        p.set("Empty-First", "\nline");
        let text = p.to_text();
        let back = parse_single(&text, "w").unwrap();
        assert_eq!(back.get("package"), Some("x"));
        assert_eq!(back.get("description"), Some("sum\n line\n .\n indented"));
        assert_eq!(back.get("empty-first"), Some("\n line"));
    }

    #[test]
    fn single_paragraph_is_enforced() {
        assert!(matches!(
            parse_single("A: 1\n\nB: 2\n", "s"),
            Err(Error::Control {
                line: 3,
                problem: ControlProblem::ParagraphCount(2),
                ..
            })
        ));
        assert!(matches!(
            utf8(b"A: 1\nB: \xff\n", "u"),
            Err(Error::NotUtf8 { line: 2, .. })
        ));
    }
}
