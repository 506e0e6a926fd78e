//! The resolver against the real apt: on Debian bookworm's real indexes
//! and on generated repositories; property tests on generated ones.

// SKIP notices and per-case figures go to stderr.
#![allow(clippy::print_stderr)]

mod apt;
mod bookworm;
mod demo;
mod generated;
mod properties;
mod random;
mod real;
mod repo;
mod spec;
mod util;
