//! What a delegated signer may sign: `image:PATTERN` and `channel:PATTERN`
//! for manifests, `mirror:PATTERN` for package mirror snapshots, where `*`
//! in PATTERN matches any run of characters.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// One scope entry of a delegation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Image names the signer may sign.
    Image(String),
    /// Channels the signer may sign for.
    Channel(String),
    /// Local package mirrors whose snapshots the signer may sign.
    Mirror(String),
}

impl Scope {
    /// Does a manifest for `image` on `channel` fall within `scopes`? It must
    /// match at least one image pattern and at least one channel pattern:
    /// a delegation that names no channel can sign for none.
    pub fn allows(scopes: &[Scope], image: &str, channel: &str) -> bool {
        let image_ok = scopes
            .iter()
            .any(|s| matches!(s, Scope::Image(p) if glob_match(p, image)));
        let channel_ok = scopes
            .iter()
            .any(|s| matches!(s, Scope::Channel(p) if glob_match(p, channel)));
        image_ok && channel_ok
    }

    /// Does a snapshot of mirror `name` fall within `scopes`? Only
    /// `mirror:` patterns count: a manifest signer is not a mirror signer.
    pub fn allows_mirror(scopes: &[Scope], name: &str) -> bool {
        scopes
            .iter()
            .any(|s| matches!(s, Scope::Mirror(p) if glob_match(p, name)))
    }

    /// Can a delegation with `scopes` sign anything? Image and channel
    /// scopes only work as a pair (a manifest needs both), so either both
    /// are present or neither is, and at least one kind of thing is covered.
    pub fn is_complete(scopes: &[Scope]) -> bool {
        let has = |f: fn(&Scope) -> bool| scopes.iter().any(f);
        let image = has(|s| matches!(s, Scope::Image(_)));
        let channel = has(|s| matches!(s, Scope::Channel(_)));
        let mirror = has(|s| matches!(s, Scope::Mirror(_)));
        image == channel && (image || mirror)
    }
}

/// `*` matches any (possibly empty) run of characters; everything else
/// matches itself.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    // Iterative matcher with one backtrack point: linear in practice,
    // never exponential.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((star_pi, star_ti)) = star {
            pi = star_pi + 1;
            ti = star_ti + 1;
            star = Some((star_pi, star_ti + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

fn pattern_ok(pattern: &str) -> bool {
    !pattern.is_empty()
        && pattern.len() <= 128
        && pattern
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'*'))
}

impl FromStr for Scope {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let scope = match text.split_once(':') {
            Some(("image", p)) if pattern_ok(p) => Scope::Image(p.to_owned()),
            Some(("channel", p)) if pattern_ok(p) => Scope::Channel(p.to_owned()),
            Some(("mirror", p)) if pattern_ok(p) => Scope::Mirror(p.to_owned()),
            _ => {
                return Err(Error::Scope {
                    text: text.chars().take(64).collect(),
                });
            }
        };
        Ok(scope)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Image(p) => write!(f, "image:{p}"),
            Scope::Channel(p) => write!(f, "channel:{p}"),
            Scope::Mirror(p) => write!(f, "mirror:{p}"),
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let cases = [
            ("gpu-node", "gpu-node", true),
            ("gpu-node", "gpu-node2", false),
            ("gpu-*", "gpu-node", true),
            ("gpu-*", "gpu-", true),
            ("gpu-*", "cpu-node", false),
            ("*", "", true),
            ("*-node", "gpu-node", true),
            ("*a*b*c", "xaxxbxxc", true),
            ("*a*b*c", "xaxxbxxcd", false),
            ("a**", "a", true),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(glob_match(pattern, text), want, "{pattern} {text}");
        }
    }

    #[test]
    fn needs_image_and_channel() {
        let scopes: Vec<Scope> = ["image:gpu-*", "channel:stable"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert!(Scope::allows(&scopes, "gpu-node", "stable"));
        assert!(!Scope::allows(&scopes, "gpu-node", "testing"));
        assert!(!Scope::allows(&scopes, "cpu-node", "stable"));
        assert!(!Scope::allows(&scopes[..1], "gpu-node", "stable"));
    }

    #[test]
    fn parses_strictly() {
        for text in [
            "image:",
            "mirror:",
            "mirrors:x",
            "mirror:a/b",
            "image:a/b",
            "image:a b",
            "image",
            ":x",
        ] {
            assert!(text.parse::<Scope>().is_err(), "{text}");
        }
        for text in ["channel:*", "mirror:site-*"] {
            assert_eq!(text.parse::<Scope>().unwrap().to_string(), text);
        }
    }

    fn scopes(texts: &[&str]) -> Vec<Scope> {
        texts.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn mirror_scopes_are_their_own_kind() {
        let mirror_only = scopes(&["mirror:site-*"]);
        assert!(Scope::allows_mirror(&mirror_only, "site-a"));
        assert!(!Scope::allows_mirror(&mirror_only, "lab"));
        assert!(!Scope::allows(&mirror_only, "site-a", "site-a"));
        let manifest_only = scopes(&["image:*", "channel:*"]);
        assert!(!Scope::allows_mirror(&manifest_only, "site-a"));
    }

    #[test]
    fn completeness() {
        let cases: [(&[&str], bool); 7] = [
            (&["image:a", "channel:b"], true),
            (&["mirror:m"], true),
            (&["image:a", "channel:b", "mirror:m"], true),
            (&["image:a"], false),
            (&["channel:b", "mirror:m"], false),
            (&["image:a", "mirror:m"], false),
            (&[], false),
        ];
        for (texts, want) in cases {
            assert_eq!(Scope::is_complete(&scopes(texts)), want, "{texts:?}");
        }
    }
}
