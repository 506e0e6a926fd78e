//! Attestation server throughput on one core: quote verifications and
//! MakeCredential operations per second.
//!
//! `cargo bench -p ironrack-pxe --bench attest` (optionally `-- SECONDS`
//! per measurement, default 2). Quotes come from the software TPM model,
//! which produces byte-for-byte real TPMS_ATTEST structures and
//! signatures, so the verifier does exactly the work it does for a TPM.
//! Event-log replay is not included (measured with the event-log code).

#![allow(clippy::print_stdout)] // a benchmark's report is its output

use std::hint::black_box;
use std::time::{Duration, Instant};

use ironrack_pxe::attest::credential::make_credential;
use ironrack_pxe::attest::quote::{AkKey, Expected, verify_quote};
use ironrack_pxe::attest::tpm::model::SimulatedTpm;
use ironrack_pxe::attest::tpm::public::KeyParams;
use ironrack_pxe::attest::tpm::{AkTemplate, EkTemplate, PcrSelection, Public, Signature};
use rsa::traits::PublicKeyParts;

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
}
