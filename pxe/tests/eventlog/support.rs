//! The real capture and its expected values, read from the fixture index
//! (values the TPM reported, not values computed by the code under test).

use ironrack_pxe::attest::eventlog::EventLog;

use ironrack_pxe::testkit::fixtures::index_rows;

/// The captured log's bytes.
pub fn fixture_bytes() -> Vec<u8> {
    let path = ironrack_pxe::testkit::fixtures::eventlog_path();
    std::fs::read(&path).unwrap_or_else(|e| panic!("FIXTURE MISSING: {}: {e}", path.display()))
}

/// The captured log, parsed.
pub fn fixture_log() -> EventLog {
    EventLog::parse(&fixture_bytes()).expect("the real log parses")
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
