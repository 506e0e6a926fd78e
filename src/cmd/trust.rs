//! `ironrack keys trust ...`: the trust file, edited only through signed,
//! versioned steps that verifiers will accept.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use ironrack_keys::trust::{Delegation, KeyEntry, Roots, Scope};
use ironrack_keys::{Error as KeysError, KeyId, PublicKey, SecretKey, Timestamp, Trust, TrustFile};

use super::outln;

/// Subcommands of `ironrack keys trust`.
#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Create trust.json (version 1) with root keys and a threshold.
    Init(InitArgs),
    /// Delegate to a signing key (new version, signed by the roots).
    AddSigner(AddSignerArgs),
    /// Revoke a signing key for good (new version, signed by the roots).
    Revoke(RevokeArgs),
    /// Replace the root keys: the new version is signed by a threshold of
    /// the old roots and of the new roots.
    RotateRoot(RotateRootArgs),
    /// Move the trust file's expiry (new version, signed by the roots).
    Renew(RenewArgs),
    /// Add root signatures to a trust file (when roots sign on separate machines).
    Sign(SignArgs),
    /// Check a trust file: form, root threshold (and pinned roots), expiry.
    Verify(VerifyArgs),
    /// Replace the trust file a verifier holds with a newer one, if the
    /// current roots accept it.
    Update(UpdateArgs),
    /// Print a trust file for people.
    Show(ShowArgs),
}

/// Root keys that sign, and how to unlock them.
#[derive(Debug, Args)]
pub struct RootKeys {
    /// Root secret key that signs this version. Repeat for a quorum.
    #[arg(long = "root", value_name = "KEY")]
    pub roots: Vec<PathBuf>,

    /// Passphrase file for the encrypted keys given (default: $IRONRACK_PASSPHRASE).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// Options shared by commands that write a new version.
#[derive(Debug, Args)]
pub struct EditOptions {
    /// Write the new version here instead of replacing TRUST.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Write the new version even if it lacks root signatures; complete it
    /// with `keys trust sign`.
    #[arg(long)]
    pub partial: bool,
}

/// Arguments of `keys trust init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub keys: RootKeys,

    /// Root public key that will sign later (see `keys trust sign`).
    #[arg(long = "root-pub", value_name = "PUBKEY")]
    pub root_pubs: Vec<PathBuf>,

    /// Number of distinct root signatures required.
    #[arg(long)]
    pub threshold: u32,

    /// Expiry: YYYY-MM-DDTHH:MM:SSZ or a number of days such as 365d.
    #[arg(long)]
    pub expires: String,

    /// Output file (never overwritten).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,

    /// Write the file even if fewer roots than the threshold signed it.
    #[arg(long)]
    pub partial: bool,
}

/// Arguments of `keys trust add-signer`.
#[derive(Debug, Args)]
pub struct AddSignerArgs {
    /// The trust file.
    pub trust: PathBuf,

    /// The signing key's public key.
    #[arg(long = "pub", value_name = "PUBKEY")]
    pub public: PathBuf,

    /// A name for the signer (letters, digits, '.', '_', '-').
    #[arg(long)]
    pub name: String,

    /// What it may sign: image:PATTERN and channel:PATTERN (manifests; at
    /// least one of each), and/or mirror:PATTERN (mirror snapshots). `*`
    /// globs. Repeat for several.
    #[arg(long = "scope", value_name = "SCOPE", required = true)]
    pub scopes: Vec<String>,

    /// When the delegation expires: YYYY-MM-DDTHH:MM:SSZ or e.g. 90d.
    #[arg(long)]
    pub expires: String,

    #[command(flatten)]
    pub keys: RootKeys,

    #[command(flatten)]
    pub edit: EditOptions,
}

/// Arguments of `keys trust revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The trust file.
    pub trust: PathBuf,

    /// Key id to revoke (16 hex digits, as minisign prints it).
    pub key_id: String,

    #[command(flatten)]
    pub keys: RootKeys,

    #[command(flatten)]
    pub edit: EditOptions,
}

/// Arguments of `keys trust rotate-root`.
#[derive(Debug, Args)]
pub struct RotateRootArgs {
    /// The trust file.
    pub trust: PathBuf,

    /// A current root secret key that signs the rotation. Repeat for a quorum.
    #[arg(long = "old-root", value_name = "KEY")]
    pub old_roots: Vec<PathBuf>,

    /// A new root secret key; it becomes a root and signs. Repeat for several.
    #[arg(long = "new-root", value_name = "KEY")]
    pub new_roots: Vec<PathBuf>,

    /// A new root given by public key only (it signs later with `keys trust sign`).
    #[arg(long = "new-root-pub", value_name = "PUBKEY")]
    pub new_root_pubs: Vec<PathBuf>,

    /// Threshold of the new roots.
    #[arg(long)]
    pub threshold: u32,

    /// Passphrase file for the encrypted keys given (default: $IRONRACK_PASSPHRASE).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,

    #[command(flatten)]
    pub edit: EditOptions,
}

/// Arguments of `keys trust renew`.
#[derive(Debug, Args)]
pub struct RenewArgs {
    /// The trust file.
    pub trust: PathBuf,

    /// New expiry of the trust file: YYYY-MM-DDTHH:MM:SSZ or e.g. 365d.
    #[arg(long)]
    pub expires: String,

    #[command(flatten)]
    pub keys: RootKeys,

    #[command(flatten)]
    pub edit: EditOptions,
}

/// Arguments of `keys trust sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The trust file; its signatures are added to in place.
    pub trust: PathBuf,

    #[command(flatten)]
    pub keys: RootKeys,
}

/// Arguments of `keys trust verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The trust file.
    pub trust: PathBuf,

    /// Pinned root public key: the threshold must be met by pinned roots.
    #[arg(long = "root", value_name = "PUBKEY")]
    pub roots: Vec<PathBuf>,
}

/// Arguments of `keys trust update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The trust file the verifier holds now; replaced on success.
    pub current: PathBuf,

    /// The newer trust file offered.
    pub new: PathBuf,

    /// Pinned root public key to check the current file against.
    #[arg(long = "root", value_name = "PUBKEY")]
    pub roots: Vec<PathBuf>,
}

/// Arguments of `keys trust show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The trust file.
    pub trust: PathBuf,
}

/// Run `ironrack keys trust ...`.
pub fn run(command: TrustCommand) -> anyhow::Result<()> {
    match command {
        TrustCommand::Init(args) => init(args),
        TrustCommand::AddSigner(args) => add_signer(args),
        TrustCommand::Revoke(args) => revoke(args),
        TrustCommand::RotateRoot(args) => rotate_root(args),
        TrustCommand::Renew(args) => renew(args),
        TrustCommand::Sign(args) => sign(args),
        TrustCommand::Verify(args) => verify(args),
        TrustCommand::Update(args) => update(args),
        TrustCommand::Show(args) => show(&args.trust),
    }
}

fn init(args: InitArgs) -> anyhow::Result<()> {
    let signers = super::load_secret_keys(&args.keys.roots, args.keys.passphrase_file.as_deref())?;
    let mut roots: Vec<PublicKey> = signers.iter().map(SecretKey::public_key).collect();
    roots.extend(super::load_public_keys(&args.root_pubs)?);
    let expires = super::parse_expiry(&args.expires)?;
    let mut file = TrustFile::new(roots, args.threshold, expires)?;
    for signer in &signers {
        file.sign(signer)?;
    }
    let bytes = file.to_bytes()?;
    check_or_partial(Trust::from_installed(&bytes, &[]).map(drop), args.partial)?;
    ironrack_keys::write_new_file(&args.output, &bytes).context("writing trust file")?;
    outln!(
        "{}: version 1, threshold {}",
        args.output.display(),
        args.threshold
    )
}

/// Load the trust file being edited: it must be valid as it stands.
fn load_current(path: &Path) -> anyhow::Result<Trust> {
    Trust::load(path, &[]).context("loading trust file")
}

/// Sign the next version with `signers`, check that verifiers holding
/// `current` will accept it, and write it.
fn finish_edit(
    current: &Trust,
    mut next: TrustFile,
    signers: &[SecretKey],
    edit: &EditOptions,
    default_path: &Path,
) -> anyhow::Result<()> {
    for signer in signers {
        let id = signer.key_id();
        if !next.signed.is_root(id) && !current.body().is_root(id) {
            return Err(KeysError::NotARoot { key_id: id }.into());
        }
        next.sign(signer)?;
    }
    let bytes = next.to_bytes()?;
    check_or_partial(
        current.update(&bytes, Timestamp::now()).map(drop),
        edit.partial,
    )?;
    let path = edit.output.as_deref().unwrap_or(default_path);
    ironrack_keys::write_file_atomically(path, &bytes).context("writing trust file")?;
    outln!("{}: version {}", path.display(), next.signed.version)
}

/// With `--partial`, a missing signature threshold is reported, not fatal.
fn check_or_partial(result: Result<(), KeysError>, partial: bool) -> anyhow::Result<()> {
    match result {
        Err(err @ KeysError::ThresholdNotMet { .. }) if partial => {
            tracing::warn!(error = %err, "writing a partially signed trust file");
            Ok(())
        }
        other => Ok(other?),
    }
}

fn add_signer(args: AddSignerArgs) -> anyhow::Result<()> {
    let current = load_current(&args.trust)?;
    let public = PublicKey::load(&args.public).context("loading public key")?;
    let scope = args
        .scopes
        .iter()
        .map(|s| s.parse::<Scope>())
        .collect::<Result<Vec<_>, _>>()?;
    let mut next = current.file().next_version()?;
    next.signed.add_signer(Delegation {
        name: args.name.clone(),
        id: public.key_id(),
        public,
        expires: super::parse_expiry(&args.expires)?,
        scope,
    })?;
    let signers = super::load_secret_keys(&args.keys.roots, args.keys.passphrase_file.as_deref())?;
    finish_edit(&current, next, &signers, &args.edit, &args.trust)
}

fn revoke(args: RevokeArgs) -> anyhow::Result<()> {
    let current = load_current(&args.trust)?;
    let key_id: KeyId = args.key_id.parse()?;
    let mut next = current.file().next_version()?;
    next.signed.revoke(key_id)?;
    let signers = super::load_secret_keys(&args.keys.roots, args.keys.passphrase_file.as_deref())?;
    finish_edit(&current, next, &signers, &args.edit, &args.trust)
}

fn rotate_root(args: RotateRootArgs) -> anyhow::Result<()> {
    let current = load_current(&args.trust)?;
    let pass = super::passphrase(args.passphrase_file.as_deref())?;
    let load = |paths: &[PathBuf]| -> anyhow::Result<Vec<SecretKey>> {
        paths
            .iter()
            .map(|p| super::load_secret_key(p, pass.as_ref()))
            .collect()
    };
    let old = load(&args.old_roots)?;
    let new = load(&args.new_roots)?;
    for key in &old {
        if !current.body().is_root(key.key_id()) {
            return Err(KeysError::NotARoot {
                key_id: key.key_id(),
            }
            .into());
        }
    }
    let mut roots: Vec<PublicKey> = new.iter().map(SecretKey::public_key).collect();
    roots.extend(super::load_public_keys(&args.new_root_pubs)?);
    let mut next = current.file().next_version()?;
    next.signed.roots = Roots {
        threshold: args.threshold,
        keys: roots.into_iter().map(KeyEntry::new).collect(),
    };
    next.signed.validate()?;
    let signers: Vec<SecretKey> = old.into_iter().chain(new).collect();
    finish_edit(&current, next, &signers, &args.edit, &args.trust)
}

fn renew(args: RenewArgs) -> anyhow::Result<()> {
    let current = load_current(&args.trust)?;
    let mut next = current.file().next_version()?;
    next.signed.expires = super::parse_expiry(&args.expires)?;
    let signers = super::load_secret_keys(&args.keys.roots, args.keys.passphrase_file.as_deref())?;
    finish_edit(&current, next, &signers, &args.edit, &args.trust)
}

fn sign(args: SignArgs) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(&args.trust).with_context(|| format!("reading {}", args.trust.display()))?;
    let mut file =
        TrustFile::parse(&bytes).with_context(|| format!("parsing {}", args.trust.display()))?;
    let signers = super::load_secret_keys(&args.keys.roots, args.keys.passphrase_file.as_deref())?;
    for signer in &signers {
        if !file.signed.is_root(signer.key_id()) {
            // A previous root signing a rotation is legitimate; say so.
            tracing::warn!(key_id = %signer.key_id(), "key is not a root of this version; it counts only as a previous root");
        }
        file.sign(signer)?;
    }
    ironrack_keys::write_file_atomically(&args.trust, &file.to_bytes()?)
        .context("writing trust file")?;
    show(&args.trust)
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let pinned = super::load_public_keys(&args.roots)?;
    let trust = Trust::load(&args.trust, &pinned).context("verifying trust file")?;
    trust
        .check_current(Timestamp::now())
        .with_context(|| format!("verifying trust file {}", args.trust.display()))?;
    let body = trust.body();
    outln!(
        "{}: version {} valid, threshold {} of {} root(s), {} signer(s), expires {}",
        args.trust.display(),
        body.version,
        body.roots.threshold,
        body.roots.keys.len(),
        body.signers.len(),
        body.expires
    )
}

fn update(args: UpdateArgs) -> anyhow::Result<()> {
    let pinned = super::load_public_keys(&args.roots)?;
    let current = Trust::load(&args.current, &pinned).context("loading trust file")?;
    let bytes =
        std::fs::read(&args.new).with_context(|| format!("reading {}", args.new.display()))?;
    let next = current.update(&bytes, Timestamp::now()).with_context(|| {
        format!(
            "checking {} as an update of {}",
            args.new.display(),
            args.current.display()
        )
    })?;
    ironrack_keys::write_file_atomically(&args.current, &bytes).context("writing trust file")?;
    outln!("{}: now version {}", args.current.display(), next.version())
}

fn show(path: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file = TrustFile::parse(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    let body = &file.signed;
    let valid = file.valid_signers(&body.roots.keys)?;
    let status = if valid.len() >= body.roots.threshold as usize {
        "threshold met"
    } else {
        "THRESHOLD NOT MET"
    };
    outln!(
        "trust file {}: version {}, expires {}",
        path.display(),
        body.version,
        body.expires
    )?;
    outln!(
        "roots (threshold {}): {} valid signature(s), {status}",
        body.roots.threshold,
        valid.len()
    )?;
    for root in &body.roots.keys {
        let signed = if valid.contains(&root.id) {
            "signed"
        } else {
            "not signed"
        };
        outln!("  {}  {}  {signed}", root.id, root.public)?;
    }
    outln!("signers:")?;
    for s in &body.signers {
        let scope: Vec<String> = s.scope.iter().map(ToString::to_string).collect();
        outln!(
            "  {}  {}  expires {}  scope {}",
            s.id,
            s.name,
            s.expires,
            scope.join(",")
        )?;
    }
    outln!("revoked:")?;
    for id in &body.revoked {
        outln!("  {id}")?;
    }
    Ok(())
}
