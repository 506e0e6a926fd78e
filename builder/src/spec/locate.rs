//! Where in the spec text a key is: line, column and dotted key path for
//! errors, from the spans the TOML parser keeps.

use std::ops::Range;
use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::SpecError;

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[start..]).chars().count() + 1;
    (line, column)
}

/// Every key and value of a document with its span and dotted path.
fn spans(text: &str) -> Vec<(Vec<String>, Range<usize>)> {
    let mut out = Vec::new();
    if let Ok(doc) = DeTable::parse(text) {
        collect_table(doc.get_ref(), &mut Vec::new(), &mut out);
    }
    out
}

fn collect_table(
    table: &DeTable<'_>,
    path: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, Range<usize>)>,
) {
    for (k, v) in table.iter() {
        path.push(k.get_ref().to_string());
        out.push((path.clone(), k.span()));
        collect_value(v.get_ref(), v.span(), path, out);
        path.pop();
    }
}

fn collect_value(
    value: &DeValue<'_>,
    span: Range<usize>,
    path: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, Range<usize>)>,
) {
    out.push((path.clone(), span));
    match value {
        DeValue::Table(t) => collect_table(t, path, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                collect_value(item.get_ref(), item.span(), path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// The innermost key whose key or value span holds `span`.
fn key_at(text: &str, span: &Range<usize>) -> Option<Vec<String>> {
    spans(text)
        .into_iter()
        .filter(|(_, s)| s.start <= span.start && span.end <= s.end)
        .min_by_key(|(path, s)| (s.end - s.start, std::cmp::Reverse(path.len())))
        .map(|(path, _)| path)
}

/// The position of a key (its value, else its nearest present parent).
pub(super) fn key_position(text: &str, key: &[String]) -> (usize, usize) {
    let all = spans(text);
    for len in (1..=key.len()).rev() {
        // The key's span comes first, then its value's: point at the value.
        if let Some((_, span)) = all
            .iter()
            .rev()
            .find(|(path, _)| path.as_slice() == &key[..len])
        {
            return line_column(text.as_bytes(), span.start);
        }
    }
    (1, 1)
}

/// A TOML or shape error, located.
pub(super) fn syntax_error(text: &str, path: &Path, error: &toml::de::Error) -> SpecError {
    let span = error.span();
    let (line, column) = span
        .as_ref()
        .map_or((1, 1), |s| line_column(text.as_bytes(), s.start));
    let message = error.message().trim().to_owned();
    let mut key = span
        .as_ref()
        .and_then(|s| key_at(text, s))
        .unwrap_or_default();
    // serde reports a missing field at its table: name the field itself.
    if let Some(field) = backticked_after(&message, "missing field ") {
        key.push(field);
    }
    let key = if key.is_empty() {
        "(document)".to_owned()
    } else {
        key.join(".")
    };
    SpecError::Syntax {
        path: path.to_owned(),
        line,
        column,
        key,
        message,
    }
}

fn backticked_after(message: &str, prefix: &str) -> Option<String> {
    let rest = &message[message.find(prefix)? + prefix.len()..];
    let rest = rest.strip_prefix('`')?;
    Some(rest[..rest.find('`')?].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let text = "a = 1\n# é comment\n[t]\nkey = \"x\"\n";
        assert_eq!(line_column(text.as_bytes(), 0), (1, 1));
        assert_eq!(line_column(text.as_bytes(), 6), (2, 1));
        let after_e = text.find(" comment").unwrap();
        assert_eq!(
            line_column(text.as_bytes(), after_e),
            (2, 4),
            "é is one column"
        );
        assert_eq!(line_column(text.as_bytes(), 10_000), (5, 1));
        let key = ["t".to_owned(), "key".to_owned()];
        assert_eq!(key_position(text, &key), (4, 7), "points at the value");
        assert_eq!(
            key_position(text, &["t".to_owned(), "nope".to_owned()]),
            (3, 1)
        );
        assert_eq!(key_position("not toml [", &key), (1, 1));
        let span = text.find("\"x\"").unwrap()..text.find("\"x\"").unwrap() + 3;
        assert_eq!(key_at(text, &span), Some(key.to_vec()));
    }
}
