//! A small world for tests: root keys, a delegated signer, a trust file, a
//! signed manifest with artifacts in a temporary directory. Keys are made
//! fresh for every test; none is checked in.

use std::path::Path;

use ironrack_keys::trust::{Delegation, Scope};
use ironrack_keys::{
    Artifact, SecretKey, SignedManifest, Signer, Timestamp, Trust, TrustFile, sign_manifest,
};

/// "Now" for every test: fixed, so expiries are exact.
pub fn now() -> Timestamp {
    "2030-06-01T00:00:00Z".parse().unwrap()
}

pub fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

pub fn key() -> SecretKey {
    SecretKey::generate().unwrap()
}

pub fn scopes(list: &[&str]) -> Vec<Scope> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

pub fn delegation(name: &str, key: &SecretKey, expires: Timestamp, scope: &[&str]) -> Delegation {
    Delegation {
        name: name.to_owned(),
        id: key.key_id(),
        public: key.public_key(),
        expires,
        scope: scopes(scope),
    }
}

/// A trust file over `roots` with `threshold`, delegating to `signers`,
/// signed by every root.
pub fn trust_file(roots: &[&SecretKey], threshold: u32, signers: Vec<Delegation>) -> TrustFile {
    let mut file = TrustFile::new(
        roots.iter().map(|k| k.public_key()).collect(),
        threshold,
        at("2031-01-01T00:00:00Z"),
    )
    .unwrap();
    for signer in signers {
        file.signed.add_signer(signer).unwrap();
    }
    for root in roots {
        file.sign(*root).unwrap();
    }
    file
}

pub fn installed(file: &TrustFile) -> Trust {
    Trust::from_installed(&file.to_bytes().unwrap(), &[]).unwrap()
}

/// The usual world: two roots (2 of 2), signer "ci" for gpu-* on stable.
pub struct World {
    pub roots: Vec<SecretKey>,
    pub signer: SecretKey,
    pub trust_file: TrustFile,
    pub trust: Trust,
}

impl World {
    pub fn new() -> World {
        let roots = vec![key(), key()];
        let signer = key();
        let ci = delegation(
            "ci",
            &signer,
            at("2030-12-31T00:00:00Z"),
            &["image:gpu-*", "channel:stable"],
        );
        let trust_file = trust_file(&[&roots[0], &roots[1]], 2, vec![ci]);
        let trust = installed(&trust_file);
        World {
            roots,
            signer,
            trust_file,
            trust,
        }
    }
}

pub fn manifest(
    name: &str,
    channel: &str,
    version: u64,
    artifacts: Vec<Artifact>,
) -> SignedManifest {
    SignedManifest::new(
        name,
        channel,
        version,
        at("2030-07-01T00:00:00Z"),
        artifacts,
        serde_json::json!({"kernel": "6.1.0-50-cloud-amd64", "modules": ["nvidia", "nvidia-uvm"]}),
    )
}

/// Write artifacts into `dir` and describe them.
pub fn artifacts(dir: &Path) -> Vec<Artifact> {
    let files: [(&str, Vec<u8>); 2] = [
        (
            "node.efi",
            (0..4096u32).map(|i| (i * 7 % 251) as u8).collect(),
        ),
        ("rootfs.squashfs", vec![0x5a; 1000]),
    ];
    files
        .iter()
        .map(|(name, data)| {
            std::fs::write(dir.join(name), data).unwrap();
            Artifact::from_file(dir, name).unwrap()
        })
        .collect()
}

/// Manifest bytes and signature text for `manifest`, signed by `signer`.
pub fn signed(signer: &dyn Signer, manifest: &SignedManifest) -> (Vec<u8>, Vec<u8>) {
    let (bytes, sig) = sign_manifest(signer, manifest).unwrap();
    (bytes, sig.to_file_text().into_bytes())
}

/// Every single-byte change we try at each position: a low bit, the ASCII
/// case bit, the high bit.
pub const FLIPS: [u8; 3] = [0x01, 0x20, 0x80];
