//! The meaning of a spec: what serde cannot see.

use std::fmt;
use std::path::{Component, Path};

use super::{Flavour, ImageSpec};
use crate::source::relation::is_package_name;
use crate::source::version::Version;

/// Something wrong with a well-formed spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecProblem {
    /// A name with characters it may not have.
    /// Patches listed beside a precompiled module package.
    PatchesWithPrecompiled {
        /// The package.
        package: String,
    },
    /// A name with characters it may not have.
    BadName {
        /// The value.
        value: String,
        /// What it must look like.
        expected: &'static str,
    },
    /// A pinned version that is not a Debian version.
    BadVersion {
        /// The value.
        value: String,
        /// Why dpkg rejects it.
        reason: String,
    },
    /// `version = 0`.
    ZeroVersion,
    /// A name listed twice.
    Duplicate {
        /// The name.
        value: String,
    },
    /// The kernel release does not belong to the kernel package.
    KernelMismatch {
        /// `kernel.package`.
        package: String,
        /// `kernel.release`.
        release: String,
    },
    /// A kernel release that does not look like one.
    BadRelease {
        /// The value.
        value: String,
    },
    /// The headers package is for another release.
    HeadersMismatch {
        /// `kernel.headers`.
        headers: String,
        /// `kernel.release`.
        release: String,
    },
    /// An NVIDIA driver version that is not `MAJOR.MINOR[.PATCH]`.
    BadDriverVersion {
        /// The value.
        value: String,
    },
    /// The module source package is not the flavour's.
    FlavourMismatch {
        /// The flavour.
        flavour: Flavour,
        /// The source package given.
        source: String,
    },
    /// A path that must stay inside its directory.
    BadPath {
        /// The path.
        value: String,
    },
    /// A snapshot that is neither a sha256 id nor a ref name.
    BadSnapshot {
        /// The value.
        value: String,
    },
}

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadName { value, expected } => write!(f, "{value:?} is not {expected}"),
            Self::PatchesWithPrecompiled { package } => write!(
                f,
                "patches apply to a module build, and {package} is already built: drop the patches or the precompiled package"
            ),
            Self::BadVersion { value, reason } => {
                write!(f, "{value:?} is not a Debian version: {reason}")
            }
            Self::ZeroVersion => f.write_str("the image version starts at 1"),
            Self::Duplicate { value } => write!(f, "{value} is listed twice"),
            Self::KernelMismatch { package, release } => write!(
                f,
                "kernel release {release} does not belong to package {package} \
                 (expected linux-image-{release} or linux-image-{release}-unsigned)"
            ),
            Self::BadRelease { value } => write!(
                f,
                "{value:?} does not look like a kernel release (e.g. 6.1.0-50-cloud-amd64)"
            ),
            Self::HeadersMismatch { headers, release } => write!(
                f,
                "headers package {headers} is not for release {release} \
                 (expected linux-headers-{release})"
            ),
            Self::BadDriverVersion { value } => write!(
                f,
                "{value:?} is not an NVIDIA driver release (e.g. 535.261.03)"
            ),
            Self::FlavourMismatch { flavour, source } => write!(
                f,
                "source package {source} does not build the {} modules (default: {})",
                match flavour {
                    Flavour::Open => "open",
                    Flavour::Proprietary => "proprietary",
                },
                flavour.default_source()
            ),
            Self::BadPath { value } => write!(
                f,
                "{value:?} must be a relative path that stays inside its directory"
            ),
            Self::BadSnapshot { value } => write!(
                f,
                "{value:?} is neither a snapshot id (64 hex digits) nor a ref name"
            ),
        }
    }
}

type Found = Vec<(Vec<String>, SpecProblem)>;

fn key(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| p.to_string()).collect()
}

fn is_slug(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

fn is_ref_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
}

fn is_inside(path: &Path) -> bool {
    !path.as_os_str().is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

fn check_slug(out: &mut Found, at: &[&str], value: &str, expected: &'static str) {
    if !is_slug(value) {
        out.push((
            key(at),
            SpecProblem::BadName {
                value: value.to_owned(),
                expected,
            },
        ));
    }
}

const PACKAGE_NAME: &str = "a Debian package name";

fn check_packages(out: &mut Found, at: &[&str], names: &[String]) {
    let mut seen = std::collections::HashSet::new();
    for (i, name) in names.iter().enumerate() {
        let index = i.to_string();
        let here = [at, &[index.as_str()]].concat();
        if !is_package_name(name) {
            out.push((
                key(&here),
                SpecProblem::BadName {
                    value: name.clone(),
                    expected: PACKAGE_NAME,
                },
            ));
        } else if !seen.insert(name) {
            out.push((
                key(&here),
                SpecProblem::Duplicate {
                    value: name.clone(),
                },
            ));
        }
    }
}

/// A kernel release: digits and dots first (`6.1.0`), then an optional
/// `-ABI-flavour` of letters, digits, `.`, `+`, `_`, `-`.
fn is_release(s: &str) -> bool {
    let (numbers, rest) = s.split_once('-').unwrap_or((s, ""));
    let parts: Vec<&str> = numbers.split('.').collect();
    parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
        && rest
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".+_-".contains(&c))
        && !s.ends_with('-')
}

fn is_driver_version(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
}

pub(super) fn problems(spec: &ImageSpec) -> Found {
    let mut out = Found::new();
    check_slug(&mut out, &["name"], &spec.name, "an image name ([a-z0-9-])");
    check_slug(
        &mut out,
        &["channel"],
        &spec.channel,
        "a channel name ([a-z0-9-])",
    );
    if spec.version == 0 {
        out.push((key(&["version"]), SpecProblem::ZeroVersion));
    }
    if !is_ref_name(&spec.suite) {
        out.push((
            key(&["suite"]),
            SpecProblem::BadName {
                value: spec.suite.clone(),
                expected: "a suite name",
            },
        ));
    }
    check_slug(
        &mut out,
        &["architecture"],
        &spec.architecture,
        "a Debian architecture name",
    );
    if !is_ref_name(&spec.mirror.snapshot) {
        out.push((
            key(&["mirror", "snapshot"]),
            SpecProblem::BadSnapshot {
                value: spec.mirror.snapshot.clone(),
            },
        ));
    }
    check_packages(&mut out, &["packages", "include"], &spec.packages.include);
    for (name, version) in &spec.packages.pin {
        let at = key(&["packages", "pin", name]);
        if !is_package_name(name) {
            out.push((
                at,
                SpecProblem::BadName {
                    value: name.clone(),
                    expected: PACKAGE_NAME,
                },
            ));
        } else if let Err(e) = Version::parse(version) {
            out.push((
                at,
                SpecProblem::BadVersion {
                    value: version.clone(),
                    reason: e.to_string(),
                },
            ));
        }
    }
    check_kernel(&mut out, spec);
    if let Some(nvidia) = &spec.nvidia {
        check_nvidia(&mut out, nvidia);
    }
    if let Some(initramfs) = &spec.initramfs {
        for (i, driver) in initramfs.drivers.iter().enumerate() {
            let ok = !driver.is_empty()
                && driver
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
            if !ok {
                out.push((
                    key(&["initramfs", "drivers", &i.to_string()]),
                    SpecProblem::BadName {
                        value: driver.clone(),
                        expected: "a kernel module name",
                    },
                ));
            }
        }
    }
    if let Some(overlay) = spec.rootfs.as_ref().and_then(|r| r.overlay.as_ref())
        && !is_inside(overlay)
    {
        out.push((
            key(&["rootfs", "overlay"]),
            SpecProblem::BadPath {
                value: overlay.display().to_string(),
            },
        ));
    }
    out
}

fn check_kernel(out: &mut Found, spec: &ImageSpec) {
    let k = &spec.kernel;
    if !is_package_name(&k.package) {
        out.push((
            key(&["kernel", "package"]),
            SpecProblem::BadName {
                value: k.package.clone(),
                expected: PACKAGE_NAME,
            },
        ));
    }
    if !is_release(&k.release) {
        out.push((
            key(&["kernel", "release"]),
            SpecProblem::BadRelease {
                value: k.release.clone(),
            },
        ));
    } else {
        let suffix = k.package.strip_prefix("linux-image-");
        if !matches!(suffix, Some(s) if s == k.release || s == format!("{}-unsigned", k.release)) {
            out.push((
                key(&["kernel", "release"]),
                SpecProblem::KernelMismatch {
                    package: k.package.clone(),
                    release: k.release.clone(),
                },
            ));
        }
        if let Some(headers) = &k.headers
            && *headers != format!("linux-headers-{}", k.release)
        {
            out.push((
                key(&["kernel", "headers"]),
                SpecProblem::HeadersMismatch {
                    headers: headers.clone(),
                    release: k.release.clone(),
                },
            ));
        }
    }
}

fn check_nvidia(out: &mut Found, nvidia: &super::NvidiaSpec) {
    if !is_driver_version(&nvidia.version) {
        out.push((
            key(&["nvidia", "version"]),
            SpecProblem::BadDriverVersion {
                value: nvidia.version.clone(),
            },
        ));
    }
    if let Some(source) = &nvidia.source {
        let open = source.contains("-open-");
        if !is_package_name(source) {
            out.push((
                key(&["nvidia", "source"]),
                SpecProblem::BadName {
                    value: source.clone(),
                    expected: PACKAGE_NAME,
                },
            ));
        } else if open != (nvidia.flavour == Flavour::Open) {
            out.push((
                key(&["nvidia", "source"]),
                SpecProblem::FlavourMismatch {
                    flavour: nvidia.flavour,
                    source: source.clone(),
                },
            ));
        }
    }
    check_packages(out, &["nvidia", "userspace"], &nvidia.userspace);
    if let Some(package) = &nvidia.precompiled {
        check_packages(
            out,
            &["nvidia", "precompiled"],
            std::slice::from_ref(package),
        );
        if !nvidia.patches.is_empty() {
            out.push((
                key(&["nvidia", "patches"]),
                SpecProblem::PatchesWithPrecompiled {
                    package: package.clone(),
                },
            ));
        }
    }
    for (i, patch) in nvidia.patches.iter().enumerate() {
        if !is_inside(patch) {
            out.push((
                key(&["nvidia", "patches", &i.to_string()]),
                SpecProblem::BadPath {
                    value: patch.display().to_string(),
                },
            ));
        }
    }
}
