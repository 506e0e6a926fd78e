//! The paths that end well: enrollment, attested boots, approval of a
//! pending node, a store that survives a restart of the server.

use std::sync::Arc;

use ironrack_pxe::agent::NodeAgent;
use ironrack_pxe::attest::ek::EkTrust;
use ironrack_pxe::attest::protocol::Verdict;
use ironrack_pxe::attest::service::{NodeState, SqliteAttestStore};

use crate::support::{Site, local_ca_trust, measured_boot, node};

#[test]
fn enrolled_node_is_attested_on_every_boot() {
    if !crate::swtpm::available() {
        return;
    }
    let site = Site::new(local_ca_trust());
    let (mut sw, tpm) = site.booted_tpm();
    let id = node("52:54:00:00:00:01");
    let mut agent = NodeAgent::new(tpm, &site.service, id.clone());
    assert_eq!(
        agent.enroll().unwrap(),
        Verdict::Enrolled { node: id.clone() }
    );

    let dir = tempfile::tempdir().unwrap();
    let verdict = measured_boot(&mut agent, &site, dir.path()).unwrap();
    assert_eq!(
        verdict,
        Verdict::Attested {
            node: id.clone(),
            image: site.image.image_ref(),
            secret: None,
        }
    );
    // The rootfs landed complete under its name.
    assert_eq!(
        std::fs::read(dir.path().join("rootfs.squashfs")).unwrap(),
        site.image.rootfs
    );

    let first = site.service.nodes().unwrap()[0].last_clock.unwrap();

    // A power cycle: PCRs reset, the persisted AK is reused without
    // re-enrolling, the counters moved forward.
    drop(agent);
    sw.restart();
    let mut tpm = sw.connect();
    assert!(tpm.startup().unwrap());
    site.firmware.boot(&mut tpm);
    let mut agent = NodeAgent::new(tpm, &site.service, id.clone());
    let verdict = measured_boot(&mut agent, &site, dir.path()).unwrap();
    assert!(matches!(verdict, Verdict::Attested { .. }), "{verdict:?}");

    let statuses: Vec<_> = site
        .service
        .timeline(&id)
        .unwrap()
        .into_iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(statuses, ["enrolled", "attested", "attested"]);
    let record = site.service.nodes().unwrap().pop().unwrap();
    assert_eq!(record.state, NodeState::Enrolled);
    assert!(record.last_clock.unwrap().reset_count > first.reset_count);
}

/// The site's secret for the node, sealed to its TPM, opens only there;
/// an unsafe secret file is never released, and the node may retry.
#[test]
fn an_attested_node_gets_its_secret_and_only_it() {
    use std::os::unix::fs::PermissionsExt as _;
    if !crate::swtpm::available() {
        return;
    }
    let secrets = tempfile::tempdir().unwrap();
    let id = node("52:54:00:00:00:05");
    let file = secrets.path().join(id.as_str());
    let token = b"join-token 4f1c9a77e2d0\n";
    std::fs::write(&file, token).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    // No CA trusted: the operator approves both machines (one of them
    // from another vendor, whose CA has the same name as the first's).
    let site = Site::with_secrets(EkTrust::new(), secrets.path());
    let (_sw, tpm) = site.booted_tpm();
    let mut agent = NodeAgent::new(tpm, &site.service, id.clone());
    agent.enroll().unwrap();
    site.service.approve(&id).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let verdict = measured_boot(&mut agent, &site, dir.path()).unwrap();
    let Verdict::Attested {
        secret: Some(sealed),
        ..
    } = &verdict
    else {
        panic!("no secret with {verdict:?}");
    };
    assert!(!sealed.ciphertext.0.windows(10).any(|w| w == b"join-token"));
    assert_eq!(&agent.open_secret(sealed).unwrap()[..], token);
    let timeline = site.service.timeline(&id).unwrap();
    assert!(
        timeline
            .last()
            .unwrap()
            .detail
            .ends_with("; secret released"),
        "{timeline:?}"
    );

    // Another machine's TPM cannot open it.
    let sw2 = crate::swtpm::Swtpm::start_other();
    let mut tpm2 = sw2.connect();
    assert!(tpm2.startup().unwrap());
    site.firmware.boot(&mut tpm2);
    let stranger_id = node("52:54:00:00:00:06");
    let mut stranger = NodeAgent::new(tpm2, &site.service, stranger_id.clone());
    stranger.enroll().unwrap();
    site.service.approve(&stranger_id).unwrap();
    let err = stranger.open_secret(sealed).unwrap_err();
    assert!(err.to_string().contains("ActivateCredential"), "{err}");

    // A file the group may read is refused; nothing is released.
    let other = secrets.path().join("52:54:00:00:00:06");
    std::fs::write(&other, token).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = measured_boot(&mut stranger, &site, dir.path()).unwrap_err();
    let text = format!("{err:?}");
    assert!(
        text.contains("mode 0640") && text.contains("52:54:00:00:00:06"),
        "{text}"
    );
}

#[test]
fn unknown_ca_keeps_the_node_pending_until_approved() {
    if !crate::swtpm::available() {
        return;
    }
    // The operator trusts no EK CA at all.
    let site = Site::new(EkTrust::new());
    let (_sw, tpm) = site.booted_tpm();
    let id = node("rack1-node02");
    let mut agent = NodeAgent::new(tpm, &site.service, id.clone());
    let Verdict::Pending { reason, .. } = agent.enroll().unwrap() else {
        panic!("an EK from an unknown CA must leave the node pending");
    };
    assert!(reason.contains("not a trusted EK CA"), "{reason}");
    assert!(reason.contains("CN=swtpm-localca"), "{reason}");

    // Its quotes are checked in full but not accepted as attested.
    let dir = tempfile::tempdir().unwrap();
    let verdict = measured_boot(&mut agent, &site, dir.path()).unwrap();
    assert!(matches!(verdict, Verdict::Pending { .. }), "{verdict:?}");

    site.service.approve(&id).unwrap();
    // Re-enrolling the same TPM keeps the approval.
    assert_eq!(
        agent.enroll().unwrap(),
        Verdict::Enrolled { node: id.clone() }
    );
    let verdict = agent
        .attest(&site.firmware.log, site.image.image_ref())
        .unwrap();
    assert!(matches!(verdict, Verdict::Attested { .. }), "{verdict:?}");

    // Revoked: no more nonces, no re-enrollment.
    site.service.revoke(&id).unwrap();
    let err = agent
        .attest(&site.firmware.log, site.image.image_ref())
        .unwrap_err();
    assert!(err.to_string().contains("node-revoked"), "{err}");
    let err = agent.enroll().unwrap_err();
    assert!(err.to_string().contains("node-revoked"), "{err}");
}

#[test]
fn sqlite_store_survives_a_server_restart() {
    if !crate::swtpm::available() {
        return;
    }
    let db_dir = tempfile::tempdir().unwrap();
    let db = db_dir.path().join("state.db");
    let site = Site::with_store(
        local_ca_trust(),
        Arc::new(SqliteAttestStore::open(&db).unwrap()),
    );
    let (mut sw, tpm) = site.booted_tpm();
    let id = node("52:54:00:00:00:03");
    let mut agent = NodeAgent::new(tpm, &site.service, id.clone());
    agent.enroll().unwrap();
    let dir = tempfile::tempdir().unwrap();
    measured_boot(&mut agent, &site, dir.path()).unwrap();
    drop(agent);

    // The server restarts: a new service over the reopened file.
    let Site {
        firmware,
        image,
        service,
        ..
    } = site;
    drop(service);
    let site = Site::assemble(
        firmware,
        image,
        local_ca_trust(),
        Arc::new(SqliteAttestStore::open(&db).unwrap()),
    );
    let record = site.service.nodes().unwrap().pop().unwrap();
    assert_eq!(record.node, id);
    assert_eq!(record.state, NodeState::Enrolled);
    assert!(record.last_clock.is_some(), "counters kept");
    let before = site.service.timeline(&id).unwrap();
    assert_eq!(before.len(), 2, "{before:?}");

    // The node reboots and attests without enrolling again: the AK stored
    // before the restart verifies its quote.
    sw.restart();
    let mut tpm = sw.connect();
    tpm.startup().unwrap();
    site.firmware.boot(&mut tpm);
    let mut agent = NodeAgent::new(tpm, &site.service, id.clone());
    let verdict = measured_boot(&mut agent, &site, dir.path()).unwrap();
    assert!(matches!(verdict, Verdict::Attested { .. }), "{verdict:?}");
    assert_eq!(site.service.timeline(&id).unwrap().len(), 3);
}

#[test]
fn real_ovmf_boot_log_is_attested() {
    if !crate::swtpm::available() {
        return;
    }
    // The captured firmware log, replayed into swtpm as OVMF extended it;
    // the manifest predicts the captured UKI's digest and PCR 11.
    let firmware = crate::support::Firmware::real();
    let image = crate::support::SignedImage::new(&firmware, 1);
    let site = Site::assemble(
        firmware,
        image,
        local_ca_trust(),
        Arc::new(ironrack_pxe::attest::service::MemoryStore::new()),
    );
    let (_sw, tpm) = site.booted_tpm();
    let id = node("52:54:00:12:34:56");
    let mut agent = NodeAgent::new(tpm, &site.service, id.clone());
    agent.enroll().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let verdict = measured_boot(&mut agent, &site, dir.path()).unwrap();
    assert!(matches!(verdict, Verdict::Attested { .. }), "{verdict:?}");
}

/// The captured OVMF → iPXE → UKI boot judged as `ironrack serve` judges
/// it: only the iPXE it served before the UKI in PCR 4, the command line
/// its script passed in PCR 12, Secure Boot as the profile says in PCR 7.
#[test]
fn real_boot_chain_is_checked_against_what_the_server_served() {
    use ironrack_pxe::attest::image::{ReleasedImage, hex32};
    use ironrack_pxe::attest::protocol::NodeId;
    use ironrack_pxe::attest::service::{MemoryStore, NodePolicy};

    struct Served {
        options: &'static str,
        loaders: Vec<[u8; 32]>,
        secure_boot: Option<bool>,
    }
    impl NodePolicy for Served {
        fn secure_boot(&self, _: &NodeId) -> Option<bool> {
            self.secure_boot
        }
        fn load_options(&self, _: &NodeId, _: &ReleasedImage) -> Option<String> {
            Some(self.options.into())
        }
        fn boot_loaders(&self) -> Option<Vec<[u8; 32]>> {
            Some(self.loaders.clone())
        }
    }
    if !crate::swtpm::available() {
        return;
    }
    let snponly = ironrack_pxe::testkit::fixtures::index_rows()
        .into_iter()
        .find(|(k, _)| k.starts_with("snponly.efi"))
        .and_then(|(_, v)| hex32(&v))
        .expect("snponly.efi row in INDEX.md");
    let judge = |served: Served| {
        let firmware = crate::support::Firmware::real();
        let image = crate::support::SignedImage::new(&firmware, 1);
        let mut site = Site::assemble(
            firmware,
            image,
            local_ca_trust(),
            Arc::new(MemoryStore::new()),
        );
        site.service = site.service.with_policy(Arc::new(served));
        let (_sw, tpm) = site.booted_tpm();
        let mut agent = NodeAgent::new(tpm, &site.service, node("52:54:00:12:34:57"));
        agent.enroll().unwrap();
        let dir = tempfile::tempdir().unwrap();
        measured_boot(&mut agent, &site, dir.path())
    };
    let refusal = |result: Result<Verdict, ironrack_pxe::agent::AgentError>| match result {
        Err(ironrack_pxe::agent::AgentError::Refused { code, reason, .. }) => (code, reason),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let served = || Served {
        options: "node.efi console=ttyS0 panic=-1",
        loaders: vec![snponly],
        secure_boot: Some(false),
    };
    let verdict = judge(served()).unwrap();
    assert!(matches!(verdict, Verdict::Attested { .. }), "{verdict:?}");

    let (code, reason) = refusal(judge(Served {
        options: "node.efi console=ttyS0 panic=-1 init=/bin/sh",
        ..served()
    }));
    assert_eq!(code, "pcr12");
    assert!(reason.contains("init=/bin/sh"), "{reason}");

    let (code, reason) = refusal(judge(Served {
        loaders: vec![[7; 32]],
        ..served()
    }));
    assert_eq!(code, "pcr4-application");
    assert!(reason.contains(&hex::encode(snponly)), "{reason}");
    assert!(reason.contains("before the UKI"), "{reason}");

    let (code, reason) = refusal(judge(Served {
        secure_boot: Some(true),
        ..served()
    }));
    assert_eq!(code, "pcr7-secure-boot");
    assert!(reason.contains("Secure Boot is off"), "{reason}");
}

/// A legacy BIOS boot measures no UKI: a node whose profile says
/// `boot-chain = "bios"` is judged on the quote, the firmware log, IMA and
/// the agent's PCR 15 (and still refused for another rootfs); the same
/// boot under the default UEFI chain is refused for the missing UKI.
#[test]
fn a_bios_chain_is_held_to_what_bios_can_measure() {
    use ironrack_pxe::attest::protocol::NodeId;
    use ironrack_pxe::attest::service::{BootChain, MemoryStore, NodePolicy};

    struct Chain(BootChain);
    impl NodePolicy for Chain {
        fn boot_chain(&self, _: &NodeId) -> BootChain {
            self.0
        }
    }
    if !crate::swtpm::available() {
        return;
    }
    let judge = |chain: BootChain, rootfs: Option<&[u8]>| {
        use ironrack_pxe::attest::eventlog::agent::AgentMeasurement;
        use sha2::{Digest as _, Sha256};
        let firmware = crate::support::Firmware::bios();
        let image = crate::support::SignedImage::new(&firmware, 1);
        let mut site = Site::assemble(
            firmware,
            image,
            local_ca_trust(),
            Arc::new(MemoryStore::new()),
        );
        site.service = site.service.with_policy(Arc::new(Chain(chain)));
        let (_sw, tpm) = site.booted_tpm();
        let mut agent = NodeAgent::new(tpm, &site.service, node("52:54:00:12:34:58"));
        agent.enroll().unwrap();
        let dir = tempfile::tempdir().unwrap();
        match rootfs {
            None => measured_boot(&mut agent, &site, dir.path()),
            Some(other) => {
                let released = site.image.released();
                agent
                    .measure(AgentMeasurement::Manifest, released.manifest_sha256)
                    .unwrap();
                agent
                    .measure(AgentMeasurement::Rootfs, Sha256::digest(other).into())
                    .unwrap();
                agent
                    .measure(
                        AgentMeasurement::Gpus,
                        ironrack_pxe::attest::gpu::GpuInventory::default().sha256(),
                    )
                    .unwrap();
                agent.attest(&site.firmware.log, site.image.image_ref())
            }
        }
    };
    let verdict = judge(BootChain::Bios, None).unwrap();
    assert!(matches!(verdict, Verdict::Attested { .. }), "{verdict:?}");
    match judge(BootChain::Uki, None) {
        Err(ironrack_pxe::agent::AgentError::Refused { code, .. }) => assert_eq!(code, "pcr4-uki"),
        other => panic!("expected pcr4-uki, got {other:?}"),
    }
    match judge(BootChain::Bios, Some(b"another rootfs")) {
        Err(ironrack_pxe::agent::AgentError::Refused { code, .. }) => {
            assert_eq!(code, "agent-rootfs")
        }
        other => panic!("expected agent-rootfs, got {other:?}"),
    }
}
