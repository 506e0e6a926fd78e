//! `ironrack nodes list|show|approve|revoke`: the inventory, boot
//! timelines and attestation verdicts, read from the state database
//! directly (read-only for list and show), so they work whether or not
//! the server runs.

mod attest;

use std::path::PathBuf;

use anyhow::Context;
use ironrack_pxe::attest::protocol::NodeId;
use ironrack_pxe::attest::service::SqliteAttestStore;
use ironrack_pxe::site::{MacAddr, Site};
use ironrack_pxe::store::{
    Approval, ImageStatus, InventoryStore, NodeEvent, NodeRecord, SqliteStore,
};

use super::outln;

/// Nodes, their state and boot timelines.
#[derive(Debug, clap::Subcommand)]
pub enum NodesCommand {
    /// One line per node: name, MAC, image, state, attestation, last
    /// event, age; then every image the server refused, with the reason.
    List(Where),
    /// A node's boot timeline and its attestation verdicts (by host name or MAC).
    Show {
        /// Host name or MAC.
        node: String,
        #[command(flatten)]
        at: Where,
    },
    /// Approve a node waiting for enrollment (recorded in its timeline).
    ///
    /// Under `unknown-nodes = "enroll"` a MAC no rack lists waits as
    /// `pending` until approved with `--image`; it then boots that image on
    /// its next poll (the server need not restart). Writes the state
    /// database, which the running server shares.
    Approve {
        /// Host name or MAC.
        node: String,
        /// The image an unlisted node boots (a node listed in site.toml
        /// boots its `image` from there).
        #[arg(long, value_name = "NAME")]
        image: Option<String>,
        #[command(flatten)]
        at: Where,
    },
    /// Block a node: the attestation service refuses its nonces, quotes
    /// and enrollments from now on (`node-revoked`), also while the server
    /// runs (it reads the same database). Recorded in its timeline.
    Revoke {
        /// Host name or MAC (as the node enrolled).
        node: String,
        #[command(flatten)]
        at: Where,
    },
}

/// Which state database to read.
#[derive(Debug, clap::Args)]
pub struct Where {
    /// The site file (its `[server] database`, and node names).
    #[arg(long, value_name = "SITE.TOML", required_unless_present = "db")]
    site: Option<PathBuf>,
    /// The state database itself.
    #[arg(long, value_name = "STATE.DB")]
    db: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

struct Opened {
    site: Option<Site>,
    store: SqliteStore,
    attest: Option<SqliteAttestStore>,
}

fn open(at: &Where) -> anyhow::Result<Opened> {
    open_as(at, false)
}

/// Opens the site (when given) and the state database; `write` opens it
/// read-write (and creates it, as the server would), otherwise read-only.
fn open_as(at: &Where, write: bool) -> anyhow::Result<Opened> {
    let site = match &at.site {
        Some(path) => Some(Site::load(path).context("loading the site file")?),
        None => None,
    };
    let db = match (&at.db, &site) {
        (Some(db), _) => db.clone(),
        (None, Some(site)) => site.resolve(&site.config.server.database),
        (None, None) => anyhow::bail!("give --site or --db"),
    };
    if write {
        let store = SqliteStore::open(&db)
            .with_context(|| format!("opening the state database {}", db.display()))?;
        let attest = attest::open(&db, true)?;
        return Ok(Opened {
            site,
            store,
            attest,
        });
    }
    if !db.exists() {
        anyhow::bail!(
            "state database {} does not exist (has `ironrack serve` run?)",
            db.display()
        );
    }
    let store = SqliteStore::open_read_only(&db).context("opening the state database")?;
    let attest = attest::open(&db, false)?;
    Ok(Opened {
        site,
        store,
        attest,
    })
}

/// Runs a `nodes` subcommand.
pub fn run(command: NodesCommand) -> anyhow::Result<()> {
    match command {
        NodesCommand::List(at) => list(&at),
        NodesCommand::Show { node, at } => show(&node, &at),
        NodesCommand::Approve { node, image, at } => approve(&node, image, &at),
        NodesCommand::Revoke { node, at } => revoke(&node, &at),
    }
}

fn age(now_ms: u64, at_ms: u64) -> String {
    let s = now_ms.saturating_sub(at_ms) / 1000;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn list(at: &Where) -> anyhow::Result<()> {
    let opened = open(at)?;
    let mut nodes = opened.store.nodes().context("reading nodes")?;
    if let Some(site) = &opened.site {
        for node in site.nodes() {
            if !nodes.iter().any(|n| n.mac == node.config.mac) {
                nodes.push(NodeRecord {
                    mac: node.config.mac,
                    name: Some(node.name().to_owned()),
                    image: node.config.image.clone(),
                    state: "never-seen".into(),
                    last_event: "-".into(),
                    last_at_ms: 0,
                    first_seen_ms: 0,
                });
            }
        }
    }
    nodes.sort_by(|a, b| (&a.name, a.mac).cmp(&(&b.name, b.mac)));
    let images = opened
        .store
        .image_status()
        .context("reading image status")?;
    let attestations = nodes
        .iter()
        .map(|n| attest::find(opened.attest.as_ref(), &ids_of(n.mac, n.name.as_deref())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if at.json {
        let nodes: Vec<serde_json::Value> = nodes
            .iter()
            .zip(&attestations)
            .map(|(n, a)| {
                let mut v = serde_json::to_value(n).unwrap_or_default();
                v["attestation"] = a.as_ref().map_or(serde_json::Value::Null, |a| a.json());
                v
            })
            .collect();
        let out = serde_json::json!({ "nodes": nodes, "images": images });
        return outln!("{}", serde_json::to_string_pretty(&out)?);
    }
    let now = ironrack_pxe::inventory::now_ms();
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .zip(&attestations)
        .map(|(n, a)| {
            vec![
                n.name.clone().unwrap_or_else(|| "-".into()),
                n.mac.to_string(),
                image_cell(n, opened.site.as_ref(), &images),
                n.state.clone(),
                a.as_ref()
                    .map_or_else(|| "-".into(), attest::Attestation::cell),
                n.last_event.clone(),
                if n.last_at_ms == 0 {
                    "-".into()
                } else {
                    age(now, n.last_at_ms)
                },
            ]
        })
        .collect();
    print_table(
        &[
            "NODE",
            "MAC",
            "IMAGE",
            "STATE",
            "ATTESTATION",
            "LAST EVENT",
            "AGE",
        ],
        &rows,
    )?;
    let refused: Vec<&ImageStatus> = images.iter().filter(|i| i.status == "refused").collect();
    if !refused.is_empty() {
        outln!("")?;
        outln!("refused images (not served):")?;
        for i in refused {
            outln!(
                "  {} ({}): {}",
                i.name,
                i.dir,
                i.reason.as_deref().unwrap_or("-")
            )?;
        }
    }
    Ok(())
}

/// The image a node runs or is assigned, marked when the assigned image
/// has a refused version.
fn image_cell(node: &NodeRecord, site: Option<&Site>, images: &[ImageStatus]) -> String {
    let assigned = site
        .and_then(|s| s.node_by_mac(&node.mac))
        .and_then(|n| n.config.image.clone());
    let shown = node
        .image
        .clone()
        .or(assigned.clone())
        .unwrap_or_else(|| "-".into());
    let name = assigned.or_else(|| {
        node.image
            .as_ref()
            .map(|i| i.split('@').next().unwrap_or(i).to_owned())
    });
    let refused = name.is_some_and(|n| images.iter().any(|i| i.name == n && i.status == "refused"));
    if refused {
        format!("{shown} (refused version present)")
    } else {
        shown
    }
}

/// The ids a node may have enrolled under: its MAC, its host name.
fn ids_of(mac: MacAddr, name: Option<&str>) -> Vec<String> {
    std::iter::once(mac.to_string())
        .chain(name.map(str::to_owned))
        .collect()
}

fn print_table(header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    outln!("{}", line(header.to_vec()))?;
    for row in rows {
        outln!("{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

fn resolve(opened: &Opened, key: &str) -> anyhow::Result<MacAddr> {
    if let Ok(mac) = key.parse::<MacAddr>() {
        return Ok(mac);
    }
    if let Some(node) = opened.site.as_ref().and_then(|s| s.node_by_name(key)) {
        return Ok(node.config.mac);
    }
    let nodes = opened.store.nodes().context("reading nodes")?;
    nodes
        .into_iter()
        .find(|n| n.name.as_deref() == Some(key))
        .map(|n| n.mac)
        .with_context(|| {
            format!("no node {key:?} (give a host name the site or the inventory knows, or a MAC)")
        })
}

fn show(key: &str, at: &Where) -> anyhow::Result<()> {
    let opened = open(at)?;
    let mac = resolve(&opened, key)?;
    let record = opened.store.node(&mac).context("reading the node")?;
    let events = opened
        .store
        .events(&mac, 10_000)
        .context("reading the timeline")?;
    let name = record
        .as_ref()
        .and_then(|r| r.name.clone())
        .or_else(|| site_name(&opened, mac));
    let attestation = attest::find(opened.attest.as_ref(), &ids_of(mac, name.as_deref()))?;
    if at.json {
        let out = serde_json::json!({
            "node": record,
            "events": events,
            "attestation": attestation.as_ref().map(attest::Attestation::json),
        });
        return outln!("{}", serde_json::to_string_pretty(&out)?);
    }
    match &record {
        None => outln!("node {key} ({mac}): no event recorded yet")?,
        Some(record) => outln!(
            "node {} ({mac})  state {}  image {}",
            record.name.as_deref().unwrap_or("-"),
            record.state,
            record.image.as_deref().unwrap_or("-")
        )?,
    }
    let first = events.first().map_or(0, |e| e.at_ms);
    for e in &events {
        outln!("{}", e.timeline_line(first))?;
    }
    // A node that never enrolled has no attestation lines.
    for line in attestation.iter().flat_map(attest::Attestation::lines) {
        outln!("{line}")?;
    }
    Ok(())
}

fn site_name(opened: &Opened, mac: MacAddr) -> Option<String> {
    opened
        .site
        .as_ref()
        .and_then(|s| s.node_by_mac(&mac))
        .map(|n| n.name().to_owned())
}

/// The attestation id `key` names: as the node enrolled (its MAC or host
/// name), whichever the service knows.
fn attest_id(opened: &Opened, key: &str) -> anyhow::Result<NodeId> {
    let mut ids = vec![key.to_owned()];
    if let Ok(mac) = resolve(opened, key) {
        ids.push(mac.to_string());
        ids.extend(site_name(opened, mac));
    }
    let found = attest::find(opened.attest.as_ref(), &ids)?;
    match found {
        Some(a) => Ok(a.record.node),
        None => anyhow::bail!(
            "node {key:?} never enrolled with the attestation service (tried {})",
            ids.join(", ")
        ),
    }
}

fn revoke(key: &str, at: &Where) -> anyhow::Result<()> {
    let mut opened = open_as(at, true)?;
    let node = attest_id(&opened, key)?;
    let store = opened
        .attest
        .take()
        .context("attestation tables not opened")?;
    attest::revoke(store, &node)?;
    if let Ok(mac) = resolve(&opened, key).or_else(|_| node.as_str().parse()) {
        let event = NodeEvent {
            at_ms: ironrack_pxe::inventory::now_ms(),
            mac,
            node: site_name(&opened, mac),
            kind: "revoked".into(),
            image: None,
            detail: Some(format!("attestation revoked by the operator (node {node})")),
        };
        opened
            .store
            .record_events(&[event])
            .with_context(|| format!("recording the revocation of {node} in its timeline"))?;
    }
    if at.json {
        return outln!(
            "{}",
            serde_json::json!({ "node": node.as_str(), "state": "revoked" })
        );
    }
    outln!("{node}: revoked; its nonces, quotes and enrollments are refused from now on")
}

fn approve(key: &str, image: Option<String>, at: &Where) -> anyhow::Result<()> {
    let mut opened = open_as(at, true)?;
    let mac = resolve(&opened, key)?;
    let listed = opened.site.as_ref().and_then(|s| s.node_by_mac(&mac));
    if listed.is_none() && image.is_none() {
        tracing::warn!(%mac, "approved without --image: the node is admitted but has nothing to boot until it gets one");
    }
    let at_ms = ironrack_pxe::inventory::now_ms();
    let detail = match &image {
        Some(image) => format!("approved by the operator to boot {image}"),
        None => "approved by the operator".to_owned(),
    };
    let approval = Approval { mac, image, at_ms };
    let event = NodeEvent {
        at_ms,
        mac,
        node: listed.map(|n| n.name().to_owned()),
        kind: "approved".into(),
        image: None,
        detail: Some(detail.clone()),
    };
    opened
        .store
        .approve(&approval, &event)
        .with_context(|| format!("approving node {mac}"))?;
    // The same word admits a node whose EK has no trusted certificate.
    if let Ok(node) = attest_id(&opened, key)
        && let Some(store) = opened.attest.take()
        && attest::approve(store, &node)?
    {
        tracing::info!(%node, "pending attestation approved");
    }
    if at.json {
        return outln!("{}", serde_json::to_string_pretty(&approval)?);
    }
    outln!("{mac}: {detail}")
}
