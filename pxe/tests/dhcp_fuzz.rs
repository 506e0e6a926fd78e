//! Hostile bytes against the DHCP handler: arbitrary datagrams and mutated
//! real requests must never panic, and must never reach dhcproto in a shape
//! that makes it panic (the handler's guard must catch them first).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

use dhcproto::v4::{DhcpOption, Message, MessageType};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use ironrack_pxe::net::dhcp::{Ingress, LeaseTable, Port, Refusal, handle_datagram};
use ironrack_pxe::site::Site;
use proptest::prelude::*;

const SITE: &str = r#"
[server]
http-base-url = "http://198.18.0.1:8080"
unknown-nodes = "discover"
[images]
dirs = []
trust-root = "/trust.json"
[dhcp]
mode = "authoritative"
[[interface]]
name = "veth0"
address = "198.18.0.1/24"
pool = { start = "198.18.0.100", end = "198.18.0.200" }
[[relay]]
subnet = "198.18.4.0/24"
pool = { start = "198.18.4.100", end = "198.18.4.200" }
[[rack]]
name = "r"
[[rack.node]]
mac = "52:54:00:00:00:01"
hostname = "n1"
ip = "198.18.0.11"
"#;

fn sites() -> [Site; 2] {
    let auth = Site::from_toml(Path::new("site.toml"), SITE).unwrap();
    let proxy_text = SITE
        .replace("\"authoritative\"", "\"proxy\"")
        .replace(
            "pool = { start = \"198.18.0.100\", end = \"198.18.0.200\" }\n",
            "",
        )
        .replace(
            "pool = { start = \"198.18.4.100\", end = \"198.18.4.200\" }\n",
            "",
        )
        .replace("ip = \"198.18.0.11\"\n", "");
    let proxy = Site::from_toml(Path::new("site.toml"), &proxy_text).unwrap();
    [auth, proxy]
}

/// Valid requests of every type, as seeds for mutation.
fn seeds() -> Vec<Vec<u8>> {
    let kinds = [
        MessageType::Discover,
        MessageType::Request,
        MessageType::Decline,
        MessageType::Release,
        MessageType::Inform,
    ];
    kinds
        .iter()
        .map(|kind| {
            let mut m = Message::new_with_id(
                7,
                Ipv4Addr::new(198, 18, 0, 11),
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::UNSPECIFIED,
                &[0x52, 0x54, 0, 0, 0, 1],
            );
            let o = m.opts_mut();
            o.insert(DhcpOption::MessageType(*kind));
            o.insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(198, 18, 0, 1)));
            o.insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(
                198, 18, 0, 11,
            )));
            o.insert(DhcpOption::ClientSystemArchitecture(7.into()));
            o.insert(DhcpOption::ClassIdentifier(
                b"PXEClient:Arch:00007:UNDI:003016".to_vec(),
            ));
            o.insert(DhcpOption::UserClass(b"iPXE".to_vec()));
            o.insert(DhcpOption::ClientMachineIdentifier(vec![0; 17]));
            o.insert(DhcpOption::ClientNetworkInterface(1, 3, 16));
            let mut buf = Vec::new();
            m.encode(&mut Encoder::new(&mut buf)).unwrap();
            buf
        })
        .collect()
}

fn check(bytes: &[u8]) {
    let leases = LeaseTable::default();
    for site in sites() {
        for port in [Port::Dhcp, Port::Pxe] {
            let ingress = Ingress {
                interface: "veth0",
                server_ip: Ipv4Addr::new(198, 18, 0, 1),
                port,
                source: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 9), 68),
            };
            let result = handle_datagram(bytes, &ingress, &site, &leases, 1_000_000);
            // A caught decoder panic means the guard let a dangerous shape
            // through: that is a failure of ours, not an acceptable refusal.
            assert!(
                !matches!(result, Err(Refusal::DecoderPanicked)),
                "dhcproto panicked on bytes the guard passed: {bytes:02x?}"
            );
        }
    }
}

/// A mutation of a seed: flips, a cut, and an inserted option TLV with an
/// arbitrary code and a length that may lie.
#[derive(Debug, Clone)]
struct Mutation {
    seed: usize,
    flips: Vec<(usize, u8)>,
    cut: Option<usize>,
    insert: Option<(usize, u8, u8, Vec<u8>)>,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        0usize..5,
        proptest::collection::vec((0usize..400, any::<u8>()), 0..6),
        proptest::option::of(0usize..400),
        proptest::option::of((
            0usize..160,
            any::<u8>(),
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..40),
        )),
    )
        .prop_map(|(seed, flips, cut, insert)| Mutation {
            seed,
            flips,
            cut,
            insert,
        })
}

fn apply(m: &Mutation, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut p = seeds[m.seed].clone();
    if let Some((at, code, len, data)) = &m.insert {
        // Insert inside the options area (after the 240-byte header).
        let at = (240 + at).min(p.len());
        let mut tlv = vec![*code, *len];
        tlv.extend_from_slice(data);
        p.splice(at..at, tlv);
    }
    for (at, byte) in &m.flips {
        let n = p.len();
        p[at % n] ^= byte;
    }
    if let Some(cut) = m.cut {
        p.truncate(cut.min(p.len()));
    }
    p
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_datagrams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        check(&bytes);
    }

    #[test]
    fn arbitrary_options_after_a_valid_header_never_panic(opts in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut p = seeds()[0][..240].to_vec();
        p.extend_from_slice(&[53, 1, 1]);
        p.extend_from_slice(&opts);
        check(&p);
    }

    #[test]
    fn mutated_requests_never_panic(m in mutation()) {
        let seeds = seeds();
        check(&apply(&m, &seeds));
    }
}

#[test]
fn seeds_are_accepted_unmutated() {
    let leases = LeaseTable::default();
    let [auth, _] = sites();
    let ingress = Ingress {
        interface: "veth0",
        server_ip: Ipv4Addr::new(198, 18, 0, 1),
        port: Port::Dhcp,
        source: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 9), 68),
    };
    for seed in seeds() {
        assert!(handle_datagram(&seed, &ingress, &auth, &leases, 1_000_000).is_ok());
    }
}

/// What the guard is for: shapes on which dhcproto 0.15 itself panics.
/// If an upgrade fixes them, this test says so and the guard can shrink.
#[test]
fn dhcproto_panics_on_what_the_guard_refuses() {
    let mut p = seeds()[0].clone();
    p[2] = 200; // hlen > 16
    let decoded = Message::decode(&mut Decoder::new(&p)).expect("dhcproto decodes hlen 200");
    let chaddr = std::panic::catch_unwind(|| decoded.chaddr().len());
    assert!(
        chaddr.is_err(),
        "dhcproto no longer panics in chaddr() for hlen > 16"
    );

    if cfg!(debug_assertions) {
        // Option 94 with length 0: `debug_assert!(len == 3)` in the decoder.
        let mut p = seeds()[0][..240].to_vec();
        p.extend_from_slice(&[53, 1, 1, 94, 0, 255]);
        let r = std::panic::catch_unwind(|| Message::decode(&mut Decoder::new(&p)).is_ok());
        assert!(
            r.is_err(),
            "dhcproto no longer panics on option 94 of length 0"
        );
    }
}
