//! The JSON API: nodes, their timelines, images (with the reason of every
//! refusal) and the iPXE binaries.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use serde::Serialize;

use super::body::HttpBody;
use super::routes::text;
use super::{HttpState, Shared};
use crate::inventory::now_ms;
use crate::site::{MacAddr, Site};
use crate::store::NodeRecord;

/// Events returned by `/api/nodes/<..>/events` at most.
const EVENT_LIMIT: usize = 1000;

type Reply = Response<HttpBody>;

fn json(value: &impl Serialize) -> Reply {
    match serde_json::to_vec_pretty(value) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            let mut r = Response::new(HttpBody::full(Bytes::from(bytes)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("encoding JSON: {e}\n"),
        ),
    }
}

/// A node as the API shows it: inventory record merged with the site entry.
#[derive(Debug, Serialize)]
pub struct NodeView {
    mac: MacAddr,
    name: Option<String>,
    rack: Option<String>,
    /// Image assigned in site.toml (`name` or `name@version`).
    assigned: Option<String>,
    /// Image last served (`name@version`).
    image: Option<String>,
    state: String,
    last_event: Option<String>,
    last_at_ms: Option<u64>,
    age_seconds: Option<u64>,
    /// Why the assigned image cannot be served, when it cannot.
    image_problem: Option<String>,
}

fn view(site: &Site, state: &HttpState, mac: MacAddr, record: Option<&NodeRecord>) -> NodeView {
    let node = site.node_by_mac(&mac);
    let assigned = node.and_then(|n| {
        n.config.image.as_ref().map(|i| match n.config.version {
            Some(v) => format!("{i}@{v}"),
            None => i.clone(),
        })
    });
    let image_problem = node.and_then(|n| {
        let name = n.config.image.as_ref()?;
        let ok = match n.config.version {
            Some(v) => state.images.get(name, v).is_some(),
            None => state.images.latest(name).is_some(),
        };
        let refusals: Vec<String> = state
            .images
            .refusals_of(name)
            .map(|r| format!("{}: {}", r.dir.display(), r.reason))
            .collect();
        match (ok, refusals.is_empty()) {
            (true, true) => None,
            (true, false) => Some(format!("other versions refused: {}", refusals.join("; "))),
            (false, true) => Some(format!("no verified image {name}")),
            (false, false) => Some(format!("not served: {}", refusals.join("; "))),
        }
    });
    let now = now_ms();
    NodeView {
        mac,
        name: record
            .and_then(|r| r.name.clone())
            .or_else(|| node.map(|n| n.name().to_owned())),
        rack: node.map(|n| n.rack.clone()),
        assigned,
        image: record.and_then(|r| r.image.clone()),
        state: record.map_or_else(|| "never-seen".to_owned(), |r| r.state.clone()),
        last_event: record.map(|r| r.last_event.clone()),
        last_at_ms: record.map(|r| r.last_at_ms),
        age_seconds: record.map(|r| now.saturating_sub(r.last_at_ms) / 1000),
        image_problem,
    }
}

pub(super) async fn reply(shared: &Arc<Shared>, state: &Arc<HttpState>, parts: &[&str]) -> Reply {
    match parts {
        ["nodes"] => nodes(shared, state).await,
        ["nodes", key] => match resolve(shared, state, key).await {
            Some(mac) => node(shared, state, mac).await,
            None => text(StatusCode::NOT_FOUND, &format!("no node {key}\n")),
        },
        ["nodes", key, "events"] => match resolve(shared, state, key).await {
            Some(mac) => events(shared, mac).await,
            None => text(StatusCode::NOT_FOUND, &format!("no node {key}\n")),
        },
        ["images"] => json(&images(state)),
        _ => text(StatusCode::NOT_FOUND, "unknown API path\n"),
    }
}

async fn blocking<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&dyn crate::store::Store) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, String> {
    let store = Arc::clone(&shared.store);
    match tokio::task::spawn_blocking(move || f(&*store)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

async fn resolve(shared: &Arc<Shared>, state: &HttpState, key: &str) -> Option<MacAddr> {
    if let Ok(mac) = key.parse::<MacAddr>() {
        return Some(mac);
    }
    if let Some(node) = state.site.node_by_name(key) {
        return Some(node.config.mac);
    }
    let key = key.to_owned();
    blocking(shared, move |s| s.inventory().nodes())
        .await
        .ok()?
        .into_iter()
        .find(|n| n.name.as_deref() == Some(key.as_str()))
        .map(|n| n.mac)
}

async fn nodes(shared: &Arc<Shared>, state: &HttpState) -> Reply {
    let records = match blocking(shared, |s| s.inventory().nodes()).await {
        Ok(r) => r,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
    };
    let mut out: Vec<NodeView> = records
        .iter()
        .map(|r| view(&state.site, state, r.mac, Some(r)))
        .collect();
    for node in state.site.nodes() {
        if !records.iter().any(|r| r.mac == node.config.mac) {
            out.push(view(&state.site, state, node.config.mac, None));
        }
    }
    out.sort_by(|a, b| (&a.name, a.mac).cmp(&(&b.name, b.mac)));
    json(&serde_json::json!({ "nodes": out }))
}

async fn node(shared: &Arc<Shared>, state: &HttpState, mac: MacAddr) -> Reply {
    let record = match blocking(shared, move |s| s.inventory().node(&mac)).await {
        Ok(r) => r,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
    };
    let config = state.site.node_by_mac(&mac).map(|n| {
        serde_json::json!({
            "rack": n.rack, "hostname": n.config.hostname, "ip": n.config.ip,
            "image": n.config.image, "version": n.config.version,
            "force-version": n.config.force_version, "profile": n.config.profile,
        })
    });
    if record.is_none() && config.is_none() {
        return text(StatusCode::NOT_FOUND, &format!("no node {mac}\n"));
    }
    json(&serde_json::json!({
        "node": view(&state.site, state, mac, record.as_ref()),
        "site": config,
    }))
}

async fn events(shared: &Arc<Shared>, mac: MacAddr) -> Reply {
    match blocking(shared, move |s| s.inventory().events(&mac, EVENT_LIMIT)).await {
        Ok(events) => json(&serde_json::json!({ "mac": mac, "events": events })),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
    }
}

/// `/api/images`.
fn images(state: &HttpState) -> serde_json::Value {
    let verified: Vec<serde_json::Value> = state
        .images
        .images()
        .map(|i| {
            let artifacts: Vec<serde_json::Value> = i
                .artifacts
                .values()
                .map(|a| serde_json::json!({
                    "name": a.name, "size": a.size, "sha256": a.sha256.to_string(), "in-memory": a.in_memory(),
                }))
                .collect();
            serde_json::json!({
                "name": i.name, "version": i.version, "channel": i.channel, "status": "verified",
                "dir": i.dir, "signer": i.signer, "key-id": i.key_id,
                "manifest-sha256": i.manifest_sha256.to_string(), "cmdline": i.cmdline,
                "boot-cmdline": super::script::boot_cmdline(i, state.site.http_base()),
                "uki-load-options": super::script::uki_load_options(i, state.site.http_base()),
                "artifacts": artifacts,
            })
        })
        .collect();
    let refused: Vec<serde_json::Value> = state
        .images
        .refused()
        .iter()
        .map(|r| serde_json::json!({
            "name": r.name, "version": r.version, "status": "refused", "dir": r.dir, "reason": r.reason,
        }))
        .collect();
    let ipxe: Vec<serde_json::Value> = state
        .ipxe
        .files
        .values()
        .map(|b| {
            serde_json::json!({
                "name": b.name, "size": b.bytes.len(), "sha256": b.sha256.to_string(),
                "authenticode-sha256": b.authenticode_sha256,
            })
        })
        .collect();
    serde_json::json!({
        "images": verified,
        "refused": refused,
        "ipxe": { "deb": state.ipxe.deb, "version": state.ipxe.version, "files": ipxe },
    })
}
