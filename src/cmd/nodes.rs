//! `ironrack nodes list|show`: the inventory and boot timelines, read from
//! the state database directly (read-only), so they work whether or not
//! the server runs.

use std::path::PathBuf;

use anyhow::Context;
use ironrack_pxe::site::{MacAddr, Site};
use ironrack_pxe::store::{
    Approval, ImageStatus, InventoryStore, NodeEvent, NodeRecord, SqliteStore,
};

use super::outln;

/// Nodes, their state and boot timelines.
#[derive(Debug, clap::Subcommand)]
pub enum NodesCommand {
    /// One line per node: name, MAC, image, state, last event, age; then
    /// every image the server refused, with the reason.
    List(Where),
    /// A node's boot timeline (by host name or MAC).
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
        return Ok(Opened { site, store });
    }
    if !db.exists() {
        anyhow::bail!(
            "state database {} does not exist (has `ironrack serve` run?)",
            db.display()
        );
    }
    let store = SqliteStore::open_read_only(&db).context("opening the state database")?;
    Ok(Opened { site, store })
}

/// Runs a `nodes` subcommand.
pub fn run(command: NodesCommand) -> anyhow::Result<()> {
    match command {
        NodesCommand::List(at) => list(&at),
        NodesCommand::Show { node, at } => show(&node, &at),
        NodesCommand::Approve { node, image, at } => approve(&node, image, &at),
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
    if at.json {
        let out = serde_json::json!({ "nodes": nodes, "images": images });
        return outln!("{}", serde_json::to_string_pretty(&out)?);
    }
    let now = ironrack_pxe::inventory::now_ms();
    let rows: Vec<[String; 6]> = nodes
        .iter()
        .map(|n| {
            [
                n.name.clone().unwrap_or_else(|| "-".into()),
                n.mac.to_string(),
                image_cell(n, opened.site.as_ref(), &images),
                n.state.clone(),
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
        &["NODE", "MAC", "IMAGE", "STATE", "LAST EVENT", "AGE"],
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

fn print_table(header: &[&str; 6], rows: &[[String; 6]]) -> anyhow::Result<()> {
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
    if at.json {
        let out = serde_json::json!({ "node": record, "events": events });
        return outln!("{}", serde_json::to_string_pretty(&out)?);
    }
    let Some(record) = record else {
        return outln!("node {key} ({mac}): no event recorded yet");
    };
    outln!(
        "node {} ({mac})  state {}  image {}",
        record.name.as_deref().unwrap_or("-"),
        record.state,
        record.image.as_deref().unwrap_or("-")
    )?;
    let first = events.first().map_or(0, |e| e.at_ms);
    for e in &events {
        outln!("{}", e.timeline_line(first))?;
    }
    Ok(())
}

fn approve(key: &str, image: Option<String>, at: &Where) -> anyhow::Result<()> {
    let opened = open_as(at, true)?;
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
    if at.json {
        return outln!("{}", serde_json::to_string_pretty(&approval)?);
    }
    outln!("{mac}: {detail}")
}
