//! `sbom.spdx.json`: the image's packages as an SPDX 2.3 document.
//!
//! Deterministic like everything else in the output: `created` is the
//! build's SOURCE_DATE_EPOCH, the namespace is derived from the lock's
//! digest, packages are sorted, and the JSON is canonical (sorted keys).

use std::collections::{BTreeMap, BTreeSet};

use ironrack_keys::Timestamp;
use serde_json::{Value, json};

use super::license::Declared;

/// One package of the image.
#[derive(Debug, Clone)]
pub struct SbomPackage {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// `amd64` or `all`.
    pub architecture: String,
    /// SHA-256 (hex) of the .deb it was installed from.
    pub sha256: String,
    /// What its copyright file declares.
    pub license: Declared,
}

/// What the SBOM describes.
#[derive(Debug, Clone)]
pub struct SbomInput<'a> {
    /// Image name.
    pub image: &'a str,
    /// Image version.
    pub version: u64,
    /// Debian suite (for the purl's `distro`).
    pub suite: &'a str,
    /// SHA-256 of the lock file: names the document uniquely.
    pub lock_sha256: &'a str,
    /// SOURCE_DATE_EPOCH of the build.
    pub created: Timestamp,
    /// Builder version (`Tool: ironrack-X`).
    pub tool_version: &'a str,
    /// The packages.
    pub packages: &'a [SbomPackage],
    /// Patches applied to the NVIDIA module source before the build.
    pub patches: &'a [super::PatchRecord],
}

/// The SPDX id of the image itself.
pub const IMAGE_SPDXID: &str = "SPDXRef-Image";

/// The SPDX 2.3 document.
pub fn document(input: &SbomInput<'_>) -> Value {
    let mut packages = vec![json!({
        "SPDXID": IMAGE_SPDXID,
        "name": input.image,
        "versionInfo": input.version.to_string(),
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "OPERATING-SYSTEM",
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": IMAGE_SPDXID,
    })];
    let mut extracted: BTreeMap<String, String> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    let mut sorted: Vec<&SbomPackage> = input.packages.iter().collect();
    sorted.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
    for p in sorted {
        let id = unique_id(&mut ids, &p.name, &p.architecture);
        let declared = match &p.license {
            Declared::NoAssertion => "NOASSERTION".to_owned(),
            Declared::Expression { text, refs } => {
                for (r, name) in refs {
                    extracted.insert(r.clone(), name.clone());
                }
                text.clone()
            }
        };
        packages.push(json!({
            "SPDXID": id,
            "name": p.name,
            "versionInfo": p.version,
            "supplier": "Organization: Debian",
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "checksums": [{"algorithm": "SHA256", "checksumValue": p.sha256}],
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": declared,
            "copyrightText": "NOASSERTION",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl(p, input.suite),
            }],
        }));
        relationships.push(json!({
            "spdxElementId": IMAGE_SPDXID,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    // A driver patch is not in the image, but what it changed is: each is
    // a file of the document, applied to the image's modules.
    let mut files = Vec::new();
    for (n, patch) in input.patches.iter().enumerate() {
        let id = format!("SPDXRef-Patch-{}", n + 1);
        files.push(json!({
            "SPDXID": id,
            "fileName": format!("./patches/{}", patch.name),
            "fileTypes": ["SOURCE"],
            "checksums": [{"algorithm": "SHA256", "checksumValue": patch.sha256}],
            "licenseConcluded": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "comment": "Applied to the NVIDIA kernel module source before the modules in this image were built.",
        }));
        relationships.push(json!({
            "spdxElementId": id,
            "relationshipType": "PATCH_APPLIED",
            "relatedSpdxElement": IMAGE_SPDXID,
        }));
    }
    let extracted: Vec<Value> = extracted
        .into_iter()
        .map(|(id, name)| {
            json!({
                "licenseId": id,
                "name": name,
                "extractedText": format!(
                    "The license named \"{name}\" in the package's Debian copyright file \
                     (/usr/share/doc/PACKAGE/copyright); it has no SPDX identifier."
                ),
            })
        })
        .collect();
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}-{}", input.image, input.version),
        "documentNamespace": format!(
            "https://spdx.ironrack.invalid/{}/{}/{}",
            input.image, input.version, input.lock_sha256
        ),
        "creationInfo": {
            "created": input.created.to_string(),
            "creators": [format!("Tool: ironrack-{}", input.tool_version)],
        },
        "packages": packages,
        "relationships": relationships,
    });
    if !extracted.is_empty() {
        doc["hasExtractedLicensingInfos"] = Value::Array(extracted);
    }
    if !files.is_empty() {
        doc["files"] = Value::Array(files);
    }
    doc
}

/// `pkg:deb/debian/NAME@VERSION?arch=ARCH&distro=debian-SUITE`, with the
/// characters purl reserves percent-encoded.
pub fn purl(p: &SbomPackage, suite: &str) -> String {
    format!(
        "pkg:deb/debian/{}@{}?arch={}&distro=debian-{}",
        encode(&p.name),
        encode(&p.version),
        encode(&p.architecture),
        encode(suite)
    )
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `SPDXRef-Package-deb-NAME-ARCH`: SPDX ids allow letters, digits, `.`
/// and `-`; package names also have `+`, so ids are made unique.
fn unique_id(seen: &mut BTreeSet<String>, name: &str, arch: &str) -> String {
    let clean: String = format!("{name}-{arch}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let base = format!("SPDXRef-Package-deb-{clean}");
    let mut id = base.clone();
    let mut n = 2;
    while !seen.insert(id.clone()) {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str) -> SbomPackage {
        SbomPackage {
            name: name.into(),
            version: "1:2.3+b1".into(),
            architecture: "amd64".into(),
            sha256: "00".repeat(32),
            license: Declared::NoAssertion,
        }
    }

    #[test]
    fn ids_are_unique_and_legal() {
        let packages = [pkg("g++"), pkg("g--"), pkg("libstdc++6")];
        let doc = document(&SbomInput {
            image: "n",
            version: 1,
            suite: "bookworm",
            lock_sha256: "ab",
            created: Timestamp::from_unix(0).unwrap(),
            tool_version: "0",
            packages: &packages,
            patches: &[],
        });
        let ids: Vec<&str> = doc["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["SPDXID"].as_str().unwrap())
            .collect();
        let unique: BTreeSet<&&str> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "{ids:?}");
        assert!(ids.iter().all(|id| {
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        }));
        assert_eq!(
            purl(&packages[0], "bookworm"),
            "pkg:deb/debian/g%2B%2B@1%3A2.3%2Bb1?arch=amd64&distro=debian-bookworm"
        );
        assert!(doc.get("files").is_none());
    }

    #[test]
    fn driver_patches_are_files_applied_to_the_image() {
        let patch = super::super::PatchRecord {
            name: "pci-resize.patch".into(),
            sha256: "ab".repeat(32),
        };
        let doc = document(&SbomInput {
            image: "gpu-node",
            version: 1,
            suite: "bookworm",
            lock_sha256: "ab",
            created: Timestamp::from_unix(0).unwrap(),
            tool_version: "0",
            packages: &[pkg("libcuda1")],
            patches: std::slice::from_ref(&patch),
        });
        let files = doc["files"].as_array().unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0]["fileName"], "./patches/pci-resize.patch");
        assert_eq!(files[0]["checksums"][0]["checksumValue"], patch.sha256);
        let applied: Vec<&Value> = doc["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["relationshipType"] == "PATCH_APPLIED")
            .collect();
        assert_eq!(applied.len(), 1);
        assert_eq!(applied[0]["spdxElementId"], files[0]["SPDXID"]);
        assert_eq!(applied[0]["relatedSpdxElement"], IMAGE_SPDXID);
    }
}
