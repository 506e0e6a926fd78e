//! The passphrase key derivation of minisign secret keys: libsodium's
//! `crypto_pwhash_scryptsalsa208sha256`, i.e. scrypt with (N, r, p) picked
//! from an (opslimit, memlimit) pair. The pair is what the key file stores,
//! so we reproduce libsodium's `pickparams` to get the same N, r and p.

use crate::error::Error;
use crate::passphrase::Passphrase;

/// The cost limits stored in an encrypted minisign secret key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfLimits {
    /// libsodium opslimit.
    pub opslimit: u64,
    /// libsodium memlimit in bytes.
    pub memlimit: u64,
}

/// scrypt parameters as libsodium derives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ScryptParams {
    pub log_n: u8,
    pub r: u32,
    pub p: u32,
}

impl KdfLimits {
    /// What `minisign -G` uses: libsodium's OPSLIMIT/MEMLIMIT_SENSITIVE,
    /// which become N = 2^20, r = 8, p = 1 (1 GiB, a few seconds).
    pub const SENSITIVE: KdfLimits = KdfLimits {
        opslimit: 33_554_432,
        memlimit: 1_073_741_824,
    };

    /// libsodium's INTERACTIVE limits (N = 2^14, 16 MiB): for tests and
    /// short-lived keys only.
    pub const INTERACTIVE: KdfLimits = KdfLimits {
        opslimit: 524_288,
        memlimit: 16_777_216,
    };

    /// libsodium's pickparams(), then a refusal of anything costlier than
    /// SENSITIVE: minisign never writes more, and a key file must not be able
    /// to make us allocate or compute without bound.
    pub(crate) fn scrypt_params(self) -> Result<ScryptParams, Error> {
        let too_expensive = || Error::KdfTooExpensive {
            opslimit: self.opslimit,
            memlimit: self.memlimit,
        };
        let ops = self.opslimit.max(32_768);
        let r: u64 = 8;
        let first_log_n_above = |max_n: u64| {
            let mut log_n = 1u32;
            while log_n < 63 && (1u64 << log_n) <= max_n / 2 {
                log_n += 1;
            }
            log_n
        };
        let (log_n, p) = if ops < self.memlimit / 32 {
            (first_log_n_above(ops / (r * 4)), 1)
        } else {
            let log_n = first_log_n_above(self.memlimit / (r * 128));
            let max_rp = ((ops / 4) >> log_n).min(0x3fff_ffff);
            (log_n, max_rp / r)
        };
        // Cost is p × N blocks of 128·r bytes; SENSITIVE is 1 × 2^20.
        if log_n > 20 || p.checked_shl(log_n).is_none_or(|cost| cost > 1 << 20) {
            return Err(too_expensive());
        }
        if p == 0 {
            return Err(Error::SecretKeyCorrupt);
        }
        Ok(ScryptParams {
            log_n: log_n as u8,
            r: r as u32,
            p: p as u32,
        })
    }
}

/// Fill `out` with the scrypt stream that encrypts a secret key.
pub(crate) fn derive(
    passphrase: &Passphrase,
    salt: &[u8],
    limits: KdfLimits,
    out: &mut [u8],
) -> Result<(), Error> {
    let params = limits.scrypt_params()?;
    let params = scrypt::Params::new(params.log_n, params.r, params.p)
        .map_err(|_| Error::SecretKeyCorrupt)?;
    scrypt::scrypt(passphrase.expose(), salt, &params, out).map_err(|_| Error::SecretKeyCorrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libsodium_parameter_choice() {
        // Values worked by hand from libsodium's pickparams().
        assert_eq!(
            KdfLimits::SENSITIVE.scrypt_params().unwrap(),
            ScryptParams {
                log_n: 20,
                r: 8,
                p: 1
            }
        );
        assert_eq!(
            KdfLimits::INTERACTIVE.scrypt_params().unwrap(),
            ScryptParams {
                log_n: 14,
                r: 8,
                p: 1
            }
        );
        // minisign halves both limits when memory is short.
        let halved = KdfLimits {
            opslimit: KdfLimits::SENSITIVE.opslimit / 2,
            memlimit: KdfLimits::SENSITIVE.memlimit / 2,
        };
        assert_eq!(
            halved.scrypt_params().unwrap(),
            ScryptParams {
                log_n: 19,
                r: 8,
                p: 1
            }
        );
        // opslimit-bound branch: ops < mem/32.
        let ops_bound = KdfLimits {
            opslimit: 1 << 20,
            memlimit: 1 << 30,
        };
        assert_eq!(
            ops_bound.scrypt_params().unwrap(),
            ScryptParams {
                log_n: 15,
                r: 8,
                p: 1
            }
        );
    }

    #[test]
    fn refuses_costs_beyond_sensitive() {
        for limits in [
            KdfLimits {
                opslimit: u64::MAX,
                memlimit: u64::MAX,
            },
            KdfLimits {
                opslimit: 1 << 40,
                memlimit: 1 << 30,
            },
            KdfLimits {
                opslimit: 1 << 27,
                memlimit: 1 << 31,
            },
        ] {
            assert!(
                matches!(limits.scrypt_params(), Err(Error::KdfTooExpensive { .. })),
                "{limits:?}"
            );
        }
    }
}
