//! The image builder: local mirror, resolver, lock, root filesystem,
//! kernel modules, NVIDIA chain, initramfs, UKI, measurements and the
//! signed manifest.
//!
//! Nothing is implemented yet; see ARCHITECTURE.md for the planned stages.

pub mod boot;
