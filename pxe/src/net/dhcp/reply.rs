//! Building reply messages: the fixed fields RFC 2131 table 3 prescribes,
//! the address options, and the boot options firmware looks for.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Encodable, Encoder};

use crate::site::{DhcpConfig, Subnet};

use super::boot::{BootChoice, Transport};
use super::packet::Request;

/// Replies shorter than a BOOTP packet (300 bytes) are padded: the Linux
/// in-kernel client and some PXE ROMs drop shorter ones.
const MIN_REPLY_LEN: usize = 300;
/// PXE vendor sub-option 6, discovery control.
const PXE_DISCOVERY_CONTROL: u8 = 6;
/// Discovery control bit 3: boot the file named in this offer, no boot
/// server discovery, no menu.
const PXE_BOOT_FILE_IN_OFFER: u8 = 8;

/// A reply to `req` of type `kind` from `server_ip`, with the header fields
/// of RFC 2131 table 3: xid, flags, giaddr and chaddr echoed; ciaddr echoed
/// in ACKs to a client that has an address, zero otherwise.
pub fn base(req: &Request, kind: MessageType, server_ip: Ipv4Addr) -> Message {
    let mut msg = Message::default();
    msg.set_opcode(Opcode::BootReply)
        .set_htype(req.msg.htype())
        .set_chaddr(&req.mac.0)
        .set_xid(req.msg.xid())
        .set_flags(req.msg.flags())
        .set_giaddr(req.giaddr());
    if kind == MessageType::Ack {
        msg.set_ciaddr(req.ciaddr());
    }
    if kind == MessageType::Nak && !req.giaddr().is_unspecified() {
        // A relay must broadcast a NAK on the client's segment.
        msg.set_flags(Flags::default().set_broadcast());
    }
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ServerIdentifier(server_ip));
    // RFC 3046: relay agent information is echoed back to the relay.
    if let Some(opt82) = req.msg.opts().get(OptionCode::RelayAgentInformation) {
        opts.insert(opt82.clone());
    }
    msg
}

/// Lease time, T1, T2 and the subnet's configuration (mask, router, DNS,
/// domain, host name).
pub fn add_address_options(
    msg: &mut Message,
    subnet: &Subnet,
    dhcp: &DhcpConfig,
    lease_time: Option<u32>,
    hostname: Option<&str>,
) {
    let opts = msg.opts_mut();
    if let Some(t) = lease_time {
        opts.insert(DhcpOption::AddressLeaseTime(t));
        opts.insert(DhcpOption::Renewal(t / 2));
        opts.insert(DhcpOption::Rebinding(t / 8 * 7));
    }
    opts.insert(DhcpOption::SubnetMask(subnet.net.mask()));
    if let Some(router) = subnet.router {
        opts.insert(DhcpOption::Router(vec![router]));
    }
    if !dhcp.dns.is_empty() {
        opts.insert(DhcpOption::DomainNameServer(dhcp.dns.clone()));
    }
    if let Some(domain) = &dhcp.domain {
        opts.insert(DhcpOption::DomainName(domain.clone()));
    }
    if let Some(name) = hostname {
        opts.insert(DhcpOption::Hostname(name.to_owned()));
    }
}

/// The boot file and everything firmware may look for it in: `file` and
/// option 67 (some ROMs read only one of them), next-server in `siaddr`
/// always (iPXE ignores a proxyDHCP answer without both siaddr and a file
/// name, even when the file is an HTTP URL) and option 66 for TFTP, option 60 echoing the client's class (UEFI needs
/// `PXEClient` or `HTTPClient` to accept the offer as a boot offer), option
/// 97 echoed (some PXE ROMs drop offers without it), and for BIOS PXE the
/// discovery control that makes the ROM boot the file directly.
pub fn add_boot(msg: &mut Message, req: &Request, choice: &BootChoice, server_ip: Ipv4Addr) {
    msg.set_fname(choice.file.as_bytes());
    msg.set_siaddr(server_ip);
    let opts = msg.opts_mut();
    if choice.transport == Transport::Tftp {
        opts.insert(DhcpOption::TFTPServerName(
            server_ip.to_string().into_bytes(),
        ));
    }
    opts.insert(DhcpOption::BootfileName(choice.file.clone().into_bytes()));
    if let Some(class) = choice.vendor_class {
        opts.insert(DhcpOption::ClassIdentifier(class.as_bytes().to_vec()));
    }
    if let Some(uuid) = &req.uuid {
        opts.insert(DhcpOption::ClientMachineIdentifier(uuid.clone()));
    }
    if choice.bios_discovery_control {
        opts.insert(DhcpOption::VendorExtensions(vec![
            PXE_DISCOVERY_CONTROL,
            1,
            PXE_BOOT_FILE_IN_OFFER,
            255,
        ]));
    }
}

/// Serialises a reply, padded to the BOOTP minimum.
pub fn encode(msg: &Message) -> Result<Vec<u8>, dhcproto::error::EncodeError> {
    let mut buf = Vec::with_capacity(MIN_REPLY_LEN);
    msg.encode(&mut Encoder::new(&mut buf))?;
    if buf.len() < MIN_REPLY_LEN {
        buf.resize(MIN_REPLY_LEN, 0);
    }
    Ok(buf)
}
