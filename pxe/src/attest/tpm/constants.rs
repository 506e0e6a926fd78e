//! Numbers from TPM 2.0 Part 2 (Structures) that this code speaks.

/// TPM_ALG_ID values.
pub mod alg {
    /// RSA.
    pub const RSA: u16 = 0x0001;
    /// SHA-1 (only to name banks; never used for our own digests).
    pub const SHA1: u16 = 0x0004;
    /// HMAC.
    pub const HMAC: u16 = 0x0005;
    /// AES.
    pub const AES: u16 = 0x0006;
    /// KEYEDHASH object type.
    pub const KEYEDHASH: u16 = 0x0008;
    /// SHA-256.
    pub const SHA256: u16 = 0x000b;
    /// SHA-384.
    pub const SHA384: u16 = 0x000c;
    /// SHA-512.
    pub const SHA512: u16 = 0x000d;
    /// The null algorithm.
    pub const NULL: u16 = 0x0010;
    /// RSASSA-PKCS1-v1_5.
    pub const RSASSA: u16 = 0x0014;
    /// RSAES-OAEP.
    pub const OAEP: u16 = 0x0017;
    /// RSA-PSS.
    pub const RSAPSS: u16 = 0x0016;
    /// ECDSA.
    pub const ECDSA: u16 = 0x0018;
    /// ECDH.
    pub const ECDH: u16 = 0x0019;
    /// ECC object type.
    pub const ECC: u16 = 0x0023;
    /// SYMCIPHER object type.
    pub const SYMCIPHER: u16 = 0x0025;
    /// CFB mode.
    pub const CFB: u16 = 0x0043;

    /// A readable name for an algorithm identifier.
    pub fn name(id: u16) -> &'static str {
        match id {
            RSA => "rsa",
            SHA1 => "sha1",
            HMAC => "hmac",
            AES => "aes",
            KEYEDHASH => "keyedhash",
            SHA256 => "sha256",
            SHA384 => "sha384",
            SHA512 => "sha512",
            NULL => "null",
            RSASSA => "rsassa",
            RSAPSS => "rsapss",
            OAEP => "oaep",
            ECDSA => "ecdsa",
            ECDH => "ecdh",
            ECC => "ecc",
            SYMCIPHER => "symcipher",
            CFB => "cfb",
            _ => "unknown",
        }
    }

    /// Digest size of a hash algorithm, None for anything else.
    pub fn digest_size(id: u16) -> Option<usize> {
        match id {
            SHA1 => Some(20),
            SHA256 => Some(32),
            SHA384 => Some(48),
            SHA512 => Some(64),
            _ => None,
        }
    }
}

/// TPM_ECC_CURVE values.
pub mod curve {
    /// NIST P-256.
    pub const NIST_P256: u16 = 0x0003;
    /// NIST P-384.
    pub const NIST_P384: u16 = 0x0004;
}

/// TPM_ST structure tags.
pub mod st {
    /// Command or response without sessions.
    pub const NO_SESSIONS: u16 = 0x8001;
    /// Command or response with sessions.
    pub const SESSIONS: u16 = 0x8002;
    /// TPMS_ATTEST of a quote.
    pub const ATTEST_QUOTE: u16 = 0x8018;
    /// TPMT_TK_CREATION.
    pub const CREATION: u16 = 0x8021;
    /// TPMT_TK_AUTH from PolicySecret.
    pub const AUTH_SECRET: u16 = 0x8023;
}

/// TPM_CC command codes.
pub mod cc {
    /// TPM2_EvictControl.
    pub const EVICT_CONTROL: u32 = 0x0000_0120;
    /// TPM2_DictionaryAttackParameters.
    pub const DICTIONARY_ATTACK_PARAMETERS: u32 = 0x0000_013a;
    /// TPM2_NV_Read.
    pub const NV_READ: u32 = 0x0000_014e;
    /// TPM2_CreatePrimary.
    pub const CREATE_PRIMARY: u32 = 0x0000_0131;
    /// TPM2_Startup.
    pub const STARTUP: u32 = 0x0000_0144;
    /// TPM2_PolicySecret.
    pub const POLICY_SECRET: u32 = 0x0000_0151;
    /// TPM2_Quote.
    pub const QUOTE: u32 = 0x0000_0158;
    /// TPM2_ActivateCredential.
    pub const ACTIVATE_CREDENTIAL: u32 = 0x0000_0147;
    /// TPM2_FlushContext.
    pub const FLUSH_CONTEXT: u32 = 0x0000_0165;
    /// TPM2_NV_ReadPublic.
    pub const NV_READ_PUBLIC: u32 = 0x0000_0169;
    /// TPM2_ReadPublic.
    pub const READ_PUBLIC: u32 = 0x0000_0173;
    /// TPM2_StartAuthSession.
    pub const START_AUTH_SESSION: u32 = 0x0000_0176;
    /// TPM2_GetCapability.
    pub const GET_CAPABILITY: u32 = 0x0000_017a;
    /// TPM2_PCR_Read.
    pub const PCR_READ: u32 = 0x0000_017e;
    /// TPM2_PCR_Extend.
    pub const PCR_EXTEND: u32 = 0x0000_0182;

    /// A readable name for a command code.
    pub fn name(code: u32) -> &'static str {
        match code {
            EVICT_CONTROL => "EvictControl",
            NV_READ => "NV_Read",
            CREATE_PRIMARY => "CreatePrimary",
            STARTUP => "Startup",
            POLICY_SECRET => "PolicySecret",
            QUOTE => "Quote",
            ACTIVATE_CREDENTIAL => "ActivateCredential",
            FLUSH_CONTEXT => "FlushContext",
            NV_READ_PUBLIC => "NV_ReadPublic",
            READ_PUBLIC => "ReadPublic",
            START_AUTH_SESSION => "StartAuthSession",
            GET_CAPABILITY => "GetCapability",
            PCR_READ => "PCR_Read",
            PCR_EXTEND => "PCR_Extend",
            _ => "unknown command",
        }
    }
}

/// Permanent handles (TPM_RH) and handle ranges.
pub mod rh {
    /// The owner (storage) hierarchy.
    pub const OWNER: u32 = 0x4000_0001;
    /// The null hierarchy / no handle.
    pub const NULL: u32 = 0x4000_0007;
    /// The password authorization pseudo-session (TPM_RS_PW).
    pub const PASSWORD_SESSION: u32 = 0x4000_0009;
    /// The lockout hierarchy (dictionary-attack settings).
    pub const LOCKOUT: u32 = 0x4000_000a;
    /// The endorsement hierarchy.
    pub const ENDORSEMENT: u32 = 0x4000_000b;
    /// The platform hierarchy.
    pub const PLATFORM: u32 = 0x4000_000c;
    /// First persistent object handle (TPM_HT_PERSISTENT).
    pub const PERSISTENT_FIRST: u32 = 0x8100_0000;
    /// First NV index handle (TPM_HT_NV_INDEX).
    pub const NV_INDEX_FIRST: u32 = 0x0100_0000;
}

/// TPMA_OBJECT bits.
pub mod object {
    /// The object cannot be duplicated.
    pub const FIXED_TPM: u32 = 1 << 1;
    /// The parent cannot change.
    pub const FIXED_PARENT: u32 = 1 << 4;
    /// The TPM generated the sensitive part.
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    /// The USER role may use the authValue.
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    /// The ADMIN role needs a policy.
    pub const ADMIN_WITH_POLICY: u32 = 1 << 7;
    /// No dictionary-attack protection.
    pub const NO_DA: u32 = 1 << 10;
    /// Restricted: signs only TPM-generated structures / decrypts only
    /// TPM-formatted data.
    pub const RESTRICTED: u32 = 1 << 16;
    /// A decryption key.
    pub const DECRYPT: u32 = 1 << 17;
    /// A signing key.
    pub const SIGN: u32 = 1 << 18;
}

/// TPMA_NV bits this code looks at.
pub mod nv {
    /// The index may be read with its own authValue.
    pub const AUTHREAD: u32 = 1 << 18;
    /// The index may be read with owner authorization.
    pub const OWNERREAD: u32 = 1 << 17;
    /// The index may be read with platform authorization.
    pub const PPREAD: u32 = 1 << 16;
    /// The index has been written.
    pub const WRITTEN: u32 = 1 << 29;
}

/// TPM_CAP capability selectors and TPM_PT properties.
pub mod cap {
    /// TPM_CAP_ALGS.
    pub const ALGS: u32 = 0;
    /// TPM_CAP_HANDLES.
    pub const HANDLES: u32 = 1;
    /// TPM_CAP_PCRS.
    pub const PCRS: u32 = 5;
    /// TPM_CAP_TPM_PROPERTIES.
    pub const TPM_PROPERTIES: u32 = 6;
    /// TPM_PT_MANUFACTURER.
    pub const PT_MANUFACTURER: u32 = 0x105;
    /// TPM_PT_FIRMWARE_VERSION_1.
    pub const PT_FIRMWARE_VERSION_1: u32 = 0x10b;
    /// TPM_PT_NV_BUFFER_MAX.
    pub const PT_NV_BUFFER_MAX: u32 = 0x12c;
}

/// The TPM_GENERATED_VALUE magic at the head of every TPMS_ATTEST.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;

/// TPM_SU_CLEAR for Startup.
pub const SU_CLEAR: u16 = 0x0000;

/// Largest command or response this client sends or accepts. TPMs report
/// TPM_PT_MAX_COMMAND_SIZE of 4 KiB in practice; swtpm allows more.
pub const MAX_MESSAGE: usize = 8192;
