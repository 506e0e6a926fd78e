//! Canonical JSON: the one byte string a signed document can be.
//!
//! Object keys sorted by Unicode code point (UTF-8 byte order), no
//! insignificant whitespace, integers only, strings as UTF-8 with only `"`,
//! `\` and control characters escaped (`\b \t \n \f \r`, others `\u00xx`).
//! Readers refuse any other spelling of the same document, so a signature is
//! over exactly the bytes that are parsed and every byte of a file matters.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Item};

/// Encode a value as canonical JSON.
pub fn to_vec<T: Serialize + ?Sized>(value: &T, what: Item) -> Result<Vec<u8>, Error> {
    let value = serde_json::to_value(value).map_err(|source| Error::Json { what, source })?;
    value_to_vec(&value, what)
}

/// Encode an already built JSON value as canonical JSON.
pub fn value_to_vec(value: &Value, what: Item) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    write_value(value, what, &mut out)?;
    Ok(out)
}

/// Parse canonical JSON (optionally followed by one newline) into a value,
/// refusing any non-canonical spelling.
pub fn parse_value(bytes: &[u8], what: Item) -> Result<Value, Error> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let value: Value =
        serde_json::from_slice(body).map_err(|source| Error::Json { what, source })?;
    let canonical = value_to_vec(&value, what).map_err(|err| match err {
        Error::Float { what } => Error::NotCanonical { what },
        other => other,
    })?;
    if canonical != body {
        return Err(Error::NotCanonical { what });
    }
    Ok(value)
}

/// Parse canonical JSON into a typed value.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8], what: Item) -> Result<T, Error> {
    let value = parse_value(bytes, what)?;
    from_value(value, what)
}

/// Deserialize a typed value from a JSON value, naming the document on error.
pub(crate) fn from_value<T: DeserializeOwned>(value: Value, what: Item) -> Result<T, Error> {
    serde_json::from_value(value).map_err(|source| Error::Json { what, source })
}

fn write_value(value: &Value, what: Item, out: &mut Vec<u8>) -> Result<(), Error> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else {
                return Err(Error::Float { what });
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, what, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_value(item, what, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{08}' => out.extend_from_slice(b"\\b"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\u{0c}' => out.extend_from_slice(b"\\f"),
            '\r' => out.extend_from_slice(b"\\r"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        let value = json!({"b": [1, -2, {"z": null, "a": true}], "a": "x", "é": 0, "Z": false});
        let bytes = value_to_vec(&value, Item::Manifest).unwrap();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"Z":false,"a":"x","b":[1,-2,{"a":true,"z":null}],"é":0}"#
        );
        assert_eq!(parse_value(&bytes, Item::Manifest).unwrap(), value);
    }

    #[test]
    fn escapes_only_what_it_must() {
        let value = json!("q\"b\\s/\u{1}\n\u{7f}é😀");
        let bytes = value_to_vec(&value, Item::Manifest).unwrap();
        assert_eq!(bytes, "\"q\\\"b\\\\s/\\u0001\\n\u{7f}é😀\"".as_bytes());
        assert_eq!(parse_value(&bytes, Item::Manifest).unwrap(), value);
    }

    #[test]
    fn refuses_floats() {
        assert!(matches!(
            value_to_vec(&json!({"a": 1.5}), Item::Manifest),
            Err(Error::Float { .. })
        ));
        for text in [
            r#"{"a":1.0}"#,
            r#"{"a":1e3}"#,
            r#"{"a":18446744073709551616}"#,
        ] {
            assert!(
                matches!(
                    parse_value(text.as_bytes(), Item::Trust),
                    Err(Error::NotCanonical { .. })
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_other_spellings() {
        for text in [
            r#"{"b":1,"a":2}"#,
            r#"{"a": 2}"#,
            "{\"a\":2}\n\n",
            " {\"a\":2}",
            r#"{"a":"\u0041"}"#,
            r#"{"a":"\/"}"#,
            r#"{"a":-0}"#,
            r#"{"a":01}"#,
            r#"{"a":1,"a":1}"#,
        ] {
            assert!(parse_value(text.as_bytes(), Item::Trust).is_err(), "{text}");
        }
        assert!(parse_value(b"{\"a\":2}\n", Item::Trust).is_ok());
    }
}
