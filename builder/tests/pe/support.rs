//! Shared test helpers: the fixture index and the real event log.

use std::path::PathBuf;

use ironrack_pxe::attest::eventlog::EventLog;

/// The shared fixtures: `$IRONRACK_FIXTURES`, else `shared/fixtures` in the
/// nearest ancestor of the crate that has one (`../shared/fixtures` from the
/// repository root in a normal checkout; worktrees sit one level deeper).
pub fn fixtures_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("IRONRACK_FIXTURES") {
        return PathBuf::from(dir);
    }
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .ancestors()
        .map(|dir| dir.join("shared/fixtures"))
        .find(|dir| dir.join("INDEX.md").is_file())
        .unwrap_or_else(|| crate_dir.join("../../shared/fixtures"))
}

/// The real OVMF + iPXE + UKI boot log.
pub fn fixture_log() -> EventLog {
    let path = fixtures_dir().join("ovmf-ipxe-uki.eventlog");
    EventLog::read(&path)
        .unwrap_or_else(|e| panic!("FIXTURE MISSING OR BAD: {}: {e}", path.display()))
}

/// The 64-hex-digit values of INDEX.md's tables, keyed by first column.
fn index_rows() -> Vec<(String, String)> {
    let path = fixtures_dir().join("INDEX.md");
    let index = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("FIXTURE MISSING: {}: {e}", path.display()));
    index
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            match cells.as_slice() {
                [key, value]
                    if value.len() == 64 && value.chars().all(|c| c.is_ascii_hexdigit()) =>
                {
                    Some((key.to_string(), value.to_ascii_lowercase()))
                }
                _ => None,
            }
        })
        .collect()
}

/// The SHA-256 PCR value the TPM reported (INDEX.md).
pub fn expected_pcr(pcr: u32) -> String {
    index_rows()
        .into_iter()
        .find(|(k, _)| k.parse() == Ok(pcr))
        .map(|(_, v)| v)
        .expect("PCR in INDEX.md")
}

/// The Authenticode digest INDEX.md gives the binary whose row starts with `name`.
pub fn expected_authenticode(name: &str) -> String {
    index_rows()
        .into_iter()
        .find(|(k, _)| k.starts_with(name))
        .map(|(_, v)| v)
        .expect("binary in INDEX.md")
}
