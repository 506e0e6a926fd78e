//! Site file parsing and validation: good files load, each bad one fails
//! with the file, line and key, or names the node at fault.

use super::*;

const GOOD: &str = r#"
[server]
http-base-url = "http://198.18.0.1:8080"
unknown-nodes = "discover"

[images]
dirs = ["/srv/ironrack/out"]
trust-root = "/etc/ironrack/trust.json"

[dhcp]
mode = "authoritative"
lease-time = 600
dns = ["198.18.0.1"]
domain = "rack.test"

[[interface]]
name = "br0"
address = "198.18.0.1/24"
router = "198.18.0.1"
pool = { start = "198.18.0.100", end = "198.18.0.199" }

[[relay]]
subnet = "198.18.4.0/24"
router = "198.18.4.1"
pool = { start = "198.18.4.100", end = "198.18.4.110" }

[boot]
uefi-arm64 = "arm64/snponly.efi"

[[rack]]
name = "r01"
[[rack.node]]
mac = "52:54:00:00:01:01"
hostname = "gpu-r01-n01"
ip = "198.18.0.11"
image = "gpu-node"
profile = "h100x8"
[[rack.node]]
mac = "52-54-00-00-01-02"
hostname = "gpu-r01-n02"
ip = "198.18.4.12"
boot-file = "ipxe.efi"

[profile.h100x8]
gpus = "8 x 0x2330"

[tftp]
max-sessions = 64

[http]
memory-cache-bytes = 1048576
"#;

fn load(text: &str) -> Result<Site, SiteError> {
    Site::from_toml(Path::new("site.toml"), text)
}

fn with(replace: &str, by: &str) -> String {
    assert!(
        GOOD.contains(replace),
        "test edits a line that is not in GOOD: {replace}"
    );
    GOOD.replacen(replace, by, 1)
}

#[test]
fn good_site_loads_with_lookups() {
    let site = load(GOOD).expect("good site");
    let mac: MacAddr = "52:54:00:00:01:02".parse().unwrap();
    let node = site.node_by_mac(&mac).expect("node by mac");
    assert_eq!(node.name(), "gpu-r01-n02");
    assert_eq!(node.rack, "r01");
    assert_eq!(node.config.boot_file.as_deref(), Some("ipxe.efi"));
    assert_eq!(
        site.reservation_holder("198.18.0.11".parse().unwrap()),
        Some("52:54:00:00:01:01".parse().unwrap())
    );
    assert_eq!(
        site.interface_subnet("br0").unwrap().net.mask(),
        Ipv4Addr::new(255, 255, 255, 0)
    );
    assert_eq!(
        site.relay_subnet("198.18.4.1".parse().unwrap())
            .unwrap()
            .label,
        "relay 198.18.4.0/24"
    );
    assert!(site.relay_subnet("198.18.0.1".parse().unwrap()).is_none());
    assert_eq!(site.config.boot.bios, "undionly.kpxe");
    assert_eq!(
        site.config.server.unknown_nodes,
        UnknownNodePolicy::Discover
    );
    assert_eq!(site.config.tftp.max_sessions, 64);
    assert_eq!(site.config.http.memory_cache_bytes, 1 << 20);
    assert_eq!(site.http_base_port(), 8080);
}

#[test]
fn unknown_key_names_line_column_and_key() {
    let text = with("lease-time = 600", "lease-time = 600\nlease-tme = 5");
    let err = load(&text).unwrap_err();
    let SiteError::Parse {
        line, column, key, ..
    } = &err
    else {
        panic!("{err}")
    };
    let expected_line = text
        .lines()
        .position(|l| l.starts_with("lease-tme"))
        .unwrap()
        + 1;
    assert_eq!(
        (*line, *column, key.as_str()),
        (expected_line, 1, "lease-tme")
    );
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("site.toml:{expected_line}:1: key `lease-tme`")),
        "{shown}"
    );
    assert!(shown.contains("unknown field"), "{shown}");
}

#[test]
fn bad_value_points_at_the_value() {
    let text = with(r#"mac = "52:54:00:00:01:01""#, r#"mac = "52:54:00:00:01""#);
    let err = load(&text).unwrap_err();
    let SiteError::Parse {
        line, key, message, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(key, "mac");
    assert_eq!(
        *line,
        text.lines()
            .position(|l| l.contains(r#""52:54:00:00:01""#))
            .unwrap()
            + 1
    );
    assert!(message.contains("invalid MAC"), "{message}");
}

#[test]
fn bad_mode_is_a_parse_error() {
    let err = load(&with(r#"mode = "authoritative""#, r#"mode = "sometimes""#)).unwrap_err();
    assert!(
        matches!(&err, SiteError::Parse { key, .. } if key == "mode"),
        "{err}"
    );
}

#[test]
fn duplicate_mac_names_both_nodes() {
    let err = load(&with("52-54-00-00-01-02", "52:54:00:00:01:01")).unwrap_err();
    let shown = err.to_string();
    assert!(matches!(err, SiteError::DuplicateMac { .. }), "{shown}");
    assert!(
        shown.contains("node gpu-r01-n02") && shown.contains("node gpu-r01-n01"),
        "{shown}"
    );
}

#[test]
fn duplicate_ip_names_both_nodes() {
    let err = load(&with(r#"ip = "198.18.4.12""#, r#"ip = "198.18.0.11""#)).unwrap_err();
    let shown = err.to_string();
    assert!(matches!(err, SiteError::DuplicateIp { .. }), "{shown}");
    assert!(
        shown.contains("gpu-r01-n02") && shown.contains("gpu-r01-n01"),
        "{shown}"
    );
}

#[test]
fn duplicate_hostname_is_refused() {
    let err = load(&with(
        r#"hostname = "gpu-r01-n02""#,
        r#"hostname = "gpu-r01-n01""#,
    ))
    .unwrap_err();
    assert!(matches!(err, SiteError::DuplicateHostname { .. }), "{err}");
}

#[test]
fn reservation_outside_served_subnets_names_the_node() {
    let err = load(&with(r#"ip = "198.18.4.12""#, r#"ip = "198.19.9.9""#)).unwrap_err();
    let shown = err.to_string();
    assert!(
        matches!(&err, SiteError::BadReservation { node, .. } if node == "gpu-r01-n02"),
        "{shown}"
    );
    assert!(shown.contains("outside every served subnet"), "{shown}");
}

#[test]
fn reservation_on_server_router_or_broadcast_is_refused() {
    for (ip, why) in [
        ("198.18.0.1", "server's own address"),
        ("198.18.4.1", "router"),
        ("198.18.4.255", "broadcast"),
    ] {
        let err = load(&with(r#"ip = "198.18.4.12""#, &format!(r#"ip = "{ip}""#))).unwrap_err();
        assert!(err.to_string().contains(why), "{ip}: {err}");
    }
}

#[test]
fn pool_overlapping_a_reservation_names_the_node() {
    let err = load(&with(r#"ip = "198.18.0.11""#, r#"ip = "198.18.0.150""#)).unwrap_err();
    let shown = err.to_string();
    assert!(
        matches!(&err, SiteError::PoolOverlapsReservation { node, ip, .. }
        if node == "gpu-r01-n01" && ip.to_string() == "198.18.0.150"),
        "{shown}"
    );
}

#[test]
fn pool_outside_subnet_or_reversed_is_refused() {
    let err = load(&with(r#"end = "198.18.0.199""#, r#"end = "198.18.1.10""#)).unwrap_err();
    assert!(err.to_string().contains("interface.br0.pool"), "{err}");
    let err = load(&with(
        r#"start = "198.18.0.100""#,
        r#"start = "198.18.0.250""#,
    ))
    .unwrap_err();
    assert!(err.to_string().contains("start is after end"), "{err}");
}

#[test]
fn overlapping_subnets_are_refused() {
    let err = load(&with(
        r#"subnet = "198.18.4.0/24""#,
        r#"subnet = "198.18.0.0/16""#,
    ))
    .unwrap_err();
    assert!(err.to_string().contains("overlaps interface br0"), "{err}");
}

#[test]
fn proxy_mode_refuses_addresses() {
    let text = with(r#"mode = "authoritative""#, r#"mode = "proxy""#);
    let err = load(&text).unwrap_err();
    assert!(err.to_string().contains("authoritative mode"), "{err}");
    let proxy = r#"
[server]
http-base-url = "http://198.18.0.1:8080"
[images]
dirs = []
trust-root = "/t"
[dhcp]
mode = "proxy"
[[interface]]
name = "veth0"
address = "198.18.0.1/24"
[[rack]]
name = "r"
[[rack.node]]
mac = "52:54:00:00:00:01"
hostname = "n1"
"#;
    let site = load(proxy).expect("proxy site");
    assert_eq!(site.mode(), DhcpMode::Proxy);
    let err = load(&proxy.replace(
        "hostname = \"n1\"",
        "hostname = \"n1\"\nip = \"198.18.0.5\"",
    ))
    .unwrap_err();
    assert!(matches!(err, SiteError::BadReservation { .. }), "{err}");
}

#[test]
fn base_url_and_boot_files_must_fit_a_dhcp_reply() {
    let long = format!("http://198.18.0.1/{}", "a".repeat(100));
    let err = load(&with("http://198.18.0.1:8080", &long)).unwrap_err();
    assert!(err.to_string().contains("server.http-base-url"), "{err}");
    let err = load(&with(
        r#"boot-file = "ipxe.efi""#,
        r#"boot-file = "has space.efi""#,
    ))
    .unwrap_err();
    assert!(err.to_string().contains("gpu-r01-n02"), "{err}");
}

#[test]
fn missing_file_is_a_read_error_naming_it() {
    let err = Site::load(Path::new("/nonexistent/site.toml")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/site.toml"), "{err}");
}

#[test]
fn mac_and_prefix_parsing() {
    let mac: MacAddr = "AA-bb-CC-00-11-22".parse().unwrap();
    assert_eq!(mac.to_string(), "aa:bb:cc:00:11:22");
    assert_eq!(mac.to_hyphenated(), "aa-bb-cc-00-11-22");
    for bad in [
        "",
        "aa:bb",
        "aa:bb:cc:dd:ee:ff:00",
        "aa:bb:cc:dd:ee:gg",
        "aaa:b:cc:dd:ee:ff",
    ] {
        assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
    }
    let net: Ipv4Net = "198.18.3.7/22".parse().unwrap();
    assert_eq!(net.network(), Ipv4Addr::new(198, 18, 0, 0));
    assert_eq!(net.broadcast(), Ipv4Addr::new(198, 18, 3, 255));
    assert!(net.contains(Ipv4Addr::new(198, 18, 2, 1)));
    assert!(!net.contains(Ipv4Addr::new(198, 18, 4, 1)));
    for bad in ["198.18.0.0", "198.18.0.0/33", "x/8"] {
        assert!(bad.parse::<Ipv4Net>().is_err(), "{bad}");
    }
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        /// Any text: an error or a site, never a panic; errors point inside
        /// the file.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
            if let Err(SiteError::Parse { line, .. }) = load(&text) {
                prop_assert!(line >= 1 && line <= text.lines().count().max(1) + 1);
            }
        }

        /// The good file with one slice replaced by arbitrary text.
        #[test]
        fn mutated_site_never_panics(at in 0usize..1200, len in 0usize..40, junk in "\\PC{0,20}") {
            let at = at.min(GOOD.len());
            let end = (at + len).min(GOOD.len());
            if GOOD.is_char_boundary(at) && GOOD.is_char_boundary(end) {
                let text = format!("{}{}{}", &GOOD[..at], junk, &GOOD[end..]);
                let _ = load(&text);
            }
        }
    }
}

#[test]
fn the_proxy_how_to_site_loads_as_proxy_without_addresses() {
    let text = include_str!("../../../docs/site.proxy.toml");
    let site = load(text).expect("docs/site.proxy.toml");
    assert_eq!(site.config.dhcp.mode, crate::site::DhcpMode::Proxy);
    assert!(site.node_by_id("gpu-r07-n01").unwrap().config.ip.is_none());
    assert_eq!(
        site.gpu_profile("gpu-r07-n02").map(|p| p.to_string()),
        Some("8 x 0x2330".into())
    );
}

#[test]
fn the_documented_example_site_loads() {
    let text = include_str!("../../../docs/site.example.toml");
    let site = load(text).expect("docs/site.example.toml");
    assert_eq!(site.config.http.retry_max_seconds, 60);
    assert_eq!(site.config.tftp.max_blksize, 1468);
    let pinned = site.node_by_name("gpu-r01-n02").unwrap();
    assert_eq!(
        (pinned.config.version, pinned.config.force_version),
        (Some(3), true)
    );
    assert!(site.config.boot.ipxe_deb.is_some());
    assert_eq!(site.config.attest.ek_roots.len(), 1);
    assert_eq!(site.config.attest.nonce_seconds, 60);
}

#[test]
fn profiles_give_gpu_counts_and_an_undefined_one_names_the_node() {
    let site = load(GOOD).unwrap();
    assert_eq!(
        site.gpu_profile("gpu-r01-n01").map(|p| p.to_string()),
        Some("8 x 0x2330".into())
    );
    assert_eq!(site.gpu_profile("52:54:00:00:01:02"), None, "no profile");
    let err = load(&GOOD.replace("profile = \"h100x8\"", "profile = \"a100x4\""))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("gpu-r01-n01") && err.contains("a100x4"),
        "{err}"
    );
    let err = load(&GOOD.replace("gpus = \"8 x 0x2330\"", "gpus = \"8 x nvidia\""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nvidia"), "{err}");
}

#[test]
fn a_profile_names_its_boot_chain_and_bios_cannot_promise_secure_boot() {
    use crate::attest::service::BootChain;
    let chain = |text: &str| load(text).map(|s| s.profile_of("gpu-r01-n01").unwrap().boot_chain);
    assert_eq!(chain(GOOD).unwrap(), BootChain::Uki, "the default");
    let bios = GOOD.replace(
        "gpus = \"8 x 0x2330\"",
        "gpus = \"8 x 0x2330\"\nboot-chain = \"bios\"",
    );
    assert_eq!(chain(&bios).unwrap(), BootChain::Bios);
    let err = chain(&bios.replace(
        "boot-chain = \"bios\"",
        "boot-chain = \"bios\"\nsecure-boot = true",
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("profile.h100x8.secure-boot"), "{err}");
    let err = chain(&bios.replace("\"bios\"", "\"coreboot\""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("coreboot"), "{err}");
}

#[test]
fn pinned_versions_are_the_forced_ones_of_the_nodes_image() {
    let text = GOOD.replace(
        "profile = \"h100x8\"",
        "profile = \"h100x8\"\nversion = 3\nforce-version = true",
    );
    let site = load(&text).unwrap();
    assert_eq!(
        site.pinned_version("52:54:00:00:01:01", "gpu-node"),
        Some(3)
    );
    assert_eq!(site.pinned_version("gpu-r01-n01", "gpu-node"), Some(3));
    assert_eq!(site.pinned_version("gpu-r01-n01", "cpu-node"), None);
    assert_eq!(site.pinned_version("52:54:00:00:01:02", "gpu-node"), None);
    assert_eq!(site.pinned_version("52:54:00:00:09:09", "gpu-node"), None);
    // A preferred version without force-version is no pin.
    let text = text.replace("force-version = true", "");
    assert_eq!(
        load(&text)
            .unwrap()
            .pinned_version("gpu-r01-n01", "gpu-node"),
        None
    );
}

#[test]
fn attest_settings_default_and_bad_ones_name_line_and_key() {
    let site = load(GOOD).unwrap();
    let config = site.attest_config().unwrap();
    assert_eq!(
        config.ek_trust.root_count(),
        0,
        "no [attest]: no CA trusted"
    );
    assert_eq!((config.nonce_ttl, config.session_ttl), (60, 300));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.toml");
    let text = format!("{GOOD}\n[attest]\nnonce-seconds = 30\nek-roots = [\"missing.pem\"]\n");
    let site = Site::from_toml(&path, &text).unwrap();
    let err = site.attest_config().unwrap_err().to_string();
    let line = text
        .lines()
        .position(|l| l.starts_with("ek-roots"))
        .unwrap()
        + 1;
    assert!(
        err.starts_with(&format!("{}:{line}:", path.display())),
        "{err}"
    );
    assert!(err.contains("attest.ek-roots"), "{err}");
    assert!(
        err.contains(&dir.path().join("missing.pem").display().to_string()),
        "{err}"
    );

    std::fs::write(dir.path().join("junk.pem"), "not a certificate\n").unwrap();
    let text = text.replace("missing.pem", "junk.pem");
    let err = Site::from_toml(&path, &text)
        .unwrap()
        .attest_config()
        .unwrap_err();
    assert!(err.to_string().contains("junk.pem"), "{err}");

    // The secrets directory: relative to the site file, and must exist.
    let text = format!("{GOOD}\n[attest]\nsecrets = \"node-secrets\"\n");
    let err = Site::from_toml(&path, &text)
        .unwrap()
        .attest_config()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("attest.secrets") && err.contains("node-secrets is not a directory"),
        "{err}"
    );
    std::fs::create_dir(dir.path().join("node-secrets")).unwrap();
    let config = Site::from_toml(&path, &text)
        .unwrap()
        .attest_config()
        .unwrap();
    assert_eq!(config.secrets, Some(dir.path().join("node-secrets")));

    let err = load(&format!("{GOOD}\n[attest]\nagent-pcr = 14\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("attest.agent-pcr") && err.contains("PCR 15"),
        "{err}"
    );
    let err = load(&format!("{GOOD}\n[attest]\nnonce-seconds = 0\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("attest.nonce-seconds"), "{err}");
    let err = load(&format!("{GOOD}\n[attest]\nek-root = []\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ek-root"), "{err}");
}
