//! The boot NIC: which one, link up, and a DHCP lease from busybox
//! `udhcpc` with the builder's event script (which configures address and
//! route with busybox `ip` and leaves the lease in
//! [`DHCP_LEASE_PATH`](ironrack_builder::boot::initramfs::DHCP_LEASE_PATH)).
//!
//! The NIC is the one `BOOTIF=` names when iPXE passed it (the interface
//! the node booted from: a server with four ports must not ask on the
//! wrong one), else the first Ethernet interface, by name, with carrier.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::init::Console;
use super::retry::Failure;

/// A network interface as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// Kernel name (`ens3`, `eth0`).
    pub name: String,
    /// Hardware address.
    pub mac: [u8; 6],
    /// Whether the link is up with a peer (`carrier` is 1).
    pub carrier: bool,
}

/// Why the network did not come up.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// sysfs could not be read.
    #[error("reading {path}")]
    Sysfs {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `BOOTIF=` names a MAC no interface has.
    #[error("BOOTIF names {mac}, which no Ethernet interface has (seen: {seen})")]
    BootIfMissing {
        /// The MAC.
        mac: String,
        /// The interfaces seen, `name=mac`.
        seen: String,
    },
    /// `BOOTIF=` is not a MAC.
    #[error("BOOTIF={value:?} is not 01-aa-bb-cc-dd-ee-ff")]
    BootIfInvalid {
        /// The value.
        value: String,
    },
    /// No Ethernet interface has carrier.
    #[error("no Ethernet interface has a link (seen: {seen})")]
    NoCarrier {
        /// The interfaces seen, `name=mac carrier`.
        seen: String,
    },
    /// A helper program could not run.
    #[error("running {program}")]
    Spawn {
        /// The program.
        program: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A helper program failed.
    #[error("{program} failed ({status}): {output}")]
    Helper {
        /// The command line.
        program: String,
        /// Its exit status.
        status: String,
        /// The end of what it printed.
        output: String,
    },
    /// udhcpc ended without the script recording a lease.
    #[error("udhcpc on {interface} got no lease ({lease} not written): {output}")]
    NoLease {
        /// The interface.
        interface: String,
        /// The lease file.
        lease: PathBuf,
        /// The end of what udhcpc printed.
        output: String,
    },
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    super::cmdline::bootif_mac(text.trim())
}

/// ARPHRD_ETHER: the `type` of Ethernet interfaces in sysfs.
const ARPHRD_ETHER: &str = "1";

/// The Ethernet interfaces under `sys_class_net` (`/sys/class/net`),
/// sorted by name; loopback, tunnels and the like are left out.
pub fn list_nics(sys_class_net: &Path) -> Result<Vec<Nic>, NetError> {
    let sysfs = |path: &Path| {
        let path = path.to_owned();
        move |source| NetError::Sysfs { path, source }
    };
    let mut nics = Vec::new();
    for entry in std::fs::read_dir(sys_class_net).map_err(sysfs(sys_class_net))? {
        let dir = entry.map_err(sysfs(sys_class_net))?.path();
        let read = |file: &str| std::fs::read_to_string(dir.join(file)).ok();
        if read("type").as_deref().map(str::trim) != Some(ARPHRD_ETHER) {
            continue;
        }
        let Some(mac) = read("address").as_deref().and_then(parse_mac) else {
            continue;
        };
        // Reading carrier fails (EINVAL) while the link is down.
        let carrier = read("carrier").as_deref().map(str::trim) == Some("1");
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        nics.push(Nic { name, mac, carrier });
    }
    nics.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(nics)
}

fn seen(nics: &[Nic]) -> String {
    if nics.is_empty() {
        return "none".into();
    }
    nics.iter()
        .map(|n| {
            format!(
                "{}={} {}",
                n.name,
                mac_text(&n.mac),
                if n.carrier { "link" } else { "no-link" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The boot NIC: `BOOTIF`'s (carrier or not: it is the one the node
/// booted from), else the first with carrier.
pub fn choose_nic<'a>(nics: &'a [Nic], bootif: Option<&str>) -> Result<&'a Nic, NetError> {
    if let Some(value) = bootif {
        let mac = parse_mac(value).ok_or_else(|| NetError::BootIfInvalid {
            value: value.to_owned(),
        })?;
        return nics
            .iter()
            .find(|n| n.mac == mac)
            .ok_or_else(|| NetError::BootIfMissing {
                mac: mac_text(&mac),
                seen: seen(nics),
            });
    }
    nics.iter()
        .find(|n| n.carrier)
        .ok_or_else(|| NetError::NoCarrier { seen: seen(nics) })
}

/// A lease as the udhcpc script recorded it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lease {
    /// The interface.
    pub interface: String,
    /// The address.
    pub ip: String,
    /// The prefix length.
    pub mask: String,
    /// Routers (the first is the default route).
    pub router: String,
    /// The DHCP server.
    pub server: String,
    /// The host name the server gave (option 12), if any.
    pub hostname: String,
}

impl Lease {
    /// Parses the `key=value` lines of the lease file.
    pub fn parse(text: &str) -> Lease {
        let mut lease = Lease::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().to_owned();
            match key {
                "interface" => lease.interface = value,
                "ip" => lease.ip = value,
                "mask" => lease.mask = value,
                "router" => lease.router = value,
                "server" => lease.server = value,
                "hostname" => lease.hostname = value,
                _ => {}
            }
        }
        lease
    }
}

impl std::fmt::Display for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} on {}", self.ip, self.mask, self.interface)?;
        if !self.router.is_empty() {
            write!(f, ", router {}", self.router)?;
        }
        if !self.hostname.is_empty() {
            write!(f, ", host name {}", self.hostname)?;
        }
        if !self.server.is_empty() {
            write!(f, ", from DHCP server {}", self.server)?;
        }
        Ok(())
    }
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let start = text.len().saturating_sub(400);
    let start = (start..=text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].replace('\n', " | ")
}

fn run(program: &str, args: &[&str]) -> Result<Vec<u8>, NetError> {
    let shown = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| NetError::Spawn {
            program: shown.clone(),
            source,
        })?;
    let mut text = out.stdout;
    text.extend_from_slice(&out.stderr);
    if !out.status.success() {
        return Err(NetError::Helper {
            program: shown,
            status: out.status.to_string(),
            output: tail(&text),
        });
    }
    Ok(text)
}

/// The helpers and files of the network step (the initramfs's by default).
#[derive(Debug, Clone)]
pub struct NetSetup {
    /// `/sys/class/net`.
    pub sys_class_net: PathBuf,
    /// The udhcpc event script.
    pub script: PathBuf,
    /// Where the script records the lease.
    pub lease: PathBuf,
}

impl NetSetup {
    /// The initramfs's paths under `root`.
    pub fn under(root: &Path) -> NetSetup {
        use ironrack_builder::boot::initramfs::{DHCP_LEASE_PATH, UDHCPC_SCRIPT_PATH};
        NetSetup {
            sys_class_net: root.join("sys/class/net"),
            script: root.join(UDHCPC_SCRIPT_PATH),
            lease: root.join(DHCP_LEASE_PATH),
        }
    }

    /// One attempt: every Ethernet link up, the boot NIC chosen, a lease
    /// from udhcpc (a few DISCOVERs of its own before it gives up).
    pub fn attempt<W: Write>(
        &self,
        console: &mut Console<W>,
        bootif: Option<&str>,
    ) -> Result<(Nic, Lease), Failure<NetError>> {
        let nics = list_nics(&self.sys_class_net).map_err(Failure::Retry)?;
        for nic in &nics {
            // Carrier only shows on a link that is up.
            run("ip", &["link", "set", "dev", &nic.name, "up"]).map_err(Failure::Retry)?;
        }
        let nics = list_nics(&self.sys_class_net).map_err(Failure::Retry)?;
        let nic = match choose_nic(&nics, bootif) {
            Ok(nic) => nic.clone(),
            Err(e @ NetError::BootIfInvalid { .. }) => return Err(Failure::Final(e)),
            Err(e) => return Err(Failure::Retry(e)),
        };
        console.line(format_args!(
            "DHCP on {} ({}{})",
            nic.name,
            mac_text(&nic.mac),
            if bootif.is_some() { ", BOOTIF" } else { "" }
        ));
        let _ = std::fs::remove_file(&self.lease);
        let script = self.script.display().to_string();
        // -f foreground, -q quit once bound, -n exit when no lease, -t 4
        // DISCOVERs 2 s apart; retries beyond that are the caller's.
        let output = run(
            "udhcpc",
            &[
                "-f", "-q", "-n", "-t", "4", "-T", "2", "-i", &nic.name, "-s", &script,
            ],
        )
        .map_err(Failure::Retry)?;
        let text = std::fs::read_to_string(&self.lease).map_err(|_| {
            Failure::Retry(NetError::NoLease {
                interface: nic.name.clone(),
                lease: self.lease.clone(),
                output: tail(&output),
            })
        })?;
        Ok((nic, Lease::parse(&text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sysfs(entries: &[(&str, &str, &str, Option<&str>)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, kind, mac, carrier) in entries {
            let d = dir.path().join(name);
            std::fs::create_dir(&d).unwrap();
            std::fs::write(d.join("type"), format!("{kind}\n")).unwrap();
            std::fs::write(d.join("address"), format!("{mac}\n")).unwrap();
            if let Some(c) = carrier {
                std::fs::write(d.join("carrier"), format!("{c}\n")).unwrap();
            }
        }
        dir
    }

    #[test]
    fn bootif_wins_else_the_first_with_carrier() {
        let dir = sysfs(&[
            ("lo", "772", "00:00:00:00:00:00", Some("1")),
            ("ens5", "1", "52:54:00:00:00:05", Some("1")),
            ("ens4", "1", "52:54:00:00:00:04", None),
            ("ens6", "1", "52:54:00:00:00:06", Some("1")),
            ("tun0", "65534", "00:00:00:00:00:00", Some("1")),
        ]);
        let nics = list_nics(dir.path()).unwrap();
        let names: Vec<&str> = nics.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["ens4", "ens5", "ens6"]);
        assert_eq!(choose_nic(&nics, None).unwrap().name, "ens5");
        // BOOTIF names the port the node booted from, link or not yet.
        let chosen = choose_nic(&nics, Some("01-52-54-00-00-00-04")).unwrap();
        assert_eq!(chosen.name, "ens4");
        let err = choose_nic(&nics, Some("01-52-54-00-00-00-09")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("52:54:00:00:00:09") && text.contains("ens6=52:54:00:00:00:06 link"),
            "{text}"
        );
        assert!(matches!(
            choose_nic(&nics, Some("eth0")),
            Err(NetError::BootIfInvalid { .. })
        ));
    }

    #[test]
    fn no_link_anywhere_names_what_was_seen() {
        let dir = sysfs(&[("eth0", "1", "52:54:00:00:00:01", Some("0"))]);
        let nics = list_nics(dir.path()).unwrap();
        let err = choose_nic(&nics, None).unwrap_err().to_string();
        assert_eq!(
            err,
            "no Ethernet interface has a link (seen: eth0=52:54:00:00:00:01 no-link)"
        );
        let empty = tempfile::tempdir().unwrap();
        let err = choose_nic(&list_nics(empty.path()).unwrap(), None).unwrap_err();
        assert!(err.to_string().contains("seen: none"), "{err}");
    }

    #[test]
    fn the_lease_the_script_writes() {
        let text = "interface=ens3\nip=198.18.0.100\nmask=24\nrouter=198.18.0.1\n\
                    dns=\nserver=198.18.0.1\nhostname=node-1\nlease-time=600\n";
        let lease = Lease::parse(text);
        assert_eq!(lease.hostname, "node-1");
        assert_eq!(
            lease.to_string(),
            "198.18.0.100/24 on ens3, router 198.18.0.1, host name node-1, from DHCP server 198.18.0.1"
        );
    }
}
