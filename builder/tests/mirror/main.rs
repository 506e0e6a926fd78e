//! The local mirror against real tools: apt reads its snapshots, gpg
//! signs and gpgv verifies the upstream repositories (served over HTTP on
//! loopback by a test server), and tampering is refused at every step.

// SKIP notices must be loud, on stderr.
#![allow(clippy::print_stderr)]

mod local;
mod props;
mod support;
mod sync;
