//! Shared test helpers: the fixture index and the real event log.

use ironrack_pxe::attest::eventlog::EventLog;

use ironrack_pxe::testkit::fixtures::index_rows;

/// The real OVMF + iPXE + UKI boot log.
pub fn fixture_log() -> EventLog {
    let path = ironrack_pxe::testkit::fixtures::eventlog_path();
    EventLog::read(&path)
        .unwrap_or_else(|e| panic!("FIXTURE MISSING OR BAD: {}: {e}", path.display()))
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
