//! Exit codes, so scripts and CI can tell a refused signature from a full disk.

use std::process::ExitCode;

/// Bad command line (clap's own convention).
pub const USAGE: u8 = 2;
/// Something was checked and found wrong: signature, digest, trust, rollback.
pub const VERIFICATION: u8 = 3;
/// A file or network operation failed.
pub const IO: u8 = 4;
/// Anything else.
pub const OTHER: u8 = 1;

/// Print the error with its whole cause chain and pick the exit code from the
/// most specific cause that has one.
pub fn report(err: &anyhow::Error) -> ExitCode {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("error: {err:#}");
    }
    ExitCode::from(classify(err))
}

fn classify(err: &anyhow::Error) -> u8 {
    let mut io = false;
    for cause in err.chain() {
        if let Some(keys) = cause.downcast_ref::<ironrack_keys::Error>()
            && keys.is_verification_failure()
        {
            return VERIFICATION;
        }
        if let Some(mirror) = cause.downcast_ref::<ironrack_builder::source::mirror::Error>()
            && mirror.is_verification_failure()
        {
            return VERIFICATION;
        }
        if let Some(lock) = cause.downcast_ref::<ironrack_builder::source::lock::LockError>()
            && lock.is_verification_failure()
        {
            return VERIFICATION;
        }
        if let Some(release) = cause.downcast_ref::<ironrack_builder::release::ReleaseError>()
            && release.is_verification_failure()
        {
            return VERIFICATION;
        }
        if let Some(build) = cause.downcast_ref::<ironrack_builder::pipeline::Error>()
            && build.is_verification_failure()
        {
            return VERIFICATION;
        }
        if cause.downcast_ref::<std::io::Error>().is_some() {
            io = true;
        }
    }
    if io { IO } else { OTHER }
}
