//! Command implementations: parse arguments into library calls, add
//! context naming the files involved, print results. No decisions here.

pub mod agent;
pub mod build;
pub mod keys;
pub mod lab;
mod lab_storm;
mod lab_up;
pub mod lock;
pub mod mirror;
pub mod nodes;
pub mod serve;
pub mod sign;
pub mod source;
mod trust;
pub mod verify;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ironrack_keys::{Error as KeysError, Passphrase, PublicKey, SecretKey, Timestamp};

/// Environment variable holding the passphrase of encrypted secret keys,
/// used when no `--passphrase-file` is given.
pub const PASSPHRASE_ENV: &str = "IRONRACK_PASSPHRASE";

/// The passphrase from `--passphrase-file`, else from the environment.
pub fn passphrase(file: Option<&Path>) -> anyhow::Result<Option<Passphrase>> {
    if let Some(path) = file {
        let pass = Passphrase::from_file(path).context("reading passphrase file")?;
        return Ok(Some(pass));
    }
    Passphrase::from_env(PASSPHRASE_ENV).with_context(|| format!("reading {PASSPHRASE_ENV}"))
}

/// Load a secret key, saying how to give a passphrase when one is needed.
pub fn load_secret_key(path: &Path, passphrase: Option<&Passphrase>) -> anyhow::Result<SecretKey> {
    SecretKey::load(path, passphrase).map_err(|err| {
        let hint = match err.innermost() {
            KeysError::PassphraseRequired => {
                format!("loading secret key (give --passphrase-file FILE or set {PASSPHRASE_ENV})")
            }
            _ => "loading secret key".to_owned(),
        };
        anyhow::Error::new(err).context(hint)
    })
}

/// Load several secret keys with one passphrase source.
pub fn load_secret_keys(
    paths: &[PathBuf],
    passphrase_file: Option<&Path>,
) -> anyhow::Result<Vec<SecretKey>> {
    let pass = passphrase(passphrase_file)?;
    paths
        .iter()
        .map(|path| load_secret_key(path, pass.as_ref()))
        .collect()
}

/// Load public key files.
pub fn load_public_keys(paths: &[PathBuf]) -> anyhow::Result<Vec<PublicKey>> {
    paths
        .iter()
        .map(|path| PublicKey::load(path).context("loading public key"))
        .collect()
}

/// Parse an expiry given on the command line.
pub fn parse_expiry(text: &str) -> anyhow::Result<Timestamp> {
    Ok(Timestamp::parse_expiry(text, Timestamp::now())?)
}

/// Print a result line on stdout (the command's output, not logging).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cmd::out(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// Write one line on stdout; see [`outln!`].
pub fn out(text: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_fmt(text)
        .and_then(|()| stdout.write_all(b"\n"))
        .context("writing to stdout")
}
