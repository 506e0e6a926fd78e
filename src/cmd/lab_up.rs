//! `ironrack lab up`: bring the lab up (the library does it), then follow
//! every node through the server's timeline on a live display.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use ironrack_pxe::lab::up::{UpPlan, up as bring_up};
use ironrack_pxe::lab::{Firmware, LabState};
use ironrack_pxe::store::{InventoryStore, NodeRecord, SqliteStore};

use super::lab::{FirmwareChoice, UpArgs};
use super::outln;

/// The order of states a node goes through.
const STAGES: [&str; 9] = [
    "dhcp", "firmware", "ipxe", "booting", "image", "agent", "enrolled", "attested", "running",
];

/// Runs `lab up`.
pub fn up(args: &UpArgs) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("lab up needs root (network namespaces, taps, qemu)");
    }
    if !STAGES.contains(&args.until.as_str()) {
        bail!("--until {}: one of {}", args.until, STAGES.join(", "));
    }
    let plan = plan(args)?;
    let interrupted = Arc::new(AtomicBool::new(false));
    watch_ctrl_c(interrupted.clone());
    let flag = interrupted.clone();
    let state =
        bring_up(&plan, &move || flag.load(Ordering::SeqCst)).context("bringing the lab up")?;
    let outcome = follow(args, &state, &interrupted);
    if interrupted.load(Ordering::SeqCst) {
        state.down(&args.lab.dir).context("taking the lab down")?;
        bail!("interrupted; the lab was taken down");
    }
    let records = outcome?;
    table(&state, &records, &plan, &args.lab.dir.join("state.db"))?;
    let behind: Vec<&str> = state
        .nodes
        .iter()
        .filter(|n| {
            records
                .get(&n.mac)
                .is_none_or(|r| rank(&r.state) < rank(&args.until))
        })
        .map(|n| n.name.as_str())
        .collect();
    if !behind.is_empty() {
        bail!(
            "{} did not reach {} (`ironrack lab logs NODE`, `ironrack nodes show NODE --site {}`); the lab is still up",
            behind.join(", "),
            args.until,
            args.lab.dir.join("site.toml").display()
        );
    }
    outln!(
        "lab up in {}: `ironrack lab status|logs NODE|down --dir {}`",
        args.lab.dir.display(),
        args.lab.dir.display()
    )
}

fn plan(args: &UpArgs) -> anyhow::Result<UpPlan> {
    let abs = |p: &Path| std::path::absolute(p).with_context(|| format!("{}", p.display()));
    let image = abs(&args.image)?;
    let manifest = image.join("manifest.json");
    let text = std::fs::read(&manifest).with_context(|| {
        format!(
            "reading {} (is {} a built image?)",
            manifest.display(),
            image.display()
        )
    })?;
    // Only to name the image in the site file: the server verifies it.
    let value: serde_json::Value = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not JSON", manifest.display()))?;
    let (Some(name), Some(version)) = (value["name"].as_str(), value["version"].as_u64()) else {
        bail!("{}: no name and version", manifest.display());
    };
    let ipxe_deb = match (&args.ipxe_deb, &args.mirror) {
        (Some(deb), _) => abs(deb)?,
        (None, Some(mirror)) => newest_ipxe(&abs(mirror)?)?,
        (None, None) => {
            bail!("give --ipxe-deb FILE or --mirror DIR (whose pool has the ipxe package)")
        }
    };
    let firmwares = (0..usize::from(args.nodes))
        .map(|i| match args.firmware {
            FirmwareChoice::Uefi => Firmware::Uefi,
            FirmwareChoice::Bios => Firmware::Bios,
            FirmwareChoice::Mixed if i % 2 == 0 => Firmware::Uefi,
            FirmwareChoice::Mixed => Firmware::Bios,
        })
        .collect();
    Ok(UpPlan {
        dir: abs(&args.lab.dir)?,
        ns: format!("ironrack-lab{}", std::process::id() % 10_000),
        image,
        image_name: name.to_owned(),
        image_version: version,
        trust: abs(&args.trust)?,
        ipxe_deb,
        ironrack: std::env::current_exe().context("finding the ironrack binary")?,
        firmwares,
        memory_mib: args.memory,
    })
}

pub(super) fn newest_ipxe(mirror: &Path) -> anyhow::Result<PathBuf> {
    let dir = mirror.join("pool/main/i/ipxe");
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("looking for the ipxe package in {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ipxe_") && n.ends_with("_all.deb"))
        })
        .collect();
    debs.sort();
    debs.pop().with_context(|| {
        format!(
            "no ipxe_*_all.deb in {} (sync it: `ironrack mirror sync ... --package ipxe`)",
            dir.display()
        )
    })
}

fn rank(state: &str) -> usize {
    STAGES.iter().position(|s| *s == state).map_or(0, |i| i + 1)
}

/// Polls the server's state database until every node reaches `--until`,
/// one fails, its qemu exits, or the timeout passes.
fn follow(
    args: &UpArgs,
    state: &LabState,
    interrupted: &AtomicBool,
) -> anyhow::Result<BTreeMap<String, NodeRecord>> {
    let db = args.lab.dir.join("state.db");
    let draw = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let multi = MultiProgress::with_draw_target(draw);
    let style = ProgressStyle::with_template("{prefix:>8} {bar:24} {msg}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let bars: Vec<ProgressBar> = state
        .nodes
        .iter()
        .map(|n| {
            let bar = multi.add(ProgressBar::new(STAGES.len() as u64));
            bar.set_style(style.clone());
            bar.set_prefix(n.name.clone());
            bar.set_message(format!("{} {} waiting for DHCP", n.firmware, n.mac));
            bar
        })
        .collect();
    let started = Instant::now();
    let target = rank(&args.until);
    let mut records = BTreeMap::new();
    loop {
        if interrupted.load(Ordering::SeqCst) {
            break;
        }
        if let Ok(store) = SqliteStore::open_read_only(&db)
            && let Ok(nodes) = store.nodes()
        {
            records = nodes.into_iter().map(|r| (r.mac.to_string(), r)).collect();
        }
        let mut done = true;
        for (node, bar) in state.nodes.iter().zip(&bars) {
            let record = records.get(&node.mac);
            let stage = record.map_or("", |r| r.state.as_str());
            bar.set_position(rank(stage) as u64);
            let exited = !node.qemu.alive();
            bar.set_message(format!(
                "{} {} {}{}",
                node.firmware,
                node.mac,
                record.map_or("waiting for DHCP".to_owned(), |r| format!(
                    "{} ({})",
                    r.state, r.last_event
                )),
                if exited { " — qemu EXITED" } else { "" }
            ));
            let finished = rank(stage) >= target || stage == "failed" || exited;
            done &= finished;
        }
        if done || started.elapsed() > Duration::from_secs(args.timeout) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for bar in &bars {
        bar.finish();
    }
    Ok(records)
}

/// The node's last attestation verdict, from its timeline: `attested
/// (uki chain)`, `attested (bios chain)`, `refused: CODE`, `pending`, or
/// `-` before any.
fn attestation(store: Option<&SqliteStore>, mac: &str) -> String {
    let Some(mac) = mac.parse().ok() else {
        return "-".into();
    };
    let Some(events) = store.and_then(|s| s.events(&mac, 1000).ok()) else {
        return "-".into();
    };
    let Some(last) = events
        .iter()
        .filter(|e| ["attested", "refused", "pending", "revoked"].contains(&e.kind.as_str()))
        .max_by_key(|e| e.at_ms)
    else {
        return "-".into();
    };
    let detail = last.detail.as_deref().unwrap_or("");
    match last.kind.as_str() {
        "attested" if detail.contains("boot-chain bios") => "attested (bios chain)".into(),
        "attested" => "attested (uki chain)".into(),
        "refused" => format!("refused: {}", detail.split(':').next().unwrap_or("").trim()),
        other => other.into(),
    }
}

fn table(
    state: &LabState,
    records: &BTreeMap<String, NodeRecord>,
    plan: &UpPlan,
    db: &Path,
) -> anyhow::Result<()> {
    let store = SqliteStore::open_read_only(db).ok();
    outln!(
        "{:<8} {:<5} {:<18} {:<16} {:<10} {:<22} {:>9}  {}",
        "node",
        "fw",
        "mac",
        "image",
        "state",
        "attestation",
        "boot",
        "last event"
    )?;
    for n in &state.nodes {
        let r = records.get(&n.mac);
        let boot = r.map_or("-".to_owned(), |r| {
            format!(
                "{:.1} s",
                r.last_at_ms.saturating_sub(r.first_seen_ms) as f64 / 1000.0
            )
        });
        outln!(
            "{:<8} {:<5} {:<18} {:<16} {:<10} {:<22} {:>9}  {}",
            n.name,
            n.firmware.to_string(),
            n.mac,
            format!("{}@{}", plan.image_name, plan.image_version),
            r.map_or("-", |r| r.state.as_str()),
            attestation(store.as_ref(), &n.mac),
            boot,
            r.map_or("", |r| r.last_event.as_str())
        )?;
    }
    Ok(())
}

/// Sets `flag` on Ctrl-C (SIGINT) or SIGTERM instead of dying, so the lab
/// can be taken down.
pub(super) fn watch_ctrl_c(flag: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            flag.store(true, Ordering::SeqCst);
        });
    });
}
