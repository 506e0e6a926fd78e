//! The in-toto statement with a SLSA v1 provenance predicate: which
//! inputs (spec, lock, snapshot, every .deb by digest) made which outputs.
//! No timestamps and no host names, so it is as reproducible as the image.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// The statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate type.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// What an ironrack image build is (a URI, as SLSA wants).
pub const BUILD_TYPE: &str = "urn:ironrack:build:image:v1";

/// A file the build consumed.
#[derive(Debug, Clone)]
pub struct Material {
    /// A purl (`pkg:deb/...`) or a file name.
    pub uri: String,
    /// A human name (the pool path).
    pub name: String,
    /// SHA-256 hex.
    pub sha256: String,
}

/// The inputs of a build.
#[derive(Debug, Clone)]
pub struct BuildInputs<'a> {
    /// Image name.
    pub image: &'a str,
    /// Image version.
    pub version: u64,
    /// The spec file as given, and its SHA-256.
    pub spec: (&'a str, &'a str),
    /// The lock file as given, and its SHA-256.
    pub lock: (&'a str, &'a str),
    /// The mirror snapshot id.
    pub snapshot: &'a str,
    /// SOURCE_DATE_EPOCH.
    pub source_date_epoch: i64,
    /// Builder version.
    pub builder_version: &'a str,
    /// Every .deb (image and build sets) and patch.
    pub materials: &'a [Material],
}

/// The statement: `subjects` are (file name, sha256 hex) of the outputs.
pub fn statement(inputs: &BuildInputs<'_>, subjects: &BTreeMap<String, String>) -> Value {
    let subject: Vec<Value> = subjects
        .iter()
        .map(|(name, sha)| json!({"name": name, "digest": {"sha256": sha}}))
        .collect();
    let mut deps: Vec<Value> = vec![
        json!({"uri": format!("file:{}", inputs.spec.0), "digest": {"sha256": inputs.spec.1}}),
        json!({"uri": format!("file:{}", inputs.lock.0), "digest": {"sha256": inputs.lock.1}}),
    ];
    deps.extend(
        inputs
            .materials
            .iter()
            .map(|m| json!({"uri": m.uri, "name": m.name, "digest": {"sha256": m.sha256}})),
    );
    json!({
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "image": inputs.image,
                    "version": inputs.version,
                    "spec": inputs.spec.0,
                    "lock": inputs.lock.0,
                },
                "internalParameters": {
                    "snapshot": inputs.snapshot,
                    "sourceDateEpoch": inputs.source_date_epoch,
                },
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {
                    "id": "urn:ironrack:builder",
                    "version": {"ironrack": inputs.builder_version},
                },
            },
        },
    })
}
