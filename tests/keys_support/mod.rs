//! Helpers shared by the keys end-to-end tests: run the real `ironrack`
//! binary and the real third-party tools, and report what they said.

#![allow(dead_code)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// What a process did.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Panic with everything the process printed unless it exited 0.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panic unless it exited with `code`.
    pub fn code(self, code: i32) -> Run {
        assert_eq!(
            self.code,
            Some(code),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Run a program in `dir` with `stdin` fed to it.
pub fn run_in(dir: &Path, program: &str, args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env_remove("IRONRACK_PASSPHRASE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| {
            panic!("cannot run {program} ({err}); scripts/deps.sh installs the test tools")
        });
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    Run::from(child.wait_with_output().unwrap())
}

/// Run `ironrack ARGS` in `dir`.
pub fn ironrack(dir: &Path, args: &[&str]) -> Run {
    run_in(dir, env!("CARGO_BIN_EXE_ironrack"), args, b"")
}

/// Write a secret file (mode 0600) such as a passphrase file.
pub fn write_secret(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Some bytes to sign: binary, with NULs and every byte value.
pub fn sample_file(path: &Path) {
    let data: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(path, data).unwrap();
}

/// Flip one byte of a file in place.
pub fn flip_byte(path: &Path, at: usize) {
    let mut data = std::fs::read(path).unwrap();
    data[at] ^= 0x01;
    std::fs::write(path, data).unwrap();
}

/// The host's Debian http source, if the host apt has one and it answers
/// (the tests that sync from the host's apt skip loudly otherwise).
#[allow(clippy::print_stderr)]
pub fn debian_reachable() -> bool {
    use std::net::{TcpStream, ToSocketAddrs};
    let config = std::fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .chain(std::fs::read_to_string("/etc/apt/sources.list").ok())
        .collect::<String>();
    if !config.contains("http://deb.debian.org/debian") {
        eprintln!("\n*** SKIP: the host apt has no http://deb.debian.org source ***\n");
        return false;
    }
    let reachable = ("deb.debian.org", 80)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| {
            TcpStream::connect_timeout(&a, std::time::Duration::from_secs(10)).is_ok()
        });
    if !reachable {
        eprintln!("\n*** SKIP: deb.debian.org:80 is not reachable from this machine ***\n");
    }
    reachable
}
