//! The Debian-format ground layer: versions, control data, relations,
//! `.deb` archives, Packages and Release indexes.
//!
//! Everything above it (mirror, resolver, lock, rootfs) reads Debian data
//! through this module only. Parsers take untrusted bytes and return
//! [`Error`] naming the file, line, package or member at fault; none of
//! them panics on bad input (property-tested).

pub mod ar;
pub mod catalog;
pub mod compress;
pub mod control;
pub mod deb;
pub mod error;
pub mod index;
pub mod names;
pub mod relation;
pub mod release;
pub mod version;

pub use error::Error;
pub use names::{Interner, Name};
pub use version::{RelOp, Version};
