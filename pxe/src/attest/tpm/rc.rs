//! TPM_RC response codes, decoded into something a person can act on.
//!
//! Layout (Part 2 §6.6): bit 7 selects format 1 (an error about a specific
//! handle, session or parameter: bits 5:0 error, bit 6 "parameter", bits
//! 11:8 the number, bit 11 "session" when not a parameter) or format 0
//! (bit 8 "TPM 2.0", bit 10 vendor, bit 11 warning, bits 6:0 error).

use std::fmt;

/// A raw TPM_RC with a readable Display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResponseCode(pub u32);

/// Which part of the command a format-1 code blames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The n-th parameter (1-based).
    Parameter(u8),
    /// The n-th handle (1-based; 0 = unspecified).
    Handle(u8),
    /// The n-th session (1-based; 0 = unspecified).
    Session(u8),
}

impl ResponseCode {
    /// TPM_RC_SUCCESS.
    pub const SUCCESS: ResponseCode = ResponseCode(0);
    /// TPM_RC_INITIALIZE: Startup was already done (or not yet needed).
    pub const INITIALIZE: ResponseCode = ResponseCode(0x100);
    /// TPM_RC_RETRY: the TPM asks for the command again.
    pub const RETRY: ResponseCode = ResponseCode(0x922);
    /// TPM_RC_YIELDED.
    pub const YIELDED: ResponseCode = ResponseCode(0x908);
    /// TPM_RC_TESTING: self-test still running.
    pub const TESTING: ResponseCode = ResponseCode(0x90a);

    /// Whether this is a format-1 code (tied to a handle, session or parameter).
    pub fn is_format_one(self) -> bool {
        self.0 & 0x080 != 0
    }

    /// Whether this is a warning (format 0, severity bit).
    pub fn is_warning(self) -> bool {
        !self.is_format_one() && self.0 & 0x100 != 0 && self.0 & 0x800 != 0
    }

    /// Whether the TPM asks to send the same command again.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::RETRY | Self::YIELDED | Self::TESTING)
    }

    /// The error with the handle/session/parameter number masked off.
    pub fn base(self) -> u32 {
        if self.is_format_one() {
            0x080 | (self.0 & 0x3f)
        } else {
            self.0 & 0xfff
        }
    }

    /// For a format-1 code, what it blames.
    pub fn blame(self) -> Option<Blame> {
        if !self.is_format_one() {
            return None;
        }
        let n = ((self.0 >> 8) & 0xf) as u8;
        Some(if self.0 & 0x040 != 0 {
            Blame::Parameter(n)
        } else if n & 0x8 != 0 {
            Blame::Session(n & 0x7)
        } else {
            Blame::Handle(n & 0x7)
        })
    }

    /// The TCG name of the error (without the number), e.g. "TPM_RC_AUTH_FAIL".
    pub fn name(self) -> &'static str {
        if self.0 == 0 {
            return "TPM_RC_SUCCESS";
        }
        if self.is_format_one() {
            return format_one_name(self.0 & 0x3f);
        }
        if self.0 & 0x100 == 0 {
            return "TPM 1.2 response code";
        }
        if self.0 & 0x400 != 0 {
            return "vendor-defined response code";
        }
        if self.0 & 0x800 != 0 {
            warning_name(self.0 & 0x7f)
        } else {
            version_one_name(self.0 & 0x7f)
        }
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#05x})", self.name(), self.0)?;
        match self.blame() {
            Some(Blame::Parameter(n)) => write!(f, " in parameter {n}"),
            Some(Blame::Handle(0)) | Some(Blame::Session(0)) | None => Ok(()),
            Some(Blame::Handle(n)) => write!(f, " in handle {n}"),
            Some(Blame::Session(n)) => write!(f, " in session {n}"),
        }
    }
}

fn format_one_name(e: u32) -> &'static str {
    match e {
        0x01 => "TPM_RC_ASYMMETRIC",
        0x02 => "TPM_RC_ATTRIBUTES",
        0x03 => "TPM_RC_HASH",
        0x04 => "TPM_RC_VALUE",
        0x05 => "TPM_RC_HIERARCHY",
        0x07 => "TPM_RC_KEY_SIZE",
        0x08 => "TPM_RC_MGF",
        0x09 => "TPM_RC_MODE",
        0x0a => "TPM_RC_TYPE",
        0x0b => "TPM_RC_HANDLE",
        0x0c => "TPM_RC_KDF",
        0x0d => "TPM_RC_RANGE",
        0x0e => "TPM_RC_AUTH_FAIL",
        0x0f => "TPM_RC_NONCE",
        0x10 => "TPM_RC_PP",
        0x12 => "TPM_RC_SCHEME",
        0x15 => "TPM_RC_SIZE",
        0x16 => "TPM_RC_SYMMETRIC",
        0x17 => "TPM_RC_TAG",
        0x18 => "TPM_RC_SELECTOR",
        0x1a => "TPM_RC_INSUFFICIENT",
        0x1b => "TPM_RC_SIGNATURE",
        0x1c => "TPM_RC_KEY",
        0x1d => "TPM_RC_POLICY_FAIL",
        0x1f => "TPM_RC_INTEGRITY",
        0x20 => "TPM_RC_TICKET",
        0x21 => "TPM_RC_RESERVED_BITS",
        0x22 => "TPM_RC_BAD_AUTH",
        0x23 => "TPM_RC_EXPIRED",
        0x24 => "TPM_RC_POLICY_CC",
        0x25 => "TPM_RC_BINDING",
        0x26 => "TPM_RC_CURVE",
        0x27 => "TPM_RC_ECC_POINT",
        _ => "unknown format-1 response code",
    }
}

fn version_one_name(e: u32) -> &'static str {
    match e {
        0x00 => "TPM_RC_INITIALIZE",
        0x01 => "TPM_RC_FAILURE",
        0x03 => "TPM_RC_SEQUENCE",
        0x0b => "TPM_RC_PRIVATE",
        0x19 => "TPM_RC_HMAC",
        0x20 => "TPM_RC_DISABLED",
        0x21 => "TPM_RC_EXCLUSIVE",
        0x24 => "TPM_RC_AUTH_TYPE",
        0x25 => "TPM_RC_AUTH_MISSING",
        0x26 => "TPM_RC_POLICY",
        0x27 => "TPM_RC_PCR",
        0x28 => "TPM_RC_PCR_CHANGED",
        0x2d => "TPM_RC_UPGRADE",
        0x2e => "TPM_RC_TOO_MANY_CONTEXTS",
        0x2f => "TPM_RC_AUTH_UNAVAILABLE",
        0x30 => "TPM_RC_REBOOT",
        0x31 => "TPM_RC_UNBALANCED",
        0x42 => "TPM_RC_COMMAND_SIZE",
        0x43 => "TPM_RC_COMMAND_CODE",
        0x44 => "TPM_RC_AUTHSIZE",
        0x45 => "TPM_RC_AUTH_CONTEXT",
        0x46 => "TPM_RC_NV_RANGE",
        0x47 => "TPM_RC_NV_SIZE",
        0x48 => "TPM_RC_NV_LOCKED",
        0x49 => "TPM_RC_NV_AUTHORIZATION",
        0x4a => "TPM_RC_NV_UNINITIALIZED",
        0x4b => "TPM_RC_NV_SPACE",
        0x4c => "TPM_RC_NV_DEFINED",
        0x50 => "TPM_RC_BAD_CONTEXT",
        0x51 => "TPM_RC_CPHASH",
        0x52 => "TPM_RC_PARENT",
        0x53 => "TPM_RC_NEEDS_TEST",
        0x54 => "TPM_RC_NO_RESULT",
        0x55 => "TPM_RC_SENSITIVE",
        _ => "unknown TPM 2.0 response code",
    }
}

const REFERENCE_H: [&str; 7] = [
    "TPM_RC_REFERENCE_H0",
    "TPM_RC_REFERENCE_H1",
    "TPM_RC_REFERENCE_H2",
    "TPM_RC_REFERENCE_H3",
    "TPM_RC_REFERENCE_H4",
    "TPM_RC_REFERENCE_H5",
    "TPM_RC_REFERENCE_H6",
];

const REFERENCE_S: [&str; 7] = [
    "TPM_RC_REFERENCE_S0",
    "TPM_RC_REFERENCE_S1",
    "TPM_RC_REFERENCE_S2",
    "TPM_RC_REFERENCE_S3",
    "TPM_RC_REFERENCE_S4",
    "TPM_RC_REFERENCE_S5",
    "TPM_RC_REFERENCE_S6",
];

fn warning_name(e: u32) -> &'static str {
    match e {
        0x01 => "TPM_RC_CONTEXT_GAP",
        0x02 => "TPM_RC_OBJECT_MEMORY",
        0x03 => "TPM_RC_SESSION_MEMORY",
        0x04 => "TPM_RC_MEMORY",
        0x05 => "TPM_RC_SESSION_HANDLES",
        0x06 => "TPM_RC_OBJECT_HANDLES",
        0x07 => "TPM_RC_LOCALITY",
        0x08 => "TPM_RC_YIELDED",
        0x09 => "TPM_RC_CANCELED",
        0x0a => "TPM_RC_TESTING",
        0x10..=0x16 => REFERENCE_H[(e - 0x10) as usize],
        0x18..=0x1e => REFERENCE_S[(e - 0x18) as usize],
        0x20 => "TPM_RC_NV_RATE",
        0x21 => "TPM_RC_LOCKOUT",
        0x22 => "TPM_RC_RETRY",
        0x23 => "TPM_RC_NV_UNAVAILABLE",
        _ => "unknown TPM warning",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_both_formats() {
        // AUTH_FAIL on session 1 (tpm2-tools shows 0x98e).
        let rc = ResponseCode(0x98e);
        assert_eq!(rc.name(), "TPM_RC_AUTH_FAIL");
        assert_eq!(rc.blame(), Some(Blame::Session(1)));
        assert_eq!(rc.to_string(), "TPM_RC_AUTH_FAIL (0x98e) in session 1");
        // VALUE in parameter 2.
        let rc = ResponseCode(0x2c4);
        assert_eq!(rc.blame(), Some(Blame::Parameter(2)));
        assert_eq!(rc.base(), 0x084);
        // HANDLE in handle 1.
        assert_eq!(
            ResponseCode(0x18b).to_string(),
            "TPM_RC_HANDLE (0x18b) in handle 1"
        );
        // Format 0.
        assert_eq!(ResponseCode(0x100).name(), "TPM_RC_INITIALIZE");
        assert_eq!(ResponseCode(0x14b).name(), "TPM_RC_NV_SPACE");
        assert!(ResponseCode(0x922).is_warning());
        assert!(ResponseCode(0x922).is_retryable());
        assert_eq!(ResponseCode(0x902).name(), "TPM_RC_OBJECT_MEMORY");
        assert_eq!(ResponseCode(0x910).name(), "TPM_RC_REFERENCE_H0");
        assert_eq!(ResponseCode(0x919).name(), "TPM_RC_REFERENCE_S1");
        assert_eq!(ResponseCode(0x4).name(), "TPM 1.2 response code");
    }
}
