//! Real boots under qemu (TCG): node.efi as \EFI\BOOT\BOOTX64.EFI on a FAT
//! disk under OVMF with a swtpm, and vmlinuz + initrd under SeaBIOS. The
//! test /init prints marker lines, the TPM's PCRs and the firmware event
//! log on the serial console; PCR 4's application digests and PCR 11 are
//! compared with what the builder predicted. Two boots, ~30-40 s each.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ironrack_builder::boot::measure::{SYSTEMD_STUB_252, predict_pcr11, predict_pcr12};
use ironrack_builder::boot::pe::PeImage;
use ironrack_builder::boot::uki::measure_uki;
use ironrack_pxe::attest::eventlog::{AlgorithmId, EventLog};

use super::artifacts::{self, CMDLINE};
use super::debs::{self, RELEASE};
use super::qemu_support::{Reaped, marker_lines, run_qemu};

fn tools_present(test: &str) -> bool {
    let ok = ["qemu-system-x86_64", "swtpm"].iter().all(|t| {
        Command::new(t)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }) && Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd").is_file();
    if !ok {
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIP {test}: qemu-system-x86, ovmf or swtpm missing (scripts/deps.sh) *** NOT TESTED ***"
        );
    }
    ok
}

fn assert_init_ran(log: &str) {
    assert_eq!(
        marker_lines(log, "IRONRACK-MARKER"),
        [format!("kernel={RELEASE}")],
        "serial log:\n{log}"
    );
    let modules = marker_lines(log, "IRONRACK-MODULES ");
    assert_eq!(
        modules.len(),
        1,
        "modprobe through our modules.dep; log:\n{log}"
    );
    for m in [
        "virtio_net",
        "net_failover",
        "failover",
        "squashfs",
        "overlay",
    ] {
        assert!(
            modules[0].split(' ').any(|x| x == m),
            "{m} loaded: {}",
            modules[0]
        );
    }
    assert_eq!(marker_lines(log, "IRONRACK-DONE").len(), 1);
}

fn pcrs(log: &str) -> Vec<(u32, String)> {
    marker_lines(log, "IRONRACK-PCR ")
        .iter()
        .map(|l| {
            let (n, v) = l.split_once(' ').unwrap();
            (n.parse().unwrap(), v.to_ascii_lowercase())
        })
        .collect()
}

fn event_log(log: &str) -> EventLog {
    let text: String = log
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .skip_while(|l| *l != "IRONRACK-EVENTLOG-BEGIN")
        .skip(1)
        .take_while(|l| *l != "IRONRACK-EVENTLOG-END")
        .collect::<Vec<_>>()
        .join("\n");
    let mut child = Command::new("base64")
        .arg("-d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "event log base64");
    EventLog::parse(&out.stdout).expect("firmware event log")
}

fn start_swtpm(dir: &Path) -> (Reaped, PathBuf) {
    let state = dir.join("tpm");
    std::fs::create_dir_all(&state).unwrap();
    let sock = dir.join("swtpm.sock");
    let child = Command::new("swtpm")
        .args(["socket", "--tpm2", "--tpmstate"])
        .arg(format!("dir={}", state.display()))
        .arg("--ctrl")
        .arg(format!("type=unixio,path={}", sock.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("swtpm");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "swtpm socket did not appear");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Reaped(child), sock)
}

#[test]
fn uki_boots_under_ovmf_and_the_tpm_agrees_with_the_predictions() {
    if !tools_present("uki_boots_under_ovmf_and_the_tpm_agrees_with_the_predictions") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (uki, linux) = artifacts::uki();
    let esp = d.join("esp");
    std::fs::create_dir_all(esp.join("EFI/BOOT")).unwrap();
    std::fs::write(esp.join("EFI/BOOT/BOOTX64.EFI"), uki).unwrap();
    let vars = d.join("OVMF_VARS_4M.fd");
    std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars).unwrap();
    let (_swtpm, sock) = start_swtpm(d);
    let args: Vec<String> = [
        "-machine",
        "q35",
        "-drive",
        "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
        "-drive",
        &format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
        "-drive",
        &format!("format=raw,file=fat:rw:{}", esp.display()),
        "-chardev",
        &format!("socket,id=chrtpm,path={}", sock.display()),
        "-tpmdev",
        "emulator,id=tpm0,chardev=chrtpm",
        "-device",
        "tpm-tis,tpmdev=tpm0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let log = run_qemu("ovmf-uki", &args, &d.join("serial.log"));
    assert_init_ran(&log);

    let measured = measure_uki(uki, linux).unwrap();
    let prediction = predict_pcr11(&PeImage::parse(uki).unwrap(), &SYSTEMD_STUB_252).unwrap();
    let tpm = pcrs(&log);
    let tpm_value = |pcr: u32| tpm.iter().find(|(n, _)| *n == pcr).map(|(_, v)| v.clone());
    assert_eq!(
        tpm_value(11),
        Some(measured.pcr11.clone()),
        "PCR 11; log:\n{log}"
    );
    assert_eq!(measured.pcr11, hex::encode(prediction.value));
    // Started from disk, no LoadOptions: the stub uses .cmdline, measures
    // nothing into PCR 12, and the kernel measures .cmdline and the initrd
    // into PCR 9.
    assert_eq!(tpm_value(9), Some(measured.pcr9.clone()), "PCR 9");
    let pcr12 = predict_pcr12("", false, true);
    assert_eq!(tpm_value(12), Some(hex::encode(pcr12.value)), "PCR 12");

    // The firmware's log replays to the TPM's values, and PCR 4 holds the
    // Authenticode digests of node.efi and of the kernel the stub started.
    let events = event_log(&log);
    let replayed = events.replay().unwrap();
    let bank = replayed.sha256().unwrap();
    for (pcr, value) in &tpm {
        assert_eq!(
            &bank.value(*pcr).unwrap().to_hex(),
            value,
            "PCR {pcr} replay"
        );
    }
    let pcr4: Vec<String> = events
        .events_in(4)
        .filter_map(|e| e.digest(AlgorithmId::SHA256).map(|d| d.to_hex()))
        .collect();
    assert!(
        pcr4.contains(&measured.uki_authenticode),
        "node.efi in PCR 4: {pcr4:?}"
    );
    assert!(
        pcr4.contains(&measured.kernel_authenticode),
        "kernel in PCR 4: {pcr4:?}"
    );
    let pcr11_events: Vec<String> = events
        .events_in(11)
        .filter_map(|e| e.digest(AlgorithmId::SHA256).map(|d| d.to_hex()))
        .collect();
    assert_eq!(pcr11_events, measured.pcr11_events);
}

#[test]
fn kernel_and_initrd_boot_under_seabios() {
    if !tools_present("kernel_and_initrd_boot_under_seabios") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("initrd.img");
    std::fs::write(&initrd, artifacts::initrd()).unwrap();
    let args: Vec<String> = vec![
        "-kernel".into(),
        debs::vmlinuz().display().to_string(),
        "-initrd".into(),
        initrd.display().to_string(),
        "-append".into(),
        CMDLINE.into(),
    ];
    let log = run_qemu("seabios", &args, &dir.path().join("serial.log"));
    assert_init_ran(&log);
}
