//! The dependency resolver: which packages a set of requests needs.
//!
//! The answer must be the one apt gives, because operators know apt and
//! compare with it: [`resolve`] computes exactly what `apt-get -s install
//! --no-install-recommends REQUESTS...` computes against an empty dpkg
//! status on the same index (tested against the real apt on Debian's
//! bookworm indexes). It is apt's own greedy algorithm, re-implemented
//! from `pkgDepCache::MarkInstall` (apt 2.6):
//!
//! - the candidate of a package is its highest version for the
//!   architecture (native or `all`; every source has the same pin);
//! - requested packages are marked first, then each one's dependencies are
//!   installed depth first, in field order (Pre-Depends, Depends, then
//!   Recommends when asked);
//! - for a group of alternatives, the solutions of each alternative in
//!   turn (the real package first, then providers ordered as apt's
//!   `CompareProviders`: Essential, then `Important`/`Protected`, then the
//!   version's Priority, then the name), and the first one whose
//!   installation succeeds wins;
//! - a package one of whose dependencies no candidate can satisfy is
//!   dropped for good; a failed attempt leaves the dependencies it marked,
//!   and apt's autoremover drops them again (emulated too).
//!
//! Deliberate differences, each tested:
//! - **Pins propagate.** Requesting `nvidia-smi=535.261.03-1` makes apt fail
//!   ("Depends: libnvidia-ml1 (= 535.261.03-1) but 535.309.01-0+deb12u1 is
//!   to be installed"). Here the dependency's candidate is switched to the
//!   newest version that satisfies it, as apt itself does for `pkg/release`
//!   requests; [`Resolution::switched`] lists every switch, and apt given
//!   those versions as candidates computes the same closure. A pinned
//!   version never switches; a preferred one (a lock's, during `lock
//!   --update`) does when a newer package needs more.
//! - **No problem resolver.** Where apt would mark conflicting packages and
//!   then run its scored `pkgProblemResolver` (which removes or holds back
//!   things heuristically), a candidate that conflicts with the packages
//!   already chosen is simply not taken, and a request that cannot be met
//!   fails with the chain of packages that leads to the problem. Images
//!   must be explicit, not the product of a heuristic repair.
//! - **The base set is explicit.** apt with an empty status does not add
//!   the Essential packages by itself (checked: `apt-get -s install
//!   busybox-static` installs one package); like mmdebstrap, the base set
//!   ([`BaseSet`]) is requested by name, before the other requests.
//! - **Ties go to the smaller name.** Two providers equal in everything
//!   apt compares are ordered by apt's package ID, which follows the order
//!   the indexes were read in; here by name, so the answer does not depend
//!   on that order. (No request on Debian's real indexes reaches the tie.)
//! - `:any` dependencies are met only by `Multi-Arch: allowed` packages
//!   (apt's rule; dpkg would also accept `foreign` ones). Only the native
//!   architecture and `all` are considered.

mod error;
mod explain;
mod mark;
mod sweep;
mod switch;
mod universe;

use std::fmt;

pub use error::{Link, Problem, ResolveError};

use self::mark::Marker;
use self::universe::Universe;
use super::catalog::{Catalog, PackageId};
use super::index::Priority;
use super::names::Name;
use super::version::Version;

/// Which packages form the base of an image before anything is requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BaseSet {
    /// Nothing: only what is requested and what it needs.
    #[default]
    None,
    /// Every package whose candidate is `Essential: yes`.
    Essential,
    /// Every package whose candidate has `Priority: required` (what
    /// debootstrap's and mmdebstrap's "required"/minbase variants install).
    Required,
    /// `required` and `important` priorities.
    Important,
}

impl BaseSet {
    /// The spec's spelling: `none`, `essential`, `required`, `important`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Essential => "essential",
            Self::Required => "required",
            Self::Important => "important",
        }
    }

    fn includes(self, package: &super::Package) -> bool {
        match self {
            Self::None => false,
            Self::Essential => package.essential,
            Self::Required => package.priority == Some(Priority::Required),
            Self::Important => matches!(
                package.priority,
                Some(Priority::Required | Priority::Important)
            ),
        }
    }
}

impl fmt::Display for BaseSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The base set, requested first (sorted by name).
    pub base: BaseSet,
    /// Packages to install, in order, each optionally at an exact version
    /// (like `apt-get install name=version`).
    pub include: Vec<(String, Option<Version>)>,
    /// Versions to prefer without requesting the package (the candidate
    /// when something needs it): a spec's pins in a set that does not
    /// include them, or a lock's versions during `lock --update`.
    pub prefer: Vec<(String, Version)>,
    /// Install Recommends too (apt's default; off for images).
    pub recommends: bool,
    /// The native architecture (`amd64`); packages of `all` also count.
    pub arch: String,
}

impl Request {
    /// A request for `include` on `arch`, no base set, no Recommends.
    pub fn new(arch: &str) -> Self {
        Self {
            base: BaseSet::None,
            include: Vec::new(),
            prefer: Vec::new(),
            recommends: false,
            arch: arch.to_owned(),
        }
    }

    /// Adds a package to install (builder style).
    pub fn with(mut self, name: &str, version: Option<Version>) -> Self {
        self.include.push((name.to_owned(), version));
        self
    }
}

/// A candidate that was switched to satisfy a pinned package (see the
/// module documentation: pins propagate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    /// The package whose candidate changed, at its new version.
    pub package: PackageId,
    /// The package version whose dependency needed it.
    pub because_of: PackageId,
}

/// The closure of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// Every package to install, sorted by name (one version per name).
    pub packages: Vec<PackageId>,
    /// The packages requested (base set and includes), in the order they
    /// were processed: `apt-get install` given these, in this order, with
    /// `=version` for pinned ones, computes the same closure.
    pub requested: Vec<PackageId>,
    /// Candidates switched away from the newest version because a pinned
    /// version needed them, in the order they were switched.
    pub switched: Vec<Switch>,
}

/// Resolves `request` against `catalog`.
///
/// Deterministic: the same catalog content and request give the same
/// result (names and versions), whatever order the indexes were read in.
pub fn resolve(catalog: &Catalog, request: &Request) -> Result<Resolution, ResolveError> {
    // apt recurses up to 3000 levels deep; a generated repository can make
    // it do so, which needs more stack than a test thread has.
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("resolve".into())
            .stack_size(256 << 20)
            .spawn_scoped(scope, || resolve_here(catalog, request))
            .map_err(|source| ResolveError::Thread { source })?
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn resolve_here(catalog: &Catalog, request: &Request) -> Result<Resolution, ResolveError> {
    let universe = Universe::new(catalog, &request.arch);
    let mut marker = Marker::new(&universe, request.recommends);
    let requested = requests(&universe, request, &mut marker)?;
    let pinned: Vec<PackageId> = requested
        .iter()
        .filter(|(_, pinned)| *pinned)
        .map(|&(id, _)| id)
        .collect();
    let requested: Vec<PackageId> = requested.into_iter().map(|(id, _)| id).collect();
    let switched = if pinned.is_empty() && request.prefer.is_empty() {
        Vec::new()
    } else {
        switch::propagate(&universe, marker.candidates_mut(), &requested, &pinned)
    };
    marker.install_requested(&requested);
    sweep::drop_garbage(&universe, &mut marker, &requested);
    marker.check(&requested)?;
    let mut packages = marker.installed_packages();
    packages.sort_by(|a, b| universe.order(*a, *b));
    Ok(Resolution {
        packages,
        requested,
        switched,
    })
}

/// The requested packages in processing order, with whether each was
/// pinned; sets the candidates of pinned and preferred packages.
fn requests(
    universe: &Universe<'_>,
    request: &Request,
    marker: &mut Marker<'_, '_>,
) -> Result<Vec<(PackageId, bool)>, ResolveError> {
    for (name, version) in &request.prefer {
        // A preferred version missing from the catalog (a lock from an
        // older snapshot) simply leaves the newest as candidate.
        if let Some(id) = universe.version_of(name, version) {
            marker.candidates_mut()[universe.package(id).name.index()] = Some(id);
        }
    }
    let mut order: Vec<(Name, Option<PackageId>)> = universe
        .base_set(request.base)
        .into_iter()
        .map(|id| (universe.package(id).name, None))
        .collect();
    for (text, version) in &request.include {
        let (name, pin) = match version {
            Some(v) => {
                let id = universe
                    .version_of(text, v)
                    .ok_or_else(|| error::missing_version(universe, text, v))?;
                (universe.package(id).name, Some(id))
            }
            None => (
                universe.requested_name(text, marker.candidates_mut())?,
                None,
            ),
        };
        // A name given twice (or a pinned base package) keeps its first
        // position and takes the pin. `Resolution::requested` carries the
        // version, so apt given that list sees one entry per name.
        match order.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = pin.or(entry.1),
            None => order.push((name, pin)),
        }
    }
    let candidates = marker.candidates_mut();
    let mut out = Vec::with_capacity(order.len());
    for (name, pin) in order {
        if let Some(id) = pin {
            candidates[name.index()] = Some(id);
        }
        let id = candidates[name.index()].ok_or_else(|| ResolveError::UnknownPackage {
            name: universe.text(name).to_owned(),
        })?;
        out.push((id, pin.is_some()));
    }
    Ok(out)
}
