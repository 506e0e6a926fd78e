//! `ironrack keys ...`: key pairs, the trust file, manifest verification.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use ironrack_keys::{KdfLimits, Protection, RollbackStore, SignedManifest, Timestamp, Trust};

use super::outln;
use super::trust::TrustCommand;

/// Subcommands of `ironrack keys`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate an Ed25519 key pair: NAME.pub and NAME.key (minisign format).
    ///
    /// The secret key is created with mode 0600 and never overwrites a file.
    /// With a passphrase it is encrypted exactly as `minisign -G` does
    /// (scrypt, 1 GiB, a few seconds); without one it is stored unencrypted,
    /// as `minisign -G -W` does, for CI secret stores.
    Generate(GenerateArgs),

    /// Create and change the trust file: root keys delegating to signing keys.
    #[command(subcommand)]
    Trust(TrustCommand),

    /// Verify DIR/manifest.json, its signature and every artifact in DIR
    /// through a trust file, refusing rollback.
    VerifyManifest(VerifyManifestArgs),
}

/// Arguments of `ironrack keys generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Key name: the files are NAME.pub and NAME.key.
    pub name: String,

    /// Directory for the key files (created with mode 0700 if missing).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,

    /// Encrypt the secret key with the first line of this file (default:
    /// $IRONRACK_PASSPHRASE; neither means unencrypted).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// Arguments of `ironrack keys verify-manifest`.
#[derive(Debug, Args)]
pub struct VerifyManifestArgs {
    /// Directory holding manifest.json, manifest.json.minisig and the artifacts.
    pub dir: PathBuf,

    /// The trust file this verifier holds.
    #[arg(long, value_name = "TRUST")]
    pub trust: PathBuf,

    /// Pinned root public key; the trust file must meet its threshold with
    /// pinned roots alone. Repeat for several.
    #[arg(long = "root", visible_alias = "pin", value_name = "PUBKEY")]
    pub roots: Vec<PathBuf>,

    /// File keeping the highest version seen per image and channel
    /// (created if missing, updated on success).
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
}

/// Run `ironrack keys ...`.
pub fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Generate(args) => generate(args),
        KeysCommand::Trust(command) => super::trust::run(command),
        KeysCommand::VerifyManifest(args) => verify_manifest(args),
    }
}

fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let pass = super::passphrase(args.passphrase_file.as_deref())?;
    let protection = match &pass {
        Some(pass) => Protection::Passphrase(pass, KdfLimits::SENSITIVE),
        None => {
            tracing::warn!(name = %args.name, "no passphrase given: the secret key is stored unencrypted");
            Protection::Unencrypted
        }
    };
    let files =
        ironrack_keys::generate_key_pair(&args.dir, &args.name, protection).with_context(|| {
            format!(
                "generating key pair {:?} in {}",
                args.name,
                args.dir.display()
            )
        })?;
    outln!("key id {}", files.key_id)?;
    outln!("public key: {}", files.public.display())?;
    outln!("secret key: {} (keep it secret)", files.secret.display())
}

fn verify_manifest(args: VerifyManifestArgs) -> anyhow::Result<()> {
    let pinned = super::load_public_keys(&args.roots)?;
    let trust = Trust::load(&args.trust, &pinned).context("loading trust file")?;
    let mut store = RollbackStore::open(&args.state).context("opening rollback state")?;
    let verified = <SignedManifest>::verify_dir(&trust, &args.dir, &mut store, Timestamp::now())
        .context("verifying manifest")?;
    let m = &verified.manifest;
    outln!(
        "{} {} version {}: signed by {} ({}), {} artifact(s) verified, expires {}",
        m.name,
        m.channel,
        m.version,
        verified.signer,
        verified.key_id,
        m.artifacts.len(),
        m.expires
    )
}
