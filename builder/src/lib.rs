//! The image builder: local mirror, resolver, lock, root filesystem,
//! kernel modules, NVIDIA chain, initramfs, UKI, measurements and the
//! signed manifest.
//!
//! Built so far: [`spec`] (the image spec), [`source`] (the Debian-format
//! layer the later stages stand on, the resolver and the lock), and
//! [`boot`]'s PE/Authenticode and PCR predictions. See ARCHITECTURE.md for
//! the map.

pub mod boot;
pub mod pipeline;
pub mod publish;
pub mod release;
pub mod rootfs;
pub mod source;
pub mod spec;

#[cfg(feature = "fixtures")]
pub mod fixtures;
