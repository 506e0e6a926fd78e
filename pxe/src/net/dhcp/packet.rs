//! Turning a datagram into a [`Request`], or a [`Refusal`] saying why not.
//!
//! dhcproto does the decoding, but it trusts the wire more than a server
//! may: `Message::chaddr()` slices `chaddr[..hlen]` and panics when a packet
//! claims `hlen > 16`, and its option decoder `debug_assert!`s or subtracts
//! without checking on the lengths of options 80, 81, 94 and 151-155 (a
//! panic in debug builds, a wrapped length in release builds). So the raw
//! bytes are checked first (header size, BOOTREQUEST, Ethernet, magic
//! cookie, every option inside the packet with a sane length), and the
//! decode itself runs under `catch_unwind` as a last line of defence.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder};

use crate::site::MacAddr;

/// Size of the fixed BOOTP header, up to and including `file`.
const HEADER_LEN: usize = 236;
/// The DHCP magic cookie after the header.
const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// iPXE's encapsulated options (its presence marks iPXE as the client).
pub const OPTION_IPXE_ENCAP: u8 = 175;

/// Why a datagram was not treated as a DHCP request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Shorter than a BOOTP header plus the magic cookie and one option.
    #[error("datagram of {len} bytes is too short for DHCP (at least 241)")]
    TooShort {
        /// Datagram length.
        len: usize,
    },
    /// `op` is not BOOTREQUEST (a server's reply, or garbage).
    #[error("op {op} is not BOOTREQUEST")]
    NotBootRequest {
        /// The op byte.
        op: u8,
    },
    /// Not an Ethernet client (htype 1, hlen 6).
    #[error("hardware type {htype} with address length {hlen} is not Ethernet")]
    NotEthernet {
        /// htype.
        htype: u8,
        /// hlen.
        hlen: u8,
    },
    /// The magic cookie is missing (plain BOOTP or garbage).
    #[error("no DHCP magic cookie")]
    BadMagic,
    /// An option's length runs past the end of the datagram.
    #[error("option {code} at byte {offset} runs past the end of the datagram")]
    OptionOverrun {
        /// Option code.
        code: u8,
        /// Offset of the option's code byte.
        offset: usize,
    },
    /// An option whose length its definition forbids.
    #[error("option {code} has length {len}, which its definition forbids")]
    BadOptionLength {
        /// Option code.
        code: u8,
        /// Length (after RFC 3396 concatenation).
        len: usize,
    },
    /// dhcproto rejected the message.
    #[error("undecodable: {0}")]
    Undecodable(String),
    /// dhcproto panicked on the message (caught).
    #[error("the DHCP decoder panicked on this datagram")]
    DecoderPanicked,
    /// No option 53.
    #[error("no DHCP message type (option 53)")]
    NoMessageType,
    /// A message type a server does not answer (OFFER, ACK, ...).
    #[error("message type {0:?} is not a client message")]
    NotClientMessage(MessageType),
}

/// A client's message, decoded and with the fields the policy reads.
#[derive(Debug, Clone)]
pub struct Request {
    /// The whole decoded message (for echoing xid, flags, giaddr, option 82).
    pub msg: Message,
    /// DISCOVER, REQUEST, DECLINE, RELEASE or INFORM.
    pub kind: MessageType,
    /// The client's MAC (chaddr).
    pub mac: MacAddr,
    /// Client system architecture (option 93), first entry.
    pub arch: Option<u16>,
    /// Vendor class identifier (option 60).
    pub vendor_class: Option<Vec<u8>>,
    /// The client is iPXE (user class `iPXE`, or option 175 present).
    pub ipxe: bool,
    /// Client machine identifier (option 97), echoed to PXE clients.
    pub uuid: Option<Vec<u8>>,
    /// Requested IP address (option 50).
    pub requested_ip: Option<Ipv4Addr>,
    /// Server identifier (option 54).
    pub server_id: Option<Ipv4Addr>,
}

impl Request {
    /// `ciaddr`, the address the client says it has.
    pub fn ciaddr(&self) -> Ipv4Addr {
        self.msg.ciaddr()
    }

    /// `giaddr`, the relay agent's address (0.0.0.0 when not relayed).
    pub fn giaddr(&self) -> Ipv4Addr {
        self.msg.giaddr()
    }

    /// Whether the client asked for broadcast replies.
    pub fn wants_broadcast(&self) -> bool {
        self.msg.flags().broadcast()
    }

    /// Vendor class starts with `PXEClient` (PXE firmware, iPXE).
    pub fn is_pxe_client(&self) -> bool {
        self.vendor_class
            .as_deref()
            .is_some_and(|v| v.starts_with(b"PXEClient"))
    }

    /// Vendor class starts with `HTTPClient` (UEFI HTTP boot).
    pub fn is_http_client(&self) -> bool {
        self.vendor_class
            .as_deref()
            .is_some_and(|v| v.starts_with(b"HTTPClient"))
    }
}

/// Checks, decodes and summarises one datagram received on a server port.
pub fn parse_request(bytes: &[u8]) -> Result<Request, Refusal> {
    check_raw(bytes)?;
    let decoded = std::panic::catch_unwind(|| Message::decode(&mut Decoder::new(bytes)));
    let msg = match decoded {
        Ok(Ok(msg)) => msg,
        Ok(Err(e)) => return Err(Refusal::Undecodable(e.to_string())),
        Err(_) => return Err(Refusal::DecoderPanicked),
    };
    summarise(msg)
}

/// Structural checks on the raw bytes, before dhcproto sees them.
fn check_raw(bytes: &[u8]) -> Result<(), Refusal> {
    if bytes.len() < HEADER_LEN + MAGIC.len() + 1 {
        return Err(Refusal::TooShort { len: bytes.len() });
    }
    if bytes[0] != 1 {
        return Err(Refusal::NotBootRequest { op: bytes[0] });
    }
    if bytes[1] != 1 || bytes[2] != 6 {
        return Err(Refusal::NotEthernet {
            htype: bytes[1],
            hlen: bytes[2],
        });
    }
    if bytes[HEADER_LEN..HEADER_LEN + 4] != MAGIC {
        return Err(Refusal::BadMagic);
    }
    check_options(&bytes[HEADER_LEN + 4..], HEADER_LEN + 4)
}

/// Walks the options area: every option must fit in the datagram, and the
/// options dhcproto decodes with fixed expectations must have the length
/// they are defined with. Consecutive instances of one code are one option
/// (RFC 3396), so their lengths add up, as dhcproto concatenates them.
fn check_options(opts: &[u8], base: usize) -> Result<(), Refusal> {
    let mut i = 0;
    let mut run: Option<(u8, usize)> = None;
    while i < opts.len() {
        let code = opts[i];
        if code == 0 || code == 255 {
            if let Some((c, len)) = run.take() {
                check_length(c, len)?;
            }
            if code == 255 {
                return Ok(());
            }
            i += 1;
            continue;
        }
        let len = *opts.get(i + 1).ok_or(Refusal::OptionOverrun {
            code,
            offset: base + i,
        })? as usize;
        if i + 2 + len > opts.len() {
            return Err(Refusal::OptionOverrun {
                code,
                offset: base + i,
            });
        }
        run = match run {
            Some((c, total)) if c == code => Some((c, total + len)),
            Some((c, total)) => {
                check_length(c, total)?;
                Some((code, len))
            }
            None => Some((code, len)),
        };
        i += 2 + len;
    }
    match run {
        Some((c, len)) => check_length(c, len),
        None => Ok(()),
    }
}

fn check_length(code: u8, len: usize) -> Result<(), Refusal> {
    let ok = match code {
        // Rapid commit: empty.
        80 => len == 0,
        // Client FQDN: flags, two rcodes, then the name.
        81 => len >= 3,
        // Client network interface identifier: type, major, minor.
        94 => len == 3,
        // Bulk lease query status code: a code byte, then text.
        151 => len >= 1,
        // Bulk lease query times.
        152..=155 => len == 4,
        // Fixed 4-byte values this server reads.
        50 | 54 => len == 4,
        53 => len == 1,
        93 => len >= 2 && len.is_multiple_of(2),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(Refusal::BadOptionLength { code, len })
    }
}

fn summarise(msg: Message) -> Result<Request, Refusal> {
    let kind = msg.opts().msg_type().ok_or(Refusal::NoMessageType)?;
    match kind {
        MessageType::Discover
        | MessageType::Request
        | MessageType::Decline
        | MessageType::Release
        | MessageType::Inform => {}
        other => return Err(Refusal::NotClientMessage(other)),
    }
    let mut mac = [0u8; 6];
    // check_raw guaranteed hlen == 6, so chaddr() is exactly 6 bytes.
    mac.copy_from_slice(&msg.chaddr()[..6]);
    let opts = msg.opts();
    let arch = match opts.get(OptionCode::ClientSystemArchitecture) {
        Some(DhcpOption::ClientSystemArchitecture(a)) => Some(u16::from(*a)),
        _ => None,
    };
    let vendor_class = match opts.get(OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(v)) => Some(v.clone()),
        _ => None,
    };
    let user_class_ipxe = match opts.get(OptionCode::UserClass) {
        Some(DhcpOption::UserClass(v)) => user_class_names_ipxe(v),
        _ => false,
    };
    let ipxe = user_class_ipxe || opts.get(OptionCode::from(OPTION_IPXE_ENCAP)).is_some();
    let uuid = match opts.get(OptionCode::ClientMachineIdentifier) {
        Some(DhcpOption::ClientMachineIdentifier(v)) => Some(v.clone()),
        _ => None,
    };
    let requested_ip = match opts.get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    };
    let server_id = match opts.get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    };
    Ok(Request {
        kind,
        mac: MacAddr(mac),
        arch,
        vendor_class,
        ipxe,
        uuid,
        requested_ip,
        server_id,
        msg,
    })
}

/// Whether a user class option names iPXE. iPXE sends the bare string
/// `iPXE`; RFC 3004 clients send length-prefixed entries: accept both.
fn user_class_names_ipxe(value: &[u8]) -> bool {
    if value == b"iPXE" {
        return true;
    }
    let mut rest = value;
    while let Some((&len, tail)) = rest.split_first() {
        let len = len as usize;
        if len > tail.len() {
            return false;
        }
        if &tail[..len] == b"iPXE" {
            return true;
        }
        rest = &tail[len..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid DISCOVER with the given extra raw options.
    fn discover_with(extra: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; HEADER_LEN];
        p[0] = 1;
        p[1] = 1;
        p[2] = 6;
        p[28..34].copy_from_slice(&[0x52, 0x54, 0, 0, 0, 1]);
        p.extend_from_slice(&MAGIC);
        p.extend_from_slice(&[53, 1, 1]);
        p.extend_from_slice(extra);
        p.push(255);
        p
    }

    #[test]
    fn minimal_discover_parses() {
        let r = parse_request(&discover_with(&[])).unwrap();
        assert_eq!(r.kind, MessageType::Discover);
        assert_eq!(r.mac.to_string(), "52:54:00:00:00:01");
        assert!(!r.ipxe && r.arch.is_none());
    }

    #[test]
    fn pxe_fields_are_read() {
        let mut extra = vec![93, 2, 0, 7, 60, 9];
        extra.extend_from_slice(b"PXEClient");
        extra.extend_from_slice(&[77, 4]);
        extra.extend_from_slice(b"iPXE");
        let r = parse_request(&discover_with(&extra)).unwrap();
        assert_eq!(r.arch, Some(7));
        assert!(r.is_pxe_client() && r.ipxe);
        let r = parse_request(&discover_with(&[175, 3, 1, 1, 1])).unwrap();
        assert!(r.ipxe, "option 175 marks iPXE");
        let r = parse_request(&discover_with(&[77, 5, 4, b'i', b'P', b'X', b'E'])).unwrap();
        assert!(r.ipxe, "RFC 3004 user class");
    }

    #[test]
    fn hostile_headers_are_refused() {
        let good = discover_with(&[]);
        assert!(matches!(
            parse_request(&good[..200]),
            Err(Refusal::TooShort { len: 200 })
        ));
        let mut p = good.clone();
        p[0] = 2;
        assert_eq!(
            parse_request(&p).unwrap_err(),
            Refusal::NotBootRequest { op: 2 }
        );
        let mut p = good.clone();
        p[2] = 200; // would make dhcproto's chaddr() panic
        assert!(matches!(
            parse_request(&p),
            Err(Refusal::NotEthernet { hlen: 200, .. })
        ));
        let mut p = good.clone();
        p[236] = 0;
        assert_eq!(parse_request(&p).unwrap_err(), Refusal::BadMagic);
    }

    #[test]
    fn hostile_option_lengths_are_refused() {
        // Length past the end.
        let mut p = discover_with(&[]);
        p.pop();
        p.extend_from_slice(&[60, 200, b'x']);
        assert!(matches!(
            parse_request(&p),
            Err(Refusal::OptionOverrun { code: 60, .. })
        ));
        // Lengths dhcproto would panic on in a debug build.
        for opt in [
            &[80u8, 1, 0][..],
            &[94, 0],
            &[151, 0],
            &[81, 1, 0],
            &[152, 2, 0, 0],
        ] {
            let err = parse_request(&discover_with(opt)).unwrap_err();
            assert!(
                matches!(err, Refusal::BadOptionLength { .. }),
                "{opt:?}: {err}"
            );
        }
        // Concatenated (RFC 3396) instances add up: 1 + 2 = 3 is fine for 94.
        assert!(parse_request(&discover_with(&[94, 1, 1, 94, 2, 2, 0])).is_ok());
        assert!(parse_request(&discover_with(&[53, 2, 1, 1])).is_err());
    }

    #[test]
    fn server_messages_are_not_answered() {
        let mut p = discover_with(&[]);
        p[HEADER_LEN + 6] = 2; // OFFER
        assert_eq!(
            parse_request(&p).unwrap_err(),
            Refusal::NotClientMessage(MessageType::Offer)
        );
        let mut p = discover_with(&[]);
        p.truncate(HEADER_LEN + 4);
        p.push(255);
        assert_eq!(parse_request(&p).unwrap_err(), Refusal::NoMessageType);
    }
}
