//! `lab.json`: what a `lab up` started, so `lab status`, `lab logs` and
//! `lab down` (other processes, maybe after a crash) find it. Processes are
//! named by PID *and* start time, so a PID the kernel reused for something
//! else is never signalled.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::error::LabError;
use super::node::Firmware;

/// The state file's name in the lab directory.
pub const STATE_FILE: &str = "lab.json";

/// A process the lab started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Proc {
    /// Its PID.
    pub pid: u32,
    /// Its start time (clock ticks since boot, /proc/PID/stat field 22).
    pub start_time: u64,
    /// What it is (`qemu node-1`).
    pub what: String,
    /// Where its output goes.
    pub log: PathBuf,
}

impl Proc {
    /// Describes running process `pid`.
    pub fn of(pid: u32, what: &str, log: &Path) -> Result<Proc, LabError> {
        let (start_time, _) = stat(pid).ok_or_else(|| LabError::Exited {
            what: what.to_owned(),
            pid,
            log: log.to_owned(),
        })?;
        Ok(Proc {
            pid,
            start_time,
            what: what.to_owned(),
            log: log.to_owned(),
        })
    }

    /// Still running (not a zombie), and still the process we started.
    pub fn alive(&self) -> bool {
        stat(self.pid).is_some_and(|(start, state)| start == self.start_time && state != 'Z')
    }

    /// SIGTERM to its process group, SIGKILL after `grace`. Returns
    /// whether it had to be killed.
    pub fn stop(&self, grace: Duration) -> bool {
        if !self.alive() {
            return false;
        }
        let Ok(pid) = i32::try_from(self.pid) else {
            return false;
        };
        let pid = Pid::from_raw(pid);
        // Our processes lead their own group (see node::spawn).
        if killpg(pid, Signal::SIGTERM).is_err() {
            let _ = kill(pid, Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.alive() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if killpg(pid, Signal::SIGKILL).is_err() {
            let _ = kill(pid, Signal::SIGKILL);
        }
        true
    }
}

/// (start time, state) of `pid`, from /proc.
fn stat(pid: u32) -> Option<(u64, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after
    // the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Field 22 overall is the 20th after the name (fields 3.. → index 0..).
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state))
}

/// One node of the lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeState {
    /// Node name.
    pub name: String,
    /// MAC (`52:54:00:..`).
    pub mac: String,
    /// Firmware.
    pub firmware: Firmware,
    /// The serial console log.
    pub console: PathBuf,
    /// qemu.
    pub qemu: Proc,
    /// The node's swtpm (every node has one; absent in a lab.json of an
    /// older ironrack).
    pub swtpm: Option<Proc>,
}

/// Everything one `lab up` started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LabState {
    /// The network namespace.
    pub ns: String,
    /// The server's address in it.
    pub server_addr: Ipv4Addr,
    /// The image directory served.
    pub image: PathBuf,
    /// `ironrack serve`.
    pub server: Option<Proc>,
    /// The nodes.
    pub nodes: Vec<NodeState>,
}

impl LabState {
    /// Reads `DIR/lab.json`; `None` when no lab is up there.
    pub fn load(dir: &Path) -> Result<Option<LabState>, LabError> {
        let path = dir.join(STATE_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LabError::File { path, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| LabError::State { path, source })
    }

    /// Writes `DIR/lab.json` atomically (temp file, fsync, rename): a crash
    /// mid-write leaves the previous state, never half of one.
    pub fn save(&self, dir: &Path) -> Result<(), LabError> {
        let path = dir.join(STATE_FILE);
        let tmp = dir.join(format!(".{STATE_FILE}.tmp"));
        let io = |source| LabError::File {
            path: path.clone(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(self).map_err(|source| LabError::State {
            path: path.clone(),
            source,
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// Every process, nodes first (they talk to the server), server last.
    pub fn processes(&self) -> Vec<&Proc> {
        let mut out: Vec<&Proc> = Vec::new();
        for n in &self.nodes {
            out.push(&n.qemu);
            out.extend(n.swtpm.as_ref());
        }
        out.extend(self.server.as_ref());
        out
    }

    /// Stops everything and removes the namespace and the state file.
    /// Returns the processes that needed SIGKILL.
    pub fn down(&self, dir: &Path) -> Result<Vec<String>, LabError> {
        let mut killed = Vec::new();
        for p in self.processes() {
            if p.stop(Duration::from_secs(5)) {
                killed.push(p.what.clone());
            }
        }
        super::net::LabNet::destroy(&self.ns)?;
        let path = dir.join(STATE_FILE);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(killed),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(killed),
            Err(source) => Err(LabError::File { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_known_by_pid_and_start_time() {
        let me = Proc::of(std::process::id(), "test", Path::new("/dev/null")).unwrap();
        assert!(me.alive());
        let reused = Proc {
            start_time: me.start_time + 1,
            ..me.clone()
        };
        assert!(!reused.alive(), "another start time is another process");
    }

    #[test]
    fn stop_ends_a_child_and_state_round_trips() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep")
            .arg("600")
            .process_group(0)
            .spawn()
            .unwrap();
        let p = Proc::of(child.id(), "sleep", Path::new("/dev/null")).unwrap();
        assert!(p.alive());
        let dir = tempfile::tempdir().unwrap();
        let state = LabState {
            ns: "ironrack-none".into(),
            server_addr: "198.18.0.1".parse().unwrap(),
            image: PathBuf::from("out/x/1"),
            server: Some(p.clone()),
            nodes: Vec::new(),
        };
        state.save(dir.path()).unwrap();
        assert_eq!(LabState::load(dir.path()).unwrap(), Some(state.clone()));
        // sleep dies of SIGTERM at once: no SIGKILL needed.
        assert!(!p.stop(Duration::from_secs(5)));
        let _ = child.wait();
        assert!(!p.alive());
        state.down(dir.path()).unwrap();
        assert_eq!(LabState::load(dir.path()).unwrap(), None);
    }
}
