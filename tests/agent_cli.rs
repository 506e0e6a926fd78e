//! `ironrack agent` on a running system: it refuses to act as init unless
//! it is PID 1 (also when started as `/init`), and `--check-config`
//! reads an agent.json as the agent would: canonical output, unknown keys
//! and other format versions refused naming the file.

mod keys_support;

use std::os::unix::process::CommandExt;
use std::process::Command;

use ironrack_builder::boot::initramfs::AgentConfig;
use keys_support::ironrack;

fn config() -> AgentConfig {
    AgentConfig {
        version: 1,
        image: "gpu-node".into(),
        channel: "stable".into(),
        trust: "/etc/ironrack/trust.json".into(),
        server: Some("http://198.18.0.1:8080".into()),
        modules: vec!["failover".into(), "virtio_net".into()],
        kernel_release: "6.1.0-50-cloud-amd64".into(),
    }
}

#[test]
fn refuses_to_run_as_a_command() {
    let dir = tempfile::tempdir().unwrap();
    let run = ironrack(dir.path(), &["agent"]).code(1);
    assert!(
        run.stderr.contains("not a command for a running system")
            && run.stderr.contains("--check-config"),
        "{}",
        run.stderr
    );
    // Started under the name the kernel gives init, still not PID 1.
    let out = Command::new(env!("CARGO_BIN_EXE_ironrack"))
        .arg0("/init")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("runs only as PID 1"));
}

#[test]
fn check_config_prints_the_canonical_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.json");
    // Compact JSON in, the canonical (pretty) form out.
    std::fs::write(&path, serde_json::to_vec(&config()).unwrap()).unwrap();
    let run = ironrack(dir.path(), &["agent", "--check-config", "agent.json"]).ok();
    assert_eq!(run.stdout.as_bytes(), config().to_bytes());
}

#[test]
fn check_config_refuses_unknown_keys_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.json");
    let text = String::from_utf8(config().to_bytes()).unwrap();
    std::fs::write(&path, text.replacen('{', "{\n  \"debug\": true,", 1)).unwrap();
    let run = ironrack(dir.path(), &["agent", "--check-config", "agent.json"]).code(1);
    assert!(
        run.stderr.contains("agent.json") && run.stderr.contains("unknown field `debug`"),
        "{}",
        run.stderr
    );
    let mut other = config();
    other.version = 2;
    std::fs::write(&path, other.to_bytes()).unwrap();
    let run = ironrack(dir.path(), &["agent", "--check-config", "agent.json"]).code(1);
    assert!(run.stderr.contains("format version 2"), "{}", run.stderr);
    let run = ironrack(dir.path(), &["agent", "--check-config", "missing.json"]).code(4);
    assert!(run.stderr.contains("missing.json"), "{}", run.stderr);
}
