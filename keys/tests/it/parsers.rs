//! Every parser against hostile input: arbitrary bytes, valid files
//! truncated or mutated, wrong base64, wrong algorithm ids, huge inputs.
//! The only acceptable outcomes are a value or an error: never a panic,
//! never an unbounded allocation.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ironrack_keys::{
    Error, KeyId, MinisignSignature, Passphrase, Protection, PublicKey, SecretKey, SignedManifest,
    Timestamp, TrustFile, canonical,
};
use proptest::prelude::*;
use serde_json::Value;

use crate::common::*;

/// Apply one kind of damage to a valid file.
#[derive(Debug, Clone)]
enum Damage {
    Truncate(usize),
    Replace(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Append(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Damage::Replace(i, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(i, b)| Damage::Insert(i, b)),
        (any::<usize>(), 1..32usize).prop_map(|(i, n)| Damage::Delete(i, n)),
        prop::collection::vec(any::<u8>(), 1..64).prop_map(Damage::Append),
    ]
}

fn apply(bytes: &[u8], damage: &Damage) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let at = |i: usize| {
        if out.is_empty() {
            0
        } else {
            i % (out.len() + 1)
        }
    };
    match damage {
        Damage::Truncate(i) => out.truncate(at(*i)),
        Damage::Replace(i, b) => {
            if !out.is_empty() {
                let i = i % out.len();
                out[i] = *b;
            }
        }
        Damage::Insert(i, extra) => {
            let i = at(*i);
            out.splice(i..i, extra.iter().copied());
        }
        Damage::Delete(i, n) => {
            let i = at(*i);
            let end = (i + n).min(out.len());
            out.drain(i..end);
        }
        Damage::Append(extra) => out.extend_from_slice(extra),
    }
    out
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

struct Samples {
    world: World,
    public: Vec<u8>,
    secret: Vec<u8>,
    signature: Vec<u8>,
    trust: Vec<u8>,
    manifest: Vec<u8>,
}

fn samples() -> &'static Samples {
    static SAMPLES: std::sync::OnceLock<Samples> = std::sync::OnceLock::new();
    SAMPLES.get_or_init(|| {
        let world = World::new();
        let (manifest, signature) =
            signed(&world.signer, &manifest("gpu-node", "stable", 1, vec![]));
        Samples {
            public: world
                .signer
                .public_key()
                .to_file_text("c")
                .unwrap()
                .into_bytes(),
            secret: world
                .signer
                .to_file_text("c", Protection::Unencrypted)
                .unwrap()
                .as_bytes()
                .to_vec(),
            signature,
            trust: world.trust_file.to_bytes().unwrap(),
            manifest,
            world,
        }
    })
}

/// Every parser at once, on the same input.
fn parse_all(bytes: &[u8]) {
    let pass = Passphrase::new(b"p").unwrap();
    let _ = PublicKey::parse(bytes);
    let _ = SecretKey::parse(bytes, None);
    let _ = SecretKey::parse(bytes, Some(&pass));
    let _ = MinisignSignature::parse(bytes);
    let _ = TrustFile::parse(bytes);
    let _ = SignedManifest::<Value>::parse(bytes);
    let _ = canonical::parse_value(bytes, ironrack_keys::Item::Manifest);
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = text.parse::<Timestamp>();
        let _ = text.parse::<KeyId>();
        let _ = text.parse::<ironrack_keys::trust::Scope>();
        let _ = text.parse::<ironrack_keys::Sha256Digest>();
        let _ = PublicKey::from_base64(text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        parse_all(&bytes);
    }

    #[test]
    fn damaged_valid_files(which in 0..5usize, damage in damage()) {
        let s = samples();
        let original = [&s.public, &s.secret, &s.signature, &s.trust, &s.manifest][which];
        let changed = apply(original, &damage);
        parse_all(&changed);
        let verified = match which {
            2 => SignedManifest::<Value>::verify(&s.world.trust, &s.manifest, &changed, None, now()).is_ok(),
            3 => ironrack_keys::Trust::from_installed(&changed, &[]).is_ok(),
            4 => SignedManifest::<Value>::verify(&s.world.trust, &changed, &s.signature, None, now()).is_ok(),
            _ => false,
        };
        if verified {
            // Only harmless changes may pass: the untrusted comment of a
            // signature, or a final newline (the manifest's is signed).
            let after_first_line = |b: &[u8]| b.iter().position(|&c| c == b'\n').map(|i| b[i..].to_vec());
            let without_newline = &original[..original.len() - 1];
            let harmless = changed == *original
                || (which != 4 && changed == without_newline)
                || (which == 2
                    && after_first_line(&changed) == after_first_line(original)
                    && changed.starts_with(b"untrusted comment: "));
            prop_assert!(harmless, "{damage:?} verified");
        }
    }

    #[test]
    fn base64_blobs_of_any_length_and_algorithm(
        alg in prop::sample::select(vec![*b"Ed", *b"ED", *b"Sc", [0, 0], *b"eD"]),
        blob in prop::collection::vec(any::<u8>(), 0..200),
        tail in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        let mut full = alg.to_vec();
        full.extend_from_slice(&blob);
        let b64 = STANDARD.encode(&full);
        let key_text = format!("untrusted comment: x\n{b64}\n");
        let sig_text = format!("untrusted comment: x\n{b64}\ntrusted comment: t\n{}\n", STANDARD.encode(&tail));
        if PublicKey::parse(key_text.as_bytes()).is_ok() {
            prop_assert!(alg == *b"Ed" && blob.len() == 40);
        }
        let pass = Passphrase::new(b"p").unwrap();
        prop_assert!(SecretKey::parse(key_text.as_bytes(), Some(&pass)).is_err());
        if MinisignSignature::parse(sig_text.as_bytes()).is_ok() {
            prop_assert!((alg == *b"Ed" || alg == *b"ED") && blob.len() == 72 && tail.len() == 64);
        }
    }

    #[test]
    fn wrong_algorithm_ids_are_named(alg in any::<[u8; 2]>()) {
        prop_assume!(alg != *b"Ed" && alg != *b"ED");
        let s = samples();
        let text = std::str::from_utf8(&s.signature).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut blob = STANDARD.decode(lines[1]).unwrap();
        blob[..2].copy_from_slice(&alg);
        let forged = format!("{}\n{}\n{}\n{}\n", lines[0], STANDARD.encode(&blob), lines[2], lines[3]);
        let is_algorithm_error = matches!(MinisignSignature::parse(forged.as_bytes()), Err(Error::Algorithm { .. }));
        prop_assert!(is_algorithm_error);
    }

    #[test]
    fn canonical_json_round_trips(value in json_value()) {
        let bytes = canonical::value_to_vec(&value, ironrack_keys::Item::Manifest).unwrap();
        let back = canonical::parse_value(&bytes, ironrack_keys::Item::Manifest).unwrap();
        prop_assert_eq!(&back, &value);
        // And no other spelling is accepted: pretty-printing is refused
        // whenever it adds bytes.
        let pretty = serde_json::to_vec_pretty(&value).unwrap();
        if pretty != bytes {
            prop_assert!(canonical::parse_value(&pretty, ironrack_keys::Item::Manifest).is_err());
        }
    }

    #[test]
    fn arbitrary_json_as_trust_or_manifest(value in json_value()) {
        let bytes = canonical::value_to_vec(&value, ironrack_keys::Item::Trust).unwrap();
        prop_assert!(TrustFile::parse(&bytes).is_err());
        prop_assert!(SignedManifest::<Value>::parse(&bytes).is_err());
    }

    #[test]
    fn timestamps_round_trip(secs in 0i64..=253_402_300_799) {
        let t = Timestamp::from_unix(secs).unwrap();
        prop_assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t);
    }
}

#[test]
fn huge_inputs_are_refused_by_size() {
    let huge = vec![b'A'; 20 << 20];
    let pass = Passphrase::new(b"p").unwrap();
    assert!(matches!(
        PublicKey::parse(&huge),
        Err(Error::TooLarge { .. })
    ));
    assert!(matches!(
        SecretKey::parse(&huge, Some(&pass)),
        Err(Error::TooLarge { .. })
    ));
    assert!(matches!(
        MinisignSignature::parse(&huge),
        Err(Error::TooLarge { .. })
    ));
    assert!(matches!(
        TrustFile::parse(&huge),
        Err(Error::TooLarge { .. })
    ));
    // A manifest may be big, but not this big; and a big non-JSON one is a
    // JSON error, found without building anything large.
    let bigger = vec![b'A'; 65 << 20];
    assert!(matches!(
        SignedManifest::<Value>::parse(&bigger),
        Err(Error::TooLarge { .. })
    ));
    assert!(matches!(
        SignedManifest::<Value>::parse(&huge),
        Err(Error::Json { .. })
    ));
    // A one-line file of megabytes of base64 is refused before decoding.
    let mut long_line = b"untrusted comment: x\n".to_vec();
    long_line.extend(std::iter::repeat_n(b'A', 3000));
    assert!(matches!(
        PublicKey::parse(&long_line),
        Err(Error::Length { .. })
    ));
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(canonical::parse_value(deep.as_bytes(), ironrack_keys::Item::Manifest).is_err());
    assert!(TrustFile::parse(deep.as_bytes()).is_err());
}

#[test]
fn truncations_of_every_length_are_errors() {
    let s = samples();
    type Parser = fn(&[u8]) -> bool;
    let cases: [(&Vec<u8>, Parser); 5] = [
        (&s.public, |b| PublicKey::parse(b).is_err()),
        (&s.secret, |b| SecretKey::parse(b, None).is_err()),
        (&s.signature, |b| MinisignSignature::parse(b).is_err()),
        (&s.trust, |b| TrustFile::parse(b).is_err()),
        (&s.manifest, |b| SignedManifest::<Value>::parse(b).is_err()),
    ];
    for (original, is_err) in cases {
        // Dropping only the final newline keeps each format valid.
        for len in 0..original.len() - 1 {
            assert!(
                is_err(&original[..len]),
                "length {len} of {}",
                String::from_utf8_lossy(original)
            );
        }
    }
}
