//! `ironrack build`: an image spec and its lock → `OUT/NAME/VERSION/`.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use indicatif::{MultiProgress, ProgressDrawTarget};
use ironrack_builder::pipeline::{self, BuildOptions, LockedSpec, Plan, Progress};
use ironrack_builder::source::lock::Lock;
use ironrack_builder::spec::ImageSpec;

use super::mirror::SnapshotKeyArgs;
use super::outln;
use super::source::Source;

/// The long help of `ironrack build` (`--help`).
pub const ABOUT: &str = "\
Build an image from its spec and lock: the locked .debs (each sha256
checked) are unpacked in parallel into a new root, configured by the
image's own dpkg in a sandbox (no network, no host paths), customised
([rootfs] of the spec: overlay, hostname, users, units), normalised for
bit-for-bit reproducibility, and written as the images the spec selects
([rootfs] formats: squashfs (default), erofs, tar).

Builds always run with --locked semantics: the spec must be the one the
lock was made from, the snapshot the one it names; nothing is resolved
again. SOURCE_DATE_EPOCH is the snapshot's Release date, never the clock:
the same lock gives the same rootfs.squashfs, whoever builds it.

A spec with [initramfs] makes a bootable image: with [nvidia], the
driver's modules are built from the mirror's source package in a sandbox
of the lock's build set (compiler and headers never reach the image),
installed, indexed by the image's depmod, and the version chain (kernel,
modules, GSP firmware, CUDA userspace) is checked, failing closed with
both sides named. Then vmlinuz, initrd.img (this ironrack binary as the
agent, busybox, the drivers' modules, the trust root given with --trust)
and node.efi (the mirror's systemd-stub around them) are written, with
the measurements a boot will produce (Authenticode, PCR 11) in the
manifest.

Output: OUT/NAME/VERSION/ with the images, rootfs.manifest (every entry
of the tree) and build.json (what --json prints). It appears complete or
not at all, and a published version is never replaced: bump `version` in
the spec for new content. Unchanged inputs are served from the stage
cache (OUT/.cache) without reading a package.

Examples:
  ironrack lock  images/gpu-node.toml --pub keys/mirror.pub
  ironrack build images/gpu-node.toml --pub keys/mirror.pub --key keys/ci.key
  ironrack build images/gpu-node.toml --trust trust.json --pin root.pub --key keys/ci.key --json
  ironrack verify out/gpu-node/1 --trust trust.json --pin root.pub

Exit codes: 3 when a check fails (spec changed since the lock, another
snapshot, a package whose digest differs), 4 on I/O errors, 1 otherwise.";

/// Arguments of `ironrack build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The image spec (images/NAME.toml). Its lock (images/NAME.lock) must
    /// exist and match it.
    pub spec: PathBuf,

    /// The output root: the image goes to OUT/NAME/VERSION/.
    #[arg(long, value_name = "OUT", default_value = "out")]
    pub out: PathBuf,

    /// The local mirror [default: the spec's `mirror.path`, relative to the
    /// spec file].
    #[arg(long, value_name = "DIR", conflicts_with = "repo")]
    pub mirror: Option<PathBuf>,

    /// Read packages from this Debian-format repository tree instead of a
    /// mirror snapshot (for a lock made with `ironrack lock --repo`).
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,

    /// The key that signs the mirror's snapshots (needed unless --repo).
    #[command(flatten)]
    pub key: SnapshotKeyArgs,

    /// The stage cache [default: OUT/.cache].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Packages unpacked (and image blocks compressed) at once [default:
    /// one per CPU]. The output does not depend on it.
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,

    /// Print the build report as JSON on stdout instead of the summary
    /// table (progress bars are off).
    #[arg(long)]
    pub json: bool,

    /// Sign the image with this key (minisign secret key, 0600): writes
    /// manifest.json (+ .minisig), sbom.spdx.json and
    /// provenance.intoto.json. The trust file must delegate the image's
    /// name and channel to it. Without a key the output is unsigned and
    /// `ironrack serve` will not serve it.
    #[arg(long = "key", value_name = "KEY")]
    pub signing_key: Option<PathBuf>,

    /// File whose first line is the signing key's passphrase (default:
    /// $IRONRACK_PASSPHRASE).
    #[arg(long, value_name = "FILE", requires = "signing_key")]
    pub passphrase_file: Option<PathBuf>,

    /// The manifest expires this many days after SOURCE_DATE_EPOCH (the
    /// snapshot's date, so the signed bytes stay reproducible).
    #[arg(long, value_name = "DAYS", default_value_t = 365)]
    pub expires_days: u32,

    /// The agent baked into a bootable image's initramfs as /init
    /// [default: this ironrack binary].
    #[arg(long, value_name = "FILE")]
    pub agent: Option<PathBuf>,
}

/// Runs `ironrack build`.
pub fn run(args: BuildArgs) -> anyhow::Result<()> {
    let progress = if std::io::stderr().is_terminal() && !args.json {
        Progress::new(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
    } else {
        Progress::hidden()
    };
    let report = build_image(&args, &progress)?;
    if args.json {
        let json = serde_json::to_string_pretty(&report).context("writing the report")?;
        outln!("{json}")
    } else {
        outln!("{}", pipeline::summary_table(&report).trim_end())
    }
}

/// Plans and builds the image `args` name (what `ironrack build` and
/// `ironrack verify --rebuild` run).
pub fn build_image(args: &BuildArgs, progress: &Progress) -> anyhow::Result<pipeline::BuildReport> {
    let spec_bytes =
        std::fs::read(&args.spec).with_context(|| format!("reading {}", args.spec.display()))?;
    let spec = ImageSpec::parse_bytes(&spec_bytes, &args.spec)?;
    let lock_path = pipeline::lock_path(&args.spec);
    let lock_bytes = std::fs::read(&lock_path).with_context(|| {
        format!(
            "reading {} (make it with `ironrack lock {}`)",
            lock_path.display(),
            args.spec.display()
        )
    })?;
    let lock = Lock::load(&lock_path)?;
    let source = Source::open(
        &spec,
        &args.spec,
        args.repo.as_deref(),
        args.mirror.as_deref(),
        &args.key,
    )?;
    let date = source.date().with_context(|| {
        format!(
            "the Release of {} has no Date (the build's SOURCE_DATE_EPOCH)",
            source.describe()
        )
    })?;
    let locked = LockedSpec {
        spec: &spec,
        spec_path: &args.spec,
        spec_bytes: &spec_bytes,
        lock: &lock,
        lock_bytes: &lock_bytes,
    };
    let mut plan =
        Plan::from_lock(&locked, source.files().snapshot_id(), date).with_context(|| {
            format!(
                "checking {} against {} and {}",
                lock_path.display(),
                args.spec.display(),
                source.describe()
            )
        })?;
    if let Some(boot) = &mut plan.boot {
        boot.agent = Some(match &args.agent {
            Some(path) => path.clone(),
            None => std::env::current_exe().context("finding this ironrack binary (the agent)")?,
        });
        boot.trust = match &args.key.trust {
            Some(path) => {
                Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
            }
            None => {
                tracing::warn!(
                    "no --trust: the initramfs carries no trust root, and its agent will refuse every manifest"
                );
                None
            }
        };
    }
    let options = BuildOptions {
        cache_dir: args
            .cache_dir
            .clone()
            .unwrap_or_else(|| args.out.join(".cache")),
        out_dir: args.out.clone(),
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
            .max(1),
        signing: match &args.signing_key {
            Some(path) => {
                let pass = super::passphrase(args.passphrase_file.as_deref())?;
                let key = super::load_secret_key(path, pass.as_ref())?;
                Some(pipeline::Signing {
                    signer: std::sync::Arc::new(key),
                    expires_days: args.expires_days,
                })
            }
            None => {
                tracing::warn!(
                    "no --key: the image is published unsigned; ironrack serve will refuse it"
                );
                None
            }
        },
    };
    pipeline::build(&plan, source.packages(), &options, progress)
        .with_context(|| format!("building {} version {}", plan.name, plan.version))
}
