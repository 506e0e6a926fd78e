//! A throwaway OpenPGP key in a private GNUPGHOME (real `gpg`), to sign
//! test repositories as Debian signs its archive, and its public keyring
//! for gpgv.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A key and the home it lives in (removed, agent stopped, when dropped).
pub struct GpgKey {
    home: tempfile::TempDir,
    /// The exported public keyring (binary, for gpgv).
    pub keyring: PathBuf,
    /// The primary key's fingerprint.
    pub fingerprint: String,
}

fn gpg(home: &Path) -> Command {
    let mut c = Command::new("gpg");
    c.env("GNUPGHOME", home).args([
        "--batch",
        "--quiet",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
    ]);
    c
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e} (install gnupg: scripts/deps.sh)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

impl GpgKey {
    /// Generates an Ed25519 signing key named `name`.
    pub fn generate(name: &str) -> GpgKey {
        // Short path: the agent's socket path must fit in sun_path.
        let home = tempfile::Builder::new()
            .prefix("gpg")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(
            home.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let uid = format!("{name} <{name}@example.invalid>");
        run(gpg(home.path()).args(["--quick-gen-key", &uid, "ed25519", "sign", "never"]));
        let listing =
            String::from_utf8(run(gpg(home.path()).args(["--with-colons", "--list-keys"])))
                .unwrap();
        let fingerprint = listing
            .lines()
            .find_map(|l| {
                l.strip_prefix("fpr:")
                    .map(|r| r.trim_matches(':').to_owned())
            })
            .expect("a fingerprint");
        let keyring = home.path().join("public.gpg");
        run(gpg(home.path())
            .arg("--output")
            .arg(&keyring)
            .arg("--export"));
        GpgKey {
            home,
            keyring,
            fingerprint,
        }
    }

    /// Writes `input` clear-signed to `output` (an InRelease).
    pub fn clearsign(&self, input: &Path, output: &Path) {
        let _ = std::fs::remove_file(output);
        run(gpg(self.home.path())
            .args(["--local-user", &self.fingerprint, "--clearsign", "--output"])
            .arg(output)
            .arg(input));
    }

    /// Writes a detached armored signature of `input` to `output` (a Release.gpg).
    pub fn detach_sign(&self, input: &Path, output: &Path) {
        let _ = std::fs::remove_file(output);
        run(gpg(self.home.path())
            .args([
                "--local-user",
                &self.fingerprint,
                "--armor",
                "--detach-sign",
                "--output",
            ])
            .arg(output)
            .arg(input));
    }
}

impl Drop for GpgKey {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}
