//! The one error type of the local mirror.
//!
//! Each variant names the operation and what it was done to (a path, a
//! URL, a package, a snapshot id), so an operator reading the message knows
//! which file or download to look at.

use std::io;
use std::path::PathBuf;

use super::SnapshotId;

/// An error creating, reading, verifying or syncing a local mirror.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a file or directory failed.
    #[error("reading {path}", path = path.display())]
    Read {
        /// What was read.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Writing, renaming or syncing a file or directory failed.
    #[error("writing {path}", path = path.display())]
    Write {
        /// What was written.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// `mirror init` on a directory that already holds a mirror.
    #[error("{path} already holds a mirror", path = path.display())]
    AlreadyAMirror {
        /// The mirror root.
        path: PathBuf,
    },
    /// A directory without `mirror.toml`.
    #[error("{path} is not a mirror (no mirror.toml; create one with `ironrack mirror init`)", path = path.display())]
    NotAMirror {
        /// The directory given.
        path: PathBuf,
    },
    /// `mirror.toml` does not parse.
    #[error("parsing {path}", path = path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong (with line and key).
        source: Box<toml::de::Error>,
    },
    /// A name (mirror, ref, suite, component, architecture) with characters
    /// that could escape a directory or confuse apt.
    #[error(
        "invalid {what} {value:?}: use letters, digits, '.', '_', '+' and '-' (not starting with '.')"
    )]
    Name {
        /// Which kind of name.
        what: &'static str,
        /// The text given.
        value: String,
    },
    /// Another process is writing to the mirror.
    #[error("{path} is locked by another import or sync", path = path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A ref that does not exist.
    #[error("mirror {mirror}: no snapshot or ref named {name:?}")]
    NoSuchRef {
        /// The mirror's name.
        mirror: String,
        /// The ref asked for.
        name: String,
    },
    /// A ref whose content is not a snapshot id.
    #[error("{path}: not a snapshot id", path = path.display())]
    BadRef {
        /// The ref file.
        path: PathBuf,
    },
    /// A snapshot id with no directory.
    #[error("mirror {mirror}: no snapshot {id}")]
    NoSuchSnapshot {
        /// The mirror's name.
        mirror: String,
        /// The id asked for.
        id: SnapshotId,
    },
    /// A snapshot directory that does not hold exactly one suite.
    #[error("snapshot {id}: dists/ must hold exactly one suite, found {found:?}")]
    SnapshotSuites {
        /// The snapshot.
        id: SnapshotId,
        /// What dists/ holds.
        found: Vec<String>,
    },
    /// The snapshot's Release does not hash to its id: it was changed or
    /// moved.
    #[error("snapshot {id}: Release has sha256 {actual}, not the snapshot id")]
    SnapshotIdMismatch {
        /// The snapshot (directory name).
        id: SnapshotId,
        /// What the Release hashes to.
        actual: SnapshotId,
    },
    /// Our signature on a snapshot's Release does not verify.
    #[error("snapshot {id}: signature {path}", path = path.display())]
    SnapshotSignature {
        /// The snapshot.
        id: SnapshotId,
        /// The `.minisig` file.
        path: PathBuf,
        /// Why (wrong key, bad signature, out of scope, expired, ...).
        source: Box<ironrack_keys::Error>,
    },
    /// The signature is valid but made for another mirror.
    #[error(
        "snapshot {id}: signed for mirror {signed:?}, but this is mirror {expected:?} (trusted comment {comment:?})"
    )]
    SnapshotMirrorName {
        /// The snapshot.
        id: SnapshotId,
        /// The mirror name the signature names (`None`: no mirror named).
        signed: Option<String>,
        /// The mirror being read.
        expected: String,
        /// The authenticated trusted comment.
        comment: String,
    },
    /// A file's size or digest differs from what a signed list says.
    #[error("{what}: {path} {problem}", path = path.display())]
    Digest {
        /// What listed it (`snapshot <id> Release`, `index <url>`, ...).
        what: String,
        /// The file checked.
        path: PathBuf,
        /// Size or digest, expected and found.
        problem: DigestProblem,
    },
    /// A file a signed list names is missing.
    #[error("{what}: {path} is missing", path = path.display())]
    Missing {
        /// What listed it.
        what: String,
        /// The missing file.
        path: PathBuf,
    },
    /// A Debian-format input (Release, Packages, .deb control) that does not parse.
    #[error(transparent)]
    Format(#[from] crate::source::Error),
    /// Signing a snapshot failed.
    #[error("signing {path}", path = path.display())]
    Sign {
        /// The Release signed.
        path: PathBuf,
        /// Why.
        source: Box<ironrack_keys::Error>,
    },
    /// A `Filename` that is not a plain path under `pool/`.
    #[error("package {package}: Filename {filename:?} is not a relative path under pool/")]
    BadFilename {
        /// The package.
        package: String,
        /// The field as given.
        filename: String,
    },
    /// A .deb asked for by filename and digest that the snapshot does not list.
    #[error("snapshot {id}: no package file {filename} with sha256 {sha256}")]
    NotInSnapshot {
        /// The snapshot.
        id: SnapshotId,
        /// The pool path asked for.
        filename: String,
        /// The digest asked for.
        sha256: String,
    },
    /// Two different files for one package name, version and architecture.
    #[error(
        "package {package} {version} ({arch}) comes as two different files: {first} and {second}"
    )]
    PackageConflict {
        /// The package.
        package: String,
        /// Its version.
        version: String,
        /// Its architecture.
        arch: String,
        /// One file (filename and sha256).
        first: String,
        /// The other.
        second: String,
    },
    /// A pool path that already holds a different file: the pool is immutable.
    #[error("{path} already exists in the pool with sha256 {existing}, not {wanted}", path = path.display())]
    PoolConflict {
        /// The pool file.
        path: PathBuf,
        /// What it holds.
        existing: String,
        /// What was to be stored.
        wanted: String,
    },
    /// A snapshot of another suite than the one being written.
    #[error("snapshot {parent} is suite {found:?}; this snapshot is suite {wanted:?}")]
    SuiteMismatch {
        /// The previous snapshot.
        parent: SnapshotId,
        /// Its suite.
        found: String,
        /// The suite asked for.
        wanted: String,
    },
    /// `--suite`/`--component` missing where nothing supplies a default.
    #[error("{what} not given and there is no previous snapshot to take it from")]
    NeedsArgument {
        /// `suite` or `component`.
        what: &'static str,
    },
    /// A download or upstream file read failed.
    #[error("fetching {url}: {problem}")]
    Fetch {
        /// The URL (or file:// path).
        url: String,
        /// What went wrong.
        problem: FetchProblem,
    },
    /// A URL with a scheme the mirror cannot read.
    #[error("unsupported URL {url:?}: use http:// or file:")]
    UnsupportedUrl {
        /// The URL.
        url: String,
    },
    /// Running gpgv failed, or its verdict on a Release signature is no.
    #[error("verifying {url} with gpgv (keyring {keyrings}): {problem}")]
    Gpgv {
        /// The signed file's URL.
        url: String,
        /// The keyrings used, comma-separated.
        keyrings: String,
        /// What gpgv said.
        problem: GpgvProblem,
    },
    /// An upstream Release that is for another suite than asked for (a
    /// replayed Release of a sibling suite, signed by the same key).
    #[error("{url}: Release is for suite {suite:?} / codename {codename:?}, not {wanted:?}")]
    WrongSuite {
        /// The Release URL.
        url: String,
        /// Its Suite.
        suite: Option<String>,
        /// Its Codename.
        codename: Option<String>,
        /// The suite asked for.
        wanted: String,
    },
    /// An upstream Release past its Valid-Until (a replay of old metadata).
    #[error(
        "{url}: Release expired at {valid_until} (Valid-Until); pass --ignore-valid-until to accept it"
    )]
    Expired {
        /// The Release URL.
        url: String,
        /// The Valid-Until, Unix seconds.
        valid_until: i64,
    },
    /// No index of a requested component in any synced suite.
    #[error("component {component} ({arch}) has no Packages index in any synced suite ({suites})")]
    NoIndex {
        /// The component.
        component: String,
        /// The architecture.
        arch: String,
        /// The suites searched.
        suites: String,
    },
    /// A requested package (or version) that the synced suites lack.
    #[error("package {name}{version}: not found in the synced suites{available}",
        version = version.as_ref().map(|v| format!(" version {v}")).unwrap_or_default(),
        available = if available.is_empty() { String::new() } else { format!(" (available: {})", available.join(", ")) })]
    PackageNotFound {
        /// The package name.
        name: String,
        /// The exact version asked for.
        version: Option<String>,
        /// The versions that exist.
        available: Vec<String>,
    },
    /// An image spec of `--for` that does not load.
    #[error(transparent)]
    Spec {
        /// Why (with file, line and key).
        source: Box<crate::spec::SpecError>,
    },
    /// A package set of an image spec that does not resolve against the
    /// synced suites.
    #[error("{spec}: package set {set} does not resolve against the synced suites", spec = spec.display())]
    Resolve {
        /// The spec file.
        spec: PathBuf,
        /// `image` or `build`.
        set: String,
        /// The resolver's explanation (the chain of packages).
        source: Box<crate::source::resolve::ResolveError>,
    },
    /// A package request that is not `NAME` or `NAME=VERSION`.
    #[error("package request {text:?}: expected NAME or NAME=VERSION")]
    BadRequest {
        /// The text given.
        text: String,
    },
    /// A package in an index without the SHA256 a verified download needs.
    #[error("{origin}: package {package} has no SHA256 field; refusing to fetch it unverified")]
    NoSha256 {
        /// The index.
        origin: String,
        /// The package.
        package: String,
    },
    /// The host's apt configuration could not be read.
    #[error("host apt: {problem}")]
    HostApt {
        /// What failed.
        problem: String,
    },
    /// A sources.list or .sources entry that does not parse.
    #[error("{origin}:{line}: {problem}")]
    SourcesList {
        /// The file.
        origin: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        problem: SourcesProblem,
    },
    /// An ASCII-armored OpenPGP key block that does not decode.
    #[error("{origin}: armored key block: {problem}")]
    Armor {
        /// Where it came from.
        origin: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// Several download failures; the first is shown, all are logged.
    #[error("{failed} of {total} downloads failed; first: {first}")]
    Downloads {
        /// How many failed.
        failed: usize,
        /// How many were attempted.
        total: usize,
        /// The first failure.
        first: Box<Error>,
    },
    /// The catalog and the mirror's index reader counted different
    /// packages in one index (a bug, or an index neither should accept).
    #[error("{url}: the index readers disagree on its packages")]
    IndexCount {
        /// The index.
        url: String,
    },
    /// Nothing to mirror: no upstream or no package asked for.
    #[error("nothing to do: {0}")]
    Nothing(&'static str),
}

/// Size or digest mismatch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestProblem {
    /// Wrong size.
    #[error("has {actual} bytes, expected {expected}")]
    Size {
        /// From the signed list.
        expected: u64,
        /// Found.
        actual: u64,
    },
    /// Wrong SHA-256.
    #[error("has sha256 {actual}, expected {expected}")]
    Sha256 {
        /// From the signed list.
        expected: String,
        /// Found.
        actual: String,
    },
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchProblem {
    /// The server answered with an error status.
    #[error("HTTP status {0}")]
    Status(u16),
    /// Transport failure (connection, protocol, timeout).
    #[error("{0}")]
    Http(Box<ureq::Error>),
    /// Reading the body or a local file failed.
    #[error("{0}")]
    Io(io::Error),
    /// The body ended before the expected size.
    #[error("truncated: got {got} of {expected} bytes")]
    Truncated {
        /// Bytes received in all.
        got: u64,
        /// Bytes expected.
        expected: u64,
    },
    /// The body is larger than allowed.
    #[error("larger than the expected {expected} bytes")]
    TooLarge {
        /// The limit.
        expected: u64,
    },
    /// A Range answer that does not continue where asked.
    #[error("server answered a resume request with Content-Range {0:?}")]
    BadRange(String),
}

/// What gpgv said about a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpgvProblem {
    /// gpgv could not be run.
    #[error("cannot run gpgv: {0} (install the gpgv package)")]
    Spawn(String),
    /// A signature that does not match the data.
    #[error("BAD signature by key {0}")]
    BadSignature(String),
    /// No good signature by a key of the keyring.
    #[error("no good signature by a key of the keyring (gpgv status: {status})")]
    NoGoodSignature {
        /// The status keywords gpgv printed.
        status: String,
    },
    /// Only signatures over weak digests (MD5, SHA-1, RIPEMD-160).
    #[error("only weak-digest signatures (digest algorithm {0}); apt refuses these too")]
    WeakDigest(String),
    /// Good signatures, but by none of the fingerprints Signed-By names.
    #[error("signed by {found}, which Signed-By does not name")]
    WrongSigner {
        /// The fingerprints that signed.
        found: String,
    },
}

/// What is wrong with a sources.list or .sources entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourcesProblem {
    /// A line that is not `deb [options] URI SUITE [COMPONENT...]`.
    #[error("expected 'deb [options] URI SUITE [COMPONENT...]'")]
    Syntax,
    /// `[` without `]`, or an option that is not `name=value`.
    #[error("bad option list")]
    Options,
    /// A deb822 stanza without a required field.
    #[error("missing field {0}")]
    MissingField(&'static str),
    /// A deb822 text that does not parse.
    #[error("{0}")]
    Control(String),
    /// `trusted=yes`: apt would skip verification; a mirror must not.
    #[error("source {0} is marked trusted=yes (unverified); ironrack mirrors only signed sources")]
    Trusted(String),
}

impl Error {
    /// Whether this is a verification failure (a signature, digest, scope
    /// or identity check said no), as opposed to I/O or usage trouble.
    pub fn is_verification_failure(&self) -> bool {
        match self {
            Self::Gpgv {
                problem: GpgvProblem::Spawn(_),
                ..
            } => false,
            Self::SnapshotIdMismatch { .. }
            | Self::SnapshotSignature { .. }
            | Self::SnapshotMirrorName { .. }
            | Self::Digest { .. }
            | Self::NotInSnapshot { .. }
            | Self::PoolConflict { .. }
            | Self::Gpgv { .. }
            | Self::WrongSuite { .. }
            | Self::Expired { .. } => true,
            Self::Downloads { first, .. } => first.is_verification_failure(),
            _ => false,
        }
    }
}
