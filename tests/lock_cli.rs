//! `ironrack lock` end to end: the real binary on a generated repository
//! of real .debs: lock, `--check`, edits caught with exit code 3, `--update`
//! printing what changed, and errors naming the file and key or the chain.

use std::path::{Path, PathBuf};
use std::process::Command;

use ironrack_builder::fixtures::{DebBuilder, RepoBuilder};

const SPEC: &str = r#"name = "node"
channel = "stable"
version = 1
suite = "testing"

[mirror]
path = "../mirror"
snapshot = "site"

[packages]
base = "none"
include = ["app"]

[kernel]
package = "linux-image-6.1.0-1-test"
release = "6.1.0-1-test"
"#;

fn deb(name: &str, version: &str) -> DebBuilder {
    DebBuilder::new(name, version, "amd64").file(
        &format!("usr/share/{name}/v"),
        version.as_bytes(),
        0o644,
    )
}

fn repo(second: bool) -> RepoBuilder {
    let mut r = RepoBuilder::new("testing")
        .add("main", deb("app", "1.0").field("Depends", "lib (>= 1)"))
        .add("main", deb("lib", "1.0"))
        .add("main", deb("linux-image-6.1.0-1-test", "6.1.4-1"));
    if second {
        r = r
            .add(
                "main",
                deb("app", "2.0").field("Depends", "lib (>= 2), extra"),
            )
            .add("main", deb("lib", "2.0"))
            .add("main", deb("extra", "1"));
    }
    r
}

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn ironrack(args: &[&str], spec: &Path, repo: &Path) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ironrack"));
    cmd.arg("lock").arg(spec);
    if !repo.as_os_str().is_empty() {
        cmd.arg("--repo").arg(repo);
    }
    let out = cmd.args(args).env("NO_COLOR", "1").output().unwrap();
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let spec = images.join("node.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let root = dir.path().join("repo");
    repo(false).write(&root).unwrap();
    (dir, spec, root)
}

#[test]
fn lock_check_update() {
    let (_dir, spec, root) = setup();
    let lock_path = spec.with_extension("lock");

    let out = ironrack(&[], &spec, &root);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.starts_with("image: 3 packages\nwrote "),
        "{}",
        out.stdout
    );
    let text = std::fs::read_to_string(&lock_path).unwrap();
    assert!(text.contains("name = \"app\"\nversion = \"1.0\""), "{text}");

    let out = ironrack(&["--check"], &spec, &root);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout
            .contains(": 3 packages verified against snapshot "),
        "{}",
        out.stdout
    );

    // Locking again without changes: the same bytes, nothing changed.
    let out = ironrack(&[], &spec, &root);
    assert!(
        out.stdout.contains("0 added, 0 removed, 0 changed"),
        "{}",
        out.stdout
    );
    assert_eq!(std::fs::read_to_string(&lock_path).unwrap(), text);

    // A tampered .deb: exit code 3, naming the package and the file.
    let deb = root.join("pool/main/l/lib/lib_1.0_amd64.deb");
    let original = std::fs::read(&deb).unwrap();
    std::fs::write(&deb, b"not a deb").unwrap();
    let out = ironrack(&["--check"], &spec, &root);
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("image: lib 1.0: pool/main/l/lib/lib_1.0_amd64.deb does not match the lock"),
        "{}",
        out.stderr
    );
    std::fs::write(&deb, original).unwrap();

    // An edited spec.
    std::fs::write(&spec, format!("{SPEC}\n")).unwrap();
    let out = ironrack(&["--check"], &spec, &root);
    assert_eq!(out.code, Some(3));
    assert!(
        out.stderr.contains("the spec changed since it was locked"),
        "{}",
        out.stderr
    );
    std::fs::write(&spec, SPEC).unwrap();

    // A new snapshot: --update app takes app 2.0 and what it needs.
    repo(true).write(&root).unwrap();
    let out = ironrack(&["--check"], &spec, &root);
    assert_eq!(out.code, Some(3));
    assert!(
        out.stderr.contains("the lock was made from snapshot "),
        "{}",
        out.stderr
    );
    let out = ironrack(&["--update", "app"], &spec, &root);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("1 added, 0 removed, 2 changed\n  + image: extra 1\n  ~ image: app 1.0 -> 2.0\n  ~ image: lib 1.0 -> 2.0\n"),
        "{}",
        out.stdout
    );
    assert_eq!(ironrack(&["--check"], &spec, &root).code, Some(0));
}

#[test]
fn errors_name_the_spec_line_or_the_chain() {
    let (_dir, spec, root) = setup();
    std::fs::write(&spec, SPEC.replace("base = \"none\"", "base = \"minimal\"")).unwrap();
    let out = ironrack(&[], &spec, &root);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains("node.toml:11:8: packages.base: unknown variant `minimal`"),
        "{}",
        out.stderr
    );

    std::fs::write(
        &spec,
        SPEC.replace("[\"app\"]", "[\"app\"]\npin = { lib = \"0.9\" }"),
    )
    .unwrap();
    let out = ironrack(&[], &spec, &root);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains("resolving the image set: lib 0.9 is not in the index (available: 1.0)"),
        "{}",
        out.stderr
    );
    assert!(
        !spec.with_extension("lock").exists(),
        "no lock written on failure"
    );

    let out = ironrack(&["--check"], &spec, &root);
    assert_ne!(out.code, Some(0));
}

/// Runs `ironrack ARGS` in `dir`; panics unless it exits 0.
fn run_ok(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ironrack"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ironrack {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn without_repo_the_spec_mirror_snapshot_is_read_and_verified() {
    let (dir, spec, root) = setup();
    let d = dir.path();
    let none = Path::new("");
    let out = ironrack(&[], &spec, none);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("mirror.toml"), "{}", out.stderr);

    // A real mirror: the generated repository's .debs imported, the
    // snapshot signed with the site key and named by the ref `site`.
    run_ok(d, &["keys", "generate", "site", "--dir", "keys"]);
    run_ok(d, &["keys", "generate", "other", "--dir", "keys"]);
    run_ok(d, &["mirror", "init", "mirror", "--name", "site"]);
    let mut debs: Vec<String> = Vec::new();
    let mut stack = vec![root.join("pool")];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "deb") {
                debs.push(path.display().to_string());
            }
        }
    }
    assert_eq!(debs.len(), 3);
    let mut args = vec!["mirror", "import", "mirror"];
    args.extend(debs.iter().map(String::as_str));
    args.extend([
        "--key",
        "keys/site.key",
        "--suite",
        "testing",
        "--ref",
        "site",
    ]);
    run_ok(d, &args);
    let id = std::fs::read_to_string(d.join("mirror/refs/site"))
        .unwrap()
        .trim()
        .to_owned();

    // No key: the lock refuses to read an unverified snapshot.
    let out = ironrack(&[], &spec, none);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("--pub PUBKEY"), "{}", out.stderr);

    let site = d.join("keys/site.pub").display().to_string();
    let out = ironrack(&["--pub", &site], &spec, none);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!("(snapshot {id})")),
        "{}",
        out.stdout
    );
    assert_eq!(
        ironrack(&["--locked", "--pub", &site], &spec, none).code,
        Some(0)
    );

    // Another key: a verification failure (exit 3).
    let other = d.join("keys/other.pub").display().to_string();
    let out = ironrack(&["--locked", "--pub", &other], &spec, none);
    assert_eq!(out.code, Some(3), "{}", out.stderr);

    // A snapshot whose Release was edited is refused too.
    let release = d.join(format!("mirror/snapshots/{id}/dists/testing/Release"));
    let mut perms = std::fs::metadata(&release).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    std::fs::set_permissions(&release, perms).unwrap();
    let mut text = std::fs::read_to_string(&release).unwrap();
    text.push_str("X-Extra: 1\n");
    std::fs::write(&release, text).unwrap();
    let out = ironrack(&["--locked", "--pub", &site], &spec, none);
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert_ne!(sha256_hex(&std::fs::read(&release).unwrap()), id);
}

fn sha256_hex(bytes: &[u8]) -> String {
    let out = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn();
    let mut child = out.unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}
