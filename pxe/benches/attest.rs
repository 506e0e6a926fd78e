//! Attestation server throughput on one core: quote verifications and
//! MakeCredential operations per second.
//!
//! `cargo bench -p ironrack-pxe --bench attest` (optionally `-- SECONDS`
//! per measurement, default 2). Quotes come from the software TPM model,
//! which produces byte-for-byte real TPMS_ATTEST structures and
//! signatures, so the verifier does exactly the work it does for a TPM.
//! The service cases go through [`AttestService`] whole: nonce issue and
//! consumption in the store, quote verification, firmware and agent
//! event-log replay, the image policy, the timeline write.

#![allow(clippy::print_stdout)] // a benchmark's report is its output

use std::hint::black_box;
use std::time::{Duration, Instant};

use ironrack_keys::{Artifact, Sha256Digest, SignedManifest, Timestamp};
use ironrack_pxe::attest::credential::make_credential;
use ironrack_pxe::attest::ek::EkTrust;
use ironrack_pxe::attest::eventlog::agent::AgentLog;
use ironrack_pxe::attest::eventlog::{
    AlgorithmId, DevicePath, Digest, EventLog, EventLogBuilder, EventType, ImageLoadEvent,
};
use ironrack_pxe::attest::gpu::GpuInventory;
use ironrack_pxe::attest::image::ReleasedImage;
use ironrack_pxe::attest::protocol::{
    ActivateRequest, Bytes, EnrollRequest, ImageRef, NodeId, NonceRequest, PcrValue,
    QuoteSubmission, Verdict,
};
use ironrack_pxe::attest::quote::{AkKey, Expected, verify_quote};
use ironrack_pxe::attest::service::{AttestConfig, AttestService, ImageSet, MemoryStore};
use ironrack_pxe::attest::tpm::constants::alg;
use ironrack_pxe::attest::tpm::model::SimulatedTpm;
use ironrack_pxe::attest::tpm::public::KeyParams;
use ironrack_pxe::attest::tpm::{AkTemplate, EkTemplate, PcrSelection, Public, Signature};
use rsa::traits::PublicKeyParts;
use sha2::{Digest as _, Sha256};
use std::sync::Arc;

/// Runs `f` repeatedly for `budget` and returns operations per second.
fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    // Warm up caches and lazy tables.
    for _ in 0..10 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..16 {
            f();
        }
        n += 16;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn report(what: &str, per_second: f64) {
    println!(
        "{what:<48} {per_second:>10.0} /s  {:>8.1} µs each",
        1e6 / per_second
    );
}

fn bench_quotes(budget: Duration) {
    for kind in [AkTemplate::EccP256, AkTemplate::Rsa2048] {
        let mut node = SimulatedTpm::new(kind).expect("model");
        for pcr in 0..16 {
            node.extend(pcr, &[pcr as u8; 32]).expect("extend");
        }
        let selection = PcrSelection::sha256_boot();
        let nonce = [0x5a; 32];
        let quote = node.quote(&nonce, &selection).expect("quote");
        let ak = AkKey::new(node.ak_public().clone()).expect("AK");
        let expected = Expected {
            nonce: &nonce,
            selection: &selection,
            pcrs: node.pcrs(),
            previous: None,
        };
        verify_quote(&ak, &quote.attest, &quote.signature, &expected).expect("valid quote");
        let r = rate(budget, || {
            black_box(
                verify_quote(&ak, black_box(&quote.attest), &quote.signature, &expected).is_ok(),
            );
        });
        report(&format!("verify quote, AK {}", kind.label()), r);
        let public = node.ak_public().clone();
        let r = rate(budget, || {
            black_box(AkKey::new(black_box(public.clone())).is_ok());
        });
        report(
            &format!("prepare AK key (once per node), {}", kind.label()),
            r,
        );
        // Without a per-node cache: AK public and signature from wire bytes.
        let ak_bytes = node.ak_public().to_bytes();
        let sig_bytes = quote.signature.to_bytes();
        let r = rate(budget, || {
            let ak = AkKey::new(Public::from_bytes(&ak_bytes).expect("AK")).expect("AK");
            let sig = Signature::from_bytes(&sig_bytes).expect("signature");
            black_box(verify_quote(&ak, &quote.attest, &sig, &expected).is_ok());
        });
        report("  same, AK and signature parsed each time", r);
    }
}

fn rsa_ek() -> Public {
    let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).expect("RSA key");
    let mut ek = EkTemplate::Rsa2048.public();
    if let KeyParams::Rsa { modulus, .. } = &mut ek.params {
        *modulus = key.n().to_be_bytes().to_vec();
    }
    ek
}

fn bench_credentials(budget: Duration) {
    let node = SimulatedTpm::new(AkTemplate::EccP256).expect("model");
    let p256_ek = node.ek_public().clone();
    let name = node.ak_name().to_vec();
    for (label, ek) in [("RSA-2048 EK", rsa_ek()), ("ECC P-256 EK", p256_ek)] {
        let r = rate(budget, || {
            black_box(make_credential(&ek, &name, b"join token").is_ok());
        });
        report(&format!("MakeCredential, {label}"), r);
    }
    let cred = make_credential(node.ek_public(), &name, b"join token").expect("credential");
    let r = rate(budget, || {
        black_box(
            node.activate_credential(&name, &cred.id_object, &cred.encrypted_secret)
                .is_ok(),
        );
    });
    report("model ActivateCredential (load generator)", r);
    let r = rate(budget, || {
        black_box(node.quote(&[1; 32], &PcrSelection::sha256_boot()).is_ok());
    });
    report("model quote, ECC P-256 (load generator)", r);
}

/// A firmware log like OVMF's: separators, the UKI in PCR 4, the stub's
/// sections in PCR 11.
fn firmware_log(uki_authenticode: &[u8; 32]) -> Vec<u8> {
    let mut b = EventLogBuilder::sha256();
    b.event(0, EventType::S_CRTM_VERSION, vec![0, 0]);
    for pcr in 0..8 {
        b.separator(pcr);
    }
    b.efi_action(4, "Calling EFI Application from Boot Option");
    let digest = Digest::from_slice(AlgorithmId::SHA256, uki_authenticode).expect("digest");
    b.boot_application(
        &[digest],
        &ImageLoadEvent {
            location: 0x7e00_0000,
            length: 1 << 24,
            link_time_address: 0,
            device_path: DevicePath::default(),
        },
    );
    for section in [&b".linux\0"[..], b"kernel", b".cmdline\0", b"console=ttyS0"] {
        b.measure(11, EventType::IPL, section, section);
    }
    b.to_bytes().expect("log")
}

/// A service that knows one image and one approved node on `tpm`.
fn attested_site(tpm: &mut SimulatedTpm) -> (AttestService, NodeId, Vec<u8>, Vec<u8>, ImageRef) {
    let uki: [u8; 32] = Sha256::digest(b"node.efi").into();
    let fw = firmware_log(&uki);
    let log = EventLog::parse(&fw).expect("log");
    for e in log.events.iter().filter(|e| e.extends()) {
        let d = e.digest(AlgorithmId::SHA256).expect("sha256");
        tpm.extend(e.pcr, d.as_bytes()).expect("extend");
    }
    let pcr11 = log
        .replay()
        .expect("replay")
        .sha256()
        .expect("bank")
        .value(11)
        .expect("11")
        .to_hex();
    let rootfs = Artifact {
        name: "rootfs.squashfs".into(),
        size: 1 << 30,
        sha256: Sha256Digest(Sha256::digest(b"rootfs").into()),
    };
    let payload = serde_json::json!({"measurements": {
        "uki": "node.efi", "uki-authenticode": hex::encode(uki), "pcr11": pcr11, "agent-pcr": 15}});
    let manifest = SignedManifest::new(
        "gpu-node",
        "stable",
        1,
        Timestamp::now().plus_days(1),
        vec![rootfs],
        payload,
    );
    let bytes = manifest.to_bytes().expect("manifest");
    let image = ReleasedImage::from_manifest(&bytes, &manifest).expect("image");
    let gpus = GpuInventory::default().canonical_bytes();
    let agent_log = AgentLog::expected(
        image.manifest_sha256,
        image.rootfs_sha256,
        Sha256::digest(&gpus).into(),
    );
    for e in &agent_log.events {
        tpm.extend(15, &e.sha256).expect("extend");
    }
    let image_ref = ImageRef {
        name: image.name.clone(),
        version: image.version,
    };
    let images = Arc::new(ImageSet::new());
    images.insert(image);
    let service = AttestService::new(
        Arc::new(MemoryStore::new()),
        images,
        AttestConfig::new(EkTrust::new()),
    );
    let node = NodeId::new("52:54:00:00:00:01").expect("node");
    enroll(&service, tpm, &node);
    service.approve(&node).expect("approve");
    (service, node, fw, agent_log.to_bytes(), image_ref)
}

fn enroll(service: &AttestService, tpm: &SimulatedTpm, node: &NodeId) {
    let challenge = service
        .enroll(&EnrollRequest {
            node: node.clone(),
            ek_public: Bytes(tpm.ek_public().to_bytes()),
            ek_certificate: None,
            ak_public: Bytes(tpm.ak_public().to_bytes()),
        })
        .expect("challenge");
    let secret = tpm
        .activate_credential(
            tpm.ak_name(),
            &challenge.id_object,
            &challenge.encrypted_secret,
        )
        .expect("activate");
    service
        .activate(&ActivateRequest {
            node: node.clone(),
            session: challenge.session,
            secret: Bytes(secret),
        })
        .expect("activation");
}

fn bench_service(budget: Duration) {
    for kind in [AkTemplate::EccP256, AkTemplate::Rsa2048] {
        let mut tpm = SimulatedTpm::new(kind).expect("model");
        let (service, node, fw, agent_log, image) = attested_site(&mut tpm);
        let selection = PcrSelection::sha256_boot();
        let pcrs: Vec<PcrValue> = (0..16)
            .map(|pcr| PcrValue {
                bank: alg::SHA256,
                pcr,
                value: Bytes(tpm.pcrs().get(alg::SHA256, pcr).expect("pcr").to_vec()),
            })
            .collect();
        // Quotes are made outside the timed loop: the server's work only.
        let mut submissions: Vec<QuoteSubmission> = Vec::new();
        let next = || {
            let nonce = service
                .nonce(&NonceRequest { node: node.clone() })
                .expect("nonce")
                .nonce;
            let quote = tpm.quote(&nonce, &selection).expect("quote");
            QuoteSubmission {
                node: node.clone(),
                nonce,
                attest: Bytes(quote.attest),
                signature: Bytes(quote.signature.to_bytes()),
                pcr_selection: Bytes(selection.to_bytes()),
                pcrs: pcrs.clone(),
                firmware_log: Bytes(fw.clone()),
                agent_log: Bytes(agent_log.clone()),
                ima_log: Bytes::default(),
                gpus: Bytes(GpuInventory::default().canonical_bytes()),
                image: image.clone(),
            }
        };
        let first = next();
        let verdict = service.quote(&first).expect("verdict");
        assert!(matches!(verdict, Verdict::Attested { .. }), "{verdict:?}");
        submissions.extend((0..2048).map(|_| next()));
        // Each submission is good once (its nonce): time as many as the
        // budget allows, up to the pre-made ones.
        let start = Instant::now();
        let mut n = 0u32;
        for q in &submissions {
            let verdict = service.quote(black_box(q));
            assert!(
                matches!(verdict, Ok(Verdict::Attested { .. })),
                "{verdict:?}"
            );
            n += 1;
            if start.elapsed() >= budget {
                break;
            }
        }
        let r = f64::from(n) / start.elapsed().as_secs_f64();
        report(&format!("service: attest a boot (AK {})", kind.label()), r);
    }
    // Re-enrollment of one node: the same work as a new node's, without
    // the store growing through the measurement.
    let mut tpm = SimulatedTpm::new(AkTemplate::EccP256).expect("model");
    let (service, node, ..) = attested_site(&mut tpm);
    let r = rate(budget, || enroll(&service, &tpm, &node));
    report("service: enrollment + activation (P-256 EK)", r);
}

fn main() {
    // `cargo bench` passes --bench; a number, if given, is seconds per case.
    let secs = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<f64>().ok())
        .unwrap_or(2.0);
    let budget = Duration::from_secs_f64(secs);
    println!("one thread, {secs} s per case");
    bench_quotes(budget);
    bench_credentials(budget);
    bench_service(budget);
}
