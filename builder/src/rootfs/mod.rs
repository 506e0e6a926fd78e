//! The root filesystem: install, normalise, and the filesystem images.

pub mod fsimage;
