//! A real swtpm per test.
//!
//! One manufactured state (EK certificates from a private local CA, NV
//! locked, SHA-1 and SHA-256 banks) is made once with `swtpm_setup` and
//! cached under the target directory; each test copies it into its own
//! directory and runs its own `swtpm socket` on it (two swtpm processes
//! cannot share a state directory).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ironrack_pxe::attest::tpm::{SwtpmSocket, Tpm};

/// Bump when the manufacturing recipe changes, so a stale cache is not used.
const TEMPLATE_VERSION: &str = "v1";

/// Whether swtpm and swtpm_setup are installed; prints a loud SKIP if not.
#[allow(clippy::print_stderr)]
pub fn available() -> bool {
    let ok = ["swtpm", "swtpm_setup"].iter().all(|tool| {
        Command::new(tool)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
    if !ok {
        eprintln!(
            "SKIP: swtpm/swtpm_setup not installed (bash scripts/deps.sh installs them); \
             TPM tests against swtpm did NOT run"
        );
    }
    ok
}

/// The cached manufactured template: `state/` (TPM state) and `ca/`
/// (the local CA that signed the EK certificates).
pub fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("swtpm-template-{TEMPLATE_VERSION}"));
        if dir.join("done").exists() {
            return dir;
        }
        let scratch = tempfile::Builder::new()
            .prefix("swtpm-manufacture-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("scratch dir");
        manufacture(scratch.path());
        fs::write(scratch.path().join("done"), b"").unwrap();
        let scratch = scratch.keep();
        // Another test binary may have won the race; theirs is as good.
        if fs::rename(&scratch, &dir).is_err() {
            let _ = fs::remove_dir_all(&scratch);
        }
        assert!(dir.join("done").exists(), "template at {}", dir.display());
        dir
    })
}

fn manufacture(dir: &Path) {
    ironrack_pxe::testkit::swtpm::manufacture(dir).unwrap_or_else(|e| panic!("{e}"));
}

/// PEM certificates of the template's local CA: (root, intermediate).
pub fn local_ca_pem() -> (String, String) {
    let ca = template().join("ca");
    (
        fs::read_to_string(ca.join("swtpm-localca-rootca-cert.pem")).unwrap(),
        fs::read_to_string(ca.join("issuercert.pem")).unwrap(),
    )
}

/// The CA of a second, independent manufacturing run: same names as the
/// template's CA ("swtpm-localca-rootca", "swtpm-localca"), other keys.
pub fn impostor_ca_pem() -> (String, String) {
    static OTHER: OnceLock<(String, String)> = OnceLock::new();
    OTHER
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            manufacture(dir.path());
            let ca = dir.path().join("ca");
            (
                fs::read_to_string(ca.join("swtpm-localca-rootca-cert.pem")).unwrap(),
                fs::read_to_string(ca.join("issuercert.pem")).unwrap(),
            )
        })
        .clone()
}

/// Runs `swtpm socket` on `dir/state`, sockets in `dir`, and waits for
/// its data socket.
fn spawn(dir: &Path) -> Child {
    let server = dir.join("tpm.sock");
    let ctrl = dir.join("ctrl.sock");
    let child = Command::new("swtpm")
        .args(["socket", "--tpm2", "--tpmstate"])
        .arg(format!("dir={}", dir.join("state").display()))
        .arg("--server")
        .arg(format!("type=unixio,path={}", server.display()))
        .arg("--ctrl")
        .arg(format!("type=unixio,path={}", ctrl.display()))
        .args(["--flags", "not-need-init"])
        .stdin(Stdio::null())
        .spawn()
        .expect("start swtpm");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.exists() {
        assert!(Instant::now() < deadline, "swtpm did not create its socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// A running swtpm on a private copy of the template state.
pub struct Swtpm {
    child: Child,
    dir: tempfile::TempDir,
}

impl Swtpm {
    /// Starts swtpm in socket mode. It is not started up: tests send
    /// TPM2_Startup themselves, as firmware would.
    pub fn start() -> Swtpm {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        fs::create_dir(&state).unwrap();
        fs::copy(
            template().join("state/tpm2-00.permall"),
            state.join("tpm2-00.permall"),
        )
        .unwrap();
        let child = spawn(dir.path());
        Swtpm { child, dir }
    }

    /// Starts swtpm on a state manufactured for it alone: its own seeds
    /// (so its own EK and AK) and its own local CA, i.e. another machine
    /// from another vendor.
    #[allow(dead_code)] // used by the attest_flow tests, not by tpm/
    pub fn start_other() -> Swtpm {
        let dir = tempfile::tempdir().unwrap();
        manufacture(dir.path());
        let child = spawn(dir.path());
        Swtpm { child, dir }
    }

    /// A power cycle: swtpm killed and started again on the same state
    /// (persistent objects and NV survive, PCRs and transient objects not).
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for sock in ["tpm.sock", "ctrl.sock"] {
            let _ = fs::remove_file(self.dir.path().join(sock));
        }
        self.child = spawn(self.dir.path());
    }

    /// A new client connection.
    pub fn connect(&self) -> Tpm<SwtpmSocket> {
        Tpm::new(self.socket())
    }

    /// A new connection to the data socket.
    pub fn socket(&self) -> SwtpmSocket {
        let path = self.dir.path().join("tpm.sock");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match SwtpmSocket::connect(&path) {
                Ok(s) => return s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("connect to swtpm at {}: {e}", path.display()),
            }
        }
    }

    /// Starts swtpm and returns a started-up client.
    pub fn started() -> (Swtpm, Tpm<SwtpmSocket>) {
        let sw = Swtpm::start();
        let mut tpm = sw.connect();
        assert!(tpm.startup().expect("TPM2_Startup"), "fresh TPM starts up");
        (sw, tpm)
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
