//! The attestation endpoints (see [`crate::attest::protocol`] for the
//! messages): the only routes that take a request body.
//!
//! | request | answer |
//! | --- | --- |
//! | `POST /attest/enroll`, `/attest/activate`, `/attest/quote` (JSON body) | JSON [`Response`] |
//! | `GET /attest/nonce?node=ID` | JSON [`Response::Nonce`] |
//!
//! 200 an answer, 403 a refusal, 400 a body or query that does not decode
//! (or a field the service finds malformed: code `malformed`), 413 a body
//! over [`MAX_BODY`], 405 another method, 500 the state database failed
//! (the agent retries). Every error body is a refusal verdict too, so a
//! client reads one JSON shape whatever happened.
//!
//! The service is synchronous (SQLite, RSA): it runs on the blocking pool.
//! Each verdict also goes into the node's boot timeline (the inventory),
//! where `ironrack nodes` and the lab display read it.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::{Body, Incoming};

use super::Shared;
use super::body::HttpBody;
use super::metrics::Route;
use crate::attest::protocol::{
    self, ActivateRequest, BootReport, EnrollRequest, MAX_BODY, NodeId, NonceRequest,
    ProtocolError, QuoteSubmission, Request as AttestRequest, Response as AttestResponse, Verdict,
};
use crate::attest::service::BootChain;
use crate::site::MacAddr;

type Reply = Response<HttpBody>;

/// The metrics label of an attestation path; `None` for other paths.
pub(super) fn route_of(path: &str) -> Option<Route> {
    Some(match path {
        "/attest/enroll" => Route::AttestEnroll,
        "/attest/activate" => Route::AttestActivate,
        "/attest/nonce" => Route::AttestNonce,
        "/attest/quote" => Route::AttestQuote,
        "/attest/report" => Route::AttestReport,
        _ => return None,
    })
}

/// Answers one attestation request.
pub(super) async fn reply(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    route: Route,
    req: Request<Incoming>,
) -> Reply {
    let Some(service) = shared.attest() else {
        return refusal(
            StatusCode::NOT_FOUND,
            "attestation-disabled",
            "this server runs no attestation service",
        );
    };
    let allowed = if route == Route::AttestNonce {
        Method::GET
    } else {
        Method::POST
    };
    if req.method() != allowed {
        let mut r = refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            "malformed",
            &format!("{} takes {allowed} only", req.uri().path()),
        );
        r.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static(if route == Route::AttestNonce {
                "GET"
            } else {
                "POST"
            }),
        );
        return r;
    }
    let request = match decode(route, req).await {
        Ok(request) => request,
        Err(Undecoded::TooLarge(e)) => return answer(StatusCode::PAYLOAD_TOO_LARGE, &e.response()),
        Err(Undecoded::Malformed(e)) => {
            tracing::warn!(%peer, path = ?route, error = %e, "attestation request malformed");
            return answer(StatusCode::BAD_REQUEST, &e.response());
        }
        Err(Undecoded::Body(e)) => {
            tracing::warn!(%peer, error = %e, "reading an attestation request body");
            return refusal(StatusCode::BAD_REQUEST, "malformed", &format!("body: {e}"));
        }
    };
    let node = node_of(&request).clone();
    let reported = match &request {
        AttestRequest::Report(r) => Some((r.failed, format!("{}: {}", r.stage, r.detail))),
        _ => None,
    };
    let handled = tokio::task::spawn_blocking(move || service.handle(&request)).await;
    let response = match handled {
        Ok(Ok(response)) => response,
        // Only server-side failures are errors (store, random source).
        Ok(Err(e)) => return server_error(&node, &e.to_string()),
        Err(e) => return server_error(&node, &format!("attestation task: {e}")),
    };
    record(shared, peer, &node, &response, reported);
    let status = match &response {
        AttestResponse::Verdict(Verdict::Refused { code, .. }) if code == "malformed" => {
            StatusCode::BAD_REQUEST
        }
        r if r.is_refusal() => StatusCode::FORBIDDEN,
        _ => StatusCode::OK,
    };
    answer(status, &response)
}

fn server_error(node: &NodeId, why: &str) -> Reply {
    tracing::error!(%node, error = %why, "attestation service failed; the node will retry");
    refusal(StatusCode::INTERNAL_SERVER_ERROR, "server-error", why)
}

enum Undecoded {
    TooLarge(ProtocolError),
    Malformed(ProtocolError),
    Body(hyper::Error),
}

fn node_of(request: &AttestRequest) -> &NodeId {
    match request {
        AttestRequest::Enroll(r) => &r.node,
        AttestRequest::Activate(r) => &r.node,
        AttestRequest::Nonce(r) => &r.node,
        AttestRequest::Quote(r) => &r.node,
        AttestRequest::Report(r) => &r.node,
    }
}

async fn decode(route: Route, req: Request<Incoming>) -> Result<AttestRequest, Undecoded> {
    if route == Route::AttestNonce {
        let query = req.uri().query().unwrap_or("");
        return NonceRequest::from_query(query)
            .map(AttestRequest::Nonce)
            .map_err(Undecoded::Malformed);
    }
    let what = match route {
        Route::AttestEnroll => "enrollment",
        Route::AttestActivate => "activation",
        Route::AttestReport => "failure report",
        _ => "quote submission",
    };
    let body = read_capped(req.into_body(), what).await?;
    let malformed = Undecoded::Malformed;
    Ok(match route {
        Route::AttestEnroll => AttestRequest::Enroll(
            protocol::decode::<EnrollRequest>(what, &body).map_err(malformed)?,
        ),
        Route::AttestActivate => AttestRequest::Activate(
            protocol::decode::<ActivateRequest>(what, &body).map_err(malformed)?,
        ),
        Route::AttestReport => {
            AttestRequest::Report(protocol::decode::<BootReport>(what, &body).map_err(malformed)?)
        }
        _ => AttestRequest::Quote(Box::new(
            protocol::decode::<QuoteSubmission>(what, &body).map_err(malformed)?,
        )),
    })
}

/// The request body, refused as soon as it passes [`MAX_BODY`] (by its
/// Content-Length or by what arrived), never buffered past it.
async fn read_capped(mut body: Incoming, what: &'static str) -> Result<Vec<u8>, Undecoded> {
    let too_large = |len: usize| Undecoded::TooLarge(ProtocolError::TooLarge { what, len });
    if let Some(len) = body.size_hint().exact()
        && len > MAX_BODY as u64
    {
        return Err(too_large(usize::try_from(len).unwrap_or(usize::MAX)));
    }
    let mut out = Vec::new();
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        match frame {
            None => return Ok(out),
            Some(Err(e)) => return Err(Undecoded::Body(e)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if out.len() + data.len() > MAX_BODY {
                        return Err(too_large(out.len() + data.len()));
                    }
                    out.extend_from_slice(&data);
                }
            }
        }
    }
}

/// The verdict in the node's boot timeline: `enrolled`, `pending`,
/// `attested` or `refused` (with its code and reason). Challenges and
/// nonces are steps, not verdicts, and are not recorded.
fn record(
    shared: &Shared,
    peer: SocketAddr,
    node: &NodeId,
    response: &AttestResponse,
    reported: Option<(bool, String)>,
) {
    let Some(mac) = mac_of(shared, peer, node) else {
        tracing::warn!(%node, %peer, "attestation message from a node with no known MAC: not in any boot timeline");
        return;
    };
    let verdict = match response {
        AttestResponse::Verdict(verdict) => verdict,
        AttestResponse::Noted { .. } => {
            if let Some((failed, detail)) = reported {
                let kind = if failed { "agent-failed" } else { "running" };
                shared.inventory.record(mac, kind, None, Some(detail));
            }
            return;
        }
        _ => return,
    };
    let (kind, image, detail) = match verdict {
        Verdict::Enrolled { .. } => ("enrolled", None, format!("node {node} enrolled")),
        Verdict::Attested { image, secret, .. } => (
            "attested",
            Some(format!("{}@{}", image.name, image.version)),
            format!(
                "quote of node {node} verified against the signed manifest{}{}",
                match shared.current().site.profile_of(node.as_str()) {
                    Some(p) if p.boot_chain == BootChain::Bios => {
                        " (boot-chain bios: kernel and initramfs not measured by the firmware)"
                    }
                    _ => "",
                },
                if secret.is_some() {
                    "; secret released, sealed to its TPM"
                } else {
                    ""
                }
            ),
        ),
        Verdict::Pending { reason, .. } => ("pending", None, reason.clone()),
        Verdict::Refused { code, reason } => ("refused", None, format!("{code}: {reason}")),
    };
    shared.inventory.record(mac, kind, image, Some(detail));
}

/// The boot MAC behind a node id: the id itself, the site's node of that
/// host name, or the MAC last seen at the peer's address.
fn mac_of(shared: &Shared, peer: SocketAddr, node: &NodeId) -> Option<MacAddr> {
    if let Ok(mac) = node.as_str().parse::<MacAddr>() {
        return Some(mac);
    }
    let site = Arc::clone(&shared.current().site);
    if let Some(n) = site.node_by_name(node.as_str()) {
        return Some(n.config.mac);
    }
    shared.inventory.mac_at(peer.ip())
}

fn answer(status: StatusCode, response: &AttestResponse) -> Reply {
    let mut r = Response::new(HttpBody::full(Bytes::from(protocol::encode(response))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn refusal(status: StatusCode, code: &str, reason: &str) -> Reply {
    answer(
        status,
        &AttestResponse::Verdict(Verdict::Refused {
            code: code.to_owned(),
            reason: reason.to_owned(),
        }),
    )
}
