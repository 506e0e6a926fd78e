//! The PXE service (DHCP, TFTP, HTTP), inventory, the attestation server and
//! the node agent.
//!
//! See ARCHITECTURE.md for the map of what exists and what is planned.

pub mod attest;
