//! Configuring the unpacked packages with the image's own dpkg, in the
//! sandbox.
//!
//! dpkg runs a package's `preinst install` before unpacking it, and
//! `dpkg --configure -a` runs only `postinst configure`. Our unpack put
//! every file in place at once, so the preinst scripts are run here first,
//! one per package in dependency order, with the environment dpkg gives
//! maintainer scripts. This is what mmdebstrap does for its essential set
//! (extract everything, then `dpkg --install --force-depends`): a preinst
//! finds every file of the set already on disk, its pre-dependencies
//! unpacked but not yet configured. Then `dpkg --configure -a` configures
//! everything, in dpkg's own order, triggers included.
//!
//! While scripts run, `/usr/sbin/policy-rc.d` (exit 101) forbids starting
//! services; there is no network, and a script that needs one fails, which
//! fails the build with the script's output. SSH host keys are not
//! generated (see [`hold_host_key_places`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::dpkg_db::PackageRecord;
use super::error::Error;
use super::order::dependency_order;
use super::sandbox::Sandbox;
use super::target::Target;

/// Where invoke-rc.d looks for the local policy.
const POLICY_RC_D: &str = "usr/sbin/policy-rc.d";

/// Where each preinst's control files wait for their turn; the script moves
/// them to dpkg's own `tmp.ci`, where dpkg runs a preinst from and where
/// debconf looks for the package's name and templates.
const STAGING: &str = "var/lib/dpkg/ironrack-ci";

/// dpkg's directory for the control files of the package being unpacked.
const TMP_CI: &str = "var/lib/dpkg/tmp.ci";

/// The version of dpkg's maintainer-script interface we present.
const DPKG_MAINTSCRIPT_ENV: &[(&str, &str)] = &[
    ("DPKG_MAINTSCRIPT_NAME", "preinst"),
    ("DPKG_MAINTSCRIPT_DEBUG", "0"),
    ("DPKG_ADMINDIR", "/var/lib/dpkg"),
    ("DPKG_ROOT", ""),
];

/// Runs every preinst, then `dpkg --configure -a`; `log_dir` (outside the
/// target) receives the sandbox output.
pub fn configure(
    target: &Target,
    packages: &[PackageRecord],
    epoch: u64,
    log_dir: &Path,
) -> Result<(), Error> {
    let sandbox = Sandbox::new(target, epoch)?;
    target.write_file(
        Path::new(POLICY_RC_D),
        b"#!/bin/sh\n# written by ironrack while the image is configured\nexit 101\n",
        0o755,
    )?;
    let placeholders = hold_host_key_places(target)?;
    let result = stage_control_files(target, packages)
        .and_then(|()| run_scripts(&sandbox, packages, log_dir));
    for path in placeholders {
        target.remove(&path)?;
    }
    target.remove(Path::new(POLICY_RC_D))?;
    target.remove(Path::new(STAGING))?;
    target.remove(Path::new(TMP_CI))?;
    result
}

/// SSH host keys are per node (normalisation removes them, the node makes
/// its own): openssh-server's postinst generates each missing one, the RSA
/// key taking seconds, only for it to be thrown away. Placeholders make it
/// skip them; they go right after configuration. Only where no key is.
fn hold_host_key_places(target: &Target) -> Result<Vec<std::path::PathBuf>, Error> {
    let mut held = Vec::new();
    if target.lstat(Path::new("usr/sbin/sshd"))?.is_none() {
        return Ok(held);
    }
    for kind in ["rsa", "ecdsa", "ed25519"] {
        let path = Path::new("etc/ssh").join(format!("ssh_host_{kind}_key"));
        if target.lstat(&path)?.is_none() {
            target.create_dir_all(Path::new("etc/ssh"), 0o755)?;
            target.write_file(&path, b"", 0o600)?;
            held.push(path);
        }
    }
    Ok(held)
}

/// Writes the control files of every package with a preinst under
/// [`STAGING`]`/INFO-NAME/`.
fn stage_control_files(target: &Target, packages: &[PackageRecord]) -> Result<(), Error> {
    for p in packages.iter().filter(|p| p.member("preinst").is_some()) {
        let dir = Path::new(STAGING).join(p.info_name());
        target.create_dir_all(&dir, 0o755)?;
        for member in &p.members {
            let mode = if member.mode & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            target.write_file(&dir.join(&member.name), &member.data, mode)?;
        }
    }
    Ok(())
}

/// The shell program run inside: preinsts from its arguments, in order,
/// each from dpkg's `tmp.ci` as dpkg runs it, then dpkg. Arguments come in
/// threes: info name, package, architecture.
const SCRIPT: &str = r#"
ci=/var/lib/dpkg/tmp.ci
while [ $# -ge 3 ]; do
  info=$1 pkg=$2 arch=$3
  shift 3
  echo "ironrack: preinst install: $pkg"
  rm -rf "$ci" && mv "/var/lib/dpkg/ironrack-ci/$info" "$ci" || exit 1
  DPKG_MAINTSCRIPT_PACKAGE=$pkg DPKG_MAINTSCRIPT_ARCH=$arch \
    DPKG_MAINTSCRIPT_PACKAGE_REFCOUNT=1 \
    "$ci/preinst" install
  status=$?
  rm -rf "$ci"
  if [ $status -ne 0 ]; then
    echo "ironrack: preinst of $pkg failed with exit status $status"
    exit 1
  fi
done
echo "ironrack: dpkg --configure -a"
exec dpkg --configure -a
"#;

fn run_scripts(
    sandbox: &Sandbox<'_>,
    packages: &[PackageRecord],
    log_dir: &Path,
) -> Result<(), Error> {
    let controls: Vec<_> = packages.iter().map(|p| &p.control).collect();
    let mut args: Vec<String> = vec!["/bin/sh".into(), "-c".into(), SCRIPT.into(), "sh".into()];
    for i in dependency_order(&controls) {
        let p = &packages[i];
        if p.member("preinst").is_some() {
            args.extend([
                p.info_name(),
                p.name().to_owned(),
                p.architecture().to_owned(),
            ]);
        }
    }
    let running_version = packages
        .iter()
        .find(|p| p.name() == "dpkg")
        .map(|p| p.version().to_owned())
        .unwrap_or_default();
    let mut env: Vec<(&str, &str)> = DPKG_MAINTSCRIPT_ENV.to_vec();
    env.push(("DPKG_RUNNING_VERSION", &running_version));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let outcome = sandbox.run(&argv, &env, &log_dir.join("configure.log"))?;
    if outcome.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&outcome.output);
    let (step, package) = failed_step(&text);
    let output = failure_output(&text, &package).unwrap_or_else(|| outcome.tail(40));
    Err(Error::MaintainerScript {
        step,
        package,
        status: outcome.status.to_string(),
        output,
    })
}

/// The lines about `package`'s failure: from where its script started to
/// dpkg's error about it (dpkg carries on with other packages, so the
/// tail of the output is about something else), at most 40 lines.
fn failure_output(text: &str, package: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let start_markers = [
        format!("Setting up {package} "),
        format!("Setting up {package}:"),
        format!("ironrack: preinst install: {package}"),
    ];
    let end_markers = [
        format!("dpkg: error processing package {package} "),
        format!("ironrack: preinst of {package} failed"),
    ];
    let end = lines
        .iter()
        .position(|l| end_markers.iter().any(|m| l.starts_with(m.as_str())))?;
    let start = lines[..=end]
        .iter()
        .rposition(|l| start_markers.iter().any(|m| l.starts_with(m.as_str())))
        .unwrap_or(end);
    let end = (end + 2).min(lines.len() - 1);
    let start = start.max(end.saturating_sub(39));
    Some(lines[start..=end].join("\n"))
}

/// Which step failed, and for which package, from the sandbox output.
fn failed_step(output: &str) -> (&'static str, String) {
    for line in output.lines() {
        if let Some(rest) = line.strip_prefix("ironrack: preinst of ") {
            let package = rest.split_whitespace().next().unwrap_or("?");
            return ("preinst install", package.to_owned());
        }
    }
    for line in output.lines() {
        if let Some(rest) = line.strip_prefix("dpkg: error processing package ") {
            let package = rest.split_whitespace().next().unwrap_or("?");
            return ("dpkg --configure", package.to_owned());
        }
    }
    ("dpkg --configure", "?".to_owned())
}

/// Checks the configured image with its own dpkg: `dpkg --audit` reports
/// nothing, and the installed set is exactly `packages`, each
/// `install ok installed` at its version.
pub fn audit(
    target: &Target,
    packages: &[PackageRecord],
    epoch: u64,
    log_dir: &Path,
) -> Result<(), Error> {
    let sandbox = Sandbox::new(target, epoch)?;
    let audit = sandbox.run(
        &["/usr/bin/dpkg", "--audit"],
        &[],
        &log_dir.join("audit.log"),
    )?;
    if !audit.status.success() || !audit.output.is_empty() {
        return Err(Error::Audit {
            problem: format!("dpkg --audit ({}):\n{}", audit.status, audit.tail(40)),
        });
    }
    let query = sandbox.run(
        &[
            "/usr/bin/dpkg-query",
            "-W",
            "-f=${binary:Package}\t${Version}\t${db:Status-Abbrev}\n",
        ],
        &[],
        &log_dir.join("query.log"),
    )?;
    if !query.status.success() {
        return Err(Error::Audit {
            problem: format!("dpkg-query -W ({}):\n{}", query.status, query.tail(20)),
        });
    }
    let installed: BTreeMap<String, (String, String)> = String::from_utf8_lossy(&query.output)
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let name = f.next()?.to_owned();
            let version = f.next()?.to_owned();
            let status = f.next()?.trim_end().to_owned();
            Some((
                name.split(':').next().unwrap_or("").to_owned(),
                (version, status),
            ))
        })
        .collect();
    let wanted: BTreeSet<&str> = packages.iter().map(PackageRecord::name).collect();
    let mut problems = Vec::new();
    for p in packages {
        match installed.get(p.name()) {
            Some((v, s)) if v == p.version() && s == "ii" => {}
            Some((v, s)) => problems.push(format!(
                "{} is {s} {v}, expected ii {}",
                p.name(),
                p.version()
            )),
            None => problems.push(format!("{} is not installed", p.name())),
        }
    }
    for name in installed.keys() {
        if !wanted.contains(name.as_str()) {
            problems.push(format!("{name} is installed but was not requested"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Audit {
            problem: problems.join("; "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failing_package_is_named() {
        let out =
            "ironrack: preinst install: a\nironrack: preinst of a failed with exit status 3\n";
        assert_eq!(failed_step(out), ("preinst install", "a".to_owned()));
        let out = "Setting up x (1) ...\nnetprobe: connect: Network is unreachable\n\
                   dpkg: error processing package netprobe (--configure):\n installed netprobe \
                   package post-installation script subprocess returned error exit status 1\n";
        assert_eq!(
            failed_step(out),
            ("dpkg --configure", "netprobe".to_owned())
        );
        assert_eq!(failed_step("?"), ("dpkg --configure", "?".to_owned()));
        let full = format!(
            "Setting up netprobe (1) ...\nnetprobe: connect: Network is unreachable\n{}",
            "x\n".repeat(100)
        );
        let full = full.replace(
            "x\nx\nx\n",
            "dpkg: error processing package netprobe (--configure):\n why\n",
        );
        let section = failure_output(&full, "netprobe").unwrap();
        assert!(section.starts_with("Setting up netprobe"), "{section}");
        assert!(section.contains("Network is unreachable"));
        assert!(section.contains("dpkg: error processing package netprobe"));
    }
}
