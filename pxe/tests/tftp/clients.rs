//! Real clients (curl, atftp, tftp-hpa from Debian) against the server:
//! every size that sits on a block boundary, byte for byte.

use std::path::Path;

use ironrack_pxe::net::tftp::TransferEvent;
use tokio::process::Command;

use crate::support::{Harness, content, read, require_tool};

/// Sizes around block boundaries for 512 and 1468-byte blocks.
const SIZES: &[usize] = &[0, 1, 511, 512, 513, 1467, 1468, 1469, 1468 * 3, 100_000];

/// One client invocation: program and arguments for (name, output path).
#[derive(Debug, Clone, Copy)]
enum Client {
    Curl {
        blksize: Option<u16>,
    },
    Atftp {
        blksize: u16,
        windowsize: Option<u16>,
    },
    TftpHpa,
}

impl Client {
    fn tool(self) -> &'static str {
        match self {
            Self::Curl { .. } => "curl",
            Self::Atftp { .. } => "atftp",
            Self::TftpHpa => "tftp",
        }
    }

    /// Runs the client; returns its combined output.
    async fn get(self, harness: &Harness, name: &str, out: &Path) -> String {
        require_tool(self.tool());
        let port = harness.addr.port().to_string();
        let out_arg = out.to_str().unwrap();
        let mut cmd = Command::new(self.tool());
        match self {
            Self::Curl { blksize } => {
                cmd.args(["-sS", "-o", out_arg]);
                if let Some(b) = blksize {
                    cmd.args(["--tftp-blksize", &b.to_string()]);
                }
                cmd.arg(format!("tftp://127.0.0.1:{port}/{name}"));
            }
            Self::Atftp {
                blksize,
                windowsize,
            } => {
                cmd.args(["--trace", "--option", &format!("blksize {blksize}")]);
                cmd.args(["--option", "tsize 0"]);
                if let Some(w) = windowsize {
                    cmd.args(["--option", &format!("windowsize {w}")]);
                }
                cmd.args(["-g", "-r", name, "-l", out_arg, "127.0.0.1", &port]);
            }
            Self::TftpHpa => {
                cmd.args([
                    "127.0.0.1",
                    &port,
                    "-m",
                    "octet",
                    "-c",
                    "get",
                    name,
                    out_arg,
                ]);
            }
        }
        let output = cmd.output().await.unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "{:?} failed ({}): {text}",
            self,
            output.status
        );
        text
    }
}

/// Fetches every size with `client`; checks bytes and the agreed options.
async fn fetch_all_sizes(client: Client, want_blksize: u16, want_window: u16) {
    let mut harness = Harness::start().await;
    let scratch = tempfile::tempdir().unwrap();
    for (i, &size) in SIZES.iter().enumerate() {
        let name = format!("dir/file-{size}");
        let data = content(size, i as u8);
        harness.put(&name, &data);
        let out = scratch.path().join(format!("out-{size}"));
        let log = client.get(&harness, &name, &out).await;
        assert_eq!(read(&out), data, "{client:?}: {name} differs");
        match harness.next_event().await {
            TransferEvent::Started {
                file,
                size: served,
                blksize,
                windowsize,
                ..
            } => {
                assert_eq!(file, name);
                assert_eq!(served, size as u64);
                assert_eq!(
                    (blksize, windowsize),
                    (want_blksize, want_window),
                    "{client:?}"
                );
            }
            other => panic!("{client:?}: expected Started, got {other:?}"),
        }
        match harness.next_event().await {
            TransferEvent::Completed { bytes, .. } => assert_eq!(bytes, size as u64),
            other => panic!("{client:?}: expected Completed, got {other:?}"),
        }
        if let Client::Atftp { windowsize, .. } = client {
            // atftp's trace shows the OACK it received: tsize is answered
            // with the real size (left out for an empty file).
            if size > 0 {
                assert!(log.contains(&format!("tsize: {size}")), "{log}");
            }
            assert!(log.contains(&format!("blksize: {want_blksize}")), "{log}");
            if windowsize.is_some() {
                assert!(log.contains(&format!("windowsize: {want_window}")), "{log}");
            }
        }
    }
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_default_blksize() {
    // curl asks for blksize 512, tsize and timeout: an OACK every time.
    fetch_all_sizes(Client::Curl { blksize: None }, 512, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_blksize_1468() {
    fetch_all_sizes(
        Client::Curl {
            blksize: Some(1468),
        },
        1468,
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_blksize_above_the_cap_is_clamped() {
    fetch_all_sizes(
        Client::Curl {
            blksize: Some(8192),
        },
        1468,
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atftp_blksize_and_tsize() {
    fetch_all_sizes(
        Client::Atftp {
            blksize: 1468,
            windowsize: None,
        },
        1468,
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atftp_windowsize() {
    fetch_all_sizes(
        Client::Atftp {
            blksize: 1024,
            windowsize: Some(8),
        },
        1024,
        8,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_hpa_without_options() {
    // tftp-hpa sends no options: plain RFC 1350, DATA 1 straight away.
    fetch_all_sizes(Client::TftpHpa, 512, 1).await;
}

/// 40 MiB at 512-byte blocks is 81,921 blocks: block numbers roll over
/// from 65535 to 0, as iPXE and tftpd-hpa expect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_numbers_roll_over_with_every_client() {
    let mut harness = Harness::start().await;
    let data = content(40 << 20, 9);
    harness.put("big.img", &data);
    let scratch = tempfile::tempdir().unwrap();
    for client in [
        Client::Curl { blksize: None },
        Client::TftpHpa,
        Client::Atftp {
            blksize: 512,
            windowsize: Some(16),
        },
    ] {
        let out = scratch.path().join("big.out");
        client.get(&harness, "big.img", &out).await;
        assert!(read(&out) == data, "{client:?}: 40 MiB file differs");
        std::fs::remove_file(&out).unwrap();
        assert!(matches!(
            harness.next_outcome().await,
            TransferEvent::Completed { bytes, .. } if bytes == data.len() as u64
        ));
    }
    harness.stop().await;
}

/// tftp-hpa in netascii mode converts line ends back: the file it writes
/// equals the original text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_hpa_netascii_round_trip() {
    require_tool("tftp");
    let harness = Harness::start().await;
    let text = b"#!ipxe\nchain http://198.18.0.1/boot.ipxe\r\nbare\rcr\n".repeat(40);
    harness.put("boot.txt", &text);
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("boot.txt");
    let port = harness.addr.port().to_string();
    let status = Command::new("tftp")
        .args([
            "127.0.0.1",
            &port,
            "-m",
            "netascii",
            "-c",
            "get",
            "boot.txt",
        ])
        .arg(&out)
        .status()
        .await
        .unwrap();
    assert!(status.success());
    assert_eq!(read(&out), text);
    harness.stop().await;
}
