//! Only signed images are served; refusals carry their reason to the API.

use crate::support::*;

#[test]
fn bad_signature_and_bad_digest_keep_images_out_with_their_reason() {
    let (dir, world) = Lab::setup();
    let out = dir.path().join("out");
    let k = Lab::file(dir.path(), "vmlinuz", b"kernel bytes");
    let i = Lab::file(dir.path(), "initrd.img", b"initrd bytes");
    let files = [("vmlinuz", k.as_path()), ("initrd.img", i.as_path())];
    world
        .image(&out, "gpu-node", 1, "console=ttyS0", &files)
        .unwrap();
    let bad_sig = world
        .image(&out, "gpu-node", 2, "console=ttyS0", &files)
        .unwrap();
    let bad_digest = world.image(&out, "other", 1, "", &files).unwrap();
    // Another signer's signature over version 2: a signature that does not verify.
    let stranger = ironrack_pxe::testkit::SigningWorld::new(&dir.path().join("stranger")).unwrap();
    let forged = stranger
        .image(
            &dir.path().join("stranger/out"),
            "gpu-node",
            2,
            "console=ttyS0",
            &files,
        )
        .unwrap();
    std::fs::copy(
        forged.join("manifest.json.minisig"),
        bad_sig.join("manifest.json.minisig"),
    )
    .unwrap();
    std::fs::write(bad_digest.join("vmlinuz"), b"kernel bytez").unwrap();
    let lab = Lab::start(dir, world, "", 1 << 20);

    let api = json(&lab.url("/api/images"));
    let verified: Vec<(String, u64)> = api["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_owned(),
                i["version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(verified, [("gpu-node".to_owned(), 1)]);
    let refused = api["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 2, "{api:#}");
    let reason = |name: &str| {
        refused
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| r["reason"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let sig_reason = reason("gpu-node");
    assert!(sig_reason.contains("manifest.json"), "{sig_reason}");
    assert!(
        sig_reason.to_lowercase().contains("key") || sig_reason.contains("signature"),
        "{sig_reason}"
    );
    let digest_reason = reason("other");
    assert!(
        digest_reason.contains("vmlinuz") && digest_reason.contains("sha256"),
        "{digest_reason}"
    );

    // Nothing of a refused image is served, and the 404 says why.
    let (code, body, _) = curl(&[&lab.url("/images/gpu-node/2/vmlinuz")]);
    assert_eq!(code, 0);
    assert!(
        String::from_utf8_lossy(&body).contains("image refused"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(status(&[&lab.url("/images/gpu-node/2/vmlinuz")]), 404);
    assert_eq!(status(&[&lab.url("/images/other/1/initrd.img")]), 404);
    assert_eq!(status(&[&lab.url("/images/gpu-node/1/vmlinuz")]), 200);

    // The node view names the problem with the other version.
    let node = json(&lab.url("/api/nodes/n1"));
    let problem = node["node"]["image_problem"].as_str().unwrap_or_default();
    assert!(problem.contains("gpu-node/2"), "{node:#}");
}

#[test]
fn a_kernel_command_line_ipxe_would_interpret_is_refused() {
    let (dir, world) = Lab::setup();
    let k = Lab::file(dir.path(), "vmlinuz", b"k");
    let i = Lab::file(dir.path(), "initrd.img", b"i");
    world
        .image(
            &dir.path().join("out"),
            "gpu-node",
            1,
            "console=ttyS0 x=${evil}",
            &[("vmlinuz", &k), ("initrd.img", &i)],
        )
        .unwrap();
    let store = load_images(dir.path(), 0, None);
    assert_eq!(store.images().count(), 0);
    assert!(
        store.refused()[0].reason.contains("iPXE"),
        "{}",
        store.refused()[0].reason
    );
}

#[test]
fn a_reload_reuses_unchanged_artifacts_and_sees_changed_ones() {
    let (dir, world) = Lab::setup();
    let k = Lab::file(dir.path(), "vmlinuz", &content(5000, 1));
    let i = Lab::file(dir.path(), "initrd.img", &content(6000, 2));
    let image = world
        .image(
            &dir.path().join("out"),
            "gpu-node",
            1,
            "",
            &[("vmlinuz", &k), ("initrd.img", &i)],
        )
        .unwrap();
    let first = load_images(dir.path(), 1 << 20, None);
    let second = load_images(dir.path(), 1 << 20, Some(&first));
    let a = first
        .latest("gpu-node")
        .unwrap()
        .artifact("vmlinuz")
        .unwrap();
    let b = second
        .latest("gpu-node")
        .unwrap()
        .artifact("vmlinuz")
        .unwrap();
    assert_eq!(a.sha256, b.sha256);
    std::fs::write(image.join("vmlinuz"), content(5000, 3)).unwrap();
    let third = load_images(dir.path(), 1 << 20, Some(&second));
    assert!(
        third.latest("gpu-node").is_none(),
        "changed artifact must be re-verified and refused"
    );
    assert!(third.refused()[0].reason.contains("sha256"));
}
