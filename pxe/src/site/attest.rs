//! `[attest]`: the attestation service's settings. The table is parsed
//! with the site; the CA files it names are read by [`Site::ek_trust`]
//! when `ironrack serve` starts or reloads, and a file that does not load
//! is reported with the site file, the line and the key that names it.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::{Site, SiteError};
use crate::attest::ek::EkTrust;
use crate::attest::eventlog::agent::AGENT_PCR;
use crate::attest::service::AttestConfig;

/// `[attest]` as written. Every key has a default: without the table, no
/// EK CA is trusted and every node waits as `pending` until an operator
/// runs `ironrack nodes approve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AttestSettings {
    /// PEM files of the CA roots the operator trusts for EK certificates
    /// (TPM vendors' roots, or a site CA), relative to the site file.
    #[serde(default)]
    pub ek_roots: Vec<Spanned<PathBuf>>,
    /// PEM files of intermediate CAs between those roots and the EK
    /// certificates (TPMs store only the leaf); trusted only through a root.
    #[serde(default)]
    pub ek_intermediates: Vec<Spanned<PathBuf>>,
    /// The PCR the node agent extends with the manifest and rootfs
    /// digests. It must be the one this build's agent uses (15); the key
    /// exists so a site states what its policy relies on.
    #[serde(default = "default_agent_pcr")]
    pub agent_pcr: Spanned<u32>,
    /// Seconds a quote nonce stays valid (single use either way).
    #[serde(default = "default_nonce_ttl")]
    pub nonce_seconds: u64,
    /// Seconds an enrollment challenge stays open.
    #[serde(default = "default_session_ttl")]
    pub enrollment_seconds: u64,
    /// Directory of per-node secrets (join tokens, say), relative to the
    /// site file: the file named by the node id (its MAC, `52:54:00:...`)
    /// is released to the node, sealed to its TPM, with every passing
    /// attestation; the agent writes it to `/run/ironrack/node-secret`.
    /// Files must be mode 0600 (or stricter).
    #[serde(default)]
    pub secrets: Option<Spanned<PathBuf>>,
}

fn default_agent_pcr() -> Spanned<u32> {
    Spanned::new(0..0, AGENT_PCR)
}

fn default_nonce_ttl() -> u64 {
    60
}

fn default_session_ttl() -> u64 {
    300
}

impl Default for AttestSettings {
    fn default() -> Self {
        AttestSettings {
            ek_roots: Vec::new(),
            ek_intermediates: Vec::new(),
            agent_pcr: default_agent_pcr(),
            nonce_seconds: default_nonce_ttl(),
            enrollment_seconds: default_session_ttl(),
            secrets: None,
        }
    }
}

/// Longest nonce or enrollment lifetime accepted: a nonce is a freshness
/// proof, and an hour is already generous for a boot.
const MAX_TTL: u64 = 3600;

impl AttestSettings {
    /// Checks what needs no file: the agent PCR and the lifetimes.
    pub(super) fn validate(&self, site: &Site) -> Result<(), SiteError> {
        if *self.agent_pcr.get_ref() != AGENT_PCR {
            return Err(site.error_at(
                self.agent_pcr.span(),
                "attest.agent-pcr",
                format!(
                    "is {}, but the agent of this ironrack extends PCR {AGENT_PCR}",
                    self.agent_pcr.get_ref()
                ),
            ));
        }
        for (key, value) in [
            ("attest.nonce-seconds", self.nonce_seconds),
            ("attest.enrollment-seconds", self.enrollment_seconds),
        ] {
            if value == 0 || value > MAX_TTL {
                return Err(SiteError::Invalid {
                    path: site.path.clone(),
                    key: key.into(),
                    why: format!("{value} is not between 1 and {MAX_TTL} seconds"),
                });
            }
        }
        Ok(())
    }
}

impl Site {
    /// The attestation service's settings, with the EK CA files read
    /// (relative paths from the site file's directory). A file that cannot
    /// be read or holds no certificate is an error naming the site file,
    /// the line and the key.
    pub fn attest_config(&self) -> Result<AttestConfig, SiteError> {
        let settings = &self.config.attest;
        let mut trust = EkTrust::new();
        for (key, files, intermediate) in [
            ("attest.ek-roots", &settings.ek_roots, false),
            ("attest.ek-intermediates", &settings.ek_intermediates, true),
        ] {
            for file in files {
                let path = self.resolve(file.get_ref());
                let loaded = std::fs::read_to_string(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|pem| {
                        if !pem.contains("-----BEGIN CERTIFICATE-----") {
                            return Err("holds no PEM certificate".to_owned());
                        }
                        let added = if intermediate {
                            trust.add_intermediates_pem(&pem)
                        } else {
                            trust.add_roots_pem(&pem)
                        };
                        added.map_err(|e| e.to_string())
                    });
                if let Err(why) = loaded {
                    return Err(self.error_at(
                        file.span(),
                        key,
                        format!("{}: {why}", path.display()),
                    ));
                }
            }
        }
        let mut config = AttestConfig::new(trust);
        config.nonce_ttl = settings.nonce_seconds;
        config.session_ttl = settings.enrollment_seconds;
        if let Some(dir) = &settings.secrets {
            let path = self.resolve(dir.get_ref());
            if !path.is_dir() {
                return Err(self.error_at(
                    dir.span(),
                    "attest.secrets",
                    format!("{} is not a directory", path.display()),
                ));
            }
            config.secrets = Some(path);
        }
        Ok(config)
    }

    /// An error at byte span `span` of the site text: with its line when
    /// the text is known (a default value has an empty span at 0).
    fn error_at(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        why: impl Into<String>,
    ) -> SiteError {
        let at = self
            .source
            .as_deref()
            .filter(|_| span.end > 0)
            .and_then(|text| text.get(..span.start))
            .map(|before| {
                let line_start = before.rfind('\n').map_or(0, |i| i + 1);
                (
                    before.matches('\n').count() + 1,
                    before[line_start..].chars().count() + 1,
                )
            });
        match at {
            Some((line, column)) => SiteError::Parse {
                path: self.path.clone(),
                line,
                column,
                key: key.to_owned(),
                message: why.into(),
            },
            None => SiteError::Invalid {
                path: self.path.clone(),
                key: key.to_owned(),
                why: why.into(),
            },
        }
    }
}
