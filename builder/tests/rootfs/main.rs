//! The root filesystem stages against real packages and real tools:
//! bookworm .debs fetched with apt, the image's own dpkg in the sandbox,
//! dpkg itself as the reference for the database we write, mmdebstrap as
//! the reference tree, and hostile packages from the fixture generator.
//! The whole `ironrack build` on a real image (reproducibility, dpkg's
//! view of the result) is tests/build_real.rs at the workspace root.
//!
//! Needs root (chown, mknod, namespaces, mounts): tests print a loud SKIP
//! line otherwise. CI runs as root.

// SKIP notices must be loud, on stderr.
#![allow(clippy::print_stderr)]

mod dpkg_compat;
mod hostile;
mod mmdebstrap;
mod pipeline;
mod props;
mod support;
