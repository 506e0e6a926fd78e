//! The Debian-format ground layer: versions, control data, relations,
//! `.deb` archives, Packages and Release indexes.
//!
//! Everything above it (mirror, resolver, lock, rootfs) reads Debian data
//! through this module only. Parsers take untrusted bytes and return
//! [`Error`] naming the file, line, package or member at fault; none of
//! them panics on bad input (property-tested).
//!
//! Where to start:
//! - resolver: [`Catalog`] (packages by [`Name`] and by provided name,
//!   dense tables), [`Package`], [`relation::Relations`] /
//!   [`relation::Dependency`], [`Version`] and [`RelOp`] (dpkg's order).
//! - mirror: [`release::ClearSigned`] (the exact signed bytes of an
//!   InRelease, for gpgv/sqv), [`release::Release`] (index hashes),
//!   [`index::read_index_text`] (`.gz`/`.xz` by extension), [`DebFile`]
//!   (control data of a .deb to import).
//! - builds: [`mirror::Mirror::open`], [`mirror::Mirror::snapshot`] →
//!   [`mirror::Snapshot`] (verified catalog and .deb files).
//! - rootfs: [`DebFile::data`] then [`deb::DataTar::entries`] (streamed,
//!   unfiltered tar entries) and [`deb::DataTar::finish`];
//!   [`DebFile::control_members`] for the dpkg database.
//!
//! On top of it: [`resolve`] (which packages a request needs, as apt
//! computes it) and [`lock`] (`images/NAME.lock`: what a build may use,
//! by sha256, and the `--locked` check).

pub mod ar;
pub mod catalog;
pub mod compress;
pub mod control;
pub mod deb;
pub mod error;
pub mod index;
pub mod lock;
pub mod mirror;
pub mod names;
pub mod relation;
pub mod release;
pub mod resolve;
pub mod version;

pub use catalog::{Catalog, PackageId};
pub use deb::DebFile;
pub use error::Error;
pub use index::Package;
pub use names::{Interner, Name};
pub use version::{RelOp, Version};
