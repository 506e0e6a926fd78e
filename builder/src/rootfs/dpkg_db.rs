//! The dpkg database, written the way `dpkg --unpack` leaves it, so the
//! image's own dpkg finds every package "unpacked" and can configure it.
//!
//! - `status`: one paragraph per package, sorted by name then
//!   architecture, fields in dpkg's order, `Status: install ok unpacked`,
//!   `Conffiles` with the `newconffile` marker (the conffile itself waits
//!   on disk as `NAME.dpkg-new` until `dpkg --configure` installs it);
//! - `info/PKG.list` (every archive entry, `/.` first), and every control
//!   member but `control` as `info/PKG.NAME` (maintainer scripts keep
//!   their execute bits); `PKG` is `name:arch` for `Multi-Arch: same`;
//! - `info/format`, `updates/`, and `triggers/`: the interests declared in
//!   `triggers` control files (`File` for paths, one file per named
//!   trigger), as dpkg records them at unpack time.
//!
//! `tests/rootfs` compares this byte for byte with what dpkg itself writes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::Error;
use super::target::Target;
use crate::source::control::{Paragraph, write_field};
use crate::source::deb::ControlMember;

/// Where dpkg keeps its database.
pub const ADMIN_DIR: &str = "var/lib/dpkg";

/// Fields dpkg writes in this order; the rest follow in their own order.
const FIELD_ORDER: &[&str] = &[
    "Package",
    "Essential",
    "Protected",
    "Status",
    "Priority",
    "Section",
    "Installed-Size",
    "Origin",
    "Maintainer",
    "Bugs",
    "Architecture",
    "Multi-Arch",
    "Source",
    "Version",
    "Config-Version",
    "Replaces",
    "Provides",
    "Depends",
    "Pre-Depends",
    "Recommends",
    "Suggests",
    "Breaks",
    "Conflicts",
    "Enhances",
    "Conffiles",
    "Description",
    "Triggers-Pending",
    "Triggers-Awaited",
];

/// One unpacked package, as the database needs it.
#[derive(Debug, Clone)]
pub struct PackageRecord {
    /// The control paragraph from the .deb.
    pub control: Paragraph,
    /// Every control member (scripts, md5sums, conffiles, triggers, ...).
    pub members: Vec<ControlMember>,
    /// The `.list` lines (`/.`, `/usr`, `/usr/bin/x`, ...), archive order.
    pub list: Vec<Vec<u8>>,
}

impl PackageRecord {
    /// `Package`.
    pub fn name(&self) -> &str {
        self.control.get("Package").unwrap_or("")
    }

    /// `Architecture`.
    pub fn architecture(&self) -> &str {
        self.control.get("Architecture").unwrap_or("")
    }

    /// `Version`.
    pub fn version(&self) -> &str {
        self.control.get("Version").unwrap_or("")
    }

    /// The name dpkg uses for the info files: `name:arch` for
    /// `Multi-Arch: same` packages, else `name`.
    pub fn info_name(&self) -> String {
        let same = self
            .control
            .get("Multi-Arch")
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("same"));
        if same {
            format!("{}:{}", self.name(), self.architecture())
        } else {
            self.name().to_owned()
        }
    }

    /// A control member by name.
    pub fn member(&self, name: &str) -> Option<&ControlMember> {
        self.members.iter().find(|m| m.name == name)
    }

    /// The conffile paths (`/etc/x`) from the `conffiles` member, with
    /// the `remove-on-upgrade` flag where given.
    pub fn conffiles(&self) -> Vec<(String, bool)> {
        let Some(member) = self.member("conffiles") else {
            return Vec::new();
        };
        String::from_utf8_lossy(&member.data)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|line| match line.strip_prefix("remove-on-upgrade ") {
                Some(path) => (path.trim().to_owned(), true),
                None => (line.to_owned(), false),
            })
            .collect()
    }

    /// The status paragraph dpkg writes for this package once unpacked.
    pub fn status_paragraph(&self) -> String {
        let mut fields: Vec<(&str, String)> = Vec::new();
        for &name in FIELD_ORDER {
            let value = match name {
                "Status" => Some("install ok unpacked".to_owned()),
                "Conffiles" => {
                    let lines: Vec<String> = self
                        .conffiles()
                        .iter()
                        .map(|(path, remove)| {
                            let flag = if *remove { " remove-on-upgrade" } else { "" };
                            format!(" {path} newconffile{flag}")
                        })
                        .collect();
                    (!lines.is_empty()).then(|| format!("\n{}", lines.join("\n")))
                }
                // dpkg writes these booleans only when true.
                "Essential" | "Protected" => self
                    .control
                    .get(name)
                    .filter(|v| v.trim().eq_ignore_ascii_case("yes"))
                    .map(|_| "yes".to_owned()),
                _ => self.control.get(name).map(str::to_owned),
            };
            if let Some(value) = value {
                fields.push((name, value));
            }
        }
        for field in &self.control.fields {
            let known = FIELD_ORDER
                .iter()
                .any(|k| k.eq_ignore_ascii_case(&field.name));
            if !known {
                fields.push((&field.name, field.value.clone()));
            }
        }
        let mut out = String::new();
        for (name, value) in fields {
            write_field(&mut out, name, &value);
        }
        out
    }
}

/// Writes the database for `packages` (already extracted) into `target`.
pub fn write(target: &Target, packages: &[PackageRecord]) -> Result<(), Error> {
    let admin = Path::new(ADMIN_DIR);
    for dir in ["info", "updates", "triggers"] {
        target.create_dir_all(&admin.join(dir), 0o755)?;
    }
    target.write_file(&admin.join("info/format"), b"1\n", 0o644)?;
    for package in packages {
        write_info(target, package)?;
    }
    let mut sorted: Vec<&PackageRecord> = packages.iter().collect();
    sorted.sort_by(|a, b| (a.name(), a.architecture()).cmp(&(b.name(), b.architecture())));
    // dpkg ends every paragraph, the last included, with a blank line.
    let status: String = sorted.iter().map(|p| p.status_paragraph() + "\n").collect();
    target.write_file(&admin.join("status"), status.as_bytes(), 0o644)?;
    write_triggers(target, &sorted)
}

fn write_info(target: &Target, package: &PackageRecord) -> Result<(), Error> {
    let info = Path::new(ADMIN_DIR).join("info");
    let key = package.info_name();
    let mut list = Vec::new();
    for line in &package.list {
        list.extend_from_slice(line);
        list.push(b'\n');
    }
    target.write_file(&info.join(format!("{key}.list")), &list, 0o644)?;
    for member in &package.members {
        if member.name == "control" {
            continue;
        }
        let mode = if member.mode & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        let path: PathBuf = info.join(format!("{key}.{}", member.name));
        target.write_file(&path, &member.data, mode)?;
    }
    Ok(())
}

/// `triggers/File` (path interests) and `triggers/NAME` (named interests).
fn write_triggers(target: &Target, packages: &[&PackageRecord]) -> Result<(), Error> {
    let triggers = Path::new(ADMIN_DIR).join("triggers");
    let mut file_interests = String::new();
    let mut named: BTreeMap<String, String> = BTreeMap::new();
    for package in packages {
        let Some(member) = package.member("triggers") else {
            continue;
        };
        for (directive, trigger) in parse_triggers(&member.data) {
            let noawait = match directive {
                "interest" | "interest-await" => "",
                "interest-noawait" => "/noawait",
                _ => continue,
            };
            let who = format!("{}{noawait}", package.info_name());
            if trigger.starts_with('/') {
                file_interests.push_str(&format!("{trigger} {who}\n"));
            } else {
                named
                    .entry(trigger.to_owned())
                    .or_default()
                    .push_str(&format!("{who}\n"));
            }
        }
    }
    if !file_interests.is_empty() {
        target.write_file(&triggers.join("File"), file_interests.as_bytes(), 0o644)?;
    }
    for (name, interested) in named {
        target.write_file(&triggers.join(&name), interested.as_bytes(), 0o644)?;
    }
    target.write_file(&triggers.join("Unincorp"), b"", 0o644)
}

/// `(directive, trigger)` pairs of a `triggers` control file.
pub fn parse_triggers(data: &[u8]) -> Vec<(&str, &str)> {
    let text = std::str::from_utf8(data).unwrap_or("");
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?, words.next()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::control::parse_single;

    fn record(control: &str, members: Vec<ControlMember>) -> PackageRecord {
        PackageRecord {
            control: parse_single(control, "test").unwrap(),
            members,
            list: vec![b"/.".to_vec()],
        }
    }

    fn member(name: &str, data: &str) -> ControlMember {
        ControlMember {
            name: name.into(),
            mode: 0o644,
            data: data.as_bytes().to_vec(),
        }
    }

    #[test]
    fn status_follows_dpkgs_field_order() {
        let r = record(
            "Package: foo\nVersion: 1.0\nArchitecture: amd64\nMaintainer: M <m@x>\n\
             Homepage: https://x\nDepends: libc6\nEssential: no\nDescription: short\n long\n",
            vec![member(
                "conffiles",
                "/etc/foo\nremove-on-upgrade /etc/old\n",
            )],
        );
        assert_eq!(
            r.status_paragraph(),
            "Package: foo\nStatus: install ok unpacked\nMaintainer: M <m@x>\n\
             Architecture: amd64\nVersion: 1.0\nDepends: libc6\nConffiles:\n \
             /etc/foo newconffile\n /etc/old newconffile remove-on-upgrade\n\
             Description: short\n long\nHomepage: https://x\n"
        );
    }

    #[test]
    fn multi_arch_same_info_files_carry_the_architecture() {
        let r = record(
            "Package: libfoo\nVersion: 1\nArchitecture: amd64\nMulti-Arch: same\n",
            vec![],
        );
        assert_eq!(r.info_name(), "libfoo:amd64");
        let r = record("Package: foo\nVersion: 1\nArchitecture: all\n", vec![]);
        assert_eq!(r.info_name(), "foo");
    }

    #[test]
    fn trigger_files_parse_with_comments() {
        let t = parse_triggers(
            b"# comment\ninterest-noawait /usr/lib/x # why\n\nactivate-noawait ldconfig\n",
        );
        assert_eq!(
            t,
            vec![
                ("interest-noawait", "/usr/lib/x"),
                ("activate-noawait", "ldconfig")
            ]
        );
    }
}
