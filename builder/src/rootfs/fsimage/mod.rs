//! Filesystem images of a root tree.

pub mod squashfs;
