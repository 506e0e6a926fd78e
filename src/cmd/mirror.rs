//! `ironrack mirror`: the site's local Debian-format mirror (init, import,
//! sync, list, verify).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use ironrack_builder::source::mirror::import::{ImportOptions, import};
use ironrack_builder::source::mirror::sync::{
    self, ExactPackages, Keyring, PackageRequest, Selection, Sources, SpecClosure, SyncOptions,
    Union, Upstream,
};
use ironrack_builder::source::mirror::{Mirror, Snapshot, Verifier};
use ironrack_keys::{PublicKey, Trust};

use super::outln;

/// `ironrack mirror ...`.
#[derive(Debug, Subcommand)]
pub enum MirrorCommand {
    /// Create an empty mirror.
    Init(InitArgs),
    /// Add local .deb files: a new snapshot = the ref's snapshot + these.
    Import(ImportArgs),
    /// Fetch packages from upstream repositories (verified with gpgv) into
    /// a new snapshot = the ref's snapshot + the packages chosen.
    Sync(Box<SyncArgs>),
    /// List snapshots and refs (sizes and dates; signatures NOT checked:
    /// use `mirror verify`).
    List(ListArgs),
    /// Verify snapshots: signature, id, indexes, and every package file re-hashed.
    Verify(VerifyArgs),
}

/// Arguments of `mirror init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The mirror directory (created if missing).
    pub dir: PathBuf,
    /// The mirror's name: its snapshot signer needs the scope mirror:NAME.
    #[arg(long)]
    pub name: String,
    /// Architectures to carry (repeat; default amd64). `all` packages are
    /// always included.
    #[arg(long = "arch", value_name = "ARCH")]
    pub architectures: Vec<String>,
}

/// The signing key of a command that publishes a snapshot.
#[derive(Debug, Args)]
pub struct SigningArgs {
    /// Secret key that signs the new snapshot's Release (minisign format, 0600).
    #[arg(long, short = 'k', value_name = "KEY")]
    pub key: PathBuf,
    /// File whose first line is the key's passphrase (default: $IRONRACK_PASSPHRASE).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// The ref to extend and move [default: the mirror's name].
    #[arg(long = "ref", value_name = "NAME")]
    pub ref_name: Option<String>,
}

/// Arguments of `mirror import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The mirror directory.
    pub dir: PathBuf,
    /// The .deb files.
    #[arg(required = true)]
    pub debs: Vec<PathBuf>,
    #[command(flatten)]
    pub signing: SigningArgs,
    /// The local suite [default: the ref's snapshot's].
    #[arg(long)]
    pub suite: Option<String>,
    /// The component the packages go in.
    #[arg(long, default_value = "main")]
    pub component: String,
}

/// Arguments of `mirror sync`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["from", "from_host_apt"])))]
#[command(group(clap::ArgGroup::new("selection").required(true).multiple(true).args(["for_specs", "packages"])))]
pub struct SyncArgs {
    /// The mirror directory.
    pub dir: PathBuf,
    /// Upstream repository: http://HOST/PATH or file:/PATH.
    #[arg(long, value_name = "URL", requires_all = ["suites", "components", "keyrings"])]
    pub from: Option<String>,
    /// Upstream suites to read and merge (repeat).
    #[arg(long = "suite", value_name = "SUITE")]
    pub suites: Vec<String>,
    /// Upstream components (repeat or comma-separated).
    #[arg(long = "components", value_name = "C", value_delimiter = ',', num_args = 1..)]
    pub components: Vec<String>,
    /// OpenPGP keyring (binary, as for gpgv) the upstream Release must be signed with.
    #[arg(long = "keyring", value_name = "K.gpg")]
    pub keyrings: Vec<PathBuf>,
    /// Read the repositories and keyrings the host's apt uses instead.
    #[arg(long, conflicts_with = "from")]
    pub from_host_apt: bool,
    /// With --from-host-apt: components to add to every source
    /// (e.g. non-free,non-free-firmware,contrib).
    #[arg(long, value_delimiter = ',', requires = "from_host_apt")]
    pub add_components: Vec<String>,
    /// Fetch the package closure of these image specs: every package set
    /// (image, build) resolved as `ironrack lock` resolves it.
    #[arg(long = "for", value_name = "SPEC")]
    pub for_specs: Vec<PathBuf>,
    /// Fetch exactly this package (NAME: its newest version; NAME=VERSION:
    /// that one), no dependencies (repeat; with --for, on top of the
    /// specs' closures, e.g. `--package ipxe` for the boot server).
    #[arg(long = "package", value_name = "NAME[=VERSION]")]
    pub packages: Vec<String>,
    #[command(flatten)]
    pub signing: SigningArgs,
    /// The local suite [default: the ref's snapshot's, else the first upstream Codename].
    #[arg(long)]
    pub local_suite: Option<String>,
    /// Start from an empty snapshot, not the ref's current one.
    #[arg(long)]
    pub fresh: bool,
    /// Parallel downloads.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Accept upstream Releases past their Valid-Until (replays of old metadata).
    #[arg(long)]
    pub ignore_valid_until: bool,
}

/// Arguments of `mirror list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The mirror directory.
    pub dir: PathBuf,
}

/// Arguments of `mirror verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The mirror directory.
    pub dir: PathBuf,
    /// A snapshot id or ref [default: every snapshot].
    pub snapshot: Option<String>,
    #[command(flatten)]
    pub key: SnapshotKeyArgs,
}

/// Who may sign a mirror's snapshots. The key never comes from the mirror
/// directory itself: whoever can write the mirror could replace it.
#[derive(Debug, Args)]
pub struct SnapshotKeyArgs {
    /// Verify snapshot signatures with this public key (minisign format).
    #[arg(long = "pub", value_name = "PUBKEY", conflicts_with = "trust")]
    pub public: Option<PathBuf>,
    /// Verify snapshot signatures through this trust file: the signer needs
    /// a mirror:NAME scope.
    #[arg(long, value_name = "TRUST")]
    pub trust: Option<PathBuf>,
    /// Root public keys the trust file must be signed by (repeat).
    #[arg(long = "pin", value_name = "ROOT.pub", requires = "trust")]
    pub pins: Vec<PathBuf>,
    /// The mirror name the signer must be scoped for [default: mirror.toml's].
    #[arg(long, requires = "trust")]
    pub mirror_name: Option<String>,
}

impl SnapshotKeyArgs {
    /// The verifier these flags name, for `mirror`.
    pub fn verifier(&self, mirror: &Mirror) -> anyhow::Result<Verifier> {
        if let Some(path) = &self.public {
            return Ok(Verifier::public_key(
                PublicKey::load(path).context("loading public key")?,
            ));
        }
        let Some(path) = &self.trust else {
            bail!(
                "mirror {} ({}): give --pub PUBKEY or --trust trust.json to verify its snapshots' signatures",
                mirror.name(),
                mirror.root().display()
            );
        };
        let pins = super::load_public_keys(&self.pins)?;
        let trust = Trust::load(path, &pins).context("loading trust file")?;
        let name = self
            .mirror_name
            .clone()
            .unwrap_or_else(|| mirror.name().to_owned());
        Ok(Verifier::trust(trust, &name))
    }
}

/// Runs a `mirror` subcommand.
pub fn run(command: MirrorCommand) -> anyhow::Result<()> {
    match command {
        MirrorCommand::Init(args) => init(args),
        MirrorCommand::Import(args) => import_debs(args),
        MirrorCommand::Sync(args) => sync_upstream(*args),
        MirrorCommand::List(args) => list(args),
        MirrorCommand::Verify(args) => verify(args),
    }
}

/// Opens a mirror, naming it in the error.
pub fn open(dir: &Path) -> anyhow::Result<Mirror> {
    Mirror::open(dir).with_context(|| format!("opening mirror {}", dir.display()))
}

fn init(args: InitArgs) -> anyhow::Result<()> {
    let mirror = Mirror::init(&args.dir, &args.name, &args.architectures)
        .with_context(|| format!("creating mirror {}", args.dir.display()))?;
    outln!(
        "mirror {} created in {} ({})",
        mirror.name(),
        args.dir.display(),
        mirror.architectures().join(" ")
    )
}

fn signer(args: &SigningArgs) -> anyhow::Result<ironrack_keys::SecretKey> {
    let pass = super::passphrase(args.passphrase_file.as_deref())?;
    super::load_secret_key(&args.key, pass.as_ref())
}

fn import_debs(args: ImportArgs) -> anyhow::Result<()> {
    let mirror = open(&args.dir)?;
    let key = signer(&args.signing)?;
    let ref_name = args
        .signing
        .ref_name
        .clone()
        .unwrap_or_else(|| mirror.name().to_owned());
    let options = ImportOptions {
        ref_name: ref_name.clone(),
        suite: args.suite,
        component: Some(args.component),
        date: source_date_epoch()?,
    };
    let id = import(&mirror, &args.debs, &options, &key).context("importing packages")?;
    outln!("snapshot {id}")?;
    outln!("ref {ref_name} -> {id}")
}

/// SOURCE_DATE_EPOCH, when set, dates imported snapshots reproducibly.
fn source_date_epoch() -> anyhow::Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => Ok(Some(
            v.trim()
                .parse()
                .context("SOURCE_DATE_EPOCH is not a number")?,
        )),
        Err(_) => Ok(None),
    }
}

fn sync_upstream(args: SyncArgs) -> anyhow::Result<()> {
    let mirror = open(&args.dir)?;
    let key = signer(&args.signing)?;
    let ref_name = args
        .signing
        .ref_name
        .clone()
        .unwrap_or_else(|| mirror.name().to_owned());
    let selection = selection(&args)?;
    let sources = if args.from_host_apt {
        Sources::HostApt {
            add_components: args.add_components.clone(),
        }
    } else {
        Sources::Upstreams(vec![Upstream {
            url: args.from.clone().unwrap_or_default(),
            suites: args.suites.clone(),
            components: args.components.clone(),
            keyring: Keyring {
                files: args.keyrings.clone(),
                fingerprints: Vec::new(),
            },
        }])
    };
    let options = SyncOptions {
        sources,
        ref_name: ref_name.clone(),
        local_suite: args.local_suite.clone(),
        fresh: args.fresh,
        jobs: args.jobs,
        check_valid_until: !args.ignore_valid_until,
        progress: true,
    };
    let report = sync::sync(&mirror, &options, selection.as_ref(), &key).context("syncing")?;
    outln!("snapshot {}", report.snapshot)?;
    outln!("ref {ref_name} -> {}", report.snapshot)?;
    outln!(
        "packages {} (selected {}: downloaded {} files, {} bytes; {} already in the pool)",
        report.packages,
        report.selected,
        report.downloaded,
        report.downloaded_bytes,
        report.reused
    )
}

/// `--for` specs' closures and `--package` requests, together when both
/// are given.
fn selection(args: &SyncArgs) -> anyhow::Result<Box<dyn Selection>> {
    let mut parts: Vec<Box<dyn Selection>> = Vec::new();
    if !args.for_specs.is_empty() {
        let closure = SpecClosure::load(&args.for_specs).context("loading image specs")?;
        parts.push(Box::new(closure));
    }
    if !args.packages.is_empty() {
        let requests = args
            .packages
            .iter()
            .map(|p| PackageRequest::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        parts.push(Box::new(ExactPackages { requests }));
    }
    Ok(match parts.len() {
        1 => parts.remove(0),
        _ => Box::new(Union(parts)),
    })
}

fn list(args: ListArgs) -> anyhow::Result<()> {
    let mirror = open(&args.dir)?;
    let refs = mirror.refs()?;
    outln!(
        "mirror {} ({})",
        mirror.name(),
        mirror.architectures().join(" ")
    )?;
    for id in mirror.snapshot_ids()? {
        let names: Vec<&str> = refs
            .iter()
            .filter(|(_, r)| *r == id)
            .map(|(n, _)| n.as_str())
            .collect();
        match Snapshot::summary_unverified(&mirror, id) {
            Ok(s) => outln!(
                "{id}  {}  {} packages  {} bytes  {}  refs: {}",
                s.suite,
                s.packages,
                s.bytes,
                s.date.as_deref().unwrap_or("?"),
                if names.is_empty() {
                    "-".to_owned()
                } else {
                    names.join(",")
                }
            )?,
            Err(e) => outln!("{id}  DAMAGED: {e}")?,
        }
    }
    for (name, id) in &refs {
        if !mirror.snapshot_dir(*id).is_dir() {
            outln!("ref {name} -> {id}: MISSING snapshot")?;
        }
    }
    Ok(())
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let mirror = open(&args.dir)?;
    let verifier = args.key.verifier(&mirror)?;
    let ids = match &args.snapshot {
        Some(s) => vec![mirror.resolve(s)?],
        None => mirror.snapshot_ids()?,
    };
    if ids.is_empty() {
        bail!("mirror {} has no snapshot", mirror.name());
    }
    for (name, id) in mirror.refs()? {
        if !mirror.snapshot_dir(id).is_dir() {
            bail!("ref {name} points at {id}, which does not exist");
        }
    }
    for id in ids {
        let snapshot = Snapshot::open(&mirror, id, &verifier)
            .with_context(|| format!("verifying snapshot {id}"))?;
        let (files, bytes) = snapshot
            .verify_files()
            .with_context(|| format!("verifying the package files of snapshot {id}"))?;
        outln!(
            "{id}  OK  {} {files} packages {bytes} bytes",
            snapshot.suite()
        )?;
    }
    Ok(())
}
