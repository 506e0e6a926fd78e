//! Range, HEAD, ETag, If-None-Match and Range abuse, with curl.

use crate::support::*;

fn lab_with(size: usize, memory_budget: u64) -> (Lab, Vec<u8>, String) {
    let (dir, world) = Lab::setup();
    let bytes = content(size, 7);
    let src = Lab::file(dir.path(), "rootfs.squashfs", &bytes);
    let kernel = Lab::file(dir.path(), "vmlinuz", b"kernel");
    let initrd = Lab::file(dir.path(), "initrd.img", b"initrd");
    world
        .image(
            &dir.path().join("out"),
            "gpu-node",
            1,
            "console=ttyS0",
            &[
                ("rootfs.squashfs", &src),
                ("vmlinuz", &kernel),
                ("initrd.img", &initrd),
            ],
        )
        .unwrap();
    let lab = Lab::start(dir, world, "", memory_budget);
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    (lab, bytes, sha)
}

#[test]
fn head_get_range_and_etag() {
    // 3 MiB from the verified descriptor (memory budget 0): several chunks.
    let (lab, bytes, sha) = lab_with(3 << 20, 0);
    let url = lab.url("/images/gpu-node/1/rootfs.squashfs");

    let head = headers(&["-I", &url]);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains(&format!("content-length: {}", bytes.len())),
        "{head}"
    );
    assert!(head.contains(&format!("etag: \"{sha}\"")), "{head}");
    assert!(head.contains("accept-ranges: bytes"), "{head}");

    let (code, body, err) = curl(&["--fail", &url]);
    assert_eq!(code, 0, "{err}");
    assert!(body == bytes, "full body differs");

    let (code, body, err) = curl(&["--fail", "-r", "1048570-1048599", &url]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(body, bytes[1048570..1048600]);
    let h = headers(&["-r", "1048570-1048599", &url]);
    assert!(h.starts_with("http/1.1 206"), "{h}");
    assert!(
        h.contains(&format!(
            "content-range: bytes 1048570-1048599/{}",
            bytes.len()
        )),
        "{h}"
    );
    assert!(h.contains("content-length: 30"), "{h}");

    // Suffix and open-ended ranges; an end past the file is clamped.
    let (_, body, _) = curl(&["-r", "-100", &url]);
    assert_eq!(body, bytes[bytes.len() - 100..]);
    let (_, body, _) = curl(&[
        "-H",
        &format!("Range: bytes={}-99999999", bytes.len() - 5),
        &url,
    ]);
    assert_eq!(body, bytes[bytes.len() - 5..]);

    let etag = format!("If-None-Match: \"{sha}\"");
    assert_eq!(status(&["-H", &etag, &url]), 304);
    assert_eq!(status(&["-H", "If-None-Match: \"0000\", *", &url]), 304);
    assert_eq!(status(&["-H", "If-None-Match: \"0000\"", &url]), 200);
    // If-Range with another ETag: the whole body, not the range.
    assert_eq!(
        status(&["-r", "0-9", "-H", "If-Range: \"0000\"", &url]),
        200
    );
    assert_eq!(
        status(&["-r", "0-9", "-H", &format!("If-Range: \"{sha}\""), &url]),
        206
    );
}

#[test]
fn range_abuse_is_refused_and_the_server_keeps_serving() {
    let (lab, bytes, _) = lab_with(100_000, 1 << 30);
    let url = lab.url("/images/gpu-node/1/rootfs.squashfs");
    let abusive = [
        "bytes=0-1,2-3".to_owned(),
        format!("bytes={}", "0-,".repeat(30)),
        "bytes=100000-".to_owned(),
        "bytes=5-1".to_owned(),
        "bytes=abc".to_owned(),
        "bytes=99999999999999999999999-".to_owned(),
        "pages=1-2".to_owned(),
    ];
    for range in &abusive {
        let h = headers(&["-H", &format!("Range: {range}"), &url]);
        assert!(h.starts_with("http/1.1 416"), "{range}: {h}");
        assert!(h.contains("content-range: bytes */100000"), "{range}: {h}");
    }
    let (code, body, err) = curl(&["--fail", &url]);
    assert_eq!(code, 0, "{err}");
    assert!(body == bytes);
    let (_, metrics, _) = curl(&[&lab.url("/metrics")]);
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains(&format!(
            "ironrack_http_range_refused_total {}",
            abusive.len()
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("ironrack_http_requests_total{route=\"artifact\",status=\"416\"}"),
        "{metrics}"
    );
    assert_eq!(status(&["-X", "DELETE", &url]), 405);
    assert_eq!(status(&[&lab.url("/images/gpu-node/1/nope")]), 404);
    assert_eq!(status(&[&lab.url("/images/gpu-node/x/vmlinuz")]), 404);
}

#[test]
fn names_outside_the_signed_tree_are_404() {
    let (lab, _, _) = lab_with(1000, 1 << 20);
    let image_dir = lab.dir.path().join("out/gpu-node/1");
    // On disk beside the artifacts, but not in the signed manifest.
    std::fs::write(image_dir.join("extra.bin"), b"unsigned").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", image_dir.join("passwd")).unwrap();
    for path in [
        "/images/gpu-node/1/extra.bin",
        "/images/gpu-node/1/passwd",
        "/images/gpu-node/1/",
        "/images/gpu-node/1",
        "/images/gpu-node/1/../../../../etc/passwd",
        "/images/gpu-node/1/..%2f..%2f..%2fetc%2fpasswd",
        "/images/gpu-node/1/%2e%2e/%2e%2e/trust.json",
        "/images/../trust.json",
        "/images/gpu-node/1/vmlinuz/../../../../trust.json",
        "/ipxe/../trust.json",
        "/trust.json",
        "/site.toml",
        "/state.db",
    ] {
        // --path-as-is: curl must not fold the dot segments itself.
        let url = lab.url(path);
        assert_eq!(status(&["--path-as-is", &url]), 404, "{path}");
        assert_eq!(status(&["--path-as-is", "-I", &url]), 404, "HEAD {path}");
    }
    // The real artifact beside them is served, HEAD with the same length.
    let url = lab.url("/images/gpu-node/1/rootfs.squashfs");
    assert_eq!(status(&[&url]), 200);
    let head = headers(&["-I", &url]);
    assert!(head.contains("content-length: 1000"), "{head}");
}

#[test]
fn an_artifact_rewritten_on_disk_is_never_served_as_verified() {
    // File-backed (memory budget 0): rewriting it in place (same size)
    // after verification must abort the response, not send other bytes.
    let (lab, bytes, _) = lab_with(2 << 20, 0);
    let url = lab.url("/images/gpu-node/1/rootfs.squashfs");
    let path = lab.dir.path().join("out/gpu-node/1/rootfs.squashfs");
    std::fs::write(&path, content(bytes.len(), 99)).unwrap();
    let (code, body, _) = curl(&[&url]);
    assert_ne!(code, 0, "curl must see a failed transfer");
    assert!(
        body.len() < bytes.len(),
        "a short body, never a full one of other bytes"
    );
    assert!(
        body.iter().zip(&bytes).all(|(a, b)| a == b),
        "no byte of the new content served"
    );
    let (_, metrics, _) = curl(&[&lab.url("/metrics")]);
    assert!(String::from_utf8_lossy(&metrics).contains("ironrack_http_integrity_errors_total 1"));

    // Memory-backed: the verified bytes are what is served, whatever the disk says.
    let (lab, bytes, _) = lab_with(100_000, 1 << 30);
    let path = lab.dir.path().join("out/gpu-node/1/rootfs.squashfs");
    std::fs::write(&path, content(bytes.len(), 99)).unwrap();
    let (code, body, _) = curl(&["--fail", &lab.url("/images/gpu-node/1/rootfs.squashfs")]);
    assert_eq!(code, 0);
    assert!(body == bytes);
}

#[test]
fn the_manifest_and_its_signature_are_served_as_verified() {
    let (lab, _, _) = lab_with(1000, 0);
    let dir = lab.dir.path().join("out/gpu-node/1");
    for file in ["manifest.json", "manifest.json.minisig"] {
        let on_disk = std::fs::read(dir.join(file)).unwrap();
        let url = lab.url(&format!("/images/gpu-node/1/{file}"));
        let (code, body, err) = curl(&["--fail", &url]);
        assert_eq!(code, 0, "{file}: {err}");
        assert!(body == on_disk, "{file} differs from what was verified");
        let sha = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&on_disk))
        };
        assert!(headers(&["-I", &url]).contains(&format!("etag: \"{sha}\"")));
        // Rewritten on disk after the load: nodes still get the verified bytes.
        std::fs::write(dir.join(file), b"tampered").unwrap();
        let (_, body, _) = curl(&["--fail", &url]);
        assert!(body == on_disk, "{file}: tampered bytes served");
    }
}
