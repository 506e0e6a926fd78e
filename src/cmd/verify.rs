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
    if let Some(store) = store.as_mut() {
        let m = &report.manifest;
        store
            .record(&m.name, &m.channel, m.version)
            .context("recording the verified version")?;
    }
    Ok(())
}
