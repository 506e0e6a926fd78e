//! The spec's `[rootfs]` customisations, applied after configuration and
//! before normalisation: overlay files, hostname, users with their SSH
//! keys, enabled systemd units.
//!
//! Users are created and units enabled by the image's own `useradd` and
//! `systemctl` in the sandbox, so the result is what those tools would do
//! on the node; files are written through [`Target`], owned by root unless
//! they belong to a user (overlay files never take the build host's
//! owners: those would differ from machine to machine).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::AtFlags;
use nix::unistd::{Gid, Uid};

use super::error::Error;
use super::sandbox::Sandbox;
use super::target::Target;

/// What to apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Customization {
    /// `/etc/hostname` (default `localhost`).
    pub hostname: Option<String>,
    /// A directory whose tree is copied over the root.
    pub overlay: Option<PathBuf>,
    /// Users to create.
    pub users: Vec<User>,
    /// systemd units to enable.
    pub units: Vec<String>,
}

/// A login user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The login name.
    pub name: String,
    /// Lines for `~/.ssh/authorized_keys`.
    pub authorized_keys: Vec<String>,
}

/// Applies `custom` to `target`.
pub fn customize(
    target: &Target,
    custom: &Customization,
    epoch: u64,
    log_dir: &Path,
) -> Result<(), Error> {
    if let Some(overlay) = &custom.overlay {
        copy_overlay(target, overlay, Path::new(""))?;
    }
    let hostname = custom.hostname.as_deref().unwrap_or("localhost");
    check_hostname(hostname)?;
    target.write_file(
        Path::new("etc/hostname"),
        format!("{hostname}\n").as_bytes(),
        0o644,
    )?;
    if target.lstat(Path::new("etc/hosts"))?.is_none() {
        let hosts = format!(
            "127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
        );
        target.write_file(Path::new("etc/hosts"), hosts.as_bytes(), 0o644)?;
    }
    if custom.users.is_empty() && custom.units.is_empty() {
        return Ok(());
    }
    let sandbox = Sandbox::new(target, epoch)?;
    for user in &custom.users {
        add_user(target, &sandbox, user, log_dir)?;
    }
    if !custom.units.is_empty() {
        enable_units(target, &sandbox, &custom.units, log_dir)?;
    }
    Ok(())
}

fn customize_error(what: impl Into<String>, problem: impl Into<String>) -> Error {
    Error::Customize {
        what: what.into(),
        problem: problem.into(),
    }
}

/// RFC 1123 labels, dot-separated.
fn check_hostname(name: &str) -> Result<(), Error> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() <= 253 && name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(customize_error(
            format!("hostname {name:?}"),
            "not a valid host name (letters, digits, '-', dot-separated labels)",
        ))
    }
}

/// Copies the overlay tree: directories (0755), files (0755 when
/// executable, else 0644; owner root) and symlinks; anything else is
/// refused.
fn copy_overlay(target: &Target, overlay: &Path, rel: &Path) -> Result<(), Error> {
    let source = overlay.join(rel);
    let read_error =
        |e: std::io::Error| customize_error(format!("overlay {}", source.display()), e.to_string());
    let mut names: Vec<_> = fs::read_dir(&source)
        .map_err(read_error)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(read_error)?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let rel = rel.join(&name);
        let path = overlay.join(&rel);
        let what = || format!("overlay file {}", path.display());
        let meta =
            fs::symlink_metadata(&path).map_err(|e| customize_error(what(), e.to_string()))?;
        // Modes as git records them (the overlay lives in the repository;
        // a checkout's other bits come from the umask of whoever cloned).
        let executable = meta.permissions().mode() & 0o111 != 0;
        let mode = if meta.is_dir() || executable {
            0o755
        } else {
            0o644
        };
        if meta.is_dir() {
            if target.lstat(&rel)?.is_none() {
                target.create_dir_all(&rel, mode)?;
            }
            copy_overlay(target, overlay, &rel)?;
        } else if meta.is_file() {
            let data = fs::read(&path).map_err(|e| customize_error(what(), e.to_string()))?;
            target.write_file(&rel, &data, mode)?;
        } else if meta.file_type().is_symlink() {
            let link = fs::read_link(&path).map_err(|e| customize_error(what(), e.to_string()))?;
            target.symlink(&rel, &link)?;
        } else {
            return Err(customize_error(
                what(),
                format!("not a file, directory or symlink (mode {:o})", meta.mode()),
            ));
        }
    }
    Ok(())
}

/// POSIX-ish login names, as Debian's adduser accepts by default.
fn check_user_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(customize_error(
            format!("user {name:?}"),
            "not a valid login name ([a-z_][a-z0-9_-]*, at most 32)",
        ))
    }
}

/// An authorized_keys line: `[options] type base64 [comment]`, one line.
fn check_key(user: &str, key: &str) -> Result<(), Error> {
    let known = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-",
        "sk-ssh-ed25519",
        "sk-ecdsa-sha2-",
    ];
    let has_type = key
        .split_whitespace()
        .any(|w| known.iter().any(|k| w.starts_with(k)));
    if key.contains(['\n', '\r']) || !has_type {
        return Err(customize_error(
            format!("authorized key of user {user}"),
            "not a single OpenSSH public key line",
        ));
    }
    Ok(())
}

fn add_user(
    target: &Target,
    sandbox: &Sandbox<'_>,
    user: &User,
    log_dir: &Path,
) -> Result<(), Error> {
    check_user_name(&user.name)?;
    for key in &user.authorized_keys {
        check_key(&user.name, key)?;
    }
    if passwd_entry(target, &user.name)?.is_none() {
        let outcome = sandbox.run(
            &[
                "/usr/sbin/useradd",
                "--create-home",
                "--user-group",
                "--shell",
                "/bin/bash",
                &user.name,
            ],
            &[],
            &log_dir.join(format!("useradd-{}.log", user.name)),
        )?;
        if !outcome.status.success() {
            return Err(customize_error(
                format!("user {}", user.name),
                format!("useradd failed ({}): {}", outcome.status, outcome.tail(10)),
            ));
        }
    }
    let (uid, gid, home) = passwd_entry(target, &user.name)?.ok_or_else(|| {
        customize_error(
            format!("user {}", user.name),
            "not in /etc/passwd after useradd",
        )
    })?;
    if user.authorized_keys.is_empty() {
        return Ok(());
    }
    let home = Path::new(home.trim_start_matches('/')).to_owned();
    let ssh = home.join(".ssh");
    let keys = ssh.join("authorized_keys");
    target.create_dir_all(&ssh, 0o700)?;
    let text: String = user
        .authorized_keys
        .iter()
        .map(|k| format!("{k}\n"))
        .collect();
    target.write_file(&keys, text.as_bytes(), 0o600)?;
    for path in [&ssh, &keys] {
        let (dir, name) = target
            .parent(path)
            .map_err(|e| target.error("opening", path, e))?;
        nix::unistd::fchownat(
            &dir,
            OsStr::new(&name),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| target.error("setting the owner of", path, e.into()))?;
    }
    Ok(())
}

/// (uid, gid, home) of `name` from the image's /etc/passwd.
fn passwd_entry(target: &Target, name: &str) -> Result<Option<(u32, u32, String)>, Error> {
    let Some(data) = target.read_file(Path::new("etc/passwd"))? else {
        return Ok(None);
    };
    Ok(String::from_utf8_lossy(&data).lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 7 && f[0] == name)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?, f[5].to_owned())))
            .flatten()
    }))
}

fn enable_units(
    target: &Target,
    sandbox: &Sandbox<'_>,
    units: &[String],
    log_dir: &Path,
) -> Result<(), Error> {
    if target.lstat(Path::new("usr/bin/systemctl"))?.is_none() {
        return Err(customize_error(
            format!("units {}", units.join(", ")),
            "the image has no systemctl (add systemd to the packages)",
        ));
    }
    for unit in units {
        let ok = !unit.is_empty()
            && unit
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"@._-:\\".contains(&b));
        if !ok {
            return Err(customize_error(format!("unit {unit:?}"), "not a unit name"));
        }
    }
    let mut argv = vec!["/usr/bin/systemctl", "enable"];
    argv.extend(units.iter().map(String::as_str));
    let outcome = sandbox.run(&argv, &[], &log_dir.join("systemctl-enable.log"))?;
    if !outcome.status.success() {
        return Err(customize_error(
            format!("units {}", units.join(", ")),
            format!(
                "systemctl enable failed ({}): {}",
                outcome.status,
                outcome.tail(10)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_keys_are_checked() {
        assert!(check_hostname("node-01.rack3").is_ok());
        assert!(check_hostname("-bad").is_err());
        assert!(check_hostname("under_score").is_err());
        assert!(check_user_name("ops").is_ok());
        assert!(check_user_name("Root").is_err());
        assert!(check_user_name("a;b").is_err());
        assert!(check_key("ops", "ssh-ed25519 AAAAC3Nza ops@site").is_ok());
        assert!(check_key("ops", "ssh-ed25519 AAAA\nssh-rsa BBBB").is_err());
        assert!(check_key("ops", "hello").is_err());
    }
}
