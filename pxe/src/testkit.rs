//! Test support (feature `testkit`, never in the shipped binary): signed
//! images made with keys created on the spot, a real Debian kernel, a tiny
//! initramfs, and the real `ipxe` package. Used by the integration tests,
//! the boot lab tests and scripts/bench-http.sh.
//!
//! The kernel and the iPXE package are fetched with `apt-get download`
//! into a cache directory and unpacked with `dpkg-deb -x`, once.
//! The initramfs is made with the real `cpio` and `gzip`, around
//! busybox-static: its `/init` prints a marker line and powers off. A
//! test UKI is assembled with objcopy around the real systemd-stub, as the
//! builder's PE tests do. It is a test harness, not a product.

use std::path::{Path, PathBuf};
use std::process::Command;

use ironrack_keys::trust::{Delegation, Scope};
use ironrack_keys::{
    Artifact, SecretKey, SignedManifest, Timestamp, TrustFile, write_signed_manifest,
};

/// The kernel package the boot tests use (facts.md: bootable under TCG).
pub const KERNEL_PACKAGE: &str = "linux-image-6.1.0-50-cloud-amd64";
/// The iPXE package version of Debian 12.
pub const IPXE_PACKAGE: &str = "ipxe";
/// The package with systemd-stub (the UKI stub; 252 in Debian 12).
pub const STUB_PACKAGE: &str = "systemd-boot-efi";
/// The line the test initramfs prints when it runs.
pub const INIT_MARKER: &str = "IRONRACK-TEST-INIT-REACHED";

/// Test-support failures, as text: these run in tests and scripts only.
pub type Result<T> = std::result::Result<T, String>;

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().map_err(|e| format!("running {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// A signing hierarchy for tests: one root (threshold 1) delegating to a
/// signer for every image and channel. Writes `trust.json` in `dir`.
#[derive(Debug)]
pub struct SigningWorld {
    /// The trust file.
    pub trust_path: PathBuf,
    signer: SecretKey,
}

impl SigningWorld {
    /// Makes fresh keys and `dir/trust.json`.
    pub fn new(dir: &Path) -> Result<SigningWorld> {
        let e = |e: ironrack_keys::Error| e.to_string();
        let root = SecretKey::generate().map_err(e)?;
        let signer = SecretKey::generate().map_err(e)?;
        let expires = Timestamp::now().plus_days(30);
        let mut trust = TrustFile::new(vec![root.public_key()], 1, expires).map_err(e)?;
        let scope: Vec<Scope> = ["image:*", "channel:*"]
            .iter()
            .map(|s| s.parse().map_err(|_| format!("scope {s}")))
            .collect::<Result<_>>()?;
        trust
            .signed
            .add_signer(Delegation {
                name: "test-ci".into(),
                id: signer.key_id(),
                public: signer.public_key(),
                expires,
                scope,
            })
            .map_err(e)?;
        trust.sign(&root).map_err(e)?;
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let trust_path = dir.join("trust.json");
        std::fs::write(&trust_path, trust.to_bytes().map_err(e)?).map_err(|e| e.to_string())?;
        Ok(SigningWorld { trust_path, signer })
    }

    /// Writes `out/<name>/<version>/` with `artifacts` (name, source file),
    /// copied in, and a signed manifest whose payload carries `cmdline` as
    /// `kernel.cmdline`. Returns the image directory.
    pub fn image(
        &self,
        out: &Path,
        name: &str,
        version: u64,
        cmdline: &str,
        artifacts: &[(&str, &Path)],
    ) -> Result<PathBuf> {
        let payload = serde_json::json!({ "kernel": { "cmdline": cmdline } });
        self.image_with_payload(out, name, version, payload, artifacts)
    }

    /// As [`SigningWorld::image`], with the manifest payload given whole
    /// (e.g. with the `measurements` attestation checks).
    pub fn image_with_payload(
        &self,
        out: &Path,
        name: &str,
        version: u64,
        payload: serde_json::Value,
        artifacts: &[(&str, &Path)],
    ) -> Result<PathBuf> {
        let dir = out.join(name).join(version.to_string());
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut listed = Vec::new();
        for (file, source) in artifacts {
            std::fs::copy(source, dir.join(file))
                .map_err(|e| format!("copying {} to {}: {e}", source.display(), dir.display()))?;
            listed.push(Artifact::from_file(&dir, file).map_err(|e| e.to_string())?);
        }
        let manifest = SignedManifest::new(
            name,
            "stable",
            version,
            Timestamp::now().plus_days(7),
            listed,
            payload,
        );
        write_signed_manifest(&dir, &self.signer, &manifest).map_err(|e| e.to_string())?;
        Ok(dir)
    }
}

/// `package` (apt's candidate) downloaded into `cache`; returns the .deb.
pub fn download(cache: &Path, package: &str) -> Result<PathBuf> {
    let dir = cache.join(format!("{package}.deb.d"));
    let find = |dir: &Path| -> Option<PathBuf> {
        std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
    };
    if let Some(deb) = find(&dir) {
        return Ok(deb);
    }
    let tmp = cache.join(format!("{package}.deb.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    run(Command::new("apt-get")
        .args(["download", "-q", package])
        .current_dir(&tmp))?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).map_err(|e| e.to_string())?;
    find(&dir).ok_or_else(|| format!("apt-get download {package} produced no .deb"))
}

/// The Debian cloud kernel's `vmlinuz`, unpacked once into `cache`.
pub fn kernel(cache: &Path) -> Result<PathBuf> {
    let root = cache.join("kernel-root");
    let find = |root: &Path| -> Option<PathBuf> {
        std::fs::read_dir(root.join("boot"))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
            })
    };
    if let Some(k) = find(&root) {
        return Ok(k);
    }
    let deb = download(cache, KERNEL_PACKAGE)?;
    let tmp = cache.join("kernel-root.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp))?;
    std::fs::rename(&tmp, &root).map_err(|e| e.to_string())?;
    find(&root).ok_or_else(|| format!("{} holds no /boot/vmlinuz-*", deb.display()))
}

/// A gzip'd newc initramfs: busybox-static and an `/init` that prints
/// [`INIT_MARKER`] with the kernel command line, then powers off.
pub fn initramfs(work: &Path) -> Result<PathBuf> {
    let root = work.join("initramfs-root");
    let _ = std::fs::remove_dir_all(&root);
    for d in ["bin", "dev", "proc", "sys"] {
        std::fs::create_dir_all(root.join(d)).map_err(|e| e.to_string())?;
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .map_err(|e| format!("copying /bin/busybox (busybox-static): {e}"))?;
    let init = format!(
        "#!/bin/busybox sh\n\
         /bin/busybox mount -t proc proc /proc\n\
         echo \"{INIT_MARKER} cmdline=$(/bin/busybox cat /proc/cmdline)\"\n\
         /bin/busybox poweroff -f\n"
    );
    std::fs::write(root.join("init"), init).map_err(|e| e.to_string())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("init"), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    let out = work.join("initrd.img");
    let script = format!(
        "cd {} && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -9 > {}",
        root.display(),
        out.display()
    );
    run(Command::new("sh").args(["-c", &script]))?;
    Ok(out)
}

/// Debian's systemd-stub (`linuxx64.efi.stub`), unpacked once into `cache`.
pub fn stub(cache: &Path) -> Result<PathBuf> {
    let root = cache.join("stub-root");
    let stub = root.join("usr/lib/systemd/boot/efi/linuxx64.efi.stub");
    if stub.is_file() {
        return Ok(stub);
    }
    let deb = download(cache, STUB_PACKAGE)?;
    let tmp = cache.join("stub-root.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp))?;
    std::fs::rename(&tmp, &root).map_err(|e| e.to_string())?;
    stub.is_file()
        .then(|| stub.clone())
        .ok_or_else(|| format!("{} holds no {}", deb.display(), stub.display()))
}

/// A UKI (`node.efi` in `work`): the stub with `.osrel`, `.cmdline`,
/// `.linux` and `.initrd` added by objcopy at the addresses systemd's
/// documentation uses. The kernel must stay under 16 MiB (the .initrd
/// address follows 16 MiB after .linux); Debian's cloud kernel is ~8 MiB.
pub fn uki(
    stub: &Path,
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
    work: &Path,
) -> Result<PathBuf> {
    let dir = work.join("uki-sections");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let osrel = dir.join("osrel");
    let cmd_file = dir.join("cmdline");
    std::fs::write(&osrel, "ID=ironrack-test\nVERSION_ID=1\n").map_err(|e| e.to_string())?;
    std::fs::write(&cmd_file, cmdline).map_err(|e| e.to_string())?;
    let out = work.join("node.efi");
    let mut cmd = Command::new("objcopy");
    for (section, file, vma) in [
        (".osrel", osrel.as_path(), "0x20000"),
        (".cmdline", cmd_file.as_path(), "0x30000"),
        (".linux", kernel, "0x2000000"),
        (".initrd", initrd, "0x3000000"),
    ] {
        cmd.arg("--add-section")
            .arg(format!("{section}={}", file.display()))
            .arg("--change-section-vma")
            .arg(format!("{section}={vma}"));
    }
    run(cmd.arg(stub).arg(&out))?;
    Ok(out)
}

/// The shared real captures (`shared/fixtures`, see its INDEX.md): the
/// event log of a real OVMF + iPXE + UKI boot and the values the TPM
/// reported, read by the pxe and builder tests alike.
pub mod fixtures {
    use std::path::PathBuf;

    /// The shared fixtures: `$IRONRACK_FIXTURES`, else `shared/fixtures` in
    /// the nearest ancestor of this crate that has one (`../shared/fixtures`
    /// from the repository root in a normal checkout; worktrees sit one
    /// level deeper).
    pub fn dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("IRONRACK_FIXTURES") {
            return PathBuf::from(dir);
        }
        let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        crate_dir
            .ancestors()
            .map(|dir| dir.join("shared/fixtures"))
            .find(|dir| dir.join("INDEX.md").is_file())
            .unwrap_or_else(|| crate_dir.join("../../shared/fixtures"))
    }

    /// The captured OVMF + iPXE + UKI event log's path.
    pub fn eventlog_path() -> PathBuf {
        dir().join("ovmf-ipxe-uki.eventlog")
    }

    /// The 64-hex-digit values of INDEX.md's two-column tables, keyed by
    /// first column (PCR numbers, binary names), lower case.
    pub fn index_rows() -> Vec<(String, String)> {
        let path = dir().join("INDEX.md");
        let index = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("FIXTURE MISSING: {}: {e}", path.display()));
        index
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line
                    .trim()
                    .trim_matches('|')
                    .split('|')
                    .map(str::trim)
                    .collect();
                match cells.as_slice() {
                    [key, value]
                        if value.len() == 64 && value.chars().all(|c| c.is_ascii_hexdigit()) =>
                    {
                        Some((key.to_string(), value.to_ascii_lowercase()))
                    }
                    _ => None,
                }
            })
            .collect()
    }
}

/// Running qemu (TCG) to power-off for the boot tests: one runner, so each
/// test says only what it boots.
pub mod qemu {
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// OVMF's code image (Debian's `ovmf`, 4 MiB flash layout).
    pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
    /// Its variable store template.
    pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

    /// A child process killed (by its own PID) when dropped.
    #[derive(Debug)]
    pub struct Reaped(pub Child);

    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Whether qemu-system-x86_64 and OVMF are installed.
    pub fn available() -> bool {
        Command::new("qemu-system-x86_64")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            && Path::new(OVMF_CODE).is_file()
    }

    /// Runs qemu with `args` (plus a serial console to `log`, no display,
    /// no network unless `args` add one, no reboot, 1 GiB, TCG) until it
    /// powers off; returns the serial log. Errors when it exits with a
    /// failure or runs past `patience` (the log is in the message).
    pub fn run_to_poweroff(
        args: &[String],
        log: &Path,
        patience: Duration,
    ) -> super::Result<String> {
        run_watched(None, args, log, patience, &mut |_| {})
    }

    /// As [`run_to_poweroff`], inside network namespace `netns` when given
    /// (`ip netns exec`), calling `during` with the serial log so far
    /// while qemu runs (a test's operator acting on what the node says).
    pub fn run_watched(
        netns: Option<&str>,
        args: &[String],
        log: &Path,
        patience: Duration,
        during: &mut dyn FnMut(&str),
    ) -> super::Result<String> {
        run_until(netns, args, log, patience, &mut |text| {
            during(text);
            false
        })
    }

    /// As [`run_watched`], but `done` may end the run: when it returns
    /// true, qemu is killed and the serial log so far returned (a node
    /// that must never get further, such as one left waiting in iPXE).
    pub fn run_until(
        netns: Option<&str>,
        args: &[String],
        log: &Path,
        patience: Duration,
        done: &mut dyn FnMut(&str) -> bool,
    ) -> super::Result<String> {
        let started = Instant::now();
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "qemu-system-x86_64"]);
                c
            }
            None => Command::new("qemu-system-x86_64"),
        };
        let mut qemu = Reaped(
            command
                .args(args)
                .arg("-serial")
                .arg(format!("file:{}", log.display()))
                .args(["-display", "none", "-monitor", "none", "-no-reboot"])
                .args(["-accel", "tcg", "-m", "1024"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("starting qemu-system-x86_64: {e}"))?,
        );
        loop {
            if let Some(status) = qemu.0.try_wait().map_err(|e| e.to_string())? {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                if !status.success() {
                    return Err(format!("qemu exited with {status}; serial log:\n{text}"));
                }
                return Ok(text);
            }
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if started.elapsed() > patience {
                return Err(format!(
                    "qemu still running after {patience:?}; serial log:\n{text}"
                ));
            }
            if done(&text) {
                // Reaped kills and waits when dropped.
                return Ok(text);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The firmware arguments of a UEFI boot: OVMF's code read-only and a
    /// private copy of its variable store in `dir`.
    pub fn ovmf_args(dir: &Path) -> super::Result<Vec<String>> {
        let vars = dir.join("OVMF_VARS.fd");
        std::fs::copy(OVMF_VARS, &vars).map_err(|e| format!("copying {OVMF_VARS}: {e}"))?;
        Ok(vec![
            "-drive".into(),
            format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"),
            "-drive".into(),
            format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
        ])
    }
}

/// Real TPMs for tests: swtpm states manufactured by `swtpm_setup` with EK
/// certificates from a private local CA (`swtpm_localca`), and swtpm
/// processes serving them to qemu.
pub mod swtpm {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use super::qemu::Reaped;

    /// The local CA's root certificate (PEM) under a manufactured `dir`.
    pub fn ca_root(dir: &Path) -> PathBuf {
        crate::lab::node::ca_root(&dir.join("ca"))
    }

    /// The local CA's intermediate (the EK certificates' issuer).
    pub fn ca_intermediate(dir: &Path) -> PathBuf {
        crate::lab::node::ca_intermediate(&dir.join("ca"))
    }

    /// The TPM state under a manufactured `dir`.
    pub fn state(dir: &Path) -> PathBuf {
        dir.join("state")
    }

    /// Manufactures a TPM 2.0 in `dir`: `state/` (EK and platform
    /// certificates in NV, NV locked, SHA-1 and SHA-256 banks) and `ca/`
    /// (the local CA that signed them, made on the spot).
    pub fn manufacture(dir: &Path) -> super::Result<()> {
        crate::lab::node::manufacture(&state(dir), &dir.join("ca")).map_err(|e| e.to_string())
    }

    /// `swtpm socket` on `state` for qemu's `-tpmdev emulator`: the
    /// control channel at `sock`, swtpm's messages in `log`. Waits for the
    /// socket; the process dies with the returned handle.
    pub fn for_qemu(state: &Path, sock: &Path, log: &Path) -> super::Result<Reaped> {
        std::fs::create_dir_all(state).map_err(|e| format!("{}: {e}", state.display()))?;
        let log = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--tpmstate"])
            .arg(format!("dir={}", state.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", sock.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting swtpm: {e}"))?;
        let child = Reaped(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !sock.exists() {
            if Instant::now() > deadline {
                return Err(format!("swtpm made no socket at {}", sock.display()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(child)
    }

    /// The qemu arguments of a TPM 2.0 (TIS) backed by swtpm at `sock`.
    pub fn qemu_args(sock: &Path) -> Vec<String> {
        vec![
            "-chardev".into(),
            format!("socket,id=chrtpm,path={}", sock.display()),
            "-tpmdev".into(),
            "emulator,id=tpm0,chardev=chrtpm".into(),
            "-device".into(),
            "tpm-tis,tpmdev=tpm0".into(),
        ]
    }
}
