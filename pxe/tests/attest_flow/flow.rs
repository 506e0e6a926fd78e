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
            image: site.image.image_ref()
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
