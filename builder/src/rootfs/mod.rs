//! The root filesystem: install a locked package set into a directory,
//! configure it with the image's own dpkg in a sandbox, normalise it for
//! bit-for-bit reproducibility, and write filesystem images of it.
//!
//! Stages, in order:
//! - [`install`]: merged /usr, a parallel and safe unpack ([`extract`],
//!   through [`target`]'s in-root resolution), the dpkg database
//!   ([`dpkg_db`]), then [`configure`] (preinst scripts in [`order`],
//!   `dpkg --configure -a`, audit) inside the [`sandbox`];
//! - normalise: see ARCHITECTURE.md;
//! - [`fsimage`]: deterministic image writers.

pub mod configure;
pub mod customize;
pub mod dpkg_db;
pub mod error;
pub mod extract;
pub mod fsimage;
pub mod install;
pub mod normalize;
pub mod order;
pub mod sandbox;
mod sys;
pub mod target;
pub mod tree;

pub use error::{EntryProblem, Error};
pub use install::{InstallOptions, InstallReport, InstalledPackage, PackageFile, install};
pub use target::Target;
