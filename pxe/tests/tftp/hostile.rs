//! Hostile and broken input from raw UDP sockets: each is refused with an
//! ERROR packet (or dropped) and a logged reason, and the server keeps
//! serving.

use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::time::Duration;

use ironrack_pxe::net::tftp::client::{FetchOptions, fetch};
use ironrack_pxe::net::tftp::packet::{ErrorCode, Mode, Packet, Request};
use ironrack_pxe::net::tftp::{NameError, OpenError, RefusalReason, TransferEvent};
use tokio::net::UdpSocket;

use crate::support::{Harness, content, logs};

/// A client socket that speaks raw bytes.
pub struct Raw {
    socket: UdpSocket,
}

impl Raw {
    pub async fn on(ip: &str) -> Self {
        Self {
            socket: UdpSocket::bind((ip, 0)).await.unwrap(),
        }
    }

    pub async fn new() -> Self {
        Self::on("127.0.0.1").await
    }

    pub async fn send(&self, to: SocketAddr, bytes: &[u8]) {
        self.socket.send_to(bytes, to).await.unwrap();
    }

    /// The next datagram, or `None` after `wait`.
    pub async fn recv_within(&self, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
        let mut buf = vec![0u8; 70_000];
        let (len, from) = tokio::time::timeout(wait, self.socket.recv_from(&mut buf))
            .await
            .ok()?
            .unwrap();
        buf.truncate(len);
        Some((buf, from))
    }

    pub async fn recv(&self) -> (Vec<u8>, SocketAddr) {
        self.recv_within(Duration::from_secs(10))
            .await
            .expect("no reply within 10 s")
    }

    /// Sends `bytes` and expects an ERROR packet back.
    pub async fn expect_error(&self, to: SocketAddr, bytes: &[u8]) -> (ErrorCode, String) {
        self.send(to, bytes).await;
        let (reply, _) = self.recv().await;
        match Packet::parse(&reply).unwrap() {
            Packet::Error { code, message } => (code, message),
            other => panic!("expected an ERROR, got {other:?}"),
        }
    }
}

pub fn rrq(name: &str, options: &[(&str, &str)]) -> Vec<u8> {
    Packet::Rrq(Request {
        filename: name.to_owned(),
        mode: Mode::Octet,
        options: options
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
    })
    .to_bytes()
}

fn ack(block: u16) -> Vec<u8> {
    Packet::Ack { block }.to_bytes()
}

async fn refused(harness: &mut Harness) -> (Option<String>, RefusalReason) {
    match harness.next_outcome().await {
        TransferEvent::Refused { file, reason, .. } => (file, reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_refused_with_a_logged_reason() {
    let mut h = Harness::start().await;
    std::fs::write(h.outside.path().join("secret"), b"outside").unwrap();
    symlink("../secret", h.root.join("link-out")).unwrap();
    symlink(h.outside.path().join("secret"), h.root.join("link-abs")).unwrap();
    h.put("good", &content(3000, 1));
    let raw = Raw::new().await;
    let addr = h.addr;

    // Path traversal.
    let (code, message) = raw.expect_error(addr, &rrq("../secret", &[])).await;
    assert_eq!(code, ErrorCode::ACCESS_VIOLATION, "{message}");
    let (_, reason) = refused(&mut h).await;
    assert!(matches!(
        reason,
        RefusalReason::BadName(NameError::ParentComponent { .. })
    ));
    let (code, _) = raw.expect_error(addr, &rrq("sub/../../secret", &[])).await;
    assert_eq!(code, ErrorCode::ACCESS_VIOLATION);
    refused(&mut h).await;

    // An absolute name is looked up inside the tree, never at the host's /.
    let (code, _) = raw.expect_error(addr, &rrq("/etc/passwd", &[])).await;
    assert_eq!(code, ErrorCode::FILE_NOT_FOUND);
    let (_, reason) = refused(&mut h).await;
    assert!(matches!(
        reason,
        RefusalReason::Open(OpenError::NotFound { .. })
    ));

    // Symlinks out of the tree, relative and absolute.
    for link in ["link-out", "/link-abs"] {
        let (code, _) = raw.expect_error(addr, &rrq(link, &[])).await;
        assert_eq!(code, ErrorCode::ACCESS_VIOLATION, "{link}");
        let (_, reason) = refused(&mut h).await;
        assert!(
            matches!(reason, RefusalReason::Open(OpenError::EscapesRoot { .. })),
            "{link}"
        );
    }

    // Write request: refused, nothing written.
    let wrq = Packet::Wrq(Request {
        filename: "planted".into(),
        mode: Mode::Octet,
        options: vec![],
    })
    .to_bytes();
    let (code, _) = raw.expect_error(addr, &wrq).await;
    assert_eq!(code, ErrorCode::ACCESS_VIOLATION);
    assert!(matches!(
        refused(&mut h).await.1,
        RefusalReason::WriteRequest
    ));
    assert!(!h.root.join("planted").exists());

    // Oversized, truncated, unknown opcode, mail mode, a stray ACK.
    let mut oversized = b"\x00\x01".to_vec();
    oversized.extend(std::iter::repeat_n(b'a', 4000));
    oversized.extend_from_slice(b"\x00octet\x00");
    let broken: [(&[u8], ErrorCode); 6] = [
        (&oversized, ErrorCode::ILLEGAL_OPERATION),
        (b"\x00\x01good", ErrorCode::ILLEGAL_OPERATION),
        (b"\x00", ErrorCode::ILLEGAL_OPERATION),
        (b"\x00\x09whatever\x00", ErrorCode::ILLEGAL_OPERATION),
        (b"\x00\x01good\x00mail\x00", ErrorCode::ILLEGAL_OPERATION),
        (b"\x00\x04\x00\x01", ErrorCode::ILLEGAL_OPERATION),
    ];
    for (bytes, want) in broken {
        let (code, message) = raw.expect_error(addr, bytes).await;
        assert_eq!(code, want, "{bytes:?}: {message}");
        refused(&mut h).await;
    }

    // An ERROR sent to the request port is never answered.
    raw.send(addr, b"\x00\x05\x00\x00oops\x00").await;
    assert!(raw.recv_within(Duration::from_millis(300)).await.is_none());

    // Every refusal was logged with its reason.
    let log = logs();
    for reason in [
        "reason=file name \"../secret\" contains a '..' component",
        "reason=etc/passwd: no such file",
        "reason=link-out: resolves outside the served tree",
        "reason=write request on a read-only server",
        "reason=malformed packet: request of 4009 bytes exceeds the 512-byte limit",
        "reason=malformed packet: file name is not NUL-terminated",
        "reason=malformed packet: unknown opcode 9",
        "reason=transfer mode mail not supported",
        "reason=unexpected packet on the request port",
    ] {
        assert!(log.contains(reason), "log lacks {reason:?}:\n{log}");
    }

    // And the server still serves.
    let got = fetch(addr, "good", &FetchOptions::default()).await.unwrap();
    assert_eq!(got.data, content(3000, 1));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_options_are_ignored_per_rfc_2347() {
    let h = Harness::start().await;
    h.put("f", &content(1000, 2));
    let raw = Raw::new().await;
    let options = [
        ("blksize", "7"),
        ("windowsize", "0"),
        ("timeout", "300"),
        ("tsize", "x"),
        ("x-vendor", "1"),
    ];
    raw.send(h.addr, &rrq("f", &options)).await;
    // Nothing acceptable: no OACK, DATA 1 with RFC 1350's 512 bytes.
    let (reply, _) = raw.recv().await;
    match Packet::parse(&reply).unwrap() {
        Packet::Data { block: 1, data } => assert_eq!(data.len(), 512),
        other => panic!("expected DATA 1, got {other:?}"),
    }
    assert!(logs().contains("reason=\"value out of range\""));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_ack_does_not_resend_and_retransmitted_rrq_is_one_session() {
    // A long timer: every packet seen below is caused by an ACK, not by
    // a retransmission timeout.
    let mut h = Harness::start_with(|c| c.retransmit_timeout_ms = 20_000).await;
    h.put("f", &content(2000, 3));
    let raw = Raw::new().await;
    raw.send(h.addr, &rrq("f", &[])).await;
    raw.send(h.addr, &rrq("f", &[])).await; // the client "retransmits"
    let (first, tid) = raw.recv().await;
    assert!(matches!(
        Packet::parse(&first),
        Ok(Packet::Data { block: 1, .. })
    ));
    // Sorcerer's Apprentice: ACK 1 twice must yield DATA 2 once.
    raw.send(tid, &ack(1)).await;
    raw.send(tid, &ack(1)).await;
    let mut blocks = Vec::new();
    loop {
        let (reply, from) = raw.recv().await;
        assert_eq!(from, tid, "a second session answered");
        let Ok(Packet::Data { block, data }) = Packet::parse(&reply) else {
            panic!("expected DATA")
        };
        blocks.push(block);
        raw.send(tid, &ack(block)).await;
        if data.len() < 512 {
            break;
        }
    }
    assert_eq!(blocks, vec![2, 3, 4]);
    assert!(matches!(
        h.next_event().await,
        TransferEvent::Started { .. }
    ));
    assert!(matches!(
        h.next_event().await,
        TransferEvent::Completed { bytes: 2000, .. }
    ));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_blocks_are_retransmitted_then_abandoned() {
    let mut h = Harness::start_with(|c| {
        c.retransmit_timeout_ms = 20;
        c.max_retransmit_timeout_ms = 80;
        c.max_retries = 3;
    })
    .await;
    h.put("f", &content(600, 4));
    let raw = Raw::new().await;
    raw.send(h.addr, &rrq("f", &[])).await;
    let mut data_packets = 0;
    let tid = loop {
        let (reply, from) = raw.recv().await;
        match Packet::parse(&reply).unwrap() {
            Packet::Data { block: 1, .. } => data_packets += 1,
            Packet::Error { code, .. } => {
                assert_eq!(code, ErrorCode::UNDEFINED);
                break from;
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    // The first send and three retransmissions, then an ERROR.
    assert_eq!(data_packets, 4);
    assert_ne!(tid, h.addr);
    assert!(matches!(
        h.next_outcome().await,
        TransferEvent::Failed {
            bytes: 0,
            reason: ironrack_pxe::net::tftp::FailReason::Timeout { retries: 3 },
            ..
        }
    ));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_closes_its_port_is_seen_gone_not_waited_out() {
    // Retries enough to take a minute: the session must end on the
    // kernel's ICMP port-unreachable answering a retransmission (the
    // transfer socket waits for errors as well as data), not on the timer.
    let mut h = Harness::start_with(|c| {
        c.retransmit_timeout_ms = 100;
        c.max_retransmit_timeout_ms = 10_000;
        c.max_retries = 10;
    })
    .await;
    h.put("f", &content(5000, 8));
    let raw = Raw::new().await;
    raw.send(h.addr, &rrq("f", &[])).await;
    let (reply, _) = raw.recv().await;
    assert!(matches!(
        Packet::parse(&reply).unwrap(),
        Packet::Data { block: 1, .. }
    ));
    let started = std::time::Instant::now();
    drop(raw);
    let outcome = tokio::time::timeout(Duration::from_secs(10), h.next_outcome())
        .await
        .expect("the session ended");
    assert!(
        matches!(
            outcome,
            TransferEvent::Failed {
                reason: ironrack_pxe::net::tftp::FailReason::ClientGone,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_client_bound_busy_and_queue() {
    let mut h = Harness::start_with(|c| {
        c.max_sessions = 1;
        c.max_queued = 1;
        c.per_client_sessions = 1;
        c.retransmit_timeout_ms = 20_000;
    })
    .await;
    h.put("f", &content(1500, 5));
    // Client A (127.0.0.1) holds the only session by not acknowledging.
    let a = Raw::new().await;
    a.send(h.addr, &rrq("f", &[])).await;
    let (_, a_tid) = a.recv().await;
    assert!(matches!(
        h.next_event().await,
        TransferEvent::Started { .. }
    ));

    // A second transfer from the same IP: the per-client bound refuses it.
    let a2 = Raw::new().await;
    let (code, message) = a2.expect_error(h.addr, &rrq("f", &[])).await;
    assert_eq!(code, ErrorCode::UNDEFINED);
    assert!(message.contains("per-client-sessions"), "{message}");
    assert!(matches!(
        refused(&mut h).await.1,
        RefusalReason::PerClientLimit { active: 1 }
    ));

    // Client B (127.0.0.2) is queued behind A; client C finds the queue full.
    let b = Raw::on("127.0.0.2").await;
    b.send(h.addr, &rrq("f", &[])).await;
    let c = Raw::on("127.0.0.3").await;
    let (_, message) = c.expect_error(h.addr, &rrq("f", &[])).await;
    assert!(message.contains("server busy"), "{message}");
    assert!(matches!(
        refused(&mut h).await.1,
        RefusalReason::Busy { active: 2 }
    ));

    // B is served once A finishes.
    assert!(b.recv_within(Duration::from_millis(200)).await.is_none());
    for block in 1..=3u16 {
        a.send(a_tid, &ack(block)).await;
        if block < 3 {
            a.recv().await;
        }
    }
    assert!(matches!(
        h.next_outcome().await,
        TransferEvent::Completed { .. }
    ));
    let (first, b_tid) = b.recv().await;
    assert!(matches!(
        Packet::parse(&first),
        Ok(Packet::Data { block: 1, .. })
    ));
    // B gives up: its ERROR ends the session at once.
    b.send(b_tid, b"\x00\x05\x00\x00done\x00").await;
    match h.next_outcome().await {
        TransferEvent::Failed { reason, .. } => assert!(
            matches!(
                reason,
                ironrack_pxe::net::tftp::FailReason::ClientError { .. }
            ),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_rate_is_limited_per_client() {
    let mut h = Harness::start_with(|c| {
        c.per_client_requests_per_second = 1;
        c.per_client_burst = 2;
    })
    .await;
    let raw = Raw::new().await;
    for _ in 0..2 {
        let (code, _) = raw.expect_error(h.addr, &rrq("missing", &[])).await;
        assert_eq!(code, ErrorCode::FILE_NOT_FOUND);
        refused(&mut h).await;
    }
    // The third is dropped without an answer (the client retries later).
    raw.send(h.addr, &rrq("missing", &[])).await;
    assert!(raw.recv_within(Duration::from_millis(300)).await.is_none());
    assert!(matches!(
        refused(&mut h).await.1,
        RefusalReason::RateLimited
    ));
    // Other clients are unaffected.
    let other = Raw::on("127.0.0.2").await;
    let (code, _) = other.expect_error(h.addr, &rrq("missing", &[])).await;
    assert_eq!(code, ErrorCode::FILE_NOT_FOUND);
    h.stop().await;
}
