//! The real capture and its expected values, read from the fixture index
//! (values the TPM reported, not values computed by the code under test).

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

/// The captured log's bytes.
pub fn fixture_bytes() -> Vec<u8> {
    let path = fixtures_dir().join("ovmf-ipxe-uki.eventlog");
    std::fs::read(&path).unwrap_or_else(|e| panic!("FIXTURE MISSING: {}: {e}", path.display()))
}

/// The captured log, parsed.
pub fn fixture_log() -> EventLog {
    EventLog::parse(&fixture_bytes()).expect("the real log parses")
}

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

/// (PCR, SHA-256 value) the TPM reported, from INDEX.md.
pub fn expected_pcrs() -> Vec<(u32, String)> {
    index_rows()
        .into_iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, v)))
        .collect()
}

/// The Authenticode digests INDEX.md lists, in table order
/// (snponly.efi, node.efi, vmlinuz).
pub fn expected_authenticode() -> Vec<(String, String)> {
    index_rows()
        .into_iter()
        .filter(|(k, _)| k.parse::<u32>().is_err())
        .collect()
}
