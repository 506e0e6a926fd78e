//! PE and measurement tests: Authenticode against an independent
//! implementation of EDK2's algorithm (generated images and real Debian
//! binaries), UKI PCR 11/12/9 predictions against the real event log of an
//! OVMF + swtpm boot, and property tests over arbitrary and mutated bytes.

mod pe {
    pub mod debs;
    pub mod generated;
    pub mod props;
    pub mod real;
    pub mod reference;
    pub mod support;
    pub mod uki;
}
