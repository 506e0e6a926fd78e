//! The SquashFS writer against the real readers: squashfs-tools
//! (`unsquashfs -d`, `-lln`, `-stat`, and mksquashfs as the reference
//! writer), attr's `getfattr`, libcap's `getcap`, and, as root, the host
//! kernel mounting the image through a loop device.

// SKIP notices must be loud, on stderr.
#![allow(clippy::print_stderr)]

mod determinism;
mod errors;
mod props;
mod roundtrip;
mod tree;
mod util;
