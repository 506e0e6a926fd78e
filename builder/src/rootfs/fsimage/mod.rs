//! Filesystem images of a finished root: deterministic writers.

pub mod tar;
