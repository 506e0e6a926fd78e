//! Request dispatch and the script and artifact handlers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::body::{ArtifactBody, HttpBody};
use super::metrics::Route;
use super::range::{self, ByteRange};
use super::script::{self, INITRD, KERNEL, UKI};
use super::{HttpState, Shared, api, attest};
use crate::images::{Image, VerifiedArtifact};
use crate::site::{MacAddr, UnknownNodePolicy};

type Reply = Response<HttpBody>;

/// Entry point of every request.
pub(super) async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Reply, Infallible> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let (route, reply) = if let Some(route) = attest::route_of(&path) {
        // The only routes with a request body (and POST): they take it.
        (route, attest::reply(&shared, peer, route, req).await)
    } else if method != Method::GET && method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        (route_of(&path), r)
    } else {
        let route = route_of(&path);
        (route, dispatch(&shared, peer, &req, route, &path).await)
    };
    shared.metrics.response(route, reply.status().as_u16());
    tracing::debug!(%peer, %method, path = %path, status = reply.status().as_u16(), "http request");
    Ok(reply)
}

fn route_of(path: &str) -> Route {
    if path.starts_with("/boot/") {
        Route::Script
    } else if path.starts_with("/images/") {
        Route::Artifact
    } else if path.starts_with("/ipxe/") {
        Route::Ipxe
    } else if path.starts_with("/api/") {
        Route::Api
    } else if path == "/metrics" {
        Route::Metrics
    } else {
        Route::Other
    }
}

async fn dispatch(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    req: &Request<Incoming>,
    route: Route,
    path: &str,
) -> Reply {
    let state = shared.current();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (route, parts.as_slice()) {
        (Route::Script, ["boot", file]) => {
            match file.strip_suffix(".ipxe").map(str::parse::<MacAddr>) {
                Some(Ok(mac)) => script_reply(shared, &state, peer, mac, attempt(req)).await,
                _ => text(StatusCode::BAD_REQUEST, "expected /boot/<mac>.ipxe\n"),
            }
        }
        (Route::Artifact, ["images", name, version, file]) => {
            artifact_reply(shared, &state, peer, req, name, version, file)
        }
        (Route::Ipxe, ["ipxe", file]) => match state.ipxe.get(file) {
            Some(binary) => {
                let artifact = Arc::new(VerifiedArtifact::from_memory(
                    &binary.name,
                    binary.bytes.clone(),
                    binary.sha256,
                    state.ipxe.deb.join(&binary.name),
                ));
                serve(shared, peer, req, artifact, Route::Ipxe, "ipxe-http", None)
            }
            None => text(StatusCode::NOT_FOUND, &format!("no iPXE binary {file}\n")),
        },
        (Route::Api, _) => api::reply(shared, &state, &parts[1..]).await,
        (Route::Metrics, _) => {
            let images = state.images.images().count() as u64;
            let refused = state.images.refused().len() as u64;
            let body = shared.metrics.render(
                &shared.inventory.counts(),
                &[
                    (
                        "ironrack_images_verified",
                        "Image versions verified and served.",
                        images,
                    ),
                    (
                        "ironrack_images_refused",
                        "Image directories refused (not served).",
                        refused,
                    ),
                    (
                        "ironrack_unattributed_requests",
                        "Transfers from an address no node was seen at.",
                        shared.inventory.unattributed(),
                    ),
                ],
            );
            let mut r = Response::new(HttpBody::full(body));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

pub(super) fn text(status: StatusCode, body: &str) -> Reply {
    let mut r = Response::new(HttpBody::full(Bytes::copy_from_slice(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn attempt(req: &Request<Incoming>) -> u32 {
    req.uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("attempt="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0u32)
        .min(1000)
}

/// What a node's script does.
enum Decision {
    Boot(Arc<Image>),
    /// Wait and poll: event kind and reason.
    Wait(&'static str, String),
    Ignore,
}

/// What a node is to boot: from its `[[rack.node]]` entry, or from an
/// operator's approval of an unknown node.
struct Assignment {
    /// How messages name the node.
    who: String,
    image: String,
    pinned: Option<u64>,
    force: bool,
}

/// Runs a store query off the async workers; a failure becomes the
/// `failed` decision with its reason.
async fn blocking<T: Send + 'static>(
    shared: &Arc<Shared>,
    query: impl FnOnce(&dyn crate::store::InventoryStore) -> Result<T, crate::store::StoreError>
    + Send
    + 'static,
) -> Result<T, Decision> {
    let store = Arc::clone(&shared.store);
    match tokio::task::spawn_blocking(move || query(store.inventory())).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Decision::Wait("failed", format!("state database: {e}"))),
        Err(e) => Err(Decision::Wait(
            "failed",
            format!("state database task: {e}"),
        )),
    }
}

async fn decide(shared: &Arc<Shared>, state: &HttpState, mac: MacAddr) -> Decision {
    let assignment = match state.site.node_by_mac(&mac) {
        Some(node) => match node.config.image.clone() {
            Some(image) => Assignment {
                who: node.name().to_owned(),
                image,
                pinned: node.config.version,
                force: node.config.force_version,
            },
            None => {
                return Decision::Wait(
                    "waiting",
                    format!("node {} has no image assigned in site.toml", node.name()),
                );
            }
        },
        None => match unknown_node(shared, state, mac).await {
            Ok(assignment) => assignment,
            Err(decision) => return decision,
        },
    };
    match choose_image(shared, state, mac, &assignment).await {
        Ok(image) => Decision::Boot(image),
        Err(decision) => decision,
    }
}

/// A MAC no rack lists: ignored, pending, or (enroll, once an operator
/// approved it with an image) booted like a listed node.
async fn unknown_node(
    shared: &Arc<Shared>,
    state: &HttpState,
    mac: MacAddr,
) -> Result<Assignment, Decision> {
    let policy = state.site.config.server.unknown_nodes;
    if policy == UnknownNodePolicy::Ignore {
        return Err(Decision::Ignore);
    }
    let pending = |name: &str| {
        Decision::Wait(
            "pending",
            format!(
                "unknown node {mac} is pending (unknown-nodes = {name}): list it in site.toml, or `ironrack nodes approve {mac} --image NAME`, to boot it"
            ),
        )
    };
    if policy == UnknownNodePolicy::Discover {
        return Err(pending("discover"));
    }
    let approval = blocking(shared, move |store| store.approval(&mac)).await?;
    match approval {
        None => Err(pending("enroll")),
        Some(a) => match a.image {
            Some(image) => Ok(Assignment {
                who: mac.to_string(),
                image,
                pinned: None,
                force: false,
            }),
            None => Err(Decision::Wait(
                "waiting",
                format!(
                    "node {mac} is approved but has no image: `ironrack nodes approve {mac} --image NAME` or list it in site.toml"
                ),
            )),
        },
    }
}

/// The verified image the assignment names, bootable and not a rollback.
async fn choose_image(
    shared: &Arc<Shared>,
    state: &HttpState,
    mac: MacAddr,
    a: &Assignment,
) -> Result<Arc<Image>, Decision> {
    let name = &a.image;
    let chosen = match a.pinned {
        Some(v) => state.images.get(name, v),
        None => state.images.latest(name),
    };
    let wanted = a.pinned.map_or(name.clone(), |v| format!("{name}@{v}"));
    let Some(image) = chosen.cloned() else {
        let why = state
            .images
            .refusals_of(name)
            .filter(|r| a.pinned.is_none() || r.version == a.pinned)
            .map(|r| r.reason.clone())
            .last();
        return Err(Decision::Wait(
            "refused",
            match why {
                Some(why) => format!("image {wanted} is not served: {why}"),
                None => format!("no verified image {wanted} in the image store"),
            },
        ));
    };
    if image.artifact(UKI).is_none()
        && (image.artifact(KERNEL).is_none() || image.artifact(INITRD).is_none())
    {
        return Err(Decision::Wait(
            "refused",
            format!(
                "image {} has neither {UKI} nor {KERNEL} + {INITRD}",
                image.label()
            ),
        ));
    }
    let image_name = name.clone();
    let highest = blocking(shared, move |store| store.highest_served(&mac, &image_name)).await?;
    if let Some(h) = highest
        && image.version < h
        && !(a.force && a.pinned == Some(image.version))
    {
        return Err(Decision::Wait(
            "refused",
            format!(
                "rollback refused: {} is older than version {h} already served to node {}; set force-version = true on the node to allow it",
                image.label(),
                a.who
            ),
        ));
    }
    Ok(image)
}

async fn script_reply(
    shared: &Arc<Shared>,
    state: &HttpState,
    peer: SocketAddr,
    mac: MacAddr,
    attempt: u32,
) -> Reply {
    shared.inventory.learn(peer.ip(), mac);
    let base = state.site.http_base();
    let delay = shared.config.retry_delay(attempt);
    let body = match decide(shared, state, mac).await {
        Decision::Boot(image) => {
            let store = Arc::clone(&shared.store);
            let (name, version) = (image.name.clone(), image.version);
            let served = tokio::task::spawn_blocking(move || {
                store.inventory().record_served(&mac, &name, version)
            })
            .await;
            let failure = match served {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(e) = failure {
                // Without the record a later rollback could go unnoticed:
                // do not boot on it.
                tracing::error!(%mac, error = %e, "recording the version served failed; node told to wait");
                shared.inventory.record(mac, "failed", None, Some(e));
                return text(
                    StatusCode::OK,
                    &script::wait_script(base, &mac, attempt, delay, "server state database error"),
                );
            }
            tracing::info!(%mac, %peer, image = %image.label(), attempt, "iPXE script served");
            shared.inventory.record(
                mac,
                "script",
                Some(image.label()),
                Some(format!("attempt {attempt} from {}", peer.ip())),
            );
            script::boot_script(&image, base, &mac, attempt, delay)
        }
        Decision::Wait(kind, why) => {
            tracing::warn!(%mac, %peer, reason = %why, attempt, "node told to wait");
            shared.inventory.record(mac, kind, None, Some(why.clone()));
            script::wait_script(base, &mac, attempt, delay, &why)
        }
        Decision::Ignore => {
            tracing::info!(%mac, %peer, "unknown node ignored (unknown-nodes = ignore)");
            script::ignore_script(&mac)
        }
    };
    text(StatusCode::OK, &body)
}

fn event_kind(artifact: &str) -> &'static str {
    match artifact {
        KERNEL => "kernel",
        INITRD => "initrd",
        UKI => "uki",
        n if n.starts_with("rootfs") => "rootfs",
        _ => "artifact",
    }
}

fn artifact_reply(
    shared: &Arc<Shared>,
    state: &HttpState,
    peer: SocketAddr,
    req: &Request<Incoming>,
    name: &str,
    version: &str,
    file: &str,
) -> Reply {
    let found = version
        .parse::<u64>()
        .ok()
        .and_then(|v| state.images.get(name, v))
        .and_then(|image| image.served_file(file).map(|a| (image, a)));
    match found {
        Some((image, artifact)) => serve(
            shared,
            peer,
            req,
            Arc::clone(artifact),
            Route::Artifact,
            event_kind(file),
            Some(image.label()),
        ),
        None => {
            let why = state
                .images
                .refusals_of(name)
                .find(|r| Some(version) == r.version.map(|v| v.to_string()).as_deref())
                .map_or_else(
                    || "no such verified artifact".to_owned(),
                    |r| format!("image refused: {}", r.reason),
                );
            text(
                StatusCode::NOT_FOUND,
                &format!("{name}/{version}/{file}: {why}\n"),
            )
        }
    }
}

/// GET/HEAD of a verified artifact: ETag, If-None-Match, Range.
fn serve(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    req: &Request<Incoming>,
    artifact: Arc<VerifiedArtifact>,
    route: Route,
    kind: &'static str,
    image: Option<String>,
) -> Reply {
    let size = artifact.size;
    let etag = format!("\"{}\"", artifact.sha256);
    let mut builder = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, "application/octet-stream");
    if let Some(inm) = req.headers().get(header::IF_NONE_MATCH)
        && etag_matches(inm.as_bytes(), &etag)
    {
        return respond(builder.status(StatusCode::NOT_MODIFIED), HttpBody::Empty);
    }
    let if_range_ok = req
        .headers()
        .get(header::IF_RANGE)
        .is_none_or(|v| v.as_bytes() == etag.as_bytes());
    let range = match req.headers().get(header::RANGE).filter(|_| if_range_ok) {
        None => ByteRange {
            start: 0,
            end: size,
        },
        Some(value) => match range::parse(value.as_bytes(), size) {
            Ok(r) => {
                builder = builder.status(StatusCode::PARTIAL_CONTENT).header(
                    header::CONTENT_RANGE,
                    format!("bytes {}-{}/{size}", r.start, r.end - 1),
                );
                r
            }
            Err(why) => {
                shared.metrics.range_refused();
                tracing::warn!(%peer, artifact = %artifact.name, range = %String::from_utf8_lossy(value.as_bytes()), reason = %why, "range refused (416)");
                return respond(
                    builder
                        .status(StatusCode::RANGE_NOT_SATISFIABLE)
                        .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                        .header(header::CONTENT_LENGTH, 0),
                    HttpBody::Empty,
                );
            }
        },
    };
    builder = builder.header(header::CONTENT_LENGTH, range.end - range.start);
    if req.method() == Method::HEAD || range.start == range.end {
        return respond(builder, HttpBody::Empty);
    }
    let on_complete: Option<super::body::OnComplete> = (range.end == size).then(|| {
        let inventory = Arc::clone(&shared.inventory);
        let name = artifact.name.clone();
        let detail = format!("{name} ({size} bytes) to {}", peer.ip());
        Box::new(move || {
            if let Some(mac) = inventory.mac_at(peer.ip()) {
                inventory.record(mac, kind, image, Some(detail));
            }
        }) as super::body::OnComplete
    });
    let body = ArtifactBody::new(
        artifact,
        route,
        range.start,
        range.end,
        Arc::clone(&shared.metrics),
        on_complete,
    );
    respond(builder, HttpBody::Artifact(Box::new(body)))
}

fn etag_matches(header: &[u8], etag: &str) -> bool {
    let Ok(text) = std::str::from_utf8(header) else {
        return false;
    };
    text.split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

fn respond(builder: http::response::Builder, body: HttpBody) -> Reply {
    builder.body(body).unwrap_or_else(|e| {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("building response: {e}\n"),
        )
    })
}
