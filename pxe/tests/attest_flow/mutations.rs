//! Every way a node (or something between it and the server) can lie,
//! each refused with its own code and a reason naming what is wrong.

use std::sync::atomic::Ordering;

use ironrack_pxe::agent::{AgentError, NodeAgent, fetch_verified};
use ironrack_pxe::attest::eventlog::agent::{AgentLog, AgentMeasurement};
use ironrack_pxe::attest::protocol::{Bytes, Request, Response, Verdict};
use ironrack_pxe::attest::tpm::constants::alg;
use ironrack_pxe::attest::tpm::{PcrSelection, SwtpmSocket};
use sha2::{Digest as _, Sha256};

use crate::support::{
    Firmware, ROOTFS, SignedImage, Site, Tamper, local_ca_trust, measured_boot, node,
};

/// What a node without NVIDIA devices measures.
fn no_gpus() -> [u8; 32] {
    ironrack_pxe::attest::gpu::GpuInventory::default().sha256()
}

/// The refusal code of an agent error.
fn code(err: &AgentError) -> &str {
    match err {
        AgentError::Refused { code, .. } => code,
        other => panic!("expected a refusal, got: {other}"),
    }
}

fn reason(err: &AgentError) -> String {
    match err {
        AgentError::Refused { reason, .. } => reason.clone(),
        other => panic!("expected a refusal, got: {other}"),
    }
}

#[test]
fn wrong_activation_secret_is_refused() {
    if !crate::swtpm::available() {
        return;
    }
    let site = Site::new(local_ca_trust());
    let (_sw, tpm) = site.booted_tpm();
    let id = node("52:54:00:00:00:10");
    let client = Tamper::new(&site.service, |r| {
        if let Request::Activate(a) = r {
            a.secret.0[0] ^= 1;
        }
    });
    let mut agent = NodeAgent::new(tpm, client, id.clone());
    let err = agent.enroll().unwrap_err();
    assert_eq!(code(&err), "activation-secret");
    assert!(reason(&err).contains("52:54:00:00:00:10"), "{err}");
    // Nothing was stored: the node gets no nonce.
    let err = agent
        .attest(&site.firmware.log, site.image.image_ref())
        .unwrap_err();
    assert_eq!(code(&err), "node-not-enrolled");
    assert!(site.service.nodes().unwrap().is_empty());
}

#[test]
fn replayed_and_expired_nonces_are_refused() {
    if !crate::swtpm::available() {
        return;
    }
    let site = Site::new(local_ca_trust());
    let (_sw, tpm) = site.booted_tpm();
    let id = node("52:54:00:00:00:11");
    let expire = std::cell::Cell::new(false);
    let client = Tamper::new(&site.service, |r| {
        if matches!(r, Request::Quote(_)) && expire.get() {
            site.skew.fetch_add(61, Ordering::Relaxed);
        }
    });
    let submissions = client.submissions.clone();
    let mut agent = NodeAgent::new(tpm, client, id.clone());
    agent.enroll().unwrap();
    let dir = tempfile::tempdir().unwrap();
    measured_boot(&mut agent, &site, dir.path()).unwrap();

    // The same, valid, submission sent again.
    let replay = submissions.lock().unwrap()[0].clone();
    let answer = site
        .service
        .handle(&Request::Quote(Box::new(replay.clone())))
        .unwrap();
    let Response::Verdict(Verdict::Refused { code: refused, .. }) = answer else {
        panic!("replay accepted: {answer:?}");
    };
    assert_eq!(refused, "nonce-replayed");

    // A nonce nobody issued.
    let mut forged = replay;
    forged.nonce = Bytes(vec![7; 32]);
    let answer = site
        .service
        .handle(&Request::Quote(Box::new(forged)))
        .unwrap();
    assert!(
        matches!(&answer, Response::Verdict(Verdict::Refused { code, .. }) if code == "nonce-unknown"),
        "{answer:?}"
    );

    // A quote arriving after the nonce's lifetime.
    expire.set(true);
    let err = agent
        .attest(&site.firmware.log, site.image.image_ref())
        .unwrap_err();
    assert_eq!(code(&err), "nonce-expired");
    let timeline = site.service.timeline(&id).unwrap();
    assert_eq!(
        timeline.last().unwrap().code.as_deref(),
        Some("nonce-expired")
    );
}

/// An enrolled agent on a booted swtpm, with a client that edits quotes.
fn enrolled<'a>(
    site: &'a Site,
    id: &str,
    edit: impl FnMut(&mut Request) + 'a,
) -> (crate::swtpm::Swtpm, NodeAgent<SwtpmSocket, Tamper<'a>>) {
    let (sw, tpm) = site.booted_tpm();
    let mut agent = NodeAgent::new(tpm, Tamper::new(&site.service, edit), node(id));
    agent.enroll().unwrap();
    (sw, agent)
}

#[test]
fn edited_agent_log_is_refused_naming_pcr_15() {
    if !crate::swtpm::available() {
        return;
    }
    let site = Site::new(local_ca_trust());
    let released = site.image.released();
    let other_rootfs: [u8; 32] = Sha256::digest(b"another rootfs").into();
    // The node measured the real image but claims another rootfs.
    let (_sw, mut agent) = enrolled(&site, "n-log", |r| {
        if let Request::Quote(q) = r {
            q.agent_log = Bytes(
                AgentLog::expected(released.manifest_sha256, other_rootfs, no_gpus()).to_bytes(),
            );
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let err = measured_boot(&mut agent, &site, dir.path()).unwrap_err();
    assert_eq!(code(&err), "pcr-replay");
    assert!(reason(&err).contains("PCR 15"), "{err}");
    assert!(reason(&err).contains("agent event log"), "{err}");

    // The events swapped: same digests, other order. (One site per node:
    // the swtpm copies share one EK, and an EK belongs to one node.)
    let site = Site::new(local_ca_trust());
    let (_sw, mut agent) = enrolled(&site, "n-order", |r| {
        if let Request::Quote(q) = r {
            let mut log = AgentLog::parse(&q.agent_log).unwrap();
            log.events.reverse();
            q.agent_log = Bytes(log.to_bytes());
        }
    });
    let err = measured_boot(&mut agent, &site, dir.path()).unwrap_err();
    assert_eq!(code(&err), "pcr-replay");

    // A firmware log byte flipped inside an event's digest.
    let site = Site::new(local_ca_trust());
    let (_sw, mut agent) = enrolled(&site, "n-fw", |r| {
        if let Request::Quote(q) = r {
            let last = q.firmware_log.0.len() - 20;
            q.firmware_log.0[last] ^= 0x80;
        }
    });
    let err = measured_boot(&mut agent, &site, dir.path()).unwrap_err();
    assert!(["pcr-replay", "event-log"].contains(&code(&err)), "{err}");
}

#[test]
fn wrong_rootfs_measured_is_refused_naming_it() {
    if !crate::swtpm::available() {
        return;
    }
    let site = Site::new(local_ca_trust());
    let (_sw, mut agent) = enrolled(&site, "n-rootfs", |_| {});
    let released = site.image.released();
    // Consistent log and PCR, but not the manifest's rootfs.
    agent
        .measure(AgentMeasurement::Manifest, released.manifest_sha256)
        .unwrap();
    agent
        .measure(AgentMeasurement::Rootfs, Sha256::digest(b"tampered").into())
        .unwrap();
    agent.measure(AgentMeasurement::Gpus, no_gpus()).unwrap();
    let err = agent
        .attest(&site.firmware.log, site.image.image_ref())
        .unwrap_err();
    assert_eq!(code(&err), "agent-rootfs");
    assert!(reason(&err).contains(ROOTFS), "{err}");
    assert!(
        reason(&err).contains(&hex::encode(released.rootfs_sha256)),
        "{err}"
    );

    // Only the manifest measured: the shape is wrong.
    let site = Site::new(local_ca_trust());
    let (_sw, mut agent) = enrolled(&site, "n-short", |_| {});
    agent
        .measure(AgentMeasurement::Manifest, released.manifest_sha256)
        .unwrap();
    let err = agent
        .attest(&site.firmware.log, site.image.image_ref())
        .unwrap_err();
    assert_eq!(code(&err), "agent-log");
}

#[test]
fn rootfs_flipped_on_the_server_is_never_measured() {
    if !crate::swtpm::available() {
        return;
    }
    let site = Site::new(local_ca_trust());
    let (_sw, mut agent) = enrolled(&site, "n-flip", |_| {});
    let released = site.image.released();
    let mut served = site.image.rootfs.clone();
    served[1234] ^= 0x01;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join(ROOTFS);
    let err = fetch_verified(
        &served[..],
        ROOTFS,
        released.rootfs_size,
        released.rootfs_sha256,
        &dest,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("rootfs.squashfs: SHA-256 is"),
        "{err}"
    );
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    // Nothing was extended.
    let pcrs = agent.tpm().pcr_read(&PcrSelection::sha256_boot()).unwrap();
    assert_eq!(pcrs.get(alg::SHA256, 15).unwrap(), [0u8; 32]);
}

#[test]
fn quote_by_another_nodes_ak_is_refused() {
    if !crate::swtpm::available() {
        return;
    }
    // No EK roots: both nodes enroll pending (quotes are still checked in
    // full, signature first).
    let site = Site::new(ironrack_pxe::attest::ek::EkTrust::new());
    // Node A: another machine (own seeds, own local CA).
    let sw_a = crate::swtpm::Swtpm::start_other();
    let mut tpm_a = sw_a.connect();
    tpm_a.startup().unwrap();
    site.firmware.boot(&mut tpm_a);
    let mut agent_a = NodeAgent::new(tpm_a, Tamper::new(&site.service, |_| {}), node("node-a"));
    assert!(matches!(agent_a.enroll().unwrap(), Verdict::Pending { .. }));
    let (_sw_b, _agent_b) = enrolled(&site, "node-b", |_| {});

    // One TPM cannot enroll as a second node.
    let (_sw_c, tpm_c) = site.booted_tpm();
    let mut agent_c = NodeAgent::new(tpm_c, Tamper::new(&site.service, |_| {}), node("node-c"));
    let err = agent_c.enroll().unwrap_err();
    assert_eq!(code(&err), "ek-in-use");
    assert!(reason(&err).contains("node-b"), "{err}");

    // Node A's TPM answers in node B's name.
    let mut impostor = NodeAgent::new(
        agent_a.into_tpm(),
        Tamper::new(&site.service, |_| {}),
        node("node-b"),
    );
    let dir = tempfile::tempdir().unwrap();
    let err = measured_boot(&mut impostor, &site, dir.path()).unwrap_err();
    assert_eq!(code(&err), "quote-signature");
    assert!(reason(&err).contains("node-b"), "{err}");
}

#[test]
fn boot_without_the_manifests_uki_is_refused() {
    if !crate::swtpm::available() {
        return;
    }
    // The manifest predicts one UKI; the node's firmware started another.
    let predicted = Firmware::new();
    let image = SignedImage::new(&predicted, 7);
    let site = Site::assemble(
        Firmware::with_uki(Sha256::digest(b"another UKI").into()),
        image,
        local_ca_trust(),
        std::sync::Arc::new(ironrack_pxe::attest::service::MemoryStore::new()),
    );
    let (_sw, mut agent) = enrolled(&site, "n-uki", |_| {});
    let dir = tempfile::tempdir().unwrap();
    let err = measured_boot(&mut agent, &site, dir.path()).unwrap_err();
    assert_eq!(code(&err), "pcr4-uki");
    assert!(
        reason(&err).contains(&hex::encode(predicted.uki_authenticode)),
        "{err}"
    );

    // An image version the server never saw signed.
    let site = Site::new(local_ca_trust());
    let (_sw, mut agent) = enrolled(&site, "n-version", |r| {
        if let Request::Quote(q) = r {
            q.image.version = 6;
        }
    });
    let err = measured_boot(&mut agent, &site, dir.path()).unwrap_err();
    assert_eq!(code(&err), "image-unknown");
}

#[test]
fn agent_refuses_rollback_and_foreign_manifests() {
    use ironrack_keys::Timestamp;
    use ironrack_pxe::attest::image::{ImageError, ReleasedImage};

    let firmware = Firmware::new();
    let image = SignedImage::new(&firmware, 7);
    let cause = |e: ImageError| match e {
        ImageError::Verify(inner) => inner.to_string(),
        other => panic!("expected a verification error, got {other}"),
    };
    // The node has already seen version 8 of this image.
    let err = ReleasedImage::verify(
        &image.trust,
        &image.manifest,
        &image.signature,
        Some(8),
        Timestamp::now(),
    )
    .unwrap_err();
    assert!(cause(err).contains("rollback"));
    // Signed by a key another site's trust root delegated to.
    let other = SignedImage::new(&firmware, 7);
    let err = ReleasedImage::verify(
        &image.trust,
        &other.manifest,
        &other.signature,
        None,
        Timestamp::now(),
    )
    .unwrap_err();
    assert!(cause(err).contains("key"), "unknown signing key");
    // The site revoked the signing key (the next trust version, signed by
    // the root): its manifests are refused, the byte-exact good ones too.
    let mut next = image.trust_file.next_version().unwrap();
    next.signed.revoke(image.signer).unwrap();
    next.sign(&image.root).unwrap();
    let revoked = image
        .trust
        .update(&next.to_bytes().unwrap(), Timestamp::now())
        .unwrap();
    let err = ReleasedImage::verify(
        &revoked,
        &image.manifest,
        &image.signature,
        None,
        Timestamp::now(),
    )
    .unwrap_err();
    assert!(cause(err).contains("revoked"), "signed by a revoked key");
    // One byte of the manifest changed after signing.
    let mut edited = image.manifest.clone();
    let at = edited.iter().position(|&b| b == b'7').unwrap();
    edited[at] = b'9';
    assert!(
        ReleasedImage::verify(
            &image.trust,
            &edited,
            &image.signature,
            None,
            Timestamp::now()
        )
        .is_err()
    );
}

/// The kernel's IMA list explains PCR 10 (Debian's kernels measure
/// `boot_aggregate` whenever a TPM is present); an edited, dropped or
/// misplaced entry is refused.
#[test]
fn ima_list_explains_pcr_10_and_edits_are_refused() {
    use ironrack_pxe::attest::eventlog::ima::{ImaEntry, ImaLog};
    if !crate::swtpm::available() {
        return;
    }
    // An ima-ng entry as the kernel writes it: d-ng, then n-ng.
    let mut data = Vec::new();
    let mut dng = b"sha256:\0".to_vec();
    dng.extend([0x11; 32]);
    for field in [&dng[..], b"boot_aggregate\0"] {
        data.extend((field.len() as u32).to_le_bytes());
        data.extend(field);
    }
    let list = ImaLog {
        entries: vec![ImaEntry {
            pcr: 10,
            template: "ima-ng".into(),
            data,
            violation: false,
        }],
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("binary_runtime_measurements");
    std::fs::write(&path, list.to_bytes()).unwrap();
    let boot = |id: &str, edit: Box<dyn FnMut(&mut Request)>| {
        let site = Site::new(local_ca_trust());
        let (_sw, mut tpm) = site.booted_tpm();
        tpm.pcr_extend(10, &[(alg::SHA256, &list.entries[0].sha256_extend())])
            .unwrap();
        let mut agent = NodeAgent::new(tpm, Tamper::new(&site.service, edit), node(id))
            .with_ima_log(path.clone());
        agent.enroll().unwrap();
        measured_boot(&mut agent, &site, dir.path())
    };
    let verdict = boot("n-ima", Box::new(|_| {})).unwrap();
    assert!(matches!(verdict, Verdict::Attested { .. }), "{verdict:?}");

    let err = boot(
        "n-ima-none",
        Box::new(|r| {
            if let Request::Quote(q) = r {
                q.ima_log = Bytes::default();
            }
        }),
    )
    .unwrap_err();
    assert_eq!(code(&err), "pcr-replay");
    assert!(reason(&err).contains("PCR 10"), "{err}");

    let err = boot(
        "n-ima-edit",
        Box::new(|r| {
            if let Request::Quote(q) = r {
                let last = q.ima_log.0.len() - 2;
                q.ima_log.0[last] ^= 1;
            }
        }),
    )
    .unwrap_err();
    assert_eq!(code(&err), "event-log");
    assert!(reason(&err).contains("IMA"), "{err}");

    let err = boot(
        "n-ima-pcr15",
        Box::new(|r| {
            if let Request::Quote(q) = r {
                let mut moved = ImaLog::parse(&q.ima_log).unwrap();
                moved.entries[0].pcr = 15;
                q.ima_log = Bytes(moved.to_bytes());
            }
        }),
    )
    .unwrap_err();
    assert_eq!(code(&err), "event-log");
    assert!(reason(&err).contains("PCR 15"), "{err}");
}

/// A node that ran version 8 and now boots version 7 (signed, valid, but
/// perhaps the one with the hole) is refused as a rollback, unless the
/// operator pinned it to 7.
#[test]
fn an_older_image_than_the_node_ran_is_a_rollback_unless_pinned() {
    use ironrack_pxe::attest::protocol::NodeId;
    use ironrack_pxe::attest::service::{AttestStore, MemoryStore, NodePolicy};
    use std::sync::Arc;

    struct Pin(u64);
    impl NodePolicy for Pin {
        fn pinned_version(&self, _: &NodeId, _: &str) -> Option<u64> {
            Some(self.0)
        }
        fn gpu_profile(&self, _: &NodeId) -> Option<ironrack_pxe::attest::gpu::GpuProfile> {
            None
        }
    }
    if !crate::swtpm::available() {
        return;
    }
    let boot = |pin: Option<u64>| {
        let store = Arc::new(MemoryStore::new());
        let mut site = Site::with_store(local_ca_trust(), store.clone());
        if let Some(v) = pin {
            site.service = site.service.with_policy(Arc::new(Pin(v)));
        }
        let image = site.image.image_ref();
        assert_eq!(image.version, 7);
        let id = node("52:54:00:00:00:20");
        store.record_version(&id, &image.name, 8).unwrap();
        let (_sw, tpm) = site.booted_tpm();
        let mut agent = NodeAgent::new(tpm, &site.service, id.clone());
        agent.enroll().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let result = measured_boot(&mut agent, &site, dir.path());
        (result, store.highest_version(&id, &image.name).unwrap())
    };
    let (result, highest) = boot(None);
    let err = result.unwrap_err();
    assert_eq!(code(&err), "rollback");
    assert!(
        reason(&err).contains("version 7, older than version 8"),
        "{err}"
    );
    assert_eq!(highest, Some(8));

    let (result, highest) = boot(Some(7));
    assert!(matches!(result, Ok(Verdict::Attested { .. })), "{result:?}");
    assert_eq!(highest, Some(8), "a pinned downgrade keeps the high mark");

    let (result, _) = boot(Some(6));
    assert_eq!(
        code(&result.unwrap_err()),
        "rollback",
        "a pin on another version"
    );
}

/// The GPUs a node shows (read from a sysfs-shaped fixture by the agent's
/// own reader) must be the site's profile for it; the inventory sent is
/// bound to the quote through PCR 15.
#[test]
fn gpu_inventory_must_match_the_profile_and_the_measurement() {
    use ironrack_pxe::agent::gpu::{read_inventory, write_fixture};
    use ironrack_pxe::attest::gpu::{GpuDevice, GpuProfile};
    use ironrack_pxe::attest::protocol::NodeId;
    use ironrack_pxe::attest::service::NodePolicy;
    use std::sync::Arc;

    struct Profile;
    impl NodePolicy for Profile {
        fn pinned_version(&self, _: &NodeId, _: &str) -> Option<u64> {
            None
        }
        fn gpu_profile(&self, _: &NodeId) -> Option<GpuProfile> {
            Some("8 x 0x2330".parse().unwrap())
        }
    }
    if !crate::swtpm::available() {
        return;
    }
    let sysfs = |count: usize| {
        let dir = tempfile::tempdir().unwrap();
        let devices: Vec<GpuDevice> = (0..count)
            .map(|i| GpuDevice {
                address: format!("0000:{:02x}:00.0", 0x18 + i),
                device: 0x2330,
                class: 0x030200,
                link_width: Some(16),
                link_speed: Some("32.0 GT/s PCIe".into()),
            })
            .collect();
        write_fixture(dir.path(), &devices, Some("535.261.03")).unwrap();
        read_inventory(dir.path()).unwrap()
    };
    let boot = |gpus, edit: Box<dyn FnMut(&mut Request)>| {
        let mut site = Site::new(local_ca_trust());
        site.service = site.service.with_policy(Arc::new(Profile));
        let (_sw, tpm) = site.booted_tpm();
        let mut agent =
            NodeAgent::new(tpm, Tamper::new(&site.service, edit), node("n-gpu")).with_gpus(gpus);
        agent.enroll().unwrap();
        let dir = tempfile::tempdir().unwrap();
        measured_boot(&mut agent, &site, dir.path())
    };
    let verdict = boot(sysfs(8), Box::new(|_| {})).unwrap();
    assert!(matches!(verdict, Verdict::Attested { .. }), "{verdict:?}");

    let err = boot(sysfs(7), Box::new(|_| {})).unwrap_err();
    assert_eq!(code(&err), "gpu-profile");
    assert!(
        reason(&err).contains("expected 8 x 0x2330, found 7 x 0x2330"),
        "{err}"
    );

    // Seven measured, eight claimed: the claim is not what PCR 15 holds.
    let eight = sysfs(8).canonical_bytes();
    let err = boot(
        sysfs(7),
        Box::new(move |r| {
            if let Request::Quote(q) = r {
                q.gpus = Bytes(eight.clone());
            }
        }),
    )
    .unwrap_err();
    assert_eq!(code(&err), "agent-gpus");
}
