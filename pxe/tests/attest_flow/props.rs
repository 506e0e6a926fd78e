//! The protocol's parsers on arbitrary input: errors, never panics; and
//! every message survives encode → decode.

use ironrack_pxe::attest::protocol::{
    ActivateRequest, Bytes, EnrollRequest, ImageRef, NodeId, NonceRequest, PcrValue,
    QuoteSubmission, Response, decode, encode,
};
use proptest::prelude::*;

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-zA-Z0-9+/=:._-]{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        let keys = prop_oneof![
            Just("type".to_owned()),
            Just("status".to_owned()),
            Just("node".to_owned()),
            Just("nonce".to_owned()),
            Just("code".to_owned()),
            Just("reason".to_owned()),
            Just("expires-in".to_owned()),
            Just("session".to_owned()),
            "[a-z-]{1,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(keys, inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn bytes() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..64).prop_map(Bytes)
}

fn node_id() -> impl Strategy<Value = NodeId> {
    "[A-Za-z0-9:._-]{1,64}".prop_map(|s| NodeId::new(&s).unwrap())
}

fn submission() -> impl Strategy<Value = QuoteSubmission> {
    (
        node_id(),
        (
            bytes(),
            bytes(),
            bytes(),
            bytes(),
            bytes(),
            bytes(),
            bytes(),
            bytes(),
        ),
        prop::collection::vec((any::<u16>(), any::<u32>(), bytes()), 0..4),
        ("[a-z-]{1,16}", any::<u64>()),
    )
        .prop_map(
            |(
                node,
                (nonce, attest, signature, sel, fw, agent, ima, gpus),
                pcrs,
                (name, version),
            )| {
                QuoteSubmission {
                    node,
                    nonce,
                    attest,
                    signature,
                    pcr_selection: sel,
                    pcrs: pcrs
                        .into_iter()
                        .map(|(bank, pcr, value)| PcrValue { bank, pcr, value })
                        .collect(),
                    firmware_log: fw,
                    agent_log: agent,
                    ima_log: ima,
                    gpus,
                    image: ImageRef { name, version },
                }
            },
        )
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::<Response>("response", &data);
        let _ = decode::<EnrollRequest>("enrollment", &data);
        let _ = decode::<QuoteSubmission>("quote", &data);
        let _ = NonceRequest::from_query(&String::from_utf8_lossy(&data));
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value()) {
        let data = serde_json::to_vec(&value).unwrap();
        let _ = decode::<Response>("response", &data);
        let _ = decode::<EnrollRequest>("enrollment", &data);
        let _ = decode::<ActivateRequest>("activation", &data);
        let _ = decode::<QuoteSubmission>("quote", &data);
    }

    #[test]
    fn submissions_round_trip(q in submission()) {
        let back: QuoteSubmission = decode("quote", &encode(&q)).unwrap();
        prop_assert_eq!(back, q);
    }

    #[test]
    fn enrollments_round_trip(node in node_id(), ek in bytes(), cert in prop::option::of(bytes()), ak in bytes()) {
        let r = EnrollRequest { node, ek_public: ek, ek_certificate: cert, ak_public: ak };
        let back: EnrollRequest = decode("enrollment", &encode(&r)).unwrap();
        prop_assert_eq!(back, r);
    }
}

mod service {
    use std::sync::{Arc, OnceLock};

    use ironrack_pxe::attest::ek::EkTrust;
    use ironrack_pxe::attest::protocol::{
        ActivateRequest, Bytes, EnrollRequest, ImageRef, NodeId, NonceRequest, PcrValue,
        QuoteSubmission, Request, Response, Verdict,
    };
    use ironrack_pxe::attest::service::{AttestConfig, AttestService, ImageSet, MemoryStore};
    use ironrack_pxe::attest::tpm::model::SimulatedTpm;
    use ironrack_pxe::attest::tpm::{AkTemplate, PcrSelection};
    use proptest::prelude::*;

    /// A service with one enrolled node (a software TPM), made once.
    fn site() -> &'static (AttestService, SimulatedTpm, NodeId) {
        static SITE: OnceLock<(AttestService, SimulatedTpm, NodeId)> = OnceLock::new();
        SITE.get_or_init(|| {
            let tpm = SimulatedTpm::new(AkTemplate::EccP256).unwrap();
            let service = AttestService::new(
                Arc::new(MemoryStore::new()),
                Arc::new(ImageSet::new()),
                AttestConfig::new(EkTrust::new()),
            );
            let node = NodeId::new("fuzzed-node").unwrap();
            let challenge = service
                .enroll(&EnrollRequest {
                    node: node.clone(),
                    ek_public: Bytes(tpm.ek_public().to_bytes()),
                    ek_certificate: None,
                    ak_public: Bytes(tpm.ak_public().to_bytes()),
                })
                .unwrap();
            let secret = tpm
                .activate_credential(
                    tpm.ak_name(),
                    &challenge.id_object,
                    &challenge.encrypted_secret,
                )
                .unwrap();
            service
                .activate(&ActivateRequest {
                    node: node.clone(),
                    session: challenge.session,
                    secret: Bytes(secret),
                })
                .unwrap();
            (service, tpm, node)
        })
    }

    fn blob() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..300)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Hostile fields after a valid nonce (and, half the time, a real
        /// quote): a refusal, never a panic, never `attested`.
        #[test]
        fn hostile_submissions_are_refused(
            real_quote in any::<bool>(),
            attest in blob(),
            signature in blob(),
            selection in blob(),
            firmware_log in blob(),
            agent_log in blob(),
            ima_log in blob(),
            gpus in blob(),
            values in prop::collection::vec((any::<u16>(), 0u32..24, blob()), 0..20),
        ) {
            let (service, tpm, node) = site();
            let nonce = service.nonce(&NonceRequest { node: node.clone() }).unwrap().nonce;
            let (attest, signature, selection) = if real_quote {
                let sel = PcrSelection::sha256_boot();
                let q = tpm.quote(&nonce, &sel).unwrap();
                (q.attest, q.signature.to_bytes(), sel.to_bytes())
            } else {
                (attest, signature, selection)
            };
            let submission = QuoteSubmission {
                node: node.clone(),
                nonce,
                attest: Bytes(attest),
                signature: Bytes(signature),
                pcr_selection: Bytes(selection),
                pcrs: values
                    .into_iter()
                    .map(|(bank, pcr, value)| PcrValue { bank, pcr, value: Bytes(value) })
                    .collect(),
                firmware_log: Bytes(firmware_log),
                agent_log: Bytes(agent_log),
                ima_log: Bytes(ima_log),
                gpus: Bytes(gpus),
                image: ImageRef { name: "gpu-node".into(), version: 1 },
            };
            let answer = service.handle(&Request::Quote(Box::new(submission))).unwrap();
            prop_assert!(
                matches!(answer, Response::Verdict(Verdict::Refused { .. })),
                "{:?}", answer
            );
        }
    }
}
