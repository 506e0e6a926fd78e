//! Checks on a parsed site file that serde cannot make, and the mapping of
//! TOML parse errors to file, line, column and key.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;

use super::{
    DhcpMode, Ipv4Net, MAX_BASE_URL_LEN, MAX_BOOT_FILE_LEN, MacAddr, Node, SiteConfig, SiteError,
    Subnet,
};

pub(super) fn parse_error(path: &Path, text: &str, err: &toml::de::Error) -> SiteError {
    let mut start = err.span().map(|s| s.start).unwrap_or(0).min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = text[line_start..start].chars().count() + 1;
    let line_text = text[line_start..].lines().next().unwrap_or("");
    let key = key_on_line(line_text);
    SiteError::Parse {
        path: path.to_owned(),
        line,
        column,
        key,
        message: err.message().to_owned(),
    }
}

/// The key a TOML line defines: `name` of `name = value`, or the header of
/// `[table]` / `[[array]]`.
fn key_on_line(line: &str) -> String {
    let line = line.trim();
    if line.starts_with('[') {
        return line
            .trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_owned();
    }
    match line.split_once('=') {
        Some((key, _)) => key.trim().to_owned(),
        None => line.to_owned(),
    }
}

pub(super) struct Validator<'a> {
    pub(super) path: &'a Path,
}

impl Validator<'_> {
    fn invalid(&self, key: impl Into<String>, why: impl Into<String>) -> SiteError {
        SiteError::Invalid {
            path: self.path.to_owned(),
            key: key.into(),
            why: why.into(),
        }
    }

    pub(super) fn server(&self, config: &SiteConfig) -> Result<(), SiteError> {
        let url = &config.server.http_base_url;
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(self.invalid(
                "server.http-base-url",
                format!("{url:?} is not an http:// or https:// URL"),
            ));
        }
        if url.len() > MAX_BASE_URL_LEN {
            return Err(self.invalid(
                "server.http-base-url",
                format!("longer than {MAX_BASE_URL_LEN} bytes: boot URLs must fit a DHCP reply"),
            ));
        }
        if config.interfaces.is_empty() {
            return Err(self.invalid("interface", "no [[interface]] to serve on"));
        }
        let boot = &config.boot;
        let files = [
            ("boot.bios", Some(&boot.bios)),
            ("boot.uefi-x64", Some(&boot.uefi_x64)),
        ];
        let arm = [("boot.uefi-arm64", boot.uefi_arm64.as_ref())];
        for (key, file) in files.into_iter().chain(arm) {
            if let Some(file) = file {
                self.boot_file(key, file)?;
            }
        }
        if let Err(e) = config.tftp.validate() {
            return Err(self.invalid(format!("tftp.{}", e.key), e.to_string()));
        }
        if let Err((key, why)) = config.http.validate() {
            return Err(self.invalid(format!("http.{key}"), why));
        }
        let dhcp = &config.dhcp;
        if dhcp.mode == DhcpMode::Authoritative && dhcp.lease_time < 60 {
            return Err(self.invalid("dhcp.lease-time", "shorter than 60 seconds"));
        }
        if dhcp.mode == DhcpMode::Proxy && (!dhcp.dns.is_empty() || dhcp.domain.is_some()) {
            return Err(self.invalid(
                "dhcp",
                "dns and domain are for authoritative mode; in proxy mode the site's DHCP server hands them out",
            ));
        }
        Ok(())
    }

    fn boot_file(&self, key: &str, file: &str) -> Result<(), SiteError> {
        if file.is_empty() || file.len() > MAX_BOOT_FILE_LEN {
            return Err(self.invalid(
                key,
                format!("boot file name must be 1 to {MAX_BOOT_FILE_LEN} bytes"),
            ));
        }
        if file.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(self.invalid(
                key,
                format!("boot file name {file:?} has spaces or control characters"),
            ));
        }
        Ok(())
    }

    pub(super) fn subnets(&self, config: &SiteConfig) -> Result<Vec<Subnet>, SiteError> {
        let proxy = config.dhcp.mode == DhcpMode::Proxy;
        let mut subnets: Vec<Subnet> = Vec::new();
        for iface in &config.interfaces {
            let key = format!("interface.{}", iface.name);
            if iface.name.is_empty() || iface.name.len() > 15 {
                return Err(self.invalid(key, "interface names are 1 to 15 bytes (IFNAMSIZ)"));
            }
            if subnets
                .iter()
                .any(|s| s.label == format!("interface {}", iface.name))
            {
                return Err(self.invalid(key, "interface listed twice"));
            }
            if iface.address.prefix > 30 || !iface.address.contains_host(iface.address.addr) {
                return Err(self.invalid(
                    format!("{key}.address"),
                    format!(
                        "{} is not a host address of a subnet of /30 or larger",
                        iface.address
                    ),
                ));
            }
            subnets.push(Subnet {
                net: iface.address,
                router: iface.router,
                pool: iface.pool,
                label: format!("interface {}", iface.name),
            });
        }
        for relay in &config.relays {
            let net = Ipv4Net {
                addr: relay.subnet.network(),
                prefix: relay.subnet.prefix,
            };
            subnets.push(Subnet {
                net,
                router: relay.router,
                pool: relay.pool,
                label: format!("relay {net}"),
            });
        }
        for (i, s) in subnets.iter().enumerate() {
            let key = s.label.replace(' ', ".");
            if let Some(other) = subnets[..i].iter().find(|o| o.net.overlaps(&s.net)) {
                return Err(self.invalid(key, format!("subnet {} overlaps {}", s.net, other.label)));
            }
            if proxy && (s.router.is_some() || s.pool.is_some()) {
                return Err(self.invalid(
                    key,
                    "router and pool are for authoritative mode; a proxy hands out no addresses",
                ));
            }
            if let Some(router) = s.router
                && !s.net.contains_host(router)
            {
                return Err(self.invalid(
                    format!("{key}.router"),
                    format!("{router} is outside {}", s.net),
                ));
            }
            if let Some(pool) = s.pool {
                if u32::from(pool.start) > u32::from(pool.end) {
                    return Err(self.invalid(format!("{key}.pool"), "start is after end"));
                }
                if !s.net.contains_host(pool.start) || !s.net.contains_host(pool.end) {
                    return Err(self.invalid(
                        format!("{key}.pool"),
                        format!(
                            "{}-{} is not inside the host range of {}",
                            pool.start, pool.end, s.net
                        ),
                    ));
                }
            }
        }
        Ok(subnets)
    }

    #[allow(clippy::type_complexity)]
    pub(super) fn nodes(
        &self,
        config: &SiteConfig,
        subnets: &[Subnet],
    ) -> Result<(HashMap<MacAddr, Node>, HashMap<Ipv4Addr, MacAddr>), SiteError> {
        let mut by_mac: HashMap<MacAddr, Node> = HashMap::new();
        let mut by_ip: HashMap<Ipv4Addr, MacAddr> = HashMap::new();
        let mut by_name: HashMap<&str, MacAddr> = HashMap::new();
        let server_addrs: Vec<Ipv4Addr> =
            config.interfaces.iter().map(|i| i.address.addr).collect();
        for (name, profile) in &config.profiles {
            if profile.boot_chain == crate::attest::service::BootChain::Bios
                && profile.secure_boot == Some(true)
            {
                return Err(self.invalid(
                    format!("profile.{name}.secure-boot"),
                    "a boot-chain = \"bios\" node has no UEFI Secure Boot to show; \
                     remove secure-boot or use boot-chain = \"uki\"",
                ));
            }
        }
        for rack in &config.racks {
            for node in &rack.nodes {
                let name = node.hostname.as_str();
                if name.is_empty() || name.len() > 63 || !name.bytes().all(is_hostname_byte) {
                    return Err(self.invalid(
                        format!("rack.{}.node.{name}", rack.name),
                        "hostname must be 1 to 63 letters, digits, '-' or '.'",
                    ));
                }
                if let Some(first) = by_mac.get(&node.mac) {
                    return Err(SiteError::DuplicateMac {
                        path: self.path.to_owned(),
                        mac: node.mac,
                        first: first.name().to_owned(),
                        second: name.to_owned(),
                    });
                }
                if let Some(first) = by_name.insert(name, node.mac) {
                    return Err(SiteError::DuplicateHostname {
                        path: self.path.to_owned(),
                        hostname: name.to_owned(),
                        first,
                        second: node.mac,
                    });
                }
                if let Some(profile) = &node.profile
                    && !config.profiles.contains_key(profile)
                {
                    return Err(self.invalid(
                        format!("rack.{}.node.{name}.profile", rack.name),
                        format!(
                            "names profile {profile:?}, which no [profile.{profile}] table defines"
                        ),
                    ));
                }
                if let Some(file) = &node.boot_file {
                    self.boot_file(&format!("node {name}: boot-file"), file)?;
                }
                if let Some(ip) = node.ip {
                    self.reservation(config, subnets, &server_addrs, name, ip)?;
                    if let Some(first) = by_ip.get(&ip) {
                        return Err(SiteError::DuplicateIp {
                            path: self.path.to_owned(),
                            ip,
                            first: by_mac[first].name().to_owned(),
                            second: name.to_owned(),
                        });
                    }
                    by_ip.insert(ip, node.mac);
                }
                by_mac.insert(
                    node.mac,
                    Node {
                        rack: rack.name.clone(),
                        config: node.clone(),
                    },
                );
            }
        }
        Ok((by_mac, by_ip))
    }

    fn reservation(
        &self,
        config: &SiteConfig,
        subnets: &[Subnet],
        server_addrs: &[Ipv4Addr],
        node: &str,
        ip: Ipv4Addr,
    ) -> Result<(), SiteError> {
        let bad = |why| SiteError::BadReservation {
            path: self.path.to_owned(),
            node: node.to_owned(),
            ip,
            why,
        };
        if config.dhcp.mode == DhcpMode::Proxy {
            return Err(bad(
                "is set, but a proxy hands out no addresses (remove it, or use authoritative mode)",
            ));
        }
        let Some(subnet) = subnets.iter().find(|s| s.net.contains(ip)) else {
            return Err(bad(
                "is outside every served subnet (interfaces and relays)",
            ));
        };
        if !subnet.net.contains_host(ip) {
            return Err(bad("is the network or broadcast address of its subnet"));
        }
        if server_addrs.contains(&ip) {
            return Err(bad("is this server's own address"));
        }
        if subnet.router == Some(ip) {
            return Err(bad("is the subnet's router"));
        }
        Ok(())
    }

    pub(super) fn pools(
        &self,
        subnets: &[Subnet],
        by_mac: &HashMap<MacAddr, Node>,
        by_ip: &HashMap<Ipv4Addr, MacAddr>,
    ) -> Result<(), SiteError> {
        for s in subnets {
            let Some(pool) = s.pool else { continue };
            // Report the lowest conflicting address so the message is stable.
            let conflict = by_ip
                .iter()
                .filter(|(ip, _)| pool.contains(**ip))
                .min_by_key(|(ip, _)| **ip);
            if let Some((ip, mac)) = conflict {
                return Err(SiteError::PoolOverlapsReservation {
                    path: self.path.to_owned(),
                    owner: s.label.clone(),
                    start: pool.start,
                    end: pool.end,
                    ip: *ip,
                    node: by_mac[mac].name().to_owned(),
                });
            }
            if pool.contains(s.net.addr) && s.label.starts_with("interface") {
                return Err(self.invalid(
                    format!("{}.pool", s.label.replace(' ', ".")),
                    format!("contains this server's address {}", s.net.addr),
                ));
            }
            if let Some(router) = s.router.filter(|r| pool.contains(*r)) {
                return Err(self.invalid(
                    format!("{}.pool", s.label.replace(' ', ".")),
                    format!("contains the router {router}"),
                ));
            }
        }
        Ok(())
    }
}

fn is_hostname_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.'
}
