//! The highest manifest version a verifier has accepted, per image name and
//! channel, kept in a small file so a restart cannot be rolled back either.
//!
//! The file is canonical JSON, rewritten atomically on every increase. One
//! process should own a store file at a time (the PXE server does).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::canonical;
use crate::error::{Error, Item};
use crate::files::{self, PUBLIC_MODE};

/// The `type` of a rollback state file.
pub const ROLLBACK_TYPE: &str = "ironrack-rollback/1";
const FILE_LIMIT: u64 = 16 << 20;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct State {
    #[serde(rename = "type")]
    doc_type: String,
    /// `name@channel` → highest version accepted.
    highest: BTreeMap<String, u64>,
}

/// Highest versions seen, backed by a file.
#[derive(Debug)]
pub struct RollbackStore {
    path: PathBuf,
    state: State,
}

impl RollbackStore {
    /// Open the store at `path`; a missing file is an empty store.
    pub fn open(path: &Path) -> Result<RollbackStore, Error> {
        let state = match std::fs::symlink_metadata(path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => State {
                doc_type: ROLLBACK_TYPE.to_owned(),
                highest: BTreeMap::new(),
            },
            _ => {
                let bytes = files::read_limited(path, Item::RollbackState, FILE_LIMIT)?;
                let state: State = canonical::from_slice(&bytes, Item::RollbackState)
                    .map_err(|err| err.in_file(path))?;
                if state.doc_type != ROLLBACK_TYPE {
                    return Err(Error::DocumentType {
                        what: Item::RollbackState,
                        got: state.doc_type.chars().take(64).collect(),
                        want: ROLLBACK_TYPE,
                    }
                    .in_file(path));
                }
                state
            }
        };
        Ok(RollbackStore {
            path: path.to_owned(),
            state,
        })
    }

    /// The highest version accepted for `name` on `channel`.
    pub fn highest(&self, name: &str, channel: &str) -> Option<u64> {
        self.state.highest.get(&key(name, channel)).copied()
    }

    /// Remember `version` if it is higher than what is stored, and persist.
    pub fn record(&mut self, name: &str, channel: &str, version: u64) -> Result<(), Error> {
        if self.highest(name, channel).is_some_and(|h| h >= version) {
            return Ok(());
        }
        let mut next = self.state.clone();
        next.highest.insert(key(name, channel), version);
        let mut bytes = canonical::to_vec(&next, Item::RollbackState)?;
        bytes.push(b'\n');
        files::replace(&self.path, &bytes, PUBLIC_MODE)?;
        self.state = next;
        Ok(())
    }
}

/// Names and channels are `[A-Za-z0-9._-]+` (checked in manifests), so `@`
/// cannot be ambiguous.
fn key(name: &str, channel: &str) -> String {
    format!("{name}@{channel}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_only_increases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seen.json");
        let mut store = RollbackStore::open(&path).unwrap();
        assert_eq!(store.highest("gpu-node", "stable"), None);
        store.record("gpu-node", "stable", 7).unwrap();
        store.record("gpu-node", "stable", 5).unwrap();
        store.record("gpu-node", "testing", 9).unwrap();
        let store = RollbackStore::open(&path).unwrap();
        assert_eq!(store.highest("gpu-node", "stable"), Some(7));
        assert_eq!(store.highest("gpu-node", "testing"), Some(9));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"highest\":{\"gpu-node@stable\":7,\"gpu-node@testing\":9},\"type\":\"ironrack-rollback/1\"}\n"
        );
    }

    #[test]
    fn refuses_a_damaged_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seen.json");
        std::fs::write(&path, "{\"highest\":{},\"type\":\"other\"}\n").unwrap();
        let err = RollbackStore::open(&path).unwrap_err();
        assert!(
            matches!(err.innermost(), Error::DocumentType { .. }),
            "{err}"
        );
    }
}
