//! The character-device transport against swtpm's chardev interface.
//!
//! `swtpm chardev --fd N` reads one command per read() and writes one
//! response per write(), which is exactly what /dev/tpm0 and /dev/tpmrm0
//! do. A datagram socket pair keeps those message boundaries, so the
//! Device transport talks to a real swtpm here as it would to the kernel.

use std::fs::{self, File};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use ironrack_pxe::attest::tpm::constants::alg;
use ironrack_pxe::attest::tpm::{Device, PcrSelection, Tpm};

#[test]
fn device_transport_against_swtpm_chardev() {
    if !crate::swtpm::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    fs::copy(
        crate::swtpm::template().join("state/tpm2-00.permall"),
        dir.path().join("tpm2-00.permall"),
    )
    .unwrap();
    let (ours, theirs) = UnixDatagram::pair().unwrap();
    // A dead swtpm must fail the test, not hang it.
    ours.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // swtpm refuses fds 0-2: move the socket from stdin to fd 3.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("exec 3<&0 0</dev/null; exec swtpm chardev --tpm2 --fd 3 --tpmstate \"dir=$1\" --flags not-need-init")
        .arg("sh")
        .arg(dir.path())
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .spawn()
        .expect("start swtpm chardev");
    let file = File::from(OwnedFd::from(ours));
    let mut tpm = Tpm::new(Device::from_file(file, "swtpm chardev"));
    let result = (|| {
        assert!(tpm.startup()?);
        let values = tpm.pcr_read(&PcrSelection::new(alg::SHA256, 0..16))?;
        assert_eq!(values.len(), 16);
        let cert = tpm.nv_read(0x01c0_0002)?;
        assert_eq!(cert[0], 0x30);
        Ok::<_, ironrack_pxe::attest::tpm::TpmError>(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result.unwrap();
}

#[test]
fn opening_a_missing_device_names_it() {
    let err = Device::open(std::path::Path::new("/nonexistent/tpmrm0")).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
}
