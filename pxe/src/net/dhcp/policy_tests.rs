//! The policy, message type by message type and row by row of the
//! architecture map. Requests are built with dhcproto, encoded, and parsed
//! back with the server's own parser, so these are the bytes a client sends.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, OptionCode, UnknownOption};
use dhcproto::{Encodable, Encoder};

use super::*;
use crate::net::dhcp::leases::LeaseTable;
use crate::net::dhcp::packet::parse_request;
use crate::site::Site;

const SITE: &str = r#"
[server]
http-base-url = "http://198.18.0.1:8080"
unknown-nodes = "discover"
[images]
dirs = []
trust-root = "/trust.json"
[dhcp]
mode = "authoritative"
lease-time = 600
dns = ["198.18.0.1"]
domain = "rack.test"
[[interface]]
name = "veth0"
address = "198.18.0.1/24"
router = "198.18.0.254"
pool = { start = "198.18.0.100", end = "198.18.0.102" }
[[relay]]
subnet = "198.18.4.0/24"
router = "198.18.4.1"
[boot]
uefi-arm64 = "arm64/snponly.efi"
[[rack]]
name = "r1"
[[rack.node]]
mac = "52:54:00:00:00:01"
hostname = "n1"
ip = "198.18.0.11"
[[rack.node]]
mac = "52:54:00:00:00:02"
hostname = "n2"
ip = "198.18.4.12"
[[rack.node]]
mac = "52:54:00:00:00:03"
hostname = "n3"
boot-file = "ipxe.efi"
"#;

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const KNOWN: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
const RELAYED: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];
const OVERRIDE: [u8; 6] = [0x52, 0x54, 0, 0, 0, 3];
const STRANGER: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x99];
const NOW: u64 = 1_000_000;

fn site(text: &str) -> Site {
    Site::from_toml(Path::new("site.toml"), text).expect("test site")
}

fn auth() -> Site {
    site(SITE)
}

fn proxy() -> Site {
    let text = SITE
        .replace(r#"mode = "authoritative""#, r#"mode = "proxy""#)
        .replace("dns = [\"198.18.0.1\"]\ndomain = \"rack.test\"\n", "")
        .replace("router = \"198.18.0.254\"\npool = { start = \"198.18.0.100\", end = \"198.18.0.102\" }\n", "")
        .replace("router = \"198.18.4.1\"\n", "")
        .replace("ip = \"198.18.0.11\"\n", "")
        .replace("ip = \"198.18.4.12\"\n", "");
    site(&text)
}

fn ignore_unknown(text: &str) -> Site {
    site(&text.replace(
        r#"unknown-nodes = "discover""#,
        r#"unknown-nodes = "ignore""#,
    ))
}

/// A client message under construction.
struct Client(Message);

impl Client {
    fn new(mac: [u8; 6], kind: MessageType) -> Client {
        let mut m = Message::new_with_id(
            0x1234_5678,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &mac,
        );
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        Client(m)
    }
    fn opt(mut self, o: DhcpOption) -> Client {
        self.0.opts_mut().insert(o);
        self
    }
    fn pxe(self, arch: u16) -> Client {
        self.opt(DhcpOption::ClientSystemArchitecture(arch.into()))
            .opt(DhcpOption::ClassIdentifier(
                format!("PXEClient:Arch:{arch:05}:UNDI:003016").into_bytes(),
            ))
    }
    fn http(self, arch: u16) -> Client {
        self.opt(DhcpOption::ClientSystemArchitecture(arch.into()))
            .opt(DhcpOption::ClassIdentifier(
                format!("HTTPClient:Arch:{arch:05}:UNDI:003016").into_bytes(),
            ))
    }
    fn ipxe(self) -> Client {
        self.opt(DhcpOption::UserClass(b"iPXE".to_vec()))
    }
    fn requested(self, ip: Ipv4Addr) -> Client {
        self.opt(DhcpOption::RequestedIpAddress(ip))
    }
    fn server(self, ip: Ipv4Addr) -> Client {
        self.opt(DhcpOption::ServerIdentifier(ip))
    }
    fn ciaddr(mut self, ip: Ipv4Addr) -> Client {
        self.0.set_ciaddr(ip);
        self
    }
    fn giaddr(mut self, ip: Ipv4Addr) -> Client {
        self.0.set_giaddr(ip);
        self
    }
    fn broadcast(mut self) -> Client {
        self.0.set_flags(Flags::default().set_broadcast());
        self
    }
    fn request(&self) -> Request {
        let mut buf = Vec::new();
        self.0.encode(&mut Encoder::new(&mut buf)).unwrap();
        parse_request(&buf).expect("client message parses")
    }
}

fn ingress(port: Port) -> Ingress<'static> {
    Ingress {
        interface: "veth0",
        server_ip: SERVER,
        port,
        source: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 50), 68),
    }
}

fn run(site: &Site, leases: &LeaseTable, client: Client, port: Port) -> Decision {
    decide(&client.request(), &ingress(port), site, leases, NOW)
}

fn reply(d: &Decision) -> &Reply {
    d.outcome
        .as_ref()
        .unwrap_or_else(|why| panic!("expected a reply, got silence: {why}"))
}

fn silence(d: &Decision) -> &Silence {
    match &d.outcome {
        Ok(r) => panic!("expected silence, got {:?} to {}", r.kind, r.to),
        Err(why) => why,
    }
}

fn opt(m: &Message, code: OptionCode) -> Option<&DhcpOption> {
    m.opts().get(code)
}

fn vendor_class(m: &Message) -> Option<String> {
    match opt(m, OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(v)) => Some(String::from_utf8(v.clone()).unwrap()),
        _ => None,
    }
}

fn bootfile_opt(m: &Message) -> Option<String> {
    match opt(m, OptionCode::BootfileName) {
        Some(DhcpOption::BootfileName(v)) => Some(String::from_utf8(v.clone()).unwrap()),
        _ => None,
    }
}

/// The `file` field. dhcproto keeps the terminating NUL when decoding.
fn file(m: &Message) -> String {
    let raw = m.fname().unwrap_or_default();
    String::from_utf8(raw.to_vec())
        .unwrap()
        .trim_end_matches('\0')
        .to_owned()
}

/// Applies a decision's lease change, as the server does after storing it.
fn apply(leases: &mut LeaseTable, d: &Decision) {
    if let Some(change) = &d.lease {
        leases.apply(change);
    }
}

const BCAST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT);

// ---- the architecture map ----

#[test]
fn arch_0_bios_gets_undionly_over_tftp_with_discovery_control() {
    let d = run(
        &auth(),
        &LeaseTable::default(),
        Client::new(KNOWN, MessageType::Discover).pxe(0),
        Port::Dhcp,
    );
    let m = &reply(&d).message;
    assert_eq!(file(m), "undionly.kpxe");
    assert_eq!(bootfile_opt(m).as_deref(), Some("undionly.kpxe"));
    assert_eq!(m.siaddr(), SERVER, "next-server");
    assert_eq!(
        opt(m, OptionCode::TFTPServerName),
        Some(&DhcpOption::TFTPServerName(b"198.18.0.1".to_vec()))
    );
    assert_eq!(vendor_class(m).as_deref(), Some("PXEClient"));
    assert_eq!(
        opt(m, OptionCode::VendorExtensions),
        Some(&DhcpOption::VendorExtensions(vec![6, 1, 8, 255]))
    );
    assert_eq!(d.boot.as_deref(), Some("undionly.kpxe"));
}

#[test]
fn arch_6_7_9_uefi_x86_get_snponly_over_tftp() {
    for arch in [6, 7, 9] {
        let d = run(
            &auth(),
            &LeaseTable::default(),
            Client::new(KNOWN, MessageType::Discover).pxe(arch),
            Port::Dhcp,
        );
        let m = &reply(&d).message;
        assert_eq!(file(m), "snponly.efi", "arch {arch}");
        assert_eq!(m.siaddr(), SERVER, "arch {arch}");
        assert_eq!(vendor_class(m).as_deref(), Some("PXEClient"), "arch {arch}");
        assert!(
            opt(m, OptionCode::VendorExtensions).is_none(),
            "no BIOS discovery control for arch {arch}"
        );
    }
}

#[test]
fn arch_11_arm64_gets_arm64_ipxe_only_when_configured() {
    let d = run(
        &auth(),
        &LeaseTable::default(),
        Client::new(KNOWN, MessageType::Discover).pxe(11),
        Port::Dhcp,
    );
    assert_eq!(file(&reply(&d).message), "arm64/snponly.efi");
    let no_arm = site(&SITE.replace("[boot]\nuefi-arm64 = \"arm64/snponly.efi\"\n", ""));
    let d = run(
        &no_arm,
        &LeaseTable::default(),
        Client::new(KNOWN, MessageType::Discover).pxe(11),
        Port::Dhcp,
    );
    let m = &reply(&d).message;
    assert_eq!(
        m.yiaddr(),
        Ipv4Addr::new(198, 18, 0, 11),
        "still gets its address"
    );
    assert!(
        m.fname().is_none() && bootfile_opt(m).is_none(),
        "but no boot file"
    );
}

#[test]
fn arch_16_http_client_gets_an_http_url_and_httpclient_class() {
    let d = run(
        &auth(),
        &LeaseTable::default(),
        Client::new(KNOWN, MessageType::Discover).http(16),
        Port::Dhcp,
    );
    let m = &reply(&d).message;
    assert_eq!(file(m), "http://198.18.0.1:8080/ipxe/snponly.efi");
    assert_eq!(
        bootfile_opt(m).as_deref(),
        Some("http://198.18.0.1:8080/ipxe/snponly.efi")
    );
    assert_eq!(vendor_class(m).as_deref(), Some("HTTPClient"));
    assert!(
        opt(m, OptionCode::TFTPServerName).is_none(),
        "no TFTP server for HTTP boot"
    );
}

#[test]
fn arch_19_arm64_http_client_gets_the_arm64_url() {
    let d = run(
        &auth(),
        &LeaseTable::default(),
        Client::new(KNOWN, MessageType::Discover).http(19),
        Port::Dhcp,
    );
    assert_eq!(
        file(&reply(&d).message),
        "http://198.18.0.1:8080/ipxe/arm64/snponly.efi"
    );
}

#[test]
fn ipxe_user_class_gets_the_node_script_whatever_the_arch() {
    for arch in [0, 7, 16] {
        let c = Client::new(KNOWN, MessageType::Discover).pxe(arch).ipxe();
        let d = run(&auth(), &LeaseTable::default(), c, Port::Dhcp);
        let m = &reply(&d).message;
        assert_eq!(
            file(m),
            "http://198.18.0.1:8080/boot/52-54-00-00-00-01.ipxe",
            "arch {arch}"
        );
        assert!(
            opt(m, OptionCode::VendorExtensions).is_none(),
            "arch {arch}"
        );
    }
}

#[test]
fn ipxe_option_175_gets_the_node_script() {
    let c = Client::new(KNOWN, MessageType::Discover)
        .pxe(7)
        .opt(DhcpOption::Unknown(UnknownOption::new(
            175.into(),
            vec![19, 1, 1],
        )));
    let d = run(&auth(), &LeaseTable::default(), c, Port::Dhcp);
    assert_eq!(
        file(&reply(&d).message),
        "http://198.18.0.1:8080/boot/52-54-00-00-00-01.ipxe"
    );
}

#[test]
fn node_boot_file_overrides_the_firmware_stage_only() {
    let c = Client::new(OVERRIDE, MessageType::Discover).pxe(7);
    let d = run(&auth(), &LeaseTable::default(), c, Port::Dhcp);
    assert_eq!(file(&reply(&d).message), "ipxe.efi");
    let c = Client::new(OVERRIDE, MessageType::Discover).pxe(7).ipxe();
    let d = run(&auth(), &LeaseTable::default(), c, Port::Dhcp);
    assert_eq!(
        file(&reply(&d).message),
        "http://198.18.0.1:8080/boot/52-54-00-00-00-03.ipxe"
    );
}

#[test]
fn plain_dhcp_client_gets_no_boot_options() {
    let d = run(
        &auth(),
        &LeaseTable::default(),
        Client::new(KNOWN, MessageType::Discover),
        Port::Dhcp,
    );
    let m = &reply(&d).message;
    assert!(m.fname().is_none() && bootfile_opt(m).is_none() && vendor_class(m).is_none());
    assert_eq!(
        m.siaddr(),
        Ipv4Addr::UNSPECIFIED,
        "no next-server for a client that is not booting"
    );
}

#[test]
fn client_uuid_option_97_is_echoed_to_pxe_clients() {
    let uuid = vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
    let c = Client::new(KNOWN, MessageType::Discover)
        .pxe(0)
        .opt(DhcpOption::ClientMachineIdentifier(uuid.clone()));
    let d = run(&auth(), &LeaseTable::default(), c, Port::Dhcp);
    assert_eq!(
        opt(&reply(&d).message, OptionCode::ClientMachineIdentifier),
        Some(&DhcpOption::ClientMachineIdentifier(uuid))
    );
}

// ---- authoritative mode, message by message ----

#[test]
fn discover_from_known_node_offers_its_reservation_with_options() {
    let d = run(
        &auth(),
        &LeaseTable::default(),
        Client::new(KNOWN, MessageType::Discover),
        Port::Dhcp,
    );
    let r = reply(&d);
    let m = &r.message;
    assert_eq!(r.kind, ReplyKind::Offer);
    assert_eq!(m.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(m.yiaddr(), Ipv4Addr::new(198, 18, 0, 11));
    assert_eq!(m.xid(), 0x1234_5678);
    assert_eq!(m.chaddr(), &KNOWN);
    assert_eq!(
        opt(m, OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER))
    );
    assert_eq!(
        opt(m, OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(600))
    );
    assert_eq!(opt(m, OptionCode::Renewal), Some(&DhcpOption::Renewal(300)));
    assert_eq!(
        opt(m, OptionCode::Rebinding),
        Some(&DhcpOption::Rebinding(525))
    );
    assert_eq!(
        opt(m, OptionCode::SubnetMask),
        Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
    );
    assert_eq!(
        opt(m, OptionCode::Router),
        Some(&DhcpOption::Router(vec![Ipv4Addr::new(198, 18, 0, 254)]))
    );
    assert_eq!(
        opt(m, OptionCode::DomainNameServer),
        Some(&DhcpOption::DomainNameServer(vec![SERVER]))
    );
    assert_eq!(
        opt(m, OptionCode::DomainName),
        Some(&DhcpOption::DomainName("rack.test".into()))
    );
    assert_eq!(
        opt(m, OptionCode::Hostname),
        Some(&DhcpOption::Hostname("n1".into()))
    );
    assert_eq!(r.to, BCAST, "no address yet: broadcast");
    assert_eq!(d.node.as_deref(), Some("n1"));
    assert!(
        matches!(d.lease, Some(LeaseChange::Offer { offer, .. }) if offer.ip == Ipv4Addr::new(198, 18, 0, 11))
    );
}

#[test]
fn broadcast_flag_is_echoed() {
    let d = run(
        &auth(),
        &LeaseTable::default(),
        Client::new(KNOWN, MessageType::Discover).broadcast(),
        Port::Dhcp,
    );
    assert!(reply(&d).message.flags().broadcast());
    assert_eq!(reply(&d).to, BCAST);
}

#[test]
fn unknown_mac_follows_the_policy() {
    let d = run(
        &ignore_unknown(SITE),
        &LeaseTable::default(),
        Client::new(STRANGER, MessageType::Discover).pxe(7),
        Port::Dhcp,
    );
    assert_eq!(silence(&d), &Silence::UnknownIgnored);
    for policy in ["discover", "enroll"] {
        let s = site(&SITE.replace(
            r#"unknown-nodes = "discover""#,
            &format!(r#"unknown-nodes = "{policy}""#),
        ));
        let d = run(
            &s,
            &LeaseTable::default(),
            Client::new(STRANGER, MessageType::Discover).pxe(7),
            Port::Dhcp,
        );
        let ip = reply(&d).message.yiaddr();
        assert!(
            (100..=102).contains(&ip.octets()[3]) && ip.octets()[..3] == [198, 18, 0],
            "{policy}: pool address, got {ip}"
        );
        assert_eq!(
            file(&reply(&d).message),
            "snponly.efi",
            "{policy}: boots (into discovery via its script)"
        );
        assert_eq!(d.node, None);
    }
}

#[test]
fn pool_honours_a_free_requested_address_and_runs_out() {
    let s = auth();
    let mut leases = LeaseTable::default();
    let want = Ipv4Addr::new(198, 18, 0, 101);
    let d = run(
        &s,
        &leases,
        Client::new(STRANGER, MessageType::Discover).requested(want),
        Port::Dhcp,
    );
    assert_eq!(reply(&d).message.yiaddr(), want);
    // Three addresses, three other clients take them all.
    for i in 0..3u8 {
        let mac = [0x52, 0x54, 0, 0, 1, i];
        let d = run(
            &s,
            &leases,
            Client::new(mac, MessageType::Discover),
            Port::Dhcp,
        );
        apply(&mut leases, &d);
        let ip = reply(&d).message.yiaddr();
        let d = run(
            &s,
            &leases,
            Client::new(mac, MessageType::Request)
                .server(SERVER)
                .requested(ip),
            Port::Dhcp,
        );
        assert_eq!(reply(&d).kind, ReplyKind::Ack);
        apply(&mut leases, &d);
    }
    let d = run(
        &s,
        &leases,
        Client::new(STRANGER, MessageType::Discover).requested(want),
        Port::Dhcp,
    );
    assert!(
        matches!(silence(&d), Silence::PoolExhausted { .. }),
        "{:?}",
        d.outcome
    );
}

#[test]
fn selecting_request_for_our_offer_is_acked_and_stored() {
    let s = auth();
    let mut leases = LeaseTable::default();
    let d = run(
        &s,
        &leases,
        Client::new(STRANGER, MessageType::Discover),
        Port::Dhcp,
    );
    apply(&mut leases, &d);
    let ip = reply(&d).message.yiaddr();
    let d = run(
        &s,
        &leases,
        Client::new(STRANGER, MessageType::Request)
            .server(SERVER)
            .requested(ip),
        Port::Dhcp,
    );
    let r = reply(&d);
    assert_eq!(
        (r.kind, r.message.yiaddr(), r.to),
        (ReplyKind::Ack, ip, BCAST)
    );
    let Some(LeaseChange::Put(lease)) = &d.lease else {
        panic!("{:?}", d.lease)
    };
    assert_eq!(
        (lease.ip, lease.state, lease.expires_at),
        (ip, crate::store::LeaseState::Bound, NOW + 600)
    );
    apply(&mut leases, &d);
    // The same client asking again gets the same address back.
    let d = run(
        &s,
        &leases,
        Client::new(STRANGER, MessageType::Discover),
        Port::Dhcp,
    );
    assert_eq!(reply(&d).message.yiaddr(), ip);
}

#[test]
fn selecting_another_server_is_silent_and_frees_the_offer() {
    let s = auth();
    let mut leases = LeaseTable::default();
    let d = run(
        &s,
        &leases,
        Client::new(STRANGER, MessageType::Discover),
        Port::Dhcp,
    );
    apply(&mut leases, &d);
    let ip = reply(&d).message.yiaddr();
    let other = Ipv4Addr::new(198, 18, 0, 2);
    let d = run(
        &s,
        &leases,
        Client::new(STRANGER, MessageType::Request)
            .server(other)
            .requested(ip),
        Port::Dhcp,
    );
    assert_eq!(silence(&d), &Silence::OtherServerSelected { server: other });
    apply(&mut leases, &d);
    assert_eq!(leases.holder(ip, NOW), None, "offer released");
}

#[test]
fn selecting_an_address_not_offered_is_nakked_by_broadcast() {
    let d = run(
        &auth(),
        &LeaseTable::default(),
        Client::new(KNOWN, MessageType::Request)
            .server(SERVER)
            .requested(Ipv4Addr::new(198, 18, 0, 12)),
        Port::Dhcp,
    );
    let r = reply(&d);
    assert_eq!((r.kind, r.to), (ReplyKind::Nak, BCAST));
    assert_eq!(r.message.opts().msg_type(), Some(MessageType::Nak));
    assert_eq!(r.message.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(d.lease.is_none());
}

#[test]
fn init_reboot_is_acked_when_right_and_nakked_when_wrong() {
    let s = auth();
    let c = Client::new(KNOWN, MessageType::Request).requested(Ipv4Addr::new(198, 18, 0, 11));
    assert_eq!(
        reply(&run(&s, &LeaseTable::default(), c, Port::Dhcp)).kind,
        ReplyKind::Ack
    );
    let c = Client::new(KNOWN, MessageType::Request).requested(Ipv4Addr::new(198, 18, 9, 11));
    assert_eq!(
        reply(&run(&s, &LeaseTable::default(), c, Port::Dhcp)).kind,
        ReplyKind::Nak,
        "other network"
    );
    let c = Client::new(KNOWN, MessageType::Request).requested(Ipv4Addr::new(198, 18, 0, 30));
    assert_eq!(
        reply(&run(&s, &LeaseTable::default(), c, Port::Dhcp)).kind,
        ReplyKind::Nak,
        "not its address"
    );
    // No record of an ignored client: stay silent (RFC 2131 4.3.2).
    let c = Client::new(STRANGER, MessageType::Request).requested(Ipv4Addr::new(198, 18, 0, 100));
    assert_eq!(
        silence(&run(
            &ignore_unknown(SITE),
            &LeaseTable::default(),
            c,
            Port::Dhcp
        )),
        &Silence::UnknownIgnored
    );
}

#[test]
fn renewing_is_acked_by_unicast_to_ciaddr() {
    let s = auth();
    let ip = Ipv4Addr::new(198, 18, 0, 11);
    let d = run(
        &s,
        &LeaseTable::default(),
        Client::new(KNOWN, MessageType::Request).ciaddr(ip),
        Port::Dhcp,
    );
    let r = reply(&d);
    assert_eq!(
        (r.kind, r.to, r.message.ciaddr(), r.message.yiaddr()),
        (ReplyKind::Ack, SocketAddrV4::new(ip, 68), ip, ip)
    );
    assert!(
        matches!(&d.lease, Some(LeaseChange::Put(l)) if l.expires_at == NOW + 600),
        "lease extended"
    );
    // Rebinding with someone else's address is refused.
    let d = run(
        &s,
        &LeaseTable::default(),
        Client::new(STRANGER, MessageType::Request).ciaddr(ip),
        Port::Dhcp,
    );
    assert_eq!(reply(&d).kind, ReplyKind::Nak);
}

#[test]
fn relayed_requests_use_the_relay_subnet_and_reply_to_the_relay() {
    let relay = Ipv4Addr::new(198, 18, 4, 1);
    let d = run(
        &auth(),
        &LeaseTable::default(),
        Client::new(RELAYED, MessageType::Discover).giaddr(relay),
        Port::Dhcp,
    );
    let r = reply(&d);
    assert_eq!(r.message.yiaddr(), Ipv4Addr::new(198, 18, 4, 12));
    assert_eq!(r.to, SocketAddrV4::new(relay, 67));
    assert_eq!(r.message.giaddr(), relay);
    assert_eq!(
        opt(&r.message, OptionCode::Router),
        Some(&DhcpOption::Router(vec![relay]))
    );
    // The relayed node asking on the local segment: its reservation is elsewhere.
    let d = run(
        &auth(),
        &LeaseTable::default(),
        Client::new(RELAYED, MessageType::Discover),
        Port::Dhcp,
    );
    assert!(matches!(silence(&d), Silence::ReservationElsewhere { .. }));
    // An unknown relay is not answered.
    let d = run(
        &auth(),
        &LeaseTable::default(),
        Client::new(RELAYED, MessageType::Discover).giaddr(Ipv4Addr::new(198, 19, 0, 1)),
        Port::Dhcp,
    );
    assert!(matches!(silence(&d), Silence::UnknownRelay { .. }));
    // A NAK through a relay asks the relay to broadcast it.
    let c = Client::new(RELAYED, MessageType::Request)
        .giaddr(relay)
        .requested(Ipv4Addr::new(198, 18, 4, 99));
    let d = run(&auth(), &LeaseTable::default(), c, Port::Dhcp);
    let r = reply(&d);
    assert_eq!(
        (r.kind, r.to),
        (ReplyKind::Nak, SocketAddrV4::new(relay, 67))
    );
    assert!(r.message.flags().broadcast());
}

#[test]
fn decline_quarantines_the_address_and_the_client_moves_on() {
    let s = auth();
    let mut leases = LeaseTable::default();
    let d = run(
        &s,
        &leases,
        Client::new(STRANGER, MessageType::Discover),
        Port::Dhcp,
    );
    apply(&mut leases, &d);
    let first = reply(&d).message.yiaddr();
    let d = run(
        &s,
        &leases,
        Client::new(STRANGER, MessageType::Decline)
            .server(SERVER)
            .requested(first),
        Port::Dhcp,
    );
    assert_eq!(silence(&d), &Silence::Declined { ip: first });
    apply(&mut leases, &d);
    assert_eq!(leases.holder(first, NOW), Some(Holder::Declined));
    let d = run(
        &s,
        &leases,
        Client::new(STRANGER, MessageType::Discover),
        Port::Dhcp,
    );
    assert_ne!(reply(&d).message.yiaddr(), first);
    // A DECLINE for another server, or of an address not held, changes nothing.
    let d = run(
        &s,
        &leases,
        Client::new(STRANGER, MessageType::Decline)
            .server(Ipv4Addr::new(198, 18, 0, 2))
            .requested(first),
        Port::Dhcp,
    );
    assert!(d.lease.is_none());
    let d = run(
        &s,
        &leases,
        Client::new(KNOWN, MessageType::Decline)
            .server(SERVER)
            .requested(first),
        Port::Dhcp,
    );
    assert!(matches!(silence(&d), Silence::NotHeld { .. }) && d.lease.is_none());
}

#[test]
fn release_frees_the_lease_only_for_its_holder() {
    let s = auth();
    let mut leases = LeaseTable::default();
    let ip = Ipv4Addr::new(198, 18, 0, 11);
    let d = run(
        &s,
        &leases,
        Client::new(KNOWN, MessageType::Request).requested(ip),
        Port::Dhcp,
    );
    apply(&mut leases, &d);
    let d = run(
        &s,
        &leases,
        Client::new(STRANGER, MessageType::Release)
            .server(SERVER)
            .ciaddr(ip),
        Port::Dhcp,
    );
    assert!(matches!(silence(&d), Silence::NotHeld { .. }) && d.lease.is_none());
    let d = run(
        &s,
        &leases,
        Client::new(KNOWN, MessageType::Release)
            .server(Ipv4Addr::new(198, 18, 0, 2))
            .ciaddr(ip),
        Port::Dhcp,
    );
    assert!(matches!(silence(&d), Silence::NotForUs { .. }));
    let d = run(
        &s,
        &leases,
        Client::new(KNOWN, MessageType::Release)
            .server(SERVER)
            .ciaddr(ip),
        Port::Dhcp,
    );
    assert_eq!(d.lease, Some(LeaseChange::Release { ip }));
    apply(&mut leases, &d);
    assert_eq!(leases.holder(ip, NOW), None);
}

#[test]
fn inform_gets_options_without_an_address() {
    let ip = Ipv4Addr::new(198, 18, 0, 11);
    let d = run(
        &auth(),
        &LeaseTable::default(),
        Client::new(KNOWN, MessageType::Inform).ciaddr(ip).pxe(7),
        Port::Dhcp,
    );
    let r = reply(&d);
    assert_eq!((r.kind, r.to), (ReplyKind::Ack, SocketAddrV4::new(ip, 68)));
    assert_eq!(r.message.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(
        opt(&r.message, OptionCode::AddressLeaseTime).is_none(),
        "no lease time in an INFORM reply"
    );
    assert_eq!(file(&r.message), "snponly.efi");
    assert!(d.lease.is_none());
}

// ---- proxyDHCP ----

#[test]
fn proxy_offer_has_boot_options_and_no_address() {
    for (client, want) in [
        (
            Client::new(KNOWN, MessageType::Discover).pxe(0),
            "undionly.kpxe",
        ),
        (
            Client::new(KNOWN, MessageType::Discover).pxe(7),
            "snponly.efi",
        ),
        (
            Client::new(KNOWN, MessageType::Discover).http(16),
            "http://198.18.0.1:8080/ipxe/snponly.efi",
        ),
        (
            Client::new(KNOWN, MessageType::Discover).pxe(7).ipxe(),
            "http://198.18.0.1:8080/boot/52-54-00-00-00-01.ipxe",
        ),
    ] {
        let d = run(&proxy(), &LeaseTable::default(), client, Port::Dhcp);
        let r = reply(&d);
        assert_eq!(r.kind, ReplyKind::ProxyOffer);
        assert_eq!(r.message.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(
            r.message.yiaddr(),
            Ipv4Addr::UNSPECIFIED,
            "{want}: no address"
        );
        assert!(
            opt(&r.message, OptionCode::AddressLeaseTime).is_none(),
            "{want}"
        );
        assert!(opt(&r.message, OptionCode::SubnetMask).is_none(), "{want}");
        assert_eq!(
            opt(&r.message, OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(SERVER))
        );
        assert!(vendor_class(&r.message).is_some(), "{want}: option 60");
        assert_eq!(file(&r.message), want);
        // iPXE drops proxy answers without siaddr, even for HTTP URLs.
        assert_eq!(r.message.siaddr(), SERVER, "{want}");
        assert!(r.message.flags().broadcast());
        assert_eq!(r.to, BCAST);
        assert!(d.lease.is_none(), "proxy keeps no leases");
    }
}

#[test]
fn proxy_answers_pxe_requests_on_4011_to_their_source() {
    let c = Client::new(KNOWN, MessageType::Request)
        .pxe(7)
        .ciaddr(Ipv4Addr::new(198, 18, 0, 50));
    let d = run(&proxy(), &LeaseTable::default(), c, Port::Pxe);
    let r = reply(&d);
    assert_eq!(r.kind, ReplyKind::ProxyAck);
    assert_eq!(r.message.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(r.to, ingress(Port::Pxe).source);
    assert_eq!(r.message.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(file(&r.message), "snponly.efi");
    assert_eq!(r.message.siaddr(), SERVER);
}

#[test]
fn proxy_stays_silent_where_the_real_server_answers() {
    let p = proxy();
    let d = run(
        &p,
        &LeaseTable::default(),
        Client::new(KNOWN, MessageType::Discover),
        Port::Dhcp,
    );
    assert_eq!(silence(&d), &Silence::NotBootClient);
    let c = Client::new(KNOWN, MessageType::Request)
        .pxe(7)
        .server(SERVER)
        .requested(Ipv4Addr::new(198, 18, 0, 50));
    assert!(matches!(
        silence(&run(&p, &LeaseTable::default(), c, Port::Dhcp)),
        Silence::ProxyIgnores { .. }
    ));
    let c = Client::new(STRANGER, MessageType::Discover).pxe(7);
    let mut p_ignore = proxy();
    p_ignore.config.server.unknown_nodes = crate::site::UnknownNodePolicy::Ignore;
    assert_eq!(
        silence(&run(&p_ignore, &LeaseTable::default(), c, Port::Dhcp)),
        &Silence::UnknownIgnored
    );
    let no_arm = proxy();
    let c = Client::new(KNOWN, MessageType::Discover).pxe(10);
    assert!(matches!(
        silence(&run(&no_arm, &LeaseTable::default(), c, Port::Dhcp)),
        Silence::NoBootFile { arch: Some(10) }
    ));
}

#[test]
fn every_reply_encodes_to_at_least_300_bytes() {
    let d = run(
        &auth(),
        &LeaseTable::default(),
        Client::new(KNOWN, MessageType::Discover).pxe(0),
        Port::Dhcp,
    );
    let bytes = crate::net::dhcp::encode(&reply(&d).message).unwrap();
    assert!(bytes.len() >= 300);
    use dhcproto::Decodable;
    let back = Message::decode(&mut dhcproto::Decoder::new(&bytes)).unwrap();
    assert_eq!(back.yiaddr(), Ipv4Addr::new(198, 18, 0, 11));
    assert_eq!(file(&back), "undionly.kpxe");
}
