//! The TFTP wire format: RFC 1350 packets plus the OACK of RFC 2347.
//!
//! Parsing never panics and never trusts a length: every packet is checked
//! against the bytes actually received. Option names and modes are compared
//! case-insensitively later (RFC 2347), so the parser keeps them as sent.

use std::fmt;

/// RFC 2347: "the request packet must not exceed 512 octets".
pub const MAX_REQUEST_LEN: usize = 512;

/// Largest block size RFC 2348 allows.
pub const MAX_BLKSIZE: u16 = 65464;

/// Smallest block size RFC 2348 allows.
pub const MIN_BLKSIZE: u16 = 8;

/// RFC 1350's block size, used when no `blksize` option was agreed.
pub const DEFAULT_BLKSIZE: u16 = 512;

const OP_RRQ: u16 = 1;
const OP_WRQ: u16 = 2;
const OP_DATA: u16 = 3;
const OP_ACK: u16 = 4;
const OP_ERROR: u16 = 5;
const OP_OACK: u16 = 6;

/// Transfer mode named in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Text with CR LF line ends (RFC 764 NVT ASCII).
    Netascii,
    /// Raw bytes: what every PXE client asks for.
    Octet,
    /// Obsolete delivery to a user; never served.
    Mail,
}

impl Mode {
    fn parse(raw: &str) -> Option<Self> {
        if raw.eq_ignore_ascii_case("octet") {
            Some(Self::Octet)
        } else if raw.eq_ignore_ascii_case("netascii") {
            Some(Self::Netascii)
        } else if raw.eq_ignore_ascii_case("mail") {
            Some(Self::Mail)
        } else {
            None
        }
    }

    /// The mode's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Netascii => "netascii",
            Self::Octet => "octet",
            Self::Mail => "mail",
        }
    }
}

/// A read or write request: file name, mode and the RFC 2347 options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The file name exactly as the client sent it.
    pub filename: String,
    /// Transfer mode.
    pub mode: Mode,
    /// Options in the order sent, names and values as sent.
    pub options: Vec<(String, String)>,
}

/// TFTP error codes (RFC 1350 and RFC 2347's code 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// Not defined; see the message.
    pub const UNDEFINED: Self = Self(0);
    /// File not found.
    pub const FILE_NOT_FOUND: Self = Self(1);
    /// Access violation.
    pub const ACCESS_VIOLATION: Self = Self(2);
    /// Illegal TFTP operation.
    pub const ILLEGAL_OPERATION: Self = Self(4);
    /// Unknown transfer ID.
    pub const UNKNOWN_TID: Self = Self(5);
    /// Option negotiation refused (RFC 2347).
    pub const OPTION_REFUSED: Self = Self(8);
}

/// One TFTP packet. `Data` borrows its payload from the receive buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Read request.
    Rrq(Request),
    /// Write request (always refused by this server).
    Wrq(Request),
    /// A block of file data.
    Data {
        /// Block number (wraps past 65535 to 0).
        block: u16,
        /// Payload, at most the agreed block size.
        data: &'a [u8],
    },
    /// Acknowledgement of a block (0 acknowledges an OACK).
    Ack {
        /// Block acknowledged.
        block: u16,
    },
    /// Error: ends the transfer.
    Error {
        /// Error code.
        code: ErrorCode,
        /// Human-readable message.
        message: String,
    },
    /// Option acknowledgement (RFC 2347).
    Oack {
        /// Options the server accepted, with the values it will use.
        options: Vec<(String, String)>,
    },
}

/// Why a datagram is not a valid TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Fewer bytes than the opcode and fixed fields need.
    #[error("packet of {len} bytes is too short for its opcode")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// An opcode TFTP does not define.
    #[error("unknown opcode {opcode}")]
    UnknownOpcode {
        /// The opcode received.
        opcode: u16,
    },
    /// A request longer than RFC 2347 allows.
    #[error("request of {len} bytes exceeds the {MAX_REQUEST_LEN}-byte limit")]
    RequestTooLong {
        /// Bytes received.
        len: usize,
    },
    /// A string field without its terminating NUL.
    #[error("{field} is not NUL-terminated")]
    Unterminated {
        /// Which field.
        field: &'static str,
    },
    /// A string field that is not UTF-8.
    #[error("{field} is not valid UTF-8")]
    NotUtf8 {
        /// Which field.
        field: &'static str,
    },
    /// A transfer mode other than netascii, octet or mail.
    #[error("unknown transfer mode {mode:?}")]
    UnknownMode {
        /// The mode received.
        mode: String,
    },
    /// An empty option name.
    #[error("empty option name")]
    EmptyOptionName,
}

impl<'a> Packet<'a> {
    /// Parses one datagram.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, PacketError> {
        let truncated = PacketError::Truncated { len: bytes.len() };
        let (op, body) = split_u16(bytes).ok_or(truncated.clone())?;
        match op {
            OP_RRQ | OP_WRQ => {
                if bytes.len() > MAX_REQUEST_LEN {
                    return Err(PacketError::RequestTooLong { len: bytes.len() });
                }
                let request = parse_request(body)?;
                Ok(if op == OP_RRQ {
                    Self::Rrq(request)
                } else {
                    Self::Wrq(request)
                })
            }
            OP_DATA => {
                let (block, data) = split_u16(body).ok_or(truncated)?;
                Ok(Self::Data { block, data })
            }
            OP_ACK => {
                // Some clients pad ACKs; the block number is all that counts.
                let (block, _) = split_u16(body).ok_or(truncated)?;
                Ok(Self::Ack { block })
            }
            OP_ERROR => {
                let (code, rest) = split_u16(body).ok_or(truncated)?;
                // Clients' error messages are only logged: be lenient about
                // a missing NUL or stray bytes rather than lose the code.
                let text = rest.split(|&b| b == 0).next().unwrap_or_default();
                Ok(Self::Error {
                    code: ErrorCode(code),
                    message: String::from_utf8_lossy(text).into_owned(),
                })
            }
            OP_OACK => Ok(Self::Oack {
                options: parse_options(body)?,
            }),
            opcode => Err(PacketError::UnknownOpcode { opcode }),
        }
    }

    /// Appends the packet's wire form to `out`.
    ///
    /// Strings must not contain NUL (they would not survive the round trip).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Rrq(r) | Self::Wrq(r) => {
                let op = if matches!(self, Self::Rrq(_)) {
                    OP_RRQ
                } else {
                    OP_WRQ
                };
                out.extend_from_slice(&op.to_be_bytes());
                push_str(out, &r.filename);
                push_str(out, r.mode.as_str());
                push_options(out, &r.options);
            }
            Self::Data { block, data } => {
                encode_data_header(out, *block);
                out.extend_from_slice(data);
            }
            Self::Ack { block } => {
                out.extend_from_slice(&OP_ACK.to_be_bytes());
                out.extend_from_slice(&block.to_be_bytes());
            }
            Self::Error { code, message } => {
                out.extend_from_slice(&OP_ERROR.to_be_bytes());
                out.extend_from_slice(&code.0.to_be_bytes());
                push_str(out, message);
            }
            Self::Oack { options } => {
                out.extend_from_slice(&OP_OACK.to_be_bytes());
                push_options(out, options);
            }
        }
    }

    /// The packet's wire form in a fresh buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Appends a DATA header (opcode and block number) to `out`: the hot path
/// writes the payload straight after it.
pub fn encode_data_header(out: &mut Vec<u8>, block: u16) {
    out.extend_from_slice(&OP_DATA.to_be_bytes());
    out.extend_from_slice(&block.to_be_bytes());
}

/// An ERROR packet's wire form.
pub fn error_packet(code: ErrorCode, message: &str) -> Vec<u8> {
    Packet::Error {
        code,
        message: message.to_owned(),
    }
    .to_bytes()
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

fn split_u16(bytes: &[u8]) -> Option<(u16, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<2>()?;
    Some((u16::from_be_bytes(*head), rest))
}

/// Splits off one NUL-terminated UTF-8 string.
fn take_str<'a>(bytes: &'a [u8], field: &'static str) -> Result<(&'a str, &'a [u8]), PacketError> {
    let nul = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or(PacketError::Unterminated { field })?;
    let text = std::str::from_utf8(&bytes[..nul]).map_err(|_| PacketError::NotUtf8 { field })?;
    Ok((text, &bytes[nul + 1..]))
}

fn parse_request(body: &[u8]) -> Result<Request, PacketError> {
    let (filename, rest) = take_str(body, "file name")?;
    let (mode, rest) = take_str(rest, "mode")?;
    let mode = Mode::parse(mode).ok_or_else(|| PacketError::UnknownMode {
        mode: mode.to_owned(),
    })?;
    Ok(Request {
        filename: filename.to_owned(),
        mode,
        options: parse_options(rest)?,
    })
}

fn parse_options(mut rest: &[u8]) -> Result<Vec<(String, String)>, PacketError> {
    let mut options = Vec::new();
    // Some PXE ROMs pad requests with NULs after the last field.
    while rest.iter().any(|&b| b != 0) {
        let (name, after_name) = take_str(rest, "option name")?;
        if name.is_empty() {
            return Err(PacketError::EmptyOptionName);
        }
        let (value, after_value) = take_str(after_name, "option value")?;
        options.push((name.to_owned(), value.to_owned()));
        rest = after_value;
    }
    Ok(options)
}

fn push_str(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.push(0);
}

fn push_options(out: &mut Vec<u8>, options: &[(String, String)]) {
    for (name, value) in options {
        push_str(out, name);
        push_str(out, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_rrq_with_options() {
        let bytes = b"\x00\x01pxe/undionly.kpxe\x00OCTET\x00blksize\x001468\x00tsize\x000\x00";
        let Packet::Rrq(req) = Packet::parse(bytes).unwrap() else {
            panic!("not an RRQ")
        };
        assert_eq!(req.filename, "pxe/undionly.kpxe");
        assert_eq!(req.mode, Mode::Octet);
        assert_eq!(
            req.options,
            vec![
                ("blksize".to_owned(), "1468".to_owned()),
                ("tsize".to_owned(), "0".to_owned())
            ]
        );
    }

    #[test]
    fn tolerates_nul_padding_after_request() {
        let bytes = b"\x00\x01a\x00octet\x00\x00\x00\x00";
        assert!(matches!(Packet::parse(bytes), Ok(Packet::Rrq(_))));
    }

    #[test]
    fn refuses_malformed_requests() {
        let cases: &[(&[u8], PacketError)] = &[
            (b"\x00", PacketError::Truncated { len: 1 }),
            (
                b"\x00\x01file",
                PacketError::Unterminated { field: "file name" },
            ),
            (
                b"\x00\x01file\x00oct",
                PacketError::Unterminated { field: "mode" },
            ),
            (
                b"\x00\x01f\x00binary\x00",
                PacketError::UnknownMode {
                    mode: "binary".into(),
                },
            ),
            (
                b"\x00\x01f\x00octet\x00blksize\x00",
                PacketError::Unterminated {
                    field: "option value",
                },
            ),
            (
                b"\x00\x01f\xff\x00octet\x00",
                PacketError::NotUtf8 { field: "file name" },
            ),
            (b"\x00\x09", PacketError::UnknownOpcode { opcode: 9 }),
            (b"\x00\x04\x00", PacketError::Truncated { len: 3 }),
        ];
        for (bytes, want) in cases {
            assert_eq!(Packet::parse(bytes).as_ref(), Err(want), "{bytes:?}");
        }
    }

    #[test]
    fn refuses_requests_over_512_bytes() {
        let mut bytes = b"\x00\x01".to_vec();
        bytes.extend(std::iter::repeat_n(b'a', 600));
        bytes.extend_from_slice(b"\x00octet\x00");
        assert_eq!(
            Packet::parse(&bytes),
            Err(PacketError::RequestTooLong { len: bytes.len() })
        );
    }

    fn text() -> impl Strategy<Value = String> {
        "[^\u{0}]{0,20}"
    }

    fn options() -> impl Strategy<Value = Vec<(String, String)>> {
        prop::collection::vec(("[^\u{0}]{1,10}", text()), 0..4)
    }

    fn request() -> impl Strategy<Value = Request> {
        let mode = prop_oneof![Just(Mode::Octet), Just(Mode::Netascii), Just(Mode::Mail)];
        (text(), mode, options()).prop_map(|(filename, mode, options)| Request {
            filename,
            mode,
            options,
        })
    }

    fn owned_packet() -> impl Strategy<Value = (u8, Request, u16, Vec<u8>, String)> {
        (
            0u8..6,
            request(),
            any::<u16>(),
            prop::collection::vec(any::<u8>(), 0..600),
            text(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..700)) {
            let _ = Packet::parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_request_like_input(
            op in 1u16..=6,
            tail in prop::collection::vec(prop_oneof![Just(0u8), any::<u8>()], 0..80),
        ) {
            let mut bytes = op.to_be_bytes().to_vec();
            bytes.extend(tail);
            let _ = Packet::parse(&bytes);
        }

        #[test]
        fn encode_then_parse_round_trips((kind, req, block, data, message) in owned_packet()) {
            let packet = match kind {
                0 => Packet::Rrq(req),
                1 => Packet::Wrq(req),
                2 => Packet::Data { block, data: &data },
                3 => Packet::Ack { block },
                4 => Packet::Error { code: ErrorCode(block), message },
                _ => Packet::Oack { options: req.options },
            };
            let bytes = packet.to_bytes();
            if matches!(packet, Packet::Rrq(_) | Packet::Wrq(_)) && bytes.len() > MAX_REQUEST_LEN {
                prop_assert_eq!(Packet::parse(&bytes), Err(PacketError::RequestTooLong { len: bytes.len() }));
            } else {
                prop_assert_eq!(Packet::parse(&bytes), Ok(packet));
            }
        }
    }
}
