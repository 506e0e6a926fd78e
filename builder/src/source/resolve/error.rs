//! What the resolver reports when a request cannot be met.

use std::fmt;

use super::universe::Universe;
use crate::source::names::Name;
use crate::source::version::Version;

/// An error resolving a request. Every variant names the package at
/// fault; unsatisfiable requests carry the chain of packages that leads
/// to the problem.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A requested name that no package has or provides.
    #[error("package {name} is not in the index")]
    UnknownPackage {
        /// The requested name.
        name: String,
    },
    /// A requested name that exists only for other architectures.
    #[error("package {name} has no version for this architecture (only for {})", architectures.join(", "))]
    NotForArchitecture {
        /// The requested name.
        name: String,
        /// The architectures it exists for.
        architectures: Vec<String>,
    },
    /// A requested virtual name with several providers.
    #[error("{name} is a virtual package provided by {}: request one of them", providers.join(", "))]
    VirtualPackage {
        /// The requested name.
        name: String,
        /// The packages providing it.
        providers: Vec<String>,
    },
    /// A pinned version that the index does not have.
    #[error(
        "{name} {version} is not in the index (available: {})",
        list_or_none(available)
    )]
    MissingVersion {
        /// The package.
        name: String,
        /// The pinned version.
        version: String,
        /// The versions the index has, newest first.
        available: Vec<String>,
    },
    /// A request that cannot be met, with the chain leading to the problem.
    #[error("{}: {problem}", Chain(chain))]
    Unsatisfiable {
        /// From the requested package down to the relation that fails.
        chain: Vec<Link>,
        /// What fails at the end of the chain.
        problem: Problem,
    },
    /// The resolver's thread (it needs a deep stack) could not start.
    #[error("starting the resolver thread")]
    Thread {
        /// The OS error.
        source: std::io::Error,
    },
}

/// One step of an error chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// A package version that was to be installed.
    Package {
        /// Its name.
        name: String,
        /// Its version.
        version: String,
    },
    /// The relation of the previous package that could not be met.
    Relation(String),
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Package { name, version } => write!(f, "{name} {version}"),
            Self::Relation(text) => f.write_str(text),
        }
    }
}

struct Chain<'a>(&'a [Link]);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, link) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" → ")?;
            }
            write!(f, "{link}")?;
        }
        Ok(())
    }
}

/// What fails at the end of an error chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No version of any alternative satisfies the relation.
    NoVersion {
        /// What each alternative's name has (`libfoo1 has 1.2, 1.0`).
        available: Vec<String>,
        /// A pin that would satisfy it, when a non-candidate version does.
        hint: Option<String>,
    },
    /// The last package conflicts with (or breaks, or is broken by) a
    /// package already chosen.
    Conflict {
        /// The other package and version.
        with: String,
        /// The relation, as written, and who declares it.
        relation: String,
    },
    /// Every solution was tried and none could be installed.
    NothingInstallable {
        /// The solutions tried.
        tried: Vec<String>,
    },
    /// The package was dropped with no recorded reason.
    NotInstalled,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoVersion { available, hint } => {
                write!(f, "no version satisfies it ({})", available.join("; "))?;
                if let Some(hint) = hint {
                    write!(f, "; pin {hint} to use it")?;
                }
                Ok(())
            }
            Self::Conflict { with, relation } => write!(f, "conflicts with {with} ({relation})"),
            Self::NothingInstallable { tried } => {
                write!(f, "none of {} can be installed", tried.join(", "))
            }
            Self::NotInstalled => f.write_str("could not be installed"),
        }
    }
}

fn list_or_none(list: &[String]) -> String {
    if list.is_empty() {
        "none".to_owned()
    } else {
        list.join(", ")
    }
}

/// The error for a pinned version the index lacks.
pub(super) fn missing_version(u: &Universe<'_>, name: &str, version: &Version) -> ResolveError {
    let Some(n) = u.catalog.names().get(name) else {
        return ResolveError::UnknownPackage {
            name: name.to_owned(),
        };
    };
    ResolveError::MissingVersion {
        name: name.to_owned(),
        version: version.to_string(),
        available: u
            .versions(n)
            .map(|id| u.package(id).version.to_string())
            .collect(),
    }
}

/// The architectures a name exists for (sorted, no duplicates).
pub(super) fn architectures(u: &Universe<'_>, name: Name) -> Vec<String> {
    let mut out: Vec<String> = u
        .catalog
        .by_name(name)
        .iter()
        .map(|&id| u.text(u.package(id).architecture).to_owned())
        .collect();
    out.sort();
    out.dedup();
    out
}
