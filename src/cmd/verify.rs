//! `ironrack verify`: re-check a built image offline, as an auditor would.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use ironrack_builder::release;
use ironrack_keys::{RollbackStore, Timestamp, Trust};

use super::outln;

/// Arguments of `ironrack verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The image directory (out/NAME/VERSION): manifest.json, its
    /// signature, the artifacts, sbom.spdx.json, provenance.intoto.json.
    pub dir: PathBuf,

    /// The site's trust file: the manifest's signer must be delegated the
    /// image's name and channel there.
    #[arg(long, value_name = "TRUST")]
    pub trust: PathBuf,

    /// Pinned root public key; the trust file must meet its threshold with
    /// these (repeat). Without any, the trust file's own roots are used:
    /// only safe when the file came from a trusted place.
    #[arg(long = "pin", value_name = "ROOT.pub")]
    pub pins: Vec<PathBuf>,

    /// Rollback state (JSON): versions seen per image and channel. A lower
    /// version than recorded is refused; a verified one is recorded.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Build the image again from this spec (its lock beside it, the
    /// mirror it names, snapshots checked with --trust/--pin) into a
    /// scratch directory, and compare every built artifact with the
    /// manifest's digest. The spec and lock must be the ones the manifest
    /// names (by digest).
    #[arg(long, value_name = "SPEC")]
    pub rebuild: Option<PathBuf>,

    /// With --rebuild: the agent binary baked into the initramfs [default:
    /// this ironrack]; it must be the one the manifest names.
    #[arg(long, value_name = "FILE", requires = "rebuild")]
    pub agent: Option<PathBuf>,

    /// With --rebuild: the local mirror [default: the spec's].
    #[arg(long, value_name = "DIR", requires = "rebuild")]
    pub mirror: Option<PathBuf>,
}

/// Runs `ironrack verify`: prints one line per check; exit code 3 when
/// any check fails.
pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let pins = super::load_public_keys(&args.pins)?;
    let trust = Trust::load(&args.trust, &pins).context("loading trust file")?;
    let mut store = args
        .state
        .as_deref()
        .map(RollbackStore::open)
        .transpose()
        .context("opening rollback state")?;
    let report = release::verify(&args.dir, &trust, None, Timestamp::now())
        .with_context(|| format!("verifying {}", args.dir.display()))?;
    if let (Some(store), Some(path)) = (&store, &args.state) {
        let m = &report.manifest;
        m.check_rollback(store.highest(&m.name, &m.channel))
            .with_context(|| format!("checking the version against {}", path.display()))?;
    }
    outln!("{}", report.to_string().trim_end())?;
    if !report.passed() {
        return Err(anyhow::Error::new(release::ReleaseError::Failed {
            dir: args.dir.clone(),
        }));
    }
    if let Some(spec) = &args.rebuild {
        rebuild(&args, spec, &report.manifest)?;
    }
    if let Some(store) = store.as_mut() {
        let m = &report.manifest;
        store
            .record(&m.name, &m.channel, m.version)
            .context("recording the verified version")?;
    }
    Ok(())
}

fn sha256_file(path: &std::path::Path) -> anyhow::Result<String> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let (_, digest) = ironrack_keys::digest::sha256_reader(file)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(digest.to_string())
}

/// `--rebuild`: the same inputs, built again from nothing (a scratch
/// output and cache), must give every artifact the manifest lists that a
/// build writes, bit for bit.
fn rebuild(
    args: &VerifyArgs,
    spec: &std::path::Path,
    manifest: &ironrack_keys::SignedManifest<release::ImagePayload>,
) -> anyhow::Result<()> {
    let build = &manifest.payload.build;
    let lock = ironrack_builder::pipeline::lock_path(spec);
    for (what, path, want) in [
        ("spec", spec, &build.spec_sha256),
        ("lock", lock.as_path(), &build.lock_sha256),
    ] {
        let got = sha256_file(path)?;
        if &got != want {
            anyhow::bail!(
                "--rebuild: {} is not the {what} this image was built from (sha256 {got}, the manifest names {want})",
                path.display()
            );
        }
    }
    let agent = match &args.agent {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("finding this ironrack binary (the agent)")?,
    };
    if let Some(record) = &manifest.payload.agent {
        let got = sha256_file(&agent)?;
        if got != record.sha256 {
            anyhow::bail!(
                "--rebuild: the agent {} (sha256 {got}) is not the one baked into the image (sha256 {}): pass --agent with that binary",
                agent.display(),
                record.sha256
            );
        }
    }
    let scratch = tempfile::tempdir().context("creating a scratch directory for the rebuild")?;
    let build_args = super::build::BuildArgs {
        spec: spec.to_owned(),
        out: scratch.path().join("out"),
        mirror: args.mirror.clone(),
        repo: None,
        key: super::mirror::SnapshotKeyArgs {
            public: None,
            trust: Some(args.trust.clone()),
            pins: args.pins.clone(),
            mirror_name: None,
        },
        cache_dir: None,
        jobs: None,
        json: true,
        signing_key: None,
        passphrase_file: None,
        expires_days: 365,
        agent: Some(agent),
    };
    let report =
        super::build::build_image(&build_args, &ironrack_builder::pipeline::Progress::hidden())
            .context("--rebuild: building the image again")?;
    // Every file the rebuild published (it is unsigned: no manifest,
    // SBOM or provenance of its own), but the local build log.
    let mut names: Vec<String> = std::fs::read_dir(&report.output)
        .with_context(|| format!("listing {}", report.output.display()))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !release::UNSIGNED_FILES.contains(&n.as_str()))
        .collect();
    names.sort();
    let mut differ = Vec::new();
    for name in names {
        let rebuilt = sha256_file(&report.output.join(&name))?;
        let Some(listed) = manifest.artifacts.iter().find(|a| a.name == name) else {
            differ.push(format!("{name}: built, but not in the manifest"));
            continue;
        };
        let listed = listed.sha256.to_string();
        if listed != rebuilt {
            differ.push(format!(
                "{name}: rebuilt sha256 {rebuilt}, the manifest has {listed}"
            ));
        } else {
            outln!("  ok      rebuild {name}: identical ({rebuilt})")?;
        }
    }
    if differ.is_empty() {
        return Ok(());
    }
    for line in &differ {
        outln!("  FAILED  rebuild {line}")?;
    }
    Err(anyhow::Error::new(release::ReleaseError::Failed {
        dir: args.dir.clone(),
    }))
    .context("the rebuild differs from the published image")
}
