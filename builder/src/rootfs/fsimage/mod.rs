//! Filesystem images of a finished root: deterministic writers.

pub mod erofs;
pub mod squashfs;
pub mod tar;
