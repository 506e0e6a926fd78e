//! The lab's network: one namespace, one bridge with the server's address,
//! one tap per node. Removing the namespace removes all of it.

use std::net::Ipv4Addr;
use std::process::Command;

use super::error::LabError;

/// The bridge's name inside the namespace.
pub const BRIDGE: &str = "br0";

/// A lab network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabNet {
    /// The namespace name.
    pub ns: String,
    /// The server's address on the bridge (x.y.z.1).
    pub server: Ipv4Addr,
    /// The prefix length (24).
    pub prefix: u8,
}

/// Is `addr` inside 198.18.0.0/15?
pub fn in_lab_range(addr: Ipv4Addr) -> bool {
    let o = addr.octets();
    o[0] == 198 && (o[1] == 18 || o[1] == 19)
}

impl LabNet {
    /// Creates namespace `ns` with a bridge at `server`/24 (which must be in
    /// 198.18.0.0/15), loopback up, forwarding off.
    pub fn create(ns: &str, server: Ipv4Addr) -> Result<LabNet, LabError> {
        check_name(ns)?;
        if !in_lab_range(server) {
            return Err(LabError::Config {
                what: server.to_string(),
                why: "lab addresses must be in 198.18.0.0/15",
            });
        }
        which("ip", "iproute2")?;
        run(Command::new("ip").args(["netns", "add", ns]))?;
        let net = LabNet {
            ns: ns.to_owned(),
            server,
            prefix: 24,
        };
        let setup = || -> Result<(), LabError> {
            net.ip(&["link", "set", "lo", "up"])?;
            net.ip(&["link", "add", BRIDGE, "type", "bridge"])?;
            // Forward at once: no STP listening delay before DHCP works.
            net.ip(&[
                "link",
                "set",
                BRIDGE,
                "type",
                "bridge",
                "forward_delay",
                "0",
            ])?;
            net.ip(&[
                "addr",
                "add",
                &format!("{server}/{}", net.prefix),
                "dev",
                BRIDGE,
            ])?;
            net.ip(&["link", "set", BRIDGE, "up"])
        };
        if let Err(e) = setup() {
            let _ = Self::destroy(ns);
            return Err(e);
        }
        Ok(net)
    }

    /// Adds a tap (for a qemu node) to the bridge.
    pub fn add_tap(&self, tap: &str) -> Result<(), LabError> {
        check_name(tap)?;
        self.ip(&["tuntap", "add", "dev", tap, "mode", "tap"])?;
        self.ip(&["link", "set", tap, "master", BRIDGE])?;
        self.ip(&["link", "set", tap, "up"])
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, program]);
        c
    }

    /// `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<(), LabError> {
        run(Command::new("ip").args(["-n", &self.ns]).args(args))
    }

    /// Does namespace `ns` exist?
    pub fn exists(ns: &str) -> bool {
        std::path::Path::new("/run/netns").join(ns).exists()
    }

    /// Removes namespace `ns` (and with it the bridge and taps). Absent is
    /// fine: `lab down` is idempotent.
    pub fn destroy(ns: &str) -> Result<(), LabError> {
        if !Self::exists(ns) {
            return Ok(());
        }
        run(Command::new("ip").args(["netns", "del", ns]))
    }
}

/// Names go to `ip` and the file system: keep them plain.
fn check_name(name: &str) -> Result<(), LabError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(LabError::Config {
            what: name.to_owned(),
            why: "names are 1-15 letters, digits, - or _",
        })
    }
}

/// Runs a command, turning failure into an error with its stderr.
pub fn run(cmd: &mut Command) -> Result<(), LabError> {
    let line = format!("{cmd:?}");
    let out = cmd.output().map_err(|source| LabError::Spawn {
        command: line.clone(),
        source,
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::Command {
            command: line,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Fails with the package to install when `tool` is not on PATH.
pub fn which(tool: &'static str, package: &'static str) -> Result<(), LabError> {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
    if found {
        Ok(())
    } else {
        Err(LabError::Missing { tool, package })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_benchmarking_range() {
        assert!(in_lab_range("198.18.0.1".parse().unwrap()));
        assert!(in_lab_range("198.19.255.254".parse().unwrap()));
        assert!(!in_lab_range("198.20.0.1".parse().unwrap()));
        assert!(!in_lab_range("10.0.0.1".parse().unwrap()));
        assert!(check_name("lab-0").is_ok());
        assert!(check_name("a/b").is_err());
        assert!(check_name("much-too-long-name").is_err());
    }
}
