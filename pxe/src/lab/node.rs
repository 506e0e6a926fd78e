//! A qemu node of the lab: SeaBIOS with the NIC's iPXE ROM, or OVMF with
//! its own PXE/HTTP boot and a software TPM (swtpm, manufactured once per
//! node with an EK certificate from swtpm's local CA).

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::error::LabError;
use super::net::{LabNet, run, which};
use super::state::Proc;

/// OVMF's code (read-only, shared) and the template of its variable store.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// Copied per node: UEFI writes boot variables into it.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// A node's firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Firmware {
    /// OVMF (x86-64 UEFI) with a TPM.
    Uefi,
    /// SeaBIOS with a TPM; the NIC's option ROM is iPXE.
    Bios,
}

impl fmt::Display for Firmware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Firmware::Uefi => "uefi",
            Firmware::Bios => "bios",
        })
    }
}

/// One node to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Node name (also its directory under the lab dir).
    pub name: String,
    /// Its NIC's MAC.
    pub mac: [u8; 6],
    /// Firmware.
    pub firmware: Firmware,
    /// Memory in MiB (the stateless image lives in RAM).
    pub memory_mib: u32,
    /// The node's directory: console log, OVMF vars, TPM state.
    pub dir: PathBuf,
    /// Its tap in the lab namespace.
    pub tap: String,
    /// The lab's TPM vendor CA (see [`manufacture`]).
    pub ca: PathBuf,
}

/// The root certificate (PEM) of the TPM vendor CA in `ca`.
pub fn ca_root(ca: &Path) -> PathBuf {
    ca.join("swtpm-localca-rootca-cert.pem")
}

/// The intermediate that signs the EK certificates, in `ca`.
pub fn ca_intermediate(ca: &Path) -> PathBuf {
    ca.join("issuercert.pem")
}

/// Manufactures a TPM 2.0 state in `state` as a vendor would: EK and
/// platform certificates in NV (then locked), SHA-1 and SHA-256 banks,
/// the certificates signed by the CA kept in `ca` (made by
/// `swtpm_localca` on first use, shared by every TPM made with it), so a
/// server trusting [`ca_root`] enrolls the node without an operator.
pub fn manufacture(state: &Path, ca: &Path) -> Result<(), LabError> {
    which("swtpm_setup", "swtpm-tools")?;
    for dir in [state, ca] {
        std::fs::create_dir_all(dir).map_err(|source| LabError::File {
            path: dir.to_owned(),
            source,
        })?;
    }
    let write = |name: &str, text: String| {
        let path = ca.join(name);
        std::fs::write(&path, text).map_err(|source| LabError::File {
            path: path.clone(),
            source,
        })?;
        Ok::<_, LabError>(path)
    };
    let localca = write(
        "swtpm-localca.conf",
        format!(
            "statedir = {ca}\nsigningkey = {ca}/signkey.pem\nissuercert = {ca}/issuercert.pem\n\
             certserial = {ca}/certserial\n",
            ca = ca.display()
        ),
    )?;
    let options = write(
        "swtpm-localca.options",
        "--platform-manufacturer ironrack\n--platform-version 2.1\n--platform-model lab\n".into(),
    )?;
    let setup = write(
        "swtpm_setup.conf",
        format!(
            "create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = {}\n\
             create_certs_tool_options = {}\n",
            localca.display(),
            options.display()
        ),
    )?;
    run(std::process::Command::new("swtpm_setup")
        .args(["--tpm2", "--tpmstate"])
        .arg(state)
        .arg("--config")
        .arg(&setup)
        .args([
            "--create-ek-cert",
            "--create-platform-cert",
            "--lock-nvram",
            "--overwrite",
            "--pcr-banks",
            "sha1,sha256",
        ]))
}

/// `52:54:00:xx:xx:xx` spelling.
pub fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The processes of a started node.
#[derive(Debug, Clone)]
pub struct Started {
    /// qemu.
    pub qemu: Proc,
    /// Its swtpm.
    pub swtpm: Proc,
}

impl NodeConfig {
    /// The serial console log.
    pub fn console(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    fn tpm_state(&self) -> PathBuf {
        self.dir.join("tpm")
    }

    fn tpm_socket(&self) -> PathBuf {
        self.dir.join("swtpm.sock")
    }

    /// Makes the node's TPM once: EK (RSA and ECC) with certificates signed
    /// by swtpm's local CA, a platform certificate, NV locked, like a TPM
    /// from a vendor.
    pub fn manufacture_tpm(&self) -> Result<(), LabError> {
        let state = self.tpm_state();
        if state.join("tpm2-00.permall").is_file() {
            return Ok(());
        }
        manufacture(&state, &self.ca)
    }

    /// Starts the node (and its swtpm) inside `net`, detached: they run
    /// until `lab down` stops them by PID.
    pub fn start(&self, net: &LabNet) -> Result<Started, LabError> {
        which("qemu-system-x86_64", "qemu-system-x86")?;
        // Every node has a TPM: SeaBIOS measures into it too (and its ACPI
        // TPM2 table gives the kernel the log), though less than OVMF.
        let swtpm = self.start_swtpm()?;
        let mut cmd = net.command("qemu-system-x86_64");
        cmd.args(["-name", &self.name, "-accel", "tcg", "-m"])
            .arg(self.memory_mib.to_string())
            .args(["-smp", "1", "-display", "none", "-no-reboot"])
            .arg("-serial")
            .arg(format!("file:{}", self.console().display()))
            .arg("-netdev")
            .arg(format!(
                "tap,id=n0,ifname={},script=no,downscript=no",
                self.tap
            ));
        let mac = mac_text(&self.mac);
        match self.firmware {
            Firmware::Bios => {
                cmd.args(["-boot", "n", "-device"])
                    .arg(format!("virtio-net-pci,netdev=n0,mac={mac}"));
            }
            Firmware::Uefi => {
                let vars = self.dir.join("OVMF_VARS.fd");
                if !vars.is_file() {
                    std::fs::copy(OVMF_VARS, &vars).map_err(|source| LabError::File {
                        path: PathBuf::from(OVMF_VARS),
                        source,
                    })?;
                }
                cmd.arg("-drive")
                    .arg(format!(
                        "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
                    ))
                    .arg("-drive")
                    .arg(format!(
                        "if=pflash,format=raw,unit=1,file={}",
                        vars.display()
                    ))
                    .arg("-device")
                    .arg(format!("virtio-net-pci,netdev=n0,mac={mac},romfile="));
            }
        }
        cmd.arg("-chardev")
            .arg(format!(
                "socket,id=chrtpm,path={}",
                self.tpm_socket().display()
            ))
            .args([
                "-tpmdev",
                "emulator,id=tpm0,chardev=chrtpm",
                "-device",
                "tpm-tis,tpmdev=tpm0",
            ]);
        let log = self.dir.join("qemu.log");
        let qemu = spawn(cmd, &log, &format!("qemu {}", self.name))?;
        Ok(Started { qemu, swtpm })
    }

    fn start_swtpm(&self) -> Result<Proc, LabError> {
        which("swtpm", "swtpm")?;
        self.manufacture_tpm()?;
        let socket = self.tpm_socket();
        let _ = std::fs::remove_file(&socket);
        let mut cmd = std::process::Command::new("swtpm");
        cmd.args(["socket", "--tpm2", "--tpmstate"])
            .arg(format!("dir={}", self.tpm_state().display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", socket.display()))
            .arg("--log")
            .arg(format!("file={}", self.dir.join("swtpm.log").display()));
        let proc = spawn(
            cmd,
            &self.dir.join("swtpm.out"),
            &format!("swtpm {}", self.name),
        )?;
        // qemu connects at start: the socket must exist first.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if !proc.alive() || Instant::now() > deadline {
                return Err(LabError::Exited {
                    what: format!("swtpm of {}", self.name),
                    pid: proc.pid,
                    log: self.dir.join("swtpm.log"),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(proc)
    }
}

/// Starts `cmd` in its own process group (a Ctrl-C at the terminal that
/// ran `lab up` does not reach it), output to `log`.
pub fn spawn(mut cmd: std::process::Command, log: &Path, what: &str) -> Result<Proc, LabError> {
    use std::os::unix::process::CommandExt;
    let out = File::create(log).map_err(|source| LabError::File {
        path: log.to_owned(),
        source,
    })?;
    let err = out.try_clone().map_err(|source| LabError::File {
        path: log.to_owned(),
        source,
    })?;
    let line = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|source| LabError::Spawn {
            command: line,
            source,
        })?;
    let proc = Proc::of(child.id(), what, log)?;
    // The child is reaped by whoever outlives it; `lab down` stops it by
    // PID. Dropping `Child` does not kill it.
    drop(child);
    Ok(proc)
}
