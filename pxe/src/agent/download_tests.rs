use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

use ironrack_keys::trust::{Delegation, Scope};
use ironrack_keys::{Artifact, SecretKey, Sha256Digest, SignedManifest, TrustFile, sign_manifest};
use sha2::{Digest as _, Sha256};

use super::*;

/// Keys made here: a root (threshold 1) delegating to a signer with
/// `scopes`.
struct World {
    trust: Trust,
    signer: SecretKey,
}

fn world(scopes: &[&str]) -> World {
    let root = SecretKey::generate().unwrap();
    let signer = SecretKey::generate().unwrap();
    let expires = Timestamp::now().plus_days(30);
    let mut file = TrustFile::new(vec![root.public_key()], 1, expires).unwrap();
    file.signed
        .add_signer(Delegation {
            name: "ci".into(),
            id: signer.key_id(),
            public: signer.public_key(),
            expires,
            scope: scopes.iter().map(|s| s.parse::<Scope>().unwrap()).collect(),
        })
        .unwrap();
    file.sign(&root).unwrap();
    let trust = Trust::from_installed(&file.to_bytes().unwrap(), &[]).unwrap();
    World { trust, signer }
}

const ROOTFS: &[u8] = b"a squashfs image, pretend";

/// A signed manifest (bytes, signature) listing ROOTFS as rootfs.squashfs.
fn signed(w: &World, name: &str, channel: &str, version: u64, days: u32) -> (Vec<u8>, Vec<u8>) {
    let artifact = Artifact {
        name: "rootfs.squashfs".into(),
        size: ROOTFS.len() as u64,
        sha256: Sha256Digest(Sha256::digest(ROOTFS).into()),
    };
    let manifest = SignedManifest::new(
        name,
        channel,
        version,
        Timestamp::now().plus_days(days),
        vec![artifact],
        serde_json::json!({}),
    );
    let (bytes, sig) = sign_manifest(&w.signer, &manifest).unwrap();
    (bytes, sig.to_file_text().into_bytes())
}

fn request(text: &str) -> ImageRequest {
    ImageRequest::parse(text).unwrap()
}

#[test]
fn image_requests() {
    assert_eq!(
        request("gpu-node@7"),
        ImageRequest {
            name: "gpu-node".into(),
            version: 7
        }
    );
    assert_eq!(
        request("gpu-node@7").path("manifest.json"),
        "/images/gpu-node/7/manifest.json"
    );
    for bad in [
        "gpu-node",
        "gpu-node@",
        "@7",
        "a/b@7",
        "x@-1",
        "x@1.2",
        "x@99999999999999999999",
    ] {
        assert!(ImageRequest::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_good_manifest_verifies_and_others_are_refused() {
    let now = Timestamp::now();
    let w = world(&["image:gpu-node", "channel:stable"]);
    let (m, s) = signed(&w, "gpu-node", "stable", 7, 7);
    let image = verify_manifest(&w.trust, "stable", &request("gpu-node@7"), &m, &s, now).unwrap();
    assert_eq!(
        (image.version, image.rootfs_name.as_str()),
        (7, "rootfs.squashfs")
    );
    assert_eq!(image.manifest_sha256, <[u8; 32]>::from(Sha256::digest(&m)));

    let refused = |m: &[u8], s: &[u8], req: &str, channel: &str, now| {
        let err = verify_manifest(&w.trust, channel, &request(req), m, s, now).unwrap_err();
        super::super::init::chain(&err)
    };
    // Rollback: the server hands an older manifest for a newer request.
    let (old, old_sig) = signed(&w, "gpu-node", "stable", 6, 7);
    let text = refused(&old, &old_sig, "gpu-node@7", "stable", now);
    assert!(
        text.contains("does not verify") && text.contains("6"),
        "{text}"
    );
    // Newer than asked for is not what the path named either.
    let (new, new_sig) = signed(&w, "gpu-node", "stable", 8, 7);
    let text = refused(&new, &new_sig, "gpu-node@7", "stable", now);
    assert!(
        text.contains("signed for gpu-node@8 on stable, expected gpu-node@7"),
        "{text}"
    );
    // Expired.
    let text = refused(&m, &s, "gpu-node@7", "stable", now.plus_days(8));
    assert!(text.contains("expired"), "{text}");
    // Tampered bytes.
    let mut tampered = m.clone();
    let at = tampered.len() - 3;
    tampered[at] ^= 1;
    let text = refused(&tampered, &s, "gpu-node@7", "stable", now);
    assert!(text.contains("does not verify"), "{text}");
    // Another channel than agent.json's, validly signed.
    let other = world(&["image:*", "channel:*"]);
    let (beta, beta_sig) = signed(&other, "gpu-node", "beta", 7, 7);
    let err = verify_manifest(
        &other.trust,
        "stable",
        &request("gpu-node@7"),
        &beta,
        &beta_sig,
        now,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("on beta, expected gpu-node@7 on stable"),
        "{err}"
    );
    // A key of another trust root signs nothing here.
    let text = refused(&beta, &beta_sig, "gpu-node@7", "stable", now);
    assert!(text.contains("does not verify"), "{text}");
    // A key scoped to another image cannot sign this one.
    let narrow = world(&["image:other", "channel:stable"]);
    let (m2, s2) = signed(&narrow, "gpu-node", "stable", 7, 7);
    let err = verify_manifest(
        &narrow.trust,
        "stable",
        &request("gpu-node@7"),
        &m2,
        &s2,
        now,
    )
    .unwrap_err();
    let text = super::super::init::chain(&err);
    assert!(text.contains("may not sign image \"gpu-node\""), "{text}");
}

/// Serves `files` (path → body) to `count` connections on loopback.
fn file_server(files: BTreeMap<String, Vec<u8>>, count: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for _ in 0..count {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            reader.read_line(&mut first).unwrap();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
            }
            let path = first.split(' ').nth(1).unwrap_or_default();
            let answer = match files.get(path) {
                Some(body) => {
                    let mut a =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                            .into_bytes();
                    a.extend_from_slice(body);
                    a
                }
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nnot found\n".to_vec(),
            };
            let _ = stream.write_all(&answer);
        }
    });
    url
}

#[test]
fn fetch_lands_the_rootfs_only_when_it_matches() {
    let w = world(&["image:gpu-node", "channel:stable"]);
    let (m, s) = signed(&w, "gpu-node", "stable", 7, 7);
    let mut files = BTreeMap::new();
    files.insert("/images/gpu-node/7/manifest.json".to_owned(), m.clone());
    files.insert("/images/gpu-node/7/manifest.json.minisig".to_owned(), s);
    files.insert(
        "/images/gpu-node/7/rootfs.squashfs".to_owned(),
        ROOTFS.to_vec(),
    );
    let client = HttpClient::new(&file_server(files.clone(), 3), Duration::from_secs(10)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let req = request("gpu-node@7");
    let got = fetch_image(
        &client,
        &w.trust,
        ("gpu-node", "stable"),
        &req,
        dir.path(),
        Timestamp::now(),
    )
    .unwrap();
    assert_eq!(got.manifest, m);
    assert_eq!(
        std::fs::read(dir.path().join("rootfs.squashfs")).unwrap(),
        ROOTFS
    );
    assert_eq!(got.rootfs.sha256, got.image.rootfs_sha256);

    // The same manifest, a rootfs with one byte changed: refused, nothing left.
    let mut bad = ROOTFS.to_vec();
    bad[0] ^= 1;
    files.insert("/images/gpu-node/7/rootfs.squashfs".to_owned(), bad);
    let client = HttpClient::new(&file_server(files, 3), Duration::from_secs(10)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = fetch_image(
        &client,
        &w.trust,
        ("gpu-node", "stable"),
        &req,
        dir.path(),
        Timestamp::now(),
    )
    .unwrap_err();
    assert!(matches!(err, DownloadError::Rootfs { .. }), "{err}");
    assert!(super::super::init::chain(&err).contains("SHA-256"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // Another image than agent.json's is not even asked for.
    let err = fetch_image(
        &client,
        &w.trust,
        ("other", "stable"),
        &req,
        dir.path(),
        Timestamp::now(),
    )
    .unwrap_err();
    assert!(matches!(err, DownloadError::OtherImage { .. }), "{err}");

    // A server without the image: the 404 names the file.
    let client =
        HttpClient::new(&file_server(BTreeMap::new(), 1), Duration::from_secs(10)).unwrap();
    let err = fetch_image(
        &client,
        &w.trust,
        ("gpu-node", "stable"),
        &req,
        dir.path(),
        Timestamp::now(),
    )
    .unwrap_err();
    let text = super::super::init::chain(&err);
    assert!(
        text.contains("manifest.json") && text.contains("HTTP 404"),
        "{text}"
    );
}
