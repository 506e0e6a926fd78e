//! The root filesystem stages against real packages and real tools:
//! bookworm .debs fetched with apt, the image's own dpkg in the sandbox,
//! dpkg itself as the reference for the database we write, and hostile
//! packages from the fixture generator.
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
mod real;
mod reproducible;
mod support;
