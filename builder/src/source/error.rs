//! The one error type of the Debian-format layer.
//!
//! Every variant names what was being read (a file, a package, a field)
//! and carries a small `...Problem` enum that says what was wrong, so the
//! message an operator sees points at the byte at fault.

use std::io;
use std::path::PathBuf;

/// An error reading a Debian-format input: a version string, a control
/// file, a relation field, an `.ar`/`.deb` archive, a Packages or Release
/// index.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A version string that dpkg itself would reject (not merely warn about).
    #[error("bad version {version:?}: {problem}")]
    Version {
        /// The text as given.
        version: String,
        /// What dpkg objects to.
        problem: VersionProblem,
    },
    /// A relation field (Depends, Provides, ...) that does not parse.
    #[error("bad {field} relation {text:?} at byte {offset}: {problem}")]
    Relation {
        /// The field the text came from (`Depends`, ...).
        field: String,
        /// The whole field value.
        text: String,
        /// Byte offset of the problem in `text`.
        offset: usize,
        /// What is wrong.
        problem: RelationProblem,
    },
    /// A deb822 control text that does not parse.
    #[error("{origin}:{line}: {problem}")]
    Control {
        /// Where the text came from (a file path, `pkg.deb:control`).
        origin: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: ControlProblem,
    },
    /// A field of a paragraph that is present but unusable.
    #[error("{origin}:{line}: package {package}: field {field}: {source}")]
    Field {
        /// Where the paragraph came from.
        origin: String,
        /// 1-based line of the field.
        line: usize,
        /// The paragraph's `Package` (or `?` when absent).
        package: String,
        /// The field name.
        field: String,
        /// What is wrong with its value.
        source: Box<Error>,
    },
    /// A field of a Release file that is present but unusable.
    #[error("{origin}:{line}: Release field {field}: {source}")]
    ReleaseField {
        /// Where the Release text came from.
        origin: String,
        /// 1-based line of the field.
        line: usize,
        /// The field name.
        field: String,
        /// What is wrong with its value.
        source: Box<Error>,
    },
    /// A field value with the wrong shape (not a number, bad hash, ...).
    #[error("{problem} in {value:?}")]
    Value {
        /// The offending value.
        value: String,
        /// What is wrong.
        problem: ValueProblem,
    },
    /// A paragraph that lacks a field its kind requires.
    #[error("{origin}:{line}: paragraph of package {package} has no {field} field")]
    MissingField {
        /// Where the paragraph came from.
        origin: String,
        /// 1-based line where the paragraph starts.
        line: usize,
        /// The paragraph's `Package` (or `?` when absent).
        package: String,
        /// The required field.
        field: &'static str,
    },
    /// An `ar` archive (the container of a .deb) that is malformed.
    #[error("{path}: ar archive, at byte {offset}: {problem}", path = path.display())]
    Ar {
        /// The archive.
        path: PathBuf,
        /// Byte offset of the header or member at fault.
        offset: u64,
        /// What is wrong.
        problem: ArProblem,
    },
    /// A .deb whose members are not what dpkg expects.
    #[error("{path}: {problem}", path = path.display())]
    Deb {
        /// The package file.
        path: PathBuf,
        /// What is wrong.
        problem: DebProblem,
    },
    /// A tar member of a .deb that cannot be read.
    #[error("{path}: {member}: {source}", path = path.display())]
    Tar {
        /// The package file.
        path: PathBuf,
        /// `control.tar.xz`, `data.tar.zst`, ...
        member: String,
        /// The underlying read or format error (decompression included).
        source: io::Error,
    },
    /// An OpenPGP clear-signed message (InRelease) that is malformed.
    #[error("{origin}:{line}: clear-signed message: {problem}")]
    ClearSigned {
        /// Where the text came from.
        origin: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        problem: ClearSignedProblem,
    },
    /// Reading or decompressing a file failed.
    #[error("reading {path}: {source}", path = path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O or decompression error.
        source: io::Error,
    },
    /// A file that should be UTF-8 text is not.
    #[error("{origin}:{line}: not UTF-8 text")]
    NotUtf8 {
        /// Where the bytes came from.
        origin: String,
        /// 1-based line of the first invalid byte.
        line: usize,
    },
}

impl Error {
    /// The same error with its line numbers moved down by `by` lines (for
    /// errors found in a part of a larger text).
    pub fn shift_lines(self, by: usize) -> Self {
        match self {
            Self::Control {
                origin,
                line,
                problem,
            } => Self::Control {
                origin,
                line: line + by,
                problem,
            },
            Self::Field {
                origin,
                line,
                package,
                field,
                source,
            } => Self::Field {
                origin,
                line: line + by,
                package,
                field,
                source,
            },
            Self::MissingField {
                origin,
                line,
                package,
                field,
            } => Self::MissingField {
                origin,
                line: line + by,
                package,
                field,
            },
            Self::ReleaseField {
                origin,
                line,
                field,
                source,
            } => Self::ReleaseField {
                origin,
                line: line + by,
                field,
                source,
            },
            Self::NotUtf8 { origin, line } => Self::NotUtf8 {
                origin,
                line: line + by,
            },
            Self::ClearSigned {
                origin,
                line,
                problem,
            } => Self::ClearSigned {
                origin,
                line: line + by,
                problem,
            },
            other => other,
        }
    }
}

/// Why dpkg rejects a version string (its `parseversion` errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VersionProblem {
    /// Empty, or only blanks.
    #[error("version string is empty")]
    Empty,
    /// Blanks inside the version.
    #[error("version string has embedded spaces")]
    EmbeddedSpaces,
    /// A NUL byte, which dpkg's C strings cannot even carry.
    #[error("version string contains a NUL byte")]
    Nul,
    /// `:` with nothing before it.
    #[error("epoch in version is empty")]
    EpochEmpty,
    /// Something other than digits before the `:`.
    #[error("epoch in version is not number")]
    EpochNotNumber,
    /// A negative epoch.
    #[error("epoch in version is negative")]
    EpochNegative,
    /// An epoch above `INT_MAX`.
    #[error("epoch in version is too big")]
    EpochTooBig,
    /// `1:` and nothing else.
    #[error("nothing after colon in version number")]
    NothingAfterColon,
    /// A trailing `-`.
    #[error("revision number is empty")]
    RevisionEmpty,
    /// `1:-1` and the like.
    #[error("version number is empty")]
    UpstreamEmpty,
}

/// Why a relation field does not parse (dpkg's `f_dependency` errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelationProblem {
    /// A package name was expected (empty element, stray character).
    #[error("missing package name, or garbage where package name expected")]
    MissingName,
    /// A name with characters dpkg does not allow.
    #[error("illegal package name {0:?}")]
    IllegalName(String),
    /// An architecture qualifier or restriction that is not a valid name.
    #[error("illegal architecture name {0:?}")]
    IllegalArch(String),
    /// `(<> 1)` and similar.
    #[error("bad version relationship {0:?}")]
    BadOperator(String),
    /// A version constraint without its closing parenthesis, or with blanks inside.
    #[error("version constraint is not closed by ')'")]
    UnterminatedVersion,
    /// An empty version inside parentheses.
    #[error("empty version in constraint")]
    EmptyVersion,
    /// The version inside the parentheses is bad.
    #[error("version {version:?}: {problem}")]
    BadVersion {
        /// The version text.
        version: String,
        /// What dpkg objects to.
        problem: VersionProblem,
    },
    /// `[` without `]`, or an empty list.
    #[error("architecture restriction list is not closed or is empty")]
    BadArchList,
    /// `<` without `>`, or an empty list.
    #[error("build profile list is not closed or is empty")]
    BadProfileList,
    /// `|` in a field that allows no alternatives (Provides, Conflicts, ...).
    #[error("alternatives ('|') not allowed in this field")]
    AlternativesNotAllowed,
    /// Something other than `,` or `|` after a complete relation.
    #[error("syntax error after a package relation")]
    TrailingGarbage,
}

/// Why a deb822 text does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlProblem {
    /// A line that is neither `Name: value` nor a continuation.
    #[error("line is not a field (no ':')")]
    NotAField,
    /// A field name with characters deb822 does not allow.
    #[error("invalid field name {0:?}")]
    BadFieldName(String),
    /// A continuation line before any field of its paragraph.
    #[error("continuation line outside any field")]
    StrayContinuation,
    /// The same field twice in one paragraph.
    #[error("duplicate field {0}")]
    DuplicateField(String),
    /// Exactly one paragraph was expected.
    #[error("expected one paragraph, found {0}")]
    ParagraphCount(usize),
}

/// Why a single field value is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueProblem {
    /// A size or count that is not a decimal number.
    #[error("not a decimal number")]
    NotANumber,
    /// A SHA-256 that is not 64 hex digits.
    #[error("not a SHA-256 (64 hex digits)")]
    BadSha256,
    /// `yes`/`no` expected.
    #[error("not yes or no")]
    NotYesNo,
    /// An unknown `Multi-Arch` value.
    #[error("unknown Multi-Arch value")]
    BadMultiArch,
    /// A `Source: name (version)` field that does not parse.
    #[error("bad Source field")]
    BadSource,
    /// A hash list line that is not `hash size path`.
    #[error("hash line is not 'hash size path'")]
    BadHashLine,
    /// A date that is not RFC 2822 as used by Release files.
    #[error("bad date")]
    BadDate,
}

/// Why an ar archive is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArProblem {
    /// The file does not start with `!<arch>\n`.
    #[error("no '!<arch>' magic")]
    BadMagic,
    /// The archive ends inside a header or a member.
    #[error("truncated")]
    Truncated,
    /// A member header whose terminator is not "`\n".
    #[error("member header has a bad terminator")]
    BadHeaderEnd,
    /// A header number field that is not decimal.
    #[error("member header field {0} is not a number")]
    BadNumber(&'static str),
    /// A GNU/BSD long-name reference that does not resolve.
    #[error("bad long member name reference {0:?}")]
    BadLongName(String),
}

/// Why a .deb is not a Debian binary package dpkg would read.
#[derive(Debug, thiserror::Error)]
pub enum DebProblem {
    /// The first member is not `debian-binary`.
    #[error("first member is {0:?}, not debian-binary")]
    NoDebianBinary(String),
    /// `debian-binary` does not say format 2.x.
    #[error("unsupported format version {0:?} (want 2.x)")]
    BadFormatVersion(String),
    /// A member in a place dpkg does not allow.
    #[error("unexpected member {0:?}")]
    UnexpectedMember(String),
    /// `control.tar.*` or `data.tar.*` with a compression we cannot read.
    #[error("member {0:?} uses an unsupported compression")]
    UnsupportedCompression(String),
    /// No control.tar member.
    #[error("no control.tar member")]
    NoControl,
    /// No data.tar member.
    #[error("no data.tar member")]
    NoData,
    /// control.tar lacks `./control`.
    #[error("control.tar has no control file")]
    NoControlFile,
    /// A control.tar member that is too large to be a control file.
    #[error("control member {0:?} is too large")]
    ControlMemberTooLarge(String),
    /// The control file does not parse.
    #[error("control file: {0}")]
    BadControl(Box<Error>),
}

/// Why an OpenPGP cleartext-signed message is malformed (RFC 4880 §7).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClearSignedProblem {
    /// No `-----BEGIN PGP SIGNED MESSAGE-----` line.
    #[error("no BEGIN PGP SIGNED MESSAGE line")]
    NoBegin,
    /// The armor headers are not followed by an empty line.
    #[error("armor headers not followed by an empty line")]
    BadArmorHeader,
    /// No `-----BEGIN PGP SIGNATURE-----` line after the text.
    #[error("no BEGIN PGP SIGNATURE line")]
    NoSignature,
    /// No `-----END PGP SIGNATURE-----` line.
    #[error("no END PGP SIGNATURE line")]
    NoSignatureEnd,
    /// A line starting with `-` that is not dash-escaped.
    #[error("line starting with '-' is not dash-escaped")]
    NotDashEscaped,
    /// Text after the signature block (a second message is not accepted).
    #[error("text after the signature")]
    TrailingText,
}
