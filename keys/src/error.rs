//! The one error type of the crate.
//!
//! Variants name what went wrong and carry the key id, artifact or path at
//! fault. None of them ever carries secret material: secret keys, passphrases
//! and key-derivation output stay out of every message.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::keyid::KeyId;
use crate::time::Timestamp;

/// Which kind of document a format error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// A minisign public key (`.pub`).
    PublicKey,
    /// A minisign secret key (`.key`).
    SecretKey,
    /// A minisign signature (`.minisig`).
    Signature,
    /// A trust file (`trust.json`).
    Trust,
    /// A signed manifest (`manifest.json`).
    Manifest,
    /// The rollback state a verifier keeps.
    RollbackState,
    /// A passphrase file.
    Passphrase,
    /// A file being signed or verified.
    SignedFile,
    /// An artifact named by a manifest.
    Artifact,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Item::PublicKey => "public key",
            Item::SecretKey => "secret key",
            Item::Signature => "signature",
            Item::Trust => "trust file",
            Item::Manifest => "manifest",
            Item::RollbackState => "rollback state",
            Item::Passphrase => "passphrase file",
            Item::SignedFile => "signed file",
            Item::Artifact => "artifact",
        })
    }
}

/// Which set of root keys a threshold was counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quorum {
    /// The roots listed in the trust file itself.
    OwnRoots,
    /// The roots of the trust state the verifier already holds.
    CurrentRoots,
    /// The root public keys pinned by the operator.
    PinnedRoots,
}

impl fmt::Display for Quorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Quorum::OwnRoots => "its own root keys",
            Quorum::CurrentRoots => "the currently trusted root keys",
            Quorum::PinnedRoots => "the pinned root keys",
        })
    }
}

/// Two algorithm bytes, shown readably whether or not they are ASCII.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgorithmId(pub [u8; 2]);

impl fmt::Display for AlgorithmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0.escape_ascii())
    }
}

/// Everything that can go wrong in ironrack-keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- files ------------------------------------------------------------
    /// Context: the inner error happened in this file.
    #[error("{}", path.display())]
    InFile {
        /// The file at fault.
        path: PathBuf,
        /// What was wrong with it.
        #[source]
        source: Box<Error>,
    },
    /// Reading a file failed.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Writing a file (or its temporary, or syncing its directory) failed.
    #[error("writing {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file we must not overwrite already exists.
    #[error("{} already exists; refusing to overwrite it", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// A secret file can be read or written by group or others.
    #[error(
        "permissions {mode:04o} for {what} {} are too open: it must not be accessible \
         by group or others; fix it with `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// What it holds.
        what: Item,
        /// Its permission bits.
        mode: u32,
    },
    /// A file that must be a regular file is something else.
    #[error("{what} {} is not a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it should hold.
        what: Item,
    },
    /// An input is larger than any valid document of its kind.
    #[error("{what} is larger than {limit} bytes")]
    TooLarge {
        /// What the input should be.
        what: Item,
        /// The size limit.
        limit: u64,
    },
    /// The operating system's random number generator failed.
    #[error("getting random bytes from the operating system")]
    Random(#[source] getrandom::Error),

    // ---- text formats -----------------------------------------------------
    /// The input is not UTF-8 text.
    #[error("{what} is not UTF-8 text")]
    NotText {
        /// What the input should be.
        what: Item,
    },
    /// A required line is missing.
    #[error("{what}: line {line} ({expected}) is missing")]
    MissingLine {
        /// What the input should be.
        what: Item,
        /// 1-based line number.
        line: usize,
        /// What the line should hold.
        expected: &'static str,
    },
    /// A line does not start with its required prefix.
    #[error("{what}: line {line} must start with {prefix:?}")]
    LinePrefix {
        /// What the input should be.
        what: Item,
        /// 1-based line number.
        line: usize,
        /// The required prefix.
        prefix: &'static str,
    },
    /// Content follows the last line of the format.
    #[error("{what}: unexpected content after line {line}")]
    TrailingData {
        /// What the input should be.
        what: Item,
        /// The last line of the format.
        line: usize,
    },
    /// A line is not valid (canonical, padded) base64.
    #[error("{what}: line {line} is not valid base64")]
    Base64 {
        /// What the input should be.
        what: Item,
        /// 1-based line number.
        line: usize,
    },
    /// A decoded blob has the wrong length.
    #[error("{what}: line {line} decodes to {got} bytes, expected {want}")]
    Length {
        /// What the input should be.
        what: Item,
        /// 1-based line number.
        line: usize,
        /// Decoded length.
        got: usize,
        /// Required length.
        want: usize,
    },
    /// An algorithm identifier is not one we support.
    #[error("{what}: algorithm {got} is not supported (expected {want})")]
    Algorithm {
        /// What the input should be.
        what: Item,
        /// The identifier found.
        got: AlgorithmId,
        /// What is supported there.
        want: &'static str,
    },
    /// A secret key uses a key derivation other than scrypt or none.
    #[error("secret key: unsupported key derivation {got} (supported: \"Sc\" and none)")]
    KdfAlgorithm {
        /// The identifier found.
        got: AlgorithmId,
    },
    /// A secret key uses a checksum other than BLAKE2b.
    #[error("secret key: unsupported checksum {got} (supported: \"B2\")")]
    ChecksumAlgorithm {
        /// The identifier found.
        got: AlgorithmId,
    },
    /// A comment given for a new file has a line break, an unprintable
    /// character, or is too long for minisign to read back.
    #[error("{field} must be one line of printable text, at most {max} bytes")]
    InvalidComment {
        /// Which comment.
        field: &'static str,
        /// Its byte limit.
        max: usize,
    },
    /// A comment read from a file has a line break, an unprintable
    /// character or is too long.
    #[error("{what}: {field} must be one line of printable text, at most {max} bytes")]
    Comment {
        /// What the input should be.
        what: Item,
        /// Which comment.
        field: &'static str,
        /// Its byte limit.
        max: usize,
    },
    /// 32 bytes that are not a valid Ed25519 public key.
    #[error("{what}: not a valid Ed25519 public key")]
    InvalidPoint {
        /// What the input should be.
        what: Item,
    },
    /// A key id is not 16 hex digits.
    #[error("invalid key id {text:?}: expected 16 hex digits")]
    KeyIdSyntax {
        /// The text given.
        text: String,
    },
    /// A SHA-256 digest is not 64 lower-case hex digits.
    #[error("invalid sha256 {text:?}: expected 64 lower-case hex digits")]
    DigestSyntax {
        /// The text given.
        text: String,
    },
    /// A key name is not a plain file name.
    #[error(
        "invalid key name {name:?}: use letters, digits, '.', '_' and '-', not starting with '.'"
    )]
    KeyName {
        /// The name given.
        name: String,
    },
    /// A timestamp is not RFC 3339 UTC with whole seconds.
    #[error(
        "invalid time {text:?}: expected YYYY-MM-DDTHH:MM:SSZ (UTC) or a number of days like 90d"
    )]
    Timestamp {
        /// The text given.
        text: String,
    },
    /// JSON that does not parse into the expected structure.
    #[error("{what}: not the expected JSON document")]
    Json {
        /// What the input should be.
        what: Item,
        /// The parser's message.
        #[source]
        source: serde_json::Error,
    },
    /// JSON that parses but is not in canonical form.
    #[error(
        "{what}: not canonical JSON (sorted keys, no insignificant whitespace, integers only); \
         it was not written by ironrack, or was edited"
    )]
    NotCanonical {
        /// What the input should be.
        what: Item,
    },
    /// A value that canonical JSON cannot express (a float).
    #[error("{what}: canonical JSON holds integers only, found a floating-point number")]
    Float {
        /// What was being encoded.
        what: Item,
    },
    /// A document's `type` field names another kind of document.
    #[error("{what}: type {got:?}, expected {want:?}")]
    DocumentType {
        /// What the input should be.
        what: Item,
        /// The type found.
        got: String,
        /// The type required.
        want: &'static str,
    },
    /// A scope entry is not `image:PATTERN`, `channel:PATTERN` or `mirror:PATTERN`.
    #[error(
        "invalid scope {text:?}: expected image:PATTERN, channel:PATTERN or mirror:PATTERN (PATTERN may use *)"
    )]
    Scope {
        /// The text given.
        text: String,
    },
    /// A delegation that could sign nothing: manifest scopes need an image
    /// and a channel; a mirror scope stands alone.
    #[error(
        "signer {name:?} needs image:PATTERN and channel:PATTERN scopes together, or a mirror:PATTERN scope"
    )]
    IncompleteScope {
        /// The signer's name.
        name: String,
    },
    /// A manifest or signer name uses characters outside the allowed set.
    #[error(
        "{what}: {field} {value:?} must be non-empty and use only letters, digits, '.', '_' and '-'"
    )]
    Name {
        /// Where the name is.
        what: Item,
        /// Which field.
        field: &'static str,
        /// The value given.
        value: String,
    },
    /// An artifact name could escape the artifact directory.
    #[error("manifest: artifact name {name:?} is not a plain file name")]
    ArtifactName {
        /// The name given.
        name: String,
    },
    /// An artifact is listed twice.
    #[error("manifest: artifact {name:?} is listed twice")]
    DuplicateArtifact {
        /// The name.
        name: String,
    },

    // ---- secret keys ------------------------------------------------------
    /// An encrypted secret key was loaded without a passphrase.
    #[error("secret key is encrypted and no passphrase was given")]
    PassphraseRequired,
    /// The passphrase does not decrypt the key.
    #[error("wrong passphrase for this secret key")]
    WrongPassphrase,
    /// A passphrase is empty or longer than minisign accepts.
    #[error("passphrase must be 1 to 1023 bytes long (minisign's limit)")]
    PassphraseLength,
    /// An unencrypted key whose checksum or key pair does not match.
    #[error("secret key is damaged: its checksum or its public half does not match")]
    SecretKeyCorrupt,
    /// scrypt limits beyond what minisign ever writes (a denial of service).
    #[error(
        "secret key: scrypt limits opslimit={opslimit} memlimit={memlimit} exceed what \
         minisign writes; refusing to spend that much time or memory"
    )]
    KdfTooExpensive {
        /// The opslimit found.
        opslimit: u64,
        /// The memlimit found.
        memlimit: u64,
    },

    // ---- signatures -------------------------------------------------------
    /// The signature's key id differs from the public key's.
    #[error("signature was made by key {signature}, but the public key is {public_key}")]
    KeyIdMismatch {
        /// Key id in the signature.
        signature: KeyId,
        /// Key id of the public key.
        public_key: KeyId,
    },
    /// The signature over the data does not verify.
    #[error("signature by key {key_id} does not match the data")]
    SignatureInvalid {
        /// The signing key.
        key_id: KeyId,
    },
    /// The global signature over signature ‖ trusted comment does not verify.
    #[error("signature by key {key_id}: the trusted comment or its signature was altered")]
    GlobalSignatureInvalid {
        /// The signing key.
        key_id: KeyId,
    },

    // ---- trust ------------------------------------------------------------
    /// Not enough distinct root keys signed a trust file.
    #[error(
        "trust file version {version}: {valid} valid signature(s) by {quorum}, threshold is {threshold}"
    )]
    ThresholdNotMet {
        /// The trust file's version.
        version: u64,
        /// Which roots were counted.
        quorum: Quorum,
        /// Distinct valid signatures found.
        valid: usize,
        /// Signatures required.
        threshold: u32,
    },
    /// A threshold of zero, or higher than the number of roots.
    #[error("trust file: threshold {threshold} is impossible with {roots} root key(s)")]
    ThresholdInvalid {
        /// The threshold.
        threshold: u32,
        /// Number of root keys.
        roots: usize,
    },
    /// The same key id (or public key) appears twice.
    #[error("trust file: key {key_id} is listed more than once")]
    DuplicateKey {
        /// The key.
        key_id: KeyId,
    },
    /// Two delegated signers share a name.
    #[error("trust file: signer name {name:?} is used more than once")]
    DuplicateSignerName {
        /// The name.
        name: String,
    },
    /// A key entry's id differs from the id inside its public key.
    #[error("trust file: key listed as {listed} carries key id {embedded}")]
    ListedIdMismatch {
        /// The `id` field.
        listed: KeyId,
        /// The id inside `public`.
        embedded: KeyId,
    },
    /// A root key is also a delegated signer.
    #[error(
        "trust file: root key {key_id} is also a delegated signer; root keys sign only the trust file"
    )]
    RootAsSigner {
        /// The key.
        key_id: KeyId,
    },
    /// The trust file has expired.
    #[error("trust file version {version} expired at {expires}")]
    TrustExpired {
        /// Its version.
        version: u64,
        /// When it expired.
        expires: Timestamp,
    },
    /// An offered trust file is not newer than the one held.
    #[error("trust file version {offered} is not newer than the trusted version {current}")]
    TrustNotNewer {
        /// The version held.
        current: u64,
        /// The version offered.
        offered: u64,
    },
    /// A key used to sign a trust file is not one of its roots.
    #[error("key {key_id} is not a root key of this trust file")]
    NotARoot {
        /// The key.
        key_id: KeyId,
    },
    /// A key that is a root cannot be revoked or added as a signer.
    #[error("key {key_id} is a root key; change roots with rotate-root")]
    IsARoot {
        /// The key.
        key_id: KeyId,
    },
    /// Revoking a key that is neither a signer nor already revoked.
    #[error("key {key_id} is not a delegated signer of this trust file")]
    NotASigner {
        /// The key.
        key_id: KeyId,
    },
    /// Adding a signer whose key or name is already present.
    #[error("signer {name:?} with key {key_id} is already delegated or its name is taken")]
    SignerExists {
        /// The name.
        name: String,
        /// The key.
        key_id: KeyId,
    },
    /// Adding a signer whose key was revoked.
    #[error("key {key_id} was revoked and cannot be delegated again")]
    RevokedKeyReuse {
        /// The key.
        key_id: KeyId,
    },

    // ---- manifests --------------------------------------------------------
    /// The signing key is not a delegated signer.
    #[error("key {key_id} is not a delegated signer in the trust file")]
    UnknownKey {
        /// The key.
        key_id: KeyId,
    },
    /// The signing key has been revoked.
    #[error("key {key_id} has been revoked")]
    KeyRevoked {
        /// The key.
        key_id: KeyId,
    },
    /// The signing key's delegation has expired.
    #[error("signer {name:?} (key {key_id}) expired at {expires}")]
    KeyExpired {
        /// The key.
        key_id: KeyId,
        /// The signer's name.
        name: String,
        /// When the delegation expired.
        expires: Timestamp,
    },
    /// The signing key may not sign this image or channel.
    #[error("signer {name:?} (key {key_id}) may not sign image {image:?} on channel {channel:?}")]
    OutOfScope {
        /// The key.
        key_id: KeyId,
        /// The signer's name.
        name: String,
        /// The manifest's image name.
        image: String,
        /// The manifest's channel.
        channel: String,
    },
    /// The signing key may not sign snapshots of this mirror.
    #[error("signer {name:?} (key {key_id}) may not sign snapshots of mirror {mirror:?}")]
    MirrorOutOfScope {
        /// The key.
        key_id: KeyId,
        /// The signer's name.
        name: String,
        /// The mirror's name.
        mirror: String,
    },
    /// The manifest has expired.
    #[error("manifest {name:?} version {version} expired at {expires}")]
    ManifestExpired {
        /// Image name.
        name: String,
        /// Manifest version.
        version: u64,
        /// When it expired.
        expires: Timestamp,
    },
    /// The manifest is older than one already seen.
    #[error(
        "manifest {name:?} on channel {channel:?}: version {version} is lower than version {highest_seen} already seen (rollback)"
    )]
    Rollback {
        /// Image name.
        name: String,
        /// Channel.
        channel: String,
        /// Version offered.
        version: u64,
        /// Highest version seen before.
        highest_seen: u64,
    },
    /// An artifact named by the manifest is absent.
    #[error("artifact {name:?} is missing ({})", path.display())]
    ArtifactMissing {
        /// Artifact name.
        name: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// An artifact has the wrong size.
    #[error("artifact {name:?} is {actual} bytes, the manifest says {expected}")]
    ArtifactSizeMismatch {
        /// Artifact name.
        name: String,
        /// Size in the manifest.
        expected: u64,
        /// Size on disk.
        actual: u64,
    },
    /// An artifact has the wrong SHA-256.
    #[error("artifact {name:?} has sha256 {actual}, the manifest says {expected}")]
    ArtifactDigestMismatch {
        /// Artifact name.
        name: String,
        /// Digest in the manifest (hex).
        expected: String,
        /// Digest on disk (hex).
        actual: String,
    },
}

impl Error {
    /// True when something was checked and found wrong: a signature, a
    /// digest, a trust chain, an expiry, a rollback, or a malformed document
    /// that was presented for verification. Callers map this to their
    /// "verification failed" exit code; I/O and usage problems are not.
    pub fn is_verification_failure(&self) -> bool {
        use Error::*;
        match self {
            InFile { source, .. } => source.is_verification_failure(),
            Read { .. } | Write { .. } | AlreadyExists { .. } | TooOpen { .. } | Random(_) => false,
            NotAFile { what, .. } => *what == Item::Artifact,
            KeyIdSyntax { .. }
            | DigestSyntax { .. }
            | KeyName { .. }
            | Timestamp { .. }
            | Scope { .. } => false,
            PassphraseRequired | WrongPassphrase | PassphraseLength | SecretKeyCorrupt => false,
            KdfTooExpensive { .. } | KdfAlgorithm { .. } | ChecksumAlgorithm { .. } => false,
            NotARoot { .. } | IsARoot { .. } | NotASigner { .. } | SignerExists { .. } => false,
            RevokedKeyReuse { .. } | Float { .. } | InvalidComment { .. } => false,
            IncompleteScope { .. } => false,
            TooLarge { what, .. }
            | NotText { what }
            | MissingLine { what, .. }
            | LinePrefix { what, .. }
            | TrailingData { what, .. }
            | Base64 { what, .. }
            | Length { what, .. }
            | Algorithm { what, .. }
            | Comment { what, .. }
            | InvalidPoint { what }
            | Json { what, .. }
            | NotCanonical { what }
            | DocumentType { what, .. }
            | Name { what, .. } => !matches!(what, Item::SecretKey | Item::Passphrase),
            ArtifactName { .. } | DuplicateArtifact { .. } => true,
            KeyIdMismatch { .. } | SignatureInvalid { .. } | GlobalSignatureInvalid { .. } => true,
            ThresholdNotMet { .. } | ThresholdInvalid { .. } | DuplicateKey { .. } => true,
            DuplicateSignerName { .. } | ListedIdMismatch { .. } | RootAsSigner { .. } => true,
            TrustExpired { .. } | TrustNotNewer { .. } => true,
            UnknownKey { .. } | KeyRevoked { .. } | KeyExpired { .. } | OutOfScope { .. } => true,
            MirrorOutOfScope { .. } => true,
            ManifestExpired { .. } | Rollback { .. } => true,
            ArtifactMissing { .. }
            | ArtifactSizeMismatch { .. }
            | ArtifactDigestMismatch { .. } => true,
        }
    }

    /// The innermost error, past any [`Error::InFile`] context.
    pub fn innermost(&self) -> &Error {
        match self {
            Error::InFile { source, .. } => source.innermost(),
            other => other,
        }
    }

    /// Wrap this error with the file it happened in.
    pub fn in_file(self, path: impl Into<PathBuf>) -> Error {
        Error::InFile {
            path: path.into(),
            source: Box::new(self),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
