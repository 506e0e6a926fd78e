//! The site configuration, `site.toml`: where the PXE service serves, how it
//! hands out addresses, which images it may boot and which nodes it knows.
//!
//! Loading is two steps. [`SiteConfig`] is the file as written (serde,
//! `deny_unknown_fields`, kebab-case keys); a syntax or type error is
//! reported with the file, line, column and key. [`Site::load`] then checks
//! what serde cannot (duplicate MACs or addresses, reservations outside every
//! served subnet, pools overlapping reservations, ...) and builds the lookup
//! tables the servers use. A [`Site`] is immutable; a reload builds a new one
//! and swaps an `Arc`.
//!
//! ```toml
//! [server]
//! http-base-url = "http://198.18.0.1:8080"
//! unknown-nodes = "discover"          # ignore | discover | enroll
//!
//! [images]
//! dirs = ["/srv/ironrack/out"]
//! trust-root = "/etc/ironrack/trust.json"
//!
//! [dhcp]
//! mode = "authoritative"              # or "proxy"
//! lease-time = 3600
//! dns = ["198.18.0.1"]
//! domain = "rack.example"
//!
//! [[interface]]
//! name = "br0"
//! address = "198.18.0.1/24"
//! router = "198.18.0.1"
//! pool = { start = "198.18.0.100", end = "198.18.0.199" }
//!
//! [[relay]]                           # a routed rack behind a DHCP relay
//! subnet = "198.18.4.0/24"
//! router = "198.18.4.1"
//!
//! [boot]                              # first-stage iPXE binaries
//! bios = "undionly.kpxe"
//! uefi-x64 = "snponly.efi"
//!
//! [[rack]]
//! name = "r01"
//! [[rack.node]]
//! mac = "52:54:00:00:01:01"
//! hostname = "gpu-r01-n01"
//! ip = "198.18.0.11"
//! image = "gpu-node"
//! profile = "h100x8"
//! ```

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

/// The longest `http-base-url` accepted: the boot file name field of a DHCP
/// reply holds 128 bytes, and `/boot/<mac>.ipxe` or `/ipxe/<file>` must fit
/// after the base.
pub const MAX_BASE_URL_LEN: usize = 80;
/// The longest first-stage boot file name accepted (the DHCP `file` field is
/// 128 bytes with a terminating NUL, and the HTTP form adds `/ipxe/`).
pub const MAX_BOOT_FILE_LEN: usize = 40;

/// An Ethernet MAC address. Parsed from `aa:bb:cc:dd:ee:ff` or
/// `aa-bb-cc-dd-ee-ff` (any case); shown as lowercase with colons.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The form used in URLs (`/boot/<mac>.ipxe`): lowercase, hyphens, so
    /// no URL parser mistakes it for a port or a scheme.
    pub fn to_hyphenated(&self) -> String {
        let b = self.0;
        format!(
            "{:02x}-{:02x}-{:02x}-{:02x}-{:02x}-{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a MAC address did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex pairs separated by ':' or '-'")]
pub struct MacParseError(pub String);

impl FromStr for MacAddr {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_owned());
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for byte in &mut out {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An IPv4 address with a prefix length, e.g. `198.18.0.1/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    /// The address as written (an interface address keeps its host part).
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub prefix: u8,
}

impl Ipv4Net {
    /// The subnet mask, e.g. 255.255.255.0 for /24.
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask_bits())
    }

    fn mask_bits(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask_bits())
    }

    /// The directed broadcast address of the subnet.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask_bits())
    }

    /// Whether `ip` lies in this subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask_bits() == u32::from(self.network())
    }

    /// Whether `ip` is a usable host address of this subnet (not the
    /// network or broadcast address, for prefixes that have them).
    pub fn contains_host(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && (self.prefix >= 31 || (ip != self.network() && ip != self.broadcast()))
    }

    fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why an `a.b.c.d/n` string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IPv4 prefix {0:?}: expected a.b.c.d/n with n from 0 to 32")]
pub struct NetParseError(pub String);

impl FromStr for Ipv4Net {
    type Err = NetParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || NetParseError(s.to_owned());
        let (addr, prefix) = s.split_once('/').ok_or_else(err)?;
        let addr = addr.parse().map_err(|_| err())?;
        let prefix: u8 = prefix.parse().map_err(|_| err())?;
        if prefix > 32 {
            return Err(err());
        }
        Ok(Ipv4Net { addr, prefix })
    }
}

impl<'de> Deserialize<'de> for Ipv4Net {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `site.toml` as written. See the module documentation for an example.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SiteConfig {
    /// Service-wide settings.
    pub server: ServerConfig,
    /// The image store and its trust root.
    pub images: ImagesConfig,
    /// DHCP mode and the options handed to clients.
    pub dhcp: DhcpConfig,
    /// Interfaces to serve on (`[[interface]]`), each with its own subnet.
    #[serde(rename = "interface")]
    pub interfaces: Vec<InterfaceConfig>,
    /// Routed subnets reached through DHCP relay agents (`[[relay]]`).
    #[serde(default, rename = "relay")]
    pub relays: Vec<RelayConfig>,
    /// First-stage iPXE binaries per firmware.
    #[serde(default)]
    pub boot: BootFiles,
    /// Racks and their nodes (`[[rack]]`, `[[rack.node]]`).
    #[serde(default, rename = "rack")]
    pub racks: Vec<RackConfig>,
    /// Reserved for the TFTP server's settings; that part defines the fields.
    #[serde(default)]
    pub tftp: Option<toml::Table>,
    /// Reserved for the HTTP server's settings; that part defines the fields.
    #[serde(default)]
    pub http: Option<toml::Table>,
    /// Reserved for the attestation service's settings (profiles, CA roots);
    /// that part defines the fields.
    #[serde(default)]
    pub attestation: Option<toml::Table>,
}

/// `[server]`: settings every part of the service shares.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerConfig {
    /// Base URL the boot files are served from, e.g. `http://198.18.0.1:8080`
    /// (no trailing slash). iPXE scripts are `<base>/boot/<mac>.ipxe`; the
    /// iPXE binaries for UEFI HTTP boot are `<base>/ipxe/<file>`.
    pub http_base_url: String,
    /// What to do with a MAC no rack lists.
    #[serde(default)]
    pub unknown_nodes: UnknownNodePolicy,
}

/// `[images]`: where built images live and what must have signed them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImagesConfig {
    /// Directories of built images (`out/<name>/<version>/`).
    pub dirs: Vec<PathBuf>,
    /// The trust root (`trust.json`) manifests are verified against.
    pub trust_root: PathBuf,
}

/// What the service does with a MAC address that no rack lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownNodePolicy {
    /// No answer at all: another server (or nobody) deals with it.
    #[default]
    Ignore,
    /// An address from the pool and a boot into discovery.
    Discover,
    /// As discover, and the node is recorded as pending enrollment until an
    /// operator approves it.
    Enroll,
}

/// Whether this server hands out addresses or only boot information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DhcpMode {
    /// The only DHCP server on the served subnets: reservations, pools,
    /// leases.
    Authoritative,
    /// proxyDHCP beside an existing DHCP server: PXE boot options only, no
    /// addresses (PXE specification, ports 67 and 4011).
    Proxy,
}

/// `[dhcp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DhcpConfig {
    /// Authoritative or proxy.
    pub mode: DhcpMode,
    /// Lease time in seconds (authoritative mode). T1 and T2 are 1/2 and 7/8
    /// of it, as RFC 2131 suggests.
    #[serde(default = "default_lease_time")]
    pub lease_time: u32,
    /// DNS servers (option 6).
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// Domain name (option 15).
    #[serde(default)]
    pub domain: Option<String>,
}

fn default_lease_time() -> u32 {
    3600
}

/// An inclusive range of addresses handed to nodes that have no reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Pool {
    /// First address of the pool.
    pub start: Ipv4Addr,
    /// Last address of the pool (inclusive).
    pub end: Ipv4Addr,
}

impl Pool {
    /// Whether `ip` is in the pool.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(self.start)..=u32::from(self.end)).contains(&u32::from(ip))
    }

    /// Number of addresses in the pool.
    pub fn len(&self) -> u32 {
        u32::from(self.end).saturating_sub(u32::from(self.start)) + 1
    }

    /// Always false: a valid pool has at least one address.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `n`-th address of the pool (wrapping).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.start) + n % self.len())
    }
}

/// `[[interface]]`: a network interface the service answers on, and the
/// subnet directly attached to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct InterfaceConfig {
    /// Kernel interface name (`br0`, `eno1`).
    pub name: String,
    /// This server's address on it, with the subnet's prefix length. It is
    /// the DHCP server identifier and the TFTP next-server on this subnet.
    pub address: Ipv4Net,
    /// Default gateway handed to clients (option 3), authoritative mode.
    #[serde(default)]
    pub router: Option<Ipv4Addr>,
    /// Addresses for nodes without a reservation, authoritative mode.
    #[serde(default)]
    pub pool: Option<Pool>,
}

/// `[[relay]]`: a subnet behind a DHCP relay agent (routed racks). Relayed
/// requests carry the relay's address (giaddr), which selects the subnet;
/// replies go to the relay's port 67.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RelayConfig {
    /// The relayed subnet; giaddr lies in it.
    pub subnet: Ipv4Net,
    /// Default gateway for that subnet (authoritative mode).
    #[serde(default)]
    pub router: Option<Ipv4Addr>,
    /// Addresses for nodes without a reservation (authoritative mode).
    #[serde(default)]
    pub pool: Option<Pool>,
}

/// `[boot]`: the first-stage iPXE binaries, by firmware. Names are paths
/// relative to the TFTP root (and to `<http-base-url>/ipxe/` for UEFI HTTP
/// boot).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BootFiles {
    /// Legacy BIOS PXE (option 93 = 0).
    #[serde(default = "default_bios")]
    pub bios: String,
    /// x86 UEFI (option 93 = 6, 7, 9) and x86-64 UEFI HTTP boot (16).
    /// `ipxe.efi` is the fallback for NICs whose UEFI driver lacks SNP.
    #[serde(default = "default_uefi_x64")]
    pub uefi_x64: String,
    /// arm64 UEFI (11) and arm64 UEFI HTTP boot (19), when the mirror has an
    /// arm64 iPXE; without it such clients get no answer.
    #[serde(default)]
    pub uefi_arm64: Option<String>,
}

fn default_bios() -> String {
    "undionly.kpxe".into()
}

fn default_uefi_x64() -> String {
    "snponly.efi".into()
}

impl Default for BootFiles {
    fn default() -> Self {
        BootFiles {
            bios: default_bios(),
            uefi_x64: default_uefi_x64(),
            uefi_arm64: None,
        }
    }
}

/// `[[rack]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RackConfig {
    /// Rack name, shown in inventories.
    pub name: String,
    /// The rack's nodes (`[[rack.node]]`).
    #[serde(default, rename = "node")]
    pub nodes: Vec<NodeConfig>,
}

/// `[[rack.node]]`: one machine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeConfig {
    /// The boot NIC's MAC address: the node's identity on the wire.
    pub mac: MacAddr,
    /// Host name (option 12), unique in the site.
    pub hostname: String,
    /// Reserved address (authoritative mode); without one the node gets a
    /// pool address.
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    /// Image name the node boots (resolved in the image store).
    #[serde(default)]
    pub image: Option<String>,
    /// Hardware profile the attestation checks the node against.
    #[serde(default)]
    pub profile: Option<String>,
    /// First-stage boot file for this node instead of `[boot]`'s choice
    /// (e.g. `ipxe.efi` for a NIC without SNP).
    #[serde(default)]
    pub boot_file: Option<String>,
}

/// Everything that can be wrong with a site file.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// The file could not be read.
    #[error("reading site config {path}: {source}")]
    Read {
        /// The site file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, or a value of the wrong type.
    #[error("{path}:{line}:{column}: key `{key}`: {message}")]
    Parse {
        /// The site file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The key (or table header) on that line.
        key: String,
        /// What the TOML parser said.
        message: String,
    },
    /// Two nodes share a MAC address.
    #[error("{path}: node {second}: MAC {mac} is already used by node {first}")]
    DuplicateMac {
        /// The site file.
        path: PathBuf,
        /// The MAC.
        mac: MacAddr,
        /// Node listed first.
        first: String,
        /// Node listed second.
        second: String,
    },
    /// Two nodes share an address.
    #[error("{path}: node {second}: ip {ip} is already reserved for node {first}")]
    DuplicateIp {
        /// The site file.
        path: PathBuf,
        /// The address.
        ip: Ipv4Addr,
        /// Node listed first.
        first: String,
        /// Node listed second.
        second: String,
    },
    /// Two nodes share a host name.
    #[error("{path}: node {hostname} is listed twice (MACs {first} and {second})")]
    DuplicateHostname {
        /// The site file.
        path: PathBuf,
        /// The host name.
        hostname: String,
        /// MAC of the first.
        first: MacAddr,
        /// MAC of the second.
        second: MacAddr,
    },
    /// A reservation that no served subnet contains, or that is a network,
    /// broadcast, server or router address.
    #[error("{path}: node {node}: ip {ip} {why}")]
    BadReservation {
        /// The site file.
        path: PathBuf,
        /// Host name of the node.
        node: String,
        /// The reserved address.
        ip: Ipv4Addr,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A pool that contains a node's reservation.
    #[error("{path}: {owner}: pool {start}-{end} contains ip {ip} reserved for node {node}")]
    PoolOverlapsReservation {
        /// The site file.
        path: PathBuf,
        /// Which subnet's pool (`interface br0` or `relay 198.18.4.0/24`).
        owner: String,
        /// Pool start.
        start: Ipv4Addr,
        /// Pool end.
        end: Ipv4Addr,
        /// The reserved address.
        ip: Ipv4Addr,
        /// The node holding the reservation.
        node: String,
    },
    /// A setting that is invalid on its own or for the DHCP mode.
    #[error("{path}: {key}: {why}")]
    Invalid {
        /// The site file.
        path: PathBuf,
        /// Dotted key of the setting (`interface.br0.pool`).
        key: String,
        /// What is wrong.
        why: String,
    },
}

/// A served subnet: directly attached to an interface, or behind a relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    /// The subnet (address part is the server's address for interfaces,
    /// the network address for relays).
    pub net: Ipv4Net,
    /// Default gateway for clients.
    pub router: Option<Ipv4Addr>,
    /// Dynamic pool.
    pub pool: Option<Pool>,
    /// `interface <name>` or `relay <subnet>`, for messages.
    pub label: String,
}

/// A node as the servers see it: its configuration plus its rack.
#[derive(Debug, Clone)]
pub struct Node {
    /// The rack it is listed in.
    pub rack: String,
    /// Its `[[rack.node]]` entry.
    pub config: NodeConfig,
}

impl Node {
    /// The node's host name (its name everywhere in ironrack).
    pub fn name(&self) -> &str {
        &self.config.hostname
    }
}

/// A validated site: the configuration plus lookup tables. Immutable; a
/// reload builds a new one.
#[derive(Debug, Clone)]
pub struct Site {
    /// The file it was loaded from.
    pub path: PathBuf,
    /// The configuration as written.
    pub config: SiteConfig,
    nodes_by_mac: HashMap<MacAddr, Node>,
    mac_by_ip: HashMap<Ipv4Addr, MacAddr>,
    subnets: Vec<Subnet>,
}

impl Site {
    /// Reads, parses and validates a site file.
    pub fn load(path: &Path) -> Result<Site, SiteError> {
        let text = std::fs::read_to_string(path).map_err(|source| SiteError::Read {
            path: path.to_owned(),
            source,
        })?;
        Site::from_toml(path, &text)
    }

    /// Parses and validates site TOML; `path` is only used in messages.
    pub fn from_toml(path: &Path, text: &str) -> Result<Site, SiteError> {
        let config: SiteConfig = toml::from_str(text).map_err(|e| parse_error(path, text, &e))?;
        Site::from_config(path, config)
    }

    /// Validates an already parsed configuration.
    pub fn from_config(path: &Path, config: SiteConfig) -> Result<Site, SiteError> {
        let v = Validator { path };
        v.server(&config)?;
        let subnets = v.subnets(&config)?;
        let (nodes_by_mac, mac_by_ip) = v.nodes(&config, &subnets)?;
        v.pools(&subnets, &nodes_by_mac, &mac_by_ip)?;
        Ok(Site {
            path: path.to_owned(),
            config,
            nodes_by_mac,
            mac_by_ip,
            subnets,
        })
    }

    /// The node with this MAC, if any rack lists it.
    pub fn node_by_mac(&self, mac: &MacAddr) -> Option<&Node> {
        self.nodes_by_mac.get(mac)
    }

    /// The MAC holding a reservation for `ip`, if any.
    pub fn reservation_holder(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        self.mac_by_ip.get(&ip).copied()
    }

    /// All nodes, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes_by_mac.values()
    }

    /// The served subnets: interfaces first (in file order), then relays.
    pub fn subnets(&self) -> &[Subnet] {
        &self.subnets
    }

    /// The subnet attached to interface `name`.
    pub fn interface_subnet(&self, name: &str) -> Option<&Subnet> {
        let idx = self.config.interfaces.iter().position(|i| i.name == name)?;
        self.subnets.get(idx)
    }

    /// The relayed subnet containing `giaddr`.
    pub fn relay_subnet(&self, giaddr: Ipv4Addr) -> Option<&Subnet> {
        self.subnets[self.config.interfaces.len()..]
            .iter()
            .find(|s| s.net.contains(giaddr))
    }

    /// The DHCP mode.
    pub fn mode(&self) -> DhcpMode {
        self.config.dhcp.mode
    }

    /// The HTTP base URL without a trailing slash.
    pub fn http_base(&self) -> &str {
        self.config.server.http_base_url.trim_end_matches('/')
    }
}

fn parse_error(path: &Path, text: &str, err: &toml::de::Error) -> SiteError {
    let start = err.span().map(|s| s.start).unwrap_or(0).min(text.len());
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

struct Validator<'a> {
    path: &'a Path,
}

impl Validator<'_> {
    fn invalid(&self, key: impl Into<String>, why: impl Into<String>) -> SiteError {
        SiteError::Invalid {
            path: self.path.to_owned(),
            key: key.into(),
            why: why.into(),
        }
    }

    fn server(&self, config: &SiteConfig) -> Result<(), SiteError> {
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

    fn subnets(&self, config: &SiteConfig) -> Result<Vec<Subnet>, SiteError> {
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
    fn nodes(
        &self,
        config: &SiteConfig,
        subnets: &[Subnet],
    ) -> Result<(HashMap<MacAddr, Node>, HashMap<Ipv4Addr, MacAddr>), SiteError> {
        let mut by_mac: HashMap<MacAddr, Node> = HashMap::new();
        let mut by_ip: HashMap<Ipv4Addr, MacAddr> = HashMap::new();
        let mut by_name: HashMap<&str, MacAddr> = HashMap::new();
        let server_addrs: Vec<Ipv4Addr> =
            config.interfaces.iter().map(|i| i.address.addr).collect();
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

    fn pools(
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

#[cfg(test)]
mod tests;
