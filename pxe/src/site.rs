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
//! ipxe-deb = "/srv/mirror/pool/main/i/ipxe/ipxe_1.0.0+git-20190125.36a4c85-5.1_all.deb"
//!
//! [tftp]                              # see net::tftp::TftpConfig
//! max-sessions = 512
//!
//! [http]                              # see net::http::HttpConfig
//! memory-cache-bytes = 268435456
//!
//! [attest]                            # see site::AttestSettings
//! ek-roots = ["/etc/ironrack/ek-ca/vendor-root.pem"]
//!
//! [[rack]]
//! name = "r01"
//! [[rack.node]]
//! mac = "52:54:00:00:01:01"
//! hostname = "gpu-r01-n01"
//! ip = "198.18.0.11"
//! image = "gpu-node"
//! profile = "h100x8"
//! # version = 3                       # pin; a rollback also needs force-version = true
//! ```

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::net::http::HttpConfig;
use crate::net::tftp::TftpConfig;

/// The longest `http-base-url` accepted: the boot file name field of a DHCP
/// reply holds 128 bytes, and `/boot/<mac>.ipxe` or `/ipxe/<file>` must fit
/// after the base.
pub const MAX_BASE_URL_LEN: usize = 80;
/// The longest first-stage boot file name accepted (the DHCP `file` field is
/// 128 bytes with a terminating NUL, and the HTTP form adds `/ipxe/`).
pub const MAX_BOOT_FILE_LEN: usize = 40;

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
    /// TFTP server settings (`[tftp]`); every key has a default.
    #[serde(default)]
    pub tftp: TftpConfig,
    /// HTTP server settings (`[http]`); every key has a default.
    #[serde(default)]
    pub http: HttpConfig,
    /// The attestation service (`[attest]`); every key has a default.
    #[serde(default)]
    pub attest: AttestSettings,
    /// Hardware profiles nodes name with `profile = "NAME"`.
    #[serde(default, rename = "profile")]
    pub profiles: std::collections::BTreeMap<String, ProfileConfig>,
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
    /// The state database (inventory, boot timelines, leases), relative to
    /// the site file. Default `/var/lib/ironrack/state.db`.
    #[serde(default = "default_database")]
    pub database: PathBuf,
}

fn default_database() -> PathBuf {
    PathBuf::from("/var/lib/ironrack/state.db")
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
    /// operator approves it (`ironrack nodes approve MAC --image NAME`),
    /// after which it boots that image.
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
    /// The Debian `ipxe` package (.deb) the iPXE binaries are taken from,
    /// relative to the site file. Without it, no iPXE binary is served.
    #[serde(default)]
    pub ipxe_deb: Option<PathBuf>,
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
            ipxe_deb: None,
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

/// `[profile.NAME]`: what attestation checks a node of this profile
/// against.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProfileConfig {
    /// The NVIDIA PCI functions the node must show, counted by device id:
    /// `"8 x 0x2330"`, `"8 x 0x2330 + 4 x 0x22a3"` (NVSwitches count too),
    /// or `"none"`.
    pub gpus: Option<crate::attest::gpu::GpuProfile>,
    /// Whether the firmware must have Secure Boot on (PCR 7's
    /// `SecureBoot` variable); unchecked when absent.
    pub secure_boot: Option<bool>,
    /// `"uki"` (default: UEFI, iPXE then the image's UKI, all measured) or
    /// `"bios"` (legacy BIOS, kernel + initrd: the kernel and initramfs are
    /// not measured, so only the quote, the firmware log, the agent's PCR
    /// 15 and IMA are checked; see ARCHITECTURE.md).
    #[serde(default)]
    pub boot_chain: crate::attest::service::BootChain,
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
    /// Image name the node boots (resolved in the image store): the newest
    /// verified version unless `version` pins one.
    #[serde(default)]
    pub image: Option<String>,
    /// Pins the image version. A version lower than one already served to
    /// this node is refused (rollback) unless `force-version` is true.
    #[serde(default)]
    pub version: Option<u64>,
    /// Lets the operator roll this node back to `version` on purpose.
    #[serde(default)]
    pub force_version: bool,
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
    /// The text it was parsed from, for errors found after parsing.
    source: Option<std::sync::Arc<str>>,
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
        let config: SiteConfig =
            toml::from_str(text).map_err(|e| validate::parse_error(path, text, &e))?;
        Site::build(path, config, Some(text.into()))
    }

    /// Validates an already parsed configuration.
    pub fn from_config(path: &Path, config: SiteConfig) -> Result<Site, SiteError> {
        Site::build(path, config, None)
    }

    fn build(
        path: &Path,
        config: SiteConfig,
        source: Option<std::sync::Arc<str>>,
    ) -> Result<Site, SiteError> {
        let v = validate::Validator { path };
        v.server(&config)?;
        let subnets = v.subnets(&config)?;
        let (nodes_by_mac, mac_by_ip) = v.nodes(&config, &subnets)?;
        v.pools(&subnets, &nodes_by_mac, &mac_by_ip)?;
        let site = Site {
            path: path.to_owned(),
            config,
            source,
            nodes_by_mac,
            mac_by_ip,
            subnets,
        };
        site.config.attest.validate(&site)?;
        Ok(site)
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

    /// The TCP port of the HTTP base URL (80 when it names none).
    pub fn http_base_port(&self) -> u16 {
        let rest = self.http_base().split_once("://").map_or("", |(_, r)| r);
        let host = rest.split('/').next().unwrap_or("");
        host.rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .unwrap_or(80)
    }

    /// A path from the site file, relative to the file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        match self.path.parent() {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_owned(),
        }
    }

    /// The node named `name` (host name), if any rack lists it.
    pub fn node_by_name(&self, name: &str) -> Option<&Node> {
        self.nodes_by_mac.values().find(|n| n.name() == name)
    }

    /// The node an attestation id names: its MAC, else its host name.
    pub fn node_by_id(&self, id: &str) -> Option<&Node> {
        match id.parse::<MacAddr>() {
            Ok(mac) => self.node_by_mac(&mac),
            Err(_) => self.node_by_name(id),
        }
    }

    /// The version of `image` the operator pinned node `id` to with
    /// `force-version` (which allows a downgrade), if any.
    /// The profile node `id` names, if any.
    pub fn profile_of(&self, id: &str) -> Option<&ProfileConfig> {
        let name = self.node_by_id(id)?.config.profile.as_ref()?;
        self.config.profiles.get(name)
    }

    /// The GPUs node `id` must show: its profile's `gpus`, if any.
    pub fn gpu_profile(&self, id: &str) -> Option<crate::attest::gpu::GpuProfile> {
        self.profile_of(id)?.gpus.clone()
    }

    pub fn pinned_version(&self, id: &str, image: &str) -> Option<u64> {
        let config = &self.node_by_id(id)?.config;
        let same_image = config.image.as_deref().is_none_or(|i| i == image);
        (config.force_version && same_image)
            .then_some(config.version)
            .flatten()
    }
}

mod addr;
mod attest;
mod validate;

pub use addr::{Ipv4Net, MacAddr, MacParseError, NetParseError};
pub use attest::AttestSettings;

#[cfg(test)]
mod tests;
