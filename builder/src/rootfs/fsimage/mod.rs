//! Filesystem images of a root tree.

pub mod erofs;
pub mod squashfs;
