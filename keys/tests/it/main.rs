//! Integration tests of ironrack-keys: one binary, one module per concern.

mod common;
mod parsers;
mod policy;
mod secrets;
mod tamper;
