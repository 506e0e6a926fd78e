//! Secret keys on disk: permissions enforced like ssh, encryption exactly as
//! minisign does it, and no secret byte in any message.

use std::os::unix::fs::PermissionsExt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ironrack_keys::{Error, KdfLimits, Passphrase, Protection, SecretKey, generate_key_pair};

const PASSPHRASE: &str = "tr0ub4dor&3-horse-battery";

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn group_or_world_access_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let files = generate_key_pair(dir.path(), "ci", Protection::Unencrypted).unwrap();
    for mode in [0o644, 0o640, 0o604, 0o660, 0o602] {
        chmod(&files.secret, mode);
        let err = SecretKey::load(&files.secret, None).unwrap_err();
        assert!(
            matches!(err, Error::TooOpen { mode: m, .. } if m == mode),
            "{mode:o}: {err}"
        );
        let message = err.to_string();
        let path = files.secret.display().to_string();
        assert!(message.contains(&path), "{message}");
        assert!(message.contains(&format!("chmod 600 {path}")), "{message}");
        assert!(!err.is_verification_failure());
    }
    for mode in [0o600, 0o400] {
        chmod(&files.secret, mode);
        SecretKey::load(&files.secret, None).unwrap();
    }
}

#[test]
fn a_directory_or_fifo_is_not_a_key() {
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o700);
    let err = SecretKey::load(dir.path(), None).unwrap_err();
    assert!(
        matches!(err, Error::NotAFile { .. } | Error::Read { .. }),
        "{err}"
    );
}

/// Every string a secret could leak into.
fn leaks(secret_markers: &[String], texts: &[String]) {
    for text in texts {
        for marker in secret_markers {
            assert!(
                !text.contains(marker.as_str()),
                "secret material in {text:?}"
            );
        }
    }
}

#[test]
fn no_secret_in_errors_or_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    let pass = Passphrase::new(PASSPHRASE.as_bytes()).unwrap();
    let key = SecretKey::generate().unwrap();
    let text = key
        .to_file_text("k", Protection::Passphrase(&pass, KdfLimits::INTERACTIVE))
        .unwrap();
    let plain = key.to_file_text("k", Protection::Unencrypted).unwrap();
    let secret_line = |t: &str| t.lines().nth(1).unwrap().to_owned();
    // The secret key bytes as they appear in the unencrypted file.
    let raw = STANDARD.decode(secret_line(&plain)).unwrap();
    let seed = &raw[62..94];
    let markers = vec![
        PASSPHRASE.to_owned(),
        secret_line(&text),
        secret_line(&plain),
        hex::encode(seed),
        STANDARD.encode(seed),
        format!("{seed:?}"),
        format!("{:?}", &raw[62..70]),
    ];

    let path = dir.path().join("k.key");
    std::fs::write(&path, text.as_bytes()).unwrap();
    chmod(&path, 0o600);
    let wrong = Passphrase::new(b"wrong").unwrap();
    let mut messages = vec![format!("{key:?}"), format!("{pass:?}")];
    let mut record = |err: Error| {
        messages.push(err.to_string());
        messages.push(format!("{err:?}"));
        messages.push(format!("{:#}", anyhow::Error::from(err)));
    };
    record(SecretKey::load(&path, Some(&wrong)).unwrap_err());
    record(SecretKey::load(&path, None).unwrap_err());
    chmod(&path, 0o644);
    record(SecretKey::load(&path, Some(&pass)).unwrap_err());
    // A damaged unencrypted key: the error must not echo it.
    let mut damaged = plain.to_string().into_bytes();
    let last = damaged.len() - 3;
    damaged[last] ^= 0x01;
    record(SecretKey::parse(&damaged, None).unwrap_err());
    damaged[30] = b'!';
    record(SecretKey::parse(&damaged, None).unwrap_err());
    let pass_file = dir.path().join("pass");
    std::fs::write(&pass_file, format!("{PASSPHRASE}\n")).unwrap();
    chmod(&pass_file, 0o644);
    record(Passphrase::from_file(&pass_file).unwrap_err());
    assert!(
        messages.iter().any(|m| m.contains("wrong passphrase")),
        "{messages:?}"
    );
    leaks(&markers, &messages);
}

/// The real thing, once: minisign's KDF cost (N = 2^20, 1 GiB).
#[test]
fn sensitive_kdf_round_trip() {
    let pass = Passphrase::new(PASSPHRASE.as_bytes()).unwrap();
    let key = SecretKey::generate().unwrap();
    let text = key
        .to_file_text("k", Protection::Passphrase(&pass, KdfLimits::SENSITIVE))
        .unwrap();
    let blob = STANDARD.decode(text.lines().nth(1).unwrap()).unwrap();
    assert_eq!(&blob[..6], b"EdScB2");
    assert_eq!(&blob[38..46], &33_554_432u64.to_le_bytes());
    assert_eq!(&blob[46..54], &1_073_741_824u64.to_le_bytes());
    let back = SecretKey::parse(text.as_bytes(), Some(&pass)).unwrap();
    assert_eq!(back.public_key(), key.public_key());
}
