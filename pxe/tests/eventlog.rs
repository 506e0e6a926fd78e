//! Event-log tests: the real OVMF + swtpm capture in ../shared/fixtures,
//! logs edited the ways an attacker would, generated logs, the agent log,
//! and property tests over arbitrary and mutated bytes.

mod eventlog {
    pub mod agent;
    pub mod fixture;
    pub mod generated;
    pub mod mutations;
    pub mod props;
    pub mod support;
}
