//! `ironrack sign` and `ironrack verify-sig`: minisign-compatible detached
//! signatures of any file.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use ironrack_keys::{PublicKey, minisign};

use super::outln;

/// Arguments of `ironrack sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// File to sign; the signature goes to FILE.minisig.
    pub file: PathBuf,

    /// Secret key (minisign format, mode 0600).
    #[arg(long, short = 'k', value_name = "KEY")]
    pub key: PathBuf,

    /// Trusted comment, signed with the file (default: timestamp and file name).
    #[arg(long, short = 't', value_name = "TEXT")]
    pub trusted_comment: Option<String>,

    /// File whose first line is the key's passphrase (default: $IRONRACK_PASSPHRASE).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// Arguments of `ironrack verify-sig`.
#[derive(Debug, Args)]
pub struct VerifySigArgs {
    /// The signed file.
    pub file: PathBuf,

    /// Public key (minisign format).
    #[arg(long = "pub", short = 'p', value_name = "PUBKEY")]
    pub public: PathBuf,

    /// Signature file [default: FILE.minisig].
    #[arg(long, short = 'x', value_name = "SIG")]
    pub sig: Option<PathBuf>,
}

/// Sign a file with the legacy `Ed` algorithm (minisign -l, signify).
pub fn sign(args: SignArgs) -> anyhow::Result<()> {
    let pass = super::passphrase(args.passphrase_file.as_deref())?;
    let key = super::load_secret_key(&args.key, pass.as_ref())?;
    let sig_path = minisign::sign_file(&key, &args.file, args.trusted_comment.as_deref())
        .with_context(|| format!("signing {}", args.file.display()))?;
    outln!("{}", sig_path.display())
}

/// Verify a minisign signature (`Ed` or `ED`) and print the trusted comment.
pub fn verify_sig(args: VerifySigArgs) -> anyhow::Result<()> {
    let key = PublicKey::load(&args.public).context("loading public key")?;
    let sig_path = args.sig.clone().unwrap_or_else(|| {
        let mut name = args.file.clone().into_os_string();
        name.push(".minisig");
        PathBuf::from(name)
    });
    let sig =
        minisign::verify_file(&key, &args.file, Some(&sig_path)).context("checking signature")?;
    tracing::info!(key_id = %sig.key_id, algorithm = ?sig.algorithm, "signature verified");
    outln!("Signature and comment signature verified")?;
    outln!("Trusted comment: {}", sig.trusted_comment)
}
