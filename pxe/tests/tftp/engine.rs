//! The engine with its own windowed client: windowsize with loss, block
//! number rollover at tiny block sizes, the cache, and a reload under a
//! transfer in flight. (atftp covers windowsize without loss in
//! clients.rs; no packaged client injects loss.)

use std::sync::Arc;
use std::time::Duration;

use ironrack_pxe::net::tftp::client::{FetchOptions, fetch};
use ironrack_pxe::net::tftp::packet::Packet;
use ironrack_pxe::net::tftp::{DirSource, TransferEvent};

use crate::hostile::{Raw, rrq};
use crate::support::{Harness, content};

fn windowed(window: u16, drop_every: Option<u32>) -> FetchOptions {
    FetchOptions {
        blksize: Some(1468),
        windowsize: Some(window),
        tsize: true,
        timeout: Duration::from_millis(300),
        retries: 20,
        drop_every,
        ..FetchOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windowed_transfer_survives_loss() {
    let h = Harness::start().await;
    let data = content(256 << 10, 6);
    h.put("f", &data);
    for (window, drop_every) in [(16, None), (16, Some(7)), (4, Some(3)), (32, Some(50))] {
        let got = fetch(h.addr, "f", &windowed(window, drop_every))
            .await
            .unwrap_or_else(|e| panic!("window {window}, drop {drop_every:?}: {e}"));
        assert!(
            got.data == data,
            "window {window}, drop {drop_every:?}: bytes differ"
        );
        assert!(
            got.oack
                .contains(&("windowsize".to_owned(), window.to_string()))
        );
        assert!(
            got.oack
                .contains(&("tsize".to_owned(), data.len().to_string()))
        );
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windowsize_is_capped() {
    let h = Harness::start_with(|c| c.max_windowsize = 4).await;
    h.put("f", &content(100_000, 7));
    let got = fetch(h.addr, "f", &windowed(64, None)).await.unwrap();
    assert!(
        got.oack
            .contains(&("windowsize".to_owned(), "4".to_owned()))
    );
    assert_eq!(got.data, content(100_000, 7));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollover_at_blksize_8_with_windows_and_loss() {
    // 70,000 blocks of 8 bytes: past 65535 with a window and losses
    // straddling the wrap.
    let h = Harness::start().await;
    let data = content(8 * 70_000 + 3, 8);
    h.put("f", &data);
    let options = FetchOptions {
        blksize: Some(8),
        windowsize: Some(8),
        drop_every: Some(997),
        timeout: Duration::from_millis(300),
        retries: 20,
        ..FetchOptions::default()
    };
    let got = fetch(h.addr, "f", &options).await.unwrap();
    assert!(got.data == data);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_serves_hot_files_and_sees_changes() {
    let h = Harness::start().await;
    let path = h.put("ipxe.efi", &content(200_000, 10));
    let first = fetch(h.addr, "ipxe.efi", &FetchOptions::default())
        .await
        .unwrap();
    assert_eq!(first.data, content(200_000, 10));
    assert_eq!(h.handle.cached_bytes(), 200_000);
    // Same size, new content: the identity check must notice.
    std::fs::write(&path, content(200_000, 11)).unwrap();
    let second = fetch(h.addr, "ipxe.efi", &FetchOptions::default())
        .await
        .unwrap();
    assert_eq!(second.data, content(200_000, 11));
    assert_eq!(h.handle.cached_bytes(), 200_000);
    // Replaced by rename (how installers update files).
    let staged = h.root.join(".staged");
    std::fs::write(&staged, content(1234, 12)).unwrap();
    std::fs::rename(&staged, &path).unwrap();
    let third = fetch(h.addr, "ipxe.efi", &FetchOptions::default())
        .await
        .unwrap();
    assert_eq!(third.data, content(1234, 12));
    assert_eq!(h.handle.cached_bytes(), 1234);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_above_the_cache_bound_stream_from_disk() {
    let h = Harness::start_with(|c| {
        c.cache_bytes = 1 << 20;
        c.cache_max_file_bytes = 100_000;
    })
    .await;
    h.put("big", &content(900_000, 13));
    let got = fetch(h.addr, "big", &windowed(8, None)).await.unwrap();
    assert!(got.data == content(900_000, 13));
    assert_eq!(h.handle.cached_bytes(), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_transfers_in_flight() {
    let mut h = Harness::start_with(|c| c.retransmit_timeout_ms = 20_000).await;
    let old = content(5000, 14);
    h.put("boot", &old);
    let raw = Raw::new().await;
    raw.send(h.addr, &rrq("boot", &[])).await;
    let (first, tid) = raw.recv().await;
    let mut got = match Packet::parse(&first).unwrap() {
        Packet::Data { block: 1, data } => data.to_vec(),
        other => panic!("{other:?}"),
    };

    // Reload: a new tree with a different file under the same name.
    let new_root = h.outside.path().join("new-root");
    std::fs::create_dir(&new_root).unwrap();
    std::fs::write(new_root.join("boot"), content(777, 15)).unwrap();
    h.handle
        .replace_source(Arc::new(DirSource::open(&new_root).unwrap()));

    // The transfer in flight finishes with the file it opened...
    let mut block = 1u16;
    loop {
        raw.send(tid, &Packet::Ack { block }.to_bytes()).await;
        let (reply, _) = raw.recv().await;
        let Ok(Packet::Data { block: b, data }) = Packet::parse(&reply) else {
            panic!("expected DATA")
        };
        got.extend_from_slice(data);
        block = b;
        if data.len() < 512 {
            raw.send(tid, &Packet::Ack { block }.to_bytes()).await;
            break;
        }
    }
    assert_eq!(got, old);
    assert!(matches!(
        h.next_outcome().await,
        TransferEvent::Completed { bytes: 5000, .. }
    ));
    // ...and new requests see the new tree.
    let fresh = fetch(h.addr, "boot", &FetchOptions::default())
        .await
        .unwrap();
    assert_eq!(fresh.data, content(777, 15));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_clients_all_complete() {
    let mut h = Harness::start_with(|c| {
        c.max_sessions = 16;
        c.per_client_sessions = 100;
        c.per_client_requests_per_second = 0;
    })
    .await;
    let data = content(64 << 10, 16);
    h.put("f", &data);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100u16 {
        let addr = h.addr;
        tasks.spawn(async move {
            let options = FetchOptions {
                blksize: Some(1468),
                windowsize: if i % 2 == 0 { Some(8) } else { None },
                timeout: Duration::from_millis(500),
                retries: 30,
                ..FetchOptions::default()
            };
            fetch(addr, "f", &options).await
        });
    }
    while let Some(result) = tasks.join_next().await {
        assert!(result.unwrap().unwrap().data == data);
    }
    let mut completed = 0;
    while completed < 100 {
        match h.next_outcome().await {
            TransferEvent::Completed { bytes, .. } => {
                assert_eq!(bytes, data.len() as u64);
                completed += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    h.stop().await;
}
